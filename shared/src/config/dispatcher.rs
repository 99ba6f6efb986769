//! `[dispatcher]`: the channel dispatchers.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The channel dispatchers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// Sends in flight at once across all jobs of one dispatcher process.
    pub concurrency: usize,
    /// Groups and lists up to this many users are expanded inline; larger ones are split into
    /// jobs shared by every replica.
    pub inline_threshold: usize,
    /// Users looked up per pipelined Redis round trip.
    pub lookup_batch: usize,
    /// Most delivery events in one status message.
    pub status_batch: usize,
    /// How long a job's status events wait for other jobs' to share their broker message (the
    /// deliveries are made; only the jobs' acks and their feedback wait). The deliverer's events
    /// (stored, sent, acked, expired) wait as long.
    #[serde(with = "humantime_serde")]
    pub status_linger: Duration,
    /// Sends in flight at once for one app, so that one app's burst cannot starve another's.
    pub app_concurrency: usize,
    /// Sends per second for one app toward the provider (0: no limit), so that the app's
    /// provider account is not throttled.
    pub app_rate_per_second: u32,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9101))),
            ops_tls: None,
            concurrency: 512,
            inline_threshold: 1_000,
            lookup_batch: 500,
            status_batch: 1_000,
            status_linger: Duration::from_millis(20),
            app_concurrency: 256,
            app_rate_per_second: 0,
        }
    }
}
