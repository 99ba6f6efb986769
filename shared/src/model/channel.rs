//! The delivery channels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport Sprayer delivers over; each has its own job queue and dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMS over SMPP 3.4.
    Sms,
    /// E-mail over SMTP.
    Email,
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
    /// Browser push (RFC 8030 with VAPID).
    Webpush,
    /// Signed outbound HTTP webhooks.
    Http,
    /// Browser WebSockets through the deliverer's inboxes.
    Ws,
}

impl Channel {
    /// Every channel, in a fixed order.
    pub const ALL: [Channel; 7] = [
        Channel::Sms,
        Channel::Email,
        Channel::Apns,
        Channel::Fcm,
        Channel::Webpush,
        Channel::Http,
        Channel::Ws,
    ];

    /// The lowercase name used in the API, queue names and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Apns => "apns",
            Channel::Fcm => "fcm",
            Channel::Webpush => "webpush",
            Channel::Http => "http",
            Channel::Ws => "ws",
        }
    }
}

/// The name given is not a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?} (expected one of sms, email, apns, fcm, webpush, http, ws)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(name: &str) -> Result<Self, UnknownChannel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == name)
            .ok_or_else(|| UnknownChannel(name.to_owned()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
