//! `[telemetry]`: logs.

use serde::{Deserialize, Serialize};

/// Logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            json: false,
            filter: "info".into(),
        }
    }
}
