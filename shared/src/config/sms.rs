//! `[sms]`: SMPP sessions of the `sms` channel.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// SMPP sessions of the `sms` channel: one long-lived transceiver bind per app account.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// `submit_sm` PDUs outstanding at once on one bind.
    pub window: usize,
    /// Time allowed for a `submit_sm_resp`.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Interval of `enquire_link` on an idle bind.
    #[serde(with = "humantime_serde")]
    pub enquire_link: Duration,
    /// How long a send waits for the bind to come (back) up before it is retried later.
    #[serde(with = "humantime_serde")]
    pub bind_wait: Duration,
    /// How long the SMSC message ids are kept to match delivery receipts.
    #[serde(with = "humantime_serde")]
    pub receipt_ttl: Duration,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            window: 10,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            bind_wait: Duration::from_secs(10),
            receipt_ttl: Duration::from_secs(72 * 3600),
        }
    }
}
