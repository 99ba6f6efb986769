//! `[admin]`: the administration API.

use std::net::SocketAddr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The administration API (`/admin/v1/...`), served by the accepter on a listener of its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token of the admin API; without it the admin API is off.
    #[serde(serialize_with = "super::redacted")]
    pub token: Option<SecretString>,
    /// Where the admin API listens: loopback unless `public` says otherwise.
    pub listen: SocketAddr,
    /// Allows `listen` to be an address other than loopback.
    pub public: bool,
    /// TLS for the admin API (plain HTTP without it).
    pub tls: Option<TlsSettings>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            token: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            public: false,
            tls: None,
        }
    }
}
