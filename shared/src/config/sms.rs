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
    /// An inbound SMS whose whole text is one of these (any case, trailing punctuation aside)
    /// opts the user who registered the sending number out of SMS, or out of the SMS of the
    /// app's categories marked `stop_by_sms`. Empty: no keyword is acted on.
    pub stop_keywords: Vec<String>,
    /// An inbound SMS whose whole text is one of these opts the user back in.
    pub start_keywords: Vec<String>,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            window: 10,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            bind_wait: Duration::from_secs(10),
            receipt_ttl: Duration::from_secs(72 * 3600),
            stop_keywords: [
                "STOP",
                "STOPALL",
                "UNSUBSCRIBE",
                "CANCEL",
                "END",
                "QUIT",
                "ARRET",
            ]
            .map(String::from)
            .to_vec(),
            start_keywords: ["START", "UNSTOP", "SUBSCRIBE"].map(String::from).to_vec(),
        }
    }
}
