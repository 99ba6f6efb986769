//! `[mongodb]`: the MongoDB connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// MongoDB connection.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoSettings {
    /// The server URL.
    pub url: String,
    /// The database holding apps, messages and deliveries.
    pub database: String,
    /// How long delivery and message records are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017".into(),
            database: "sprayer".into(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}
