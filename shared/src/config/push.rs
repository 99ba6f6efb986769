//! `[push]`: push providers reached over HTTP (APNs, FCM, web push).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Push providers reached over HTTP: APNs, FCM and web push services.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Time allowed for one request to a provider.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A PEM file of certificate authorities trusted beside the public ones (a provider gateway
    /// with a private CA, or the test peers).
    pub extra_ca_file: Option<std::path::PathBuf>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            extra_ca_file: None,
        }
    }
}
