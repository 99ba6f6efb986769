//! Events pushed to apps: their types, the type filters endpoints and feed readers give, stable
//! event ids, and the app events that do not come from a delivery (presence, inbound SMS,
//! endpoint state), which travel on the status exchange beside delivery feedback.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AppId, DeliveryEvent, DeliveryStatus, MessageRecord};

/// Every event type, named as in the API and the docs. The names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    /// A message was accepted.
    #[serde(rename = "message.accepted")]
    MessageAccepted,
    /// A delivery was handed to its provider.
    #[serde(rename = "delivery.sent")]
    DeliverySent,
    /// The provider or the recipient confirmed a delivery.
    #[serde(rename = "delivery.delivered")]
    DeliveryDelivered,
    /// The recipient read it.
    #[serde(rename = "delivery.read")]
    DeliveryRead,
    /// A delivery was given up.
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    /// A delivery's message expired first.
    #[serde(rename = "delivery.expired")]
    DeliveryExpired,
    /// The provider called the address gone.
    #[serde(rename = "delivery.unregistered")]
    DeliveryUnregistered,
    /// A delivery was cancelled by the app before it was sent.
    #[serde(rename = "delivery.cancelled")]
    DeliveryCancelled,
    /// A delivery was not sent on the recipient's preferences or quiet hours.
    #[serde(rename = "delivery.skipped")]
    DeliverySkipped,
    /// An attempt failed and another is scheduled.
    #[serde(rename = "delivery.retrying")]
    DeliveryRetrying,
    /// A token or address was removed because its provider called it gone.
    #[serde(rename = "endpoint.pruned")]
    EndpointPruned,
    /// A user's first socket opened on any deliverer node.
    #[serde(rename = "user.online")]
    UserOnline,
    /// A user's last socket closed (and none opened again within the debounce).
    #[serde(rename = "user.offline")]
    UserOffline,
    /// A mobile-originated SMS, reassembled and decoded.
    #[serde(rename = "inbound.sms")]
    InboundSms,
    /// An event endpoint was paused after failing for `events.disable_after`.
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    /// A test event (`POST /v1/event-endpoints/{id}/test`); never in the feed.
    #[serde(rename = "ping")]
    Ping,
}

impl EventType {
    /// Every type, in the order the docs list them.
    pub const ALL: [EventType; 16] = [
        EventType::MessageAccepted,
        EventType::DeliverySent,
        EventType::DeliveryDelivered,
        EventType::DeliveryRead,
        EventType::DeliveryFailed,
        EventType::DeliveryExpired,
        EventType::DeliveryUnregistered,
        EventType::DeliveryCancelled,
        EventType::DeliverySkipped,
        EventType::DeliveryRetrying,
        EventType::EndpointPruned,
        EventType::UserOnline,
        EventType::UserOffline,
        EventType::InboundSms,
        EventType::EndpointDisabled,
        EventType::Ping,
    ];

    /// The type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageAccepted => "message.accepted",
            EventType::DeliverySent => "delivery.sent",
            EventType::DeliveryDelivered => "delivery.delivered",
            EventType::DeliveryRead => "delivery.read",
            EventType::DeliveryFailed => "delivery.failed",
            EventType::DeliveryExpired => "delivery.expired",
            EventType::DeliveryUnregistered => "delivery.unregistered",
            EventType::DeliveryCancelled => "delivery.cancelled",
            EventType::DeliverySkipped => "delivery.skipped",
            EventType::DeliveryRetrying => "delivery.retrying",
            EventType::EndpointPruned => "endpoint.pruned",
            EventType::UserOnline => "user.online",
            EventType::UserOffline => "user.offline",
            EventType::InboundSms => "inbound.sms",
            EventType::EndpointDisabled => "endpoint.disabled",
            EventType::Ping => "ping",
        }
    }

    /// Parses a type's name.
    pub fn parse(name: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The event a delivery status change makes, if any: `queued` with an error is a retry
    /// being scheduled; a first `queued` (stored in an inbox, waiting for a slot) makes none.
    pub fn of_delivery(event: &DeliveryEvent) -> Option<EventType> {
        Some(match event.status {
            DeliveryStatus::Queued if event.error.is_some() => EventType::DeliveryRetrying,
            DeliveryStatus::Queued => return None,
            DeliveryStatus::Sent => EventType::DeliverySent,
            DeliveryStatus::Delivered => EventType::DeliveryDelivered,
            DeliveryStatus::Read => EventType::DeliveryRead,
            DeliveryStatus::Failed => EventType::DeliveryFailed,
            DeliveryStatus::Expired => EventType::DeliveryExpired,
            DeliveryStatus::Unregistered => EventType::DeliveryUnregistered,
            DeliveryStatus::Cancelled => EventType::DeliveryCancelled,
            DeliveryStatus::Skipped => EventType::DeliverySkipped,
        })
    }
}

/// A filter on event types: exact names, `prefix.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFilter(Vec<EventType>);

/// A type pattern that matches no type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?} (known: {known}, or a prefix such as delivery.*)", known = known_types())]
pub struct UnknownEventType(pub String);

fn known_types() -> String {
    EventType::ALL
        .iter()
        .filter(|kind| **kind != EventType::Ping)
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl TypeFilter {
    /// The types `patterns` name; an empty list or `*` is every type. `ping` is never matched:
    /// it is sent only by the endpoint test.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<TypeFilter, UnknownEventType> {
        let feed_types = || {
            EventType::ALL
                .into_iter()
                .filter(|kind| *kind != EventType::Ping)
        };
        if patterns.is_empty() {
            return Ok(TypeFilter(feed_types().collect()));
        }
        let mut types = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref().trim();
            let matched: Vec<EventType> = match pattern.strip_suffix('*') {
                Some("") => feed_types().collect(),
                Some(prefix) if prefix.ends_with('.') => feed_types()
                    .filter(|kind| kind.as_str().starts_with(prefix))
                    .collect(),
                Some(_) => Vec::new(),
                None => feed_types()
                    .filter(|kind| kind.as_str() == pattern)
                    .collect(),
            };
            if matched.is_empty() {
                return Err(UnknownEventType(pattern.to_owned()));
            }
            for kind in matched {
                if !types.contains(&kind) {
                    types.push(kind);
                }
            }
        }
        Ok(TypeFilter(types))
    }

    /// Whether it takes `kind`.
    pub fn matches(&self, kind: EventType) -> bool {
        self.0.contains(&kind)
    }

    /// The type names it takes.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|kind| kind.as_str()).collect()
    }

    /// Whether it takes every type of the feed.
    pub fn is_everything(&self) -> bool {
        self.0.len() == EventType::ALL.len() - 1
    }
}

/// An event that does not come from a delivery's status: it travels in
/// [`StatusBatch::app_events`](super::StatusBatch::app_events) and is written to the feed as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppEvent {
    /// The app it belongs to.
    pub app: AppId,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Its stable id (the same event produced twice has the same id).
    pub id: String,
    /// When it happened, in Unix milliseconds.
    pub at: i64,
    /// Its data, as sent to the app.
    pub data: serde_json::Value,
}

/// An event as the feed and event endpoints carry it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    /// The stable event id (`evt_…`): the same event sent twice has the same id.
    pub id: String,
    /// The type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// Its place in the app's feed (opaque; pass as `after`).
    pub cursor: String,
    /// What happened: one of the `*Data` schemas, by type.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `data` of `message.accepted`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageAcceptedData {
    /// The message.
    pub message_id: String,
    /// The target as the sender gave it.
    #[schema(value_type = Object)]
    pub to: serde_json::Value,
    /// The channels it went out on.
    pub channels: Vec<String>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// `data` of the `delivery.*` events.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryData {
    /// The message.
    pub message_id: String,
    /// `message:channel:user:device`.
    pub delivery_id: String,
    /// The channel.
    pub channel: String,
    /// The recipient.
    pub user: String,
    /// The recipient's device on the channel.
    pub device: String,
    /// The delivery's status.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt: u32,
    /// Whether nothing follows for this delivery (but `read`, where the channel reports it).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// What went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's own code, when it answered: an APNs `reason` (`Unregistered`), an FCM
    /// `errorCode` (`QUOTA_EXCEEDED`), an HTTP status (`500`, webhooks and web push), an SMTP
    /// reply code (`451`), an SMPP `command_status` (`0x00000058`) or receipt state
    /// (`UNDELIV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `data` of `endpoint.pruned`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointPrunedData {
    /// The channel.
    pub channel: String,
    /// The user.
    pub user: String,
    /// The device whose address was removed.
    pub device: String,
    /// Why the provider called it gone.
    pub reason: String,
    /// The message whose delivery found it gone.
    pub message_id: String,
}

/// `data` of `user.online`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserOnlineData {
    /// The user.
    pub user: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// Sockets open when it was made.
    pub sockets: i64,
    /// Deliverer nodes holding them.
    pub nodes: i64,
}

/// `data` of `user.offline`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserOfflineData {
    /// The user.
    pub user: String,
    /// When the user came online (RFC 3339).
    pub online_since: String,
    /// When the user was found offline, after the debounce (RFC 3339).
    pub offline_at: String,
}

/// `data` of `inbound.sms`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboundSmsData {
    /// The sender's number.
    pub from: String,
    /// The number or short code it was sent to.
    pub to: String,
    /// The whole text, parts joined, decoded.
    pub text: String,
    /// When the last part arrived (RFC 3339).
    pub received_at: String,
    /// The SMPP connection it came in on.
    pub connector: String,
    /// How many parts it came in.
    pub parts: u32,
    /// `gsm7`, `ucs2` or `latin1`.
    pub encoding: String,
}

/// `data` of `endpoint.disabled`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointDisabledData {
    /// The event endpoint.
    pub endpoint_id: String,
    /// Its URL.
    pub url: String,
    /// Since when its batches had been failing (RFC 3339).
    pub failing_since: String,
    /// The last failure.
    pub last_error: String,
}

/// A stable event id from the parts that make the event what it is.
pub fn event_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    format!("evt_{}", hex::encode(&digest[..16]))
}

/// The id of the event a delivery's status change makes.
pub fn delivery_event_id(event: &DeliveryEvent) -> String {
    event_id(&[
        &event.delivery_id(),
        event.status.as_str(),
        &event.attempt.to_string(),
    ])
}

/// The id of a message's `message.accepted` event.
pub fn accepted_event_id(record: &MessageRecord) -> String {
    event_id(&["message.accepted", record.id.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_names_prefixes_and_everything_but_never_ping() {
        let delivery = TypeFilter::parse(&["delivery.*"]).expect("a prefix");
        assert!(delivery.matches(EventType::DeliveryFailed));
        assert!(delivery.matches(EventType::DeliveryRetrying));
        assert!(delivery.matches(EventType::DeliveryCancelled));
        assert!(!delivery.matches(EventType::MessageAccepted));
        let everything = TypeFilter::parse::<&str>(&[]).expect("empty");
        assert!(everything.is_everything());
        assert!(!everything.matches(EventType::Ping));
        assert_eq!(TypeFilter::parse(&["*"]).expect("star"), everything);
        let two = TypeFilter::parse(&["inbound.sms", "user.*"]).expect("two");
        assert_eq!(two.names(), ["inbound.sms", "user.online", "user.offline"]);
    }

    #[test]
    fn a_cancelled_delivery_makes_a_delivery_cancelled_event() {
        let event = DeliveryEvent {
            app: AppId::parse("shop").expect("app"),
            message: crate::model::MessageId::generate(),
            channel: crate::model::Channel::Http,
            user: crate::model::UserId::parse("ann").expect("user"),
            device: crate::model::DeviceId::parse("d1").expect("device"),
            status: DeliveryStatus::Cancelled,
            attempt: 0,
            error: Some("cancelled by the app".into()),
            code: None,
            at: 1,
        };
        assert_eq!(
            EventType::of_delivery(&event),
            Some(EventType::DeliveryCancelled)
        );
        assert_eq!(
            EventType::parse("delivery.cancelled"),
            Some(EventType::DeliveryCancelled)
        );
    }

    #[test]
    fn unknown_types_and_bad_patterns_are_refused() {
        for bad in ["delivery.lost", "deliv*", "ping", "nothing.*", ""] {
            let error = TypeFilter::parse(&[bad]).expect_err(bad);
            assert_eq!(error.0, bad);
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(event_id(&["a", "b"]), event_id(&["a", "b"]));
        assert_ne!(event_id(&["a", "b"]), event_id(&["ab", ""]));
        assert!(event_id(&["x"]).starts_with("evt_"));
        assert_eq!(event_id(&["x"]).len(), 4 + 32);
    }
}
