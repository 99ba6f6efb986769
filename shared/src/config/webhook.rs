//! `[webhook]`: the outbound webhook (`http`) channel.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The outbound webhook channel.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Time allowed for one request, from connect to the last byte of the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Time allowed to connect.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Requests in flight at once to one host.
    pub per_host_concurrency: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
    /// Networks webhooks may reach although they are loopback, private, link-local or otherwise
    /// not public (CIDR, e.g. `["10.20.0.0/16"]`); every such address is refused otherwise.
    pub allow_networks: Vec<ipnet::IpNet>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            per_host_concurrency: 64,
            pool_idle_per_host: 64,
            allow_networks: Vec::new(),
        }
    }
}
