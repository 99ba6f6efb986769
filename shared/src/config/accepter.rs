//! `[accepter]`: the REST API and the limits of each app.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsSettings;
use crate::model::Channel;

/// The REST API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccepterSettings {
    /// Where the API listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// TLS for the API (plain HTTP without it).
    pub tls: Option<TlsSettings>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: usize,
    /// TTL of a message that gives none.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Longest TTL accepted.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// The channels served by a running dispatcher; others are refused at the API.
    pub channels: Vec<Channel>,
    /// How far ahead `send_at` may be.
    #[serde(with = "humantime_serde")]
    pub max_schedule: Duration,
    /// How far in the past `send_at` may be (a sender's clock running behind); such a message
    /// goes at once.
    #[serde(with = "humantime_serde")]
    pub schedule_skew: Duration,
    /// Most escalation steps in one `delivery`.
    pub max_steps: usize,
    /// Most named delivery policies per app.
    pub max_policies: usize,
    /// Most templates per app.
    pub max_templates: usize,
    /// Most message categories per app.
    pub max_categories: usize,
    /// How long a verified app key is trusted before it is looked up again.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long an `Idempotency-Key` is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// API requests per second one app may make, over every accepter (0: no limit); above it
    /// the API answers 429 with `Retry-After`.
    pub rate_per_second: u32,
    /// Requests an app may make at once above its rate before it is held to it.
    pub rate_burst: u32,
    /// Most members in one group.
    pub max_group_members: u64,
    /// Limits of particular apps, by app id, in place of the ones above.
    pub app_limits: std::collections::BTreeMap<String, AppLimits>,
}

/// One app's own limits; what is left out is the installation's.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppLimits {
    /// API requests per second (0: no limit).
    pub rate_per_second: Option<u32>,
    /// Requests at once above the rate.
    pub rate_burst: Option<u32>,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: Option<usize>,
    /// Most members in one group.
    pub max_group_members: Option<u64>,
}

/// The limits that hold for one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// API requests per second (0: no limit).
    pub rate_per_second: u32,
    /// Requests at once above the rate.
    pub rate_burst: u32,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: usize,
    /// Most members in one group.
    pub max_group_members: u64,
}

impl AccepterSettings {
    /// The limits of `app`: its own where it has them, else the installation's.
    pub fn limits(&self, app: &str) -> Limits {
        let own = self.app_limits.get(app);
        Limits {
            rate_per_second: own
                .and_then(|limits| limits.rate_per_second)
                .unwrap_or(self.rate_per_second),
            rate_burst: own
                .and_then(|limits| limits.rate_burst)
                .unwrap_or(self.rate_burst),
            max_users: own
                .and_then(|limits| limits.max_users)
                .unwrap_or(self.max_users),
            max_group_members: own
                .and_then(|limits| limits.max_group_members)
                .unwrap_or(self.max_group_members),
        }
    }
}

impl Default for AccepterSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            max_body_bytes: 256 * 1024,
            max_users: 10_000,
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(28 * 24 * 3600),
            channels: vec![Channel::Http],
            max_schedule: Duration::from_secs(30 * 24 * 3600),
            schedule_skew: Duration::from_secs(60),
            max_steps: 8,
            max_policies: 100,
            max_templates: 500,
            max_categories: 100,
            key_cache_ttl: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            rate_per_second: 1_000,
            rate_burst: 2_000,
            max_group_members: 1_000_000,
            app_limits: std::collections::BTreeMap::new(),
        }
    }
}
