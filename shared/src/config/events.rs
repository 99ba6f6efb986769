//! `[events]`: the events service, which keeps each app's event feed and pushes it to the
//! app's event endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The events service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// How long events are kept in the feed.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Most events in one POST to an event endpoint.
    pub batch_max: usize,
    /// Most event endpoints per app.
    pub max_endpoints: usize,
    /// An endpoint failing for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// How long a rotated-out secret still signs (beside the new one).
    #[serde(with = "humantime_serde")]
    pub rotation_overlap: Duration,
    /// Waits between the attempts of a batch that failed (the last one repeats).
    #[serde(with = "super::duration_list")]
    pub retry_tiers: Vec<Duration>,
    /// Most events written to the feed in one bulk write.
    pub write_batch: usize,
    /// Longest wait for a bulk write to fill.
    #[serde(with = "humantime_serde")]
    pub write_wait: Duration,
    /// Status messages held unacknowledged at once by the feed writer.
    pub prefetch: u16,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9103))),
            ops_tls: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            batch_max: 100,
            max_endpoints: 10,
            disable_after: Duration::from_secs(24 * 3600),
            rotation_overlap: Duration::from_secs(24 * 3600),
            retry_tiers: [1, 5, 30, 120, 600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            write_batch: 2_000,
            write_wait: Duration::from_millis(20),
            prefetch: 64,
        }
    }
}
