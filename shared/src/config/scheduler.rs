//! `[scheduler]`: the scheduler, which runs scheduled sends and escalation steps on durable
//! timers in Redis.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The scheduler.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// How often each replica looks for due timers when none were due at its last look.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// How long a claimed timer stays with the replica that claimed it: one that dies with it
    /// claimed leaves it to fire again this much later, on any replica.
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
    /// Most timers one replica claims from one shard at once.
    pub claim_batch: usize,
    /// Most users a step handles in one batch (one Redis round trip per batch and check).
    pub batch_users: usize,
    /// Status messages held unacknowledged at once by the step watcher.
    pub prefetch: u16,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9104))),
            ops_tls: None,
            poll: Duration::from_millis(100),
            claim_lease: Duration::from_secs(30),
            claim_batch: 1_000,
            batch_users: 1_000,
            prefetch: 32,
        }
    }
}
