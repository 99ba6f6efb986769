//! `[feeder]`: the status feeder.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The status feeder.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeederSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// Most delivery events in one bulk write.
    pub batch_size: usize,
    /// Longest wait for a batch to fill before it is written.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Status messages held unacknowledged at once.
    pub prefetch: u16,
    /// Bulk writes in flight at once (their acks stay in order: a batch is acknowledged only
    /// after every batch before it was written and acknowledged).
    pub writes_in_flight: usize,
}

impl Default for FeederSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9102))),
            ops_tls: None,
            batch_size: 2_000,
            batch_wait: Duration::from_millis(50),
            prefetch: 64,
            writes_in_flight: 2,
        }
    }
}
