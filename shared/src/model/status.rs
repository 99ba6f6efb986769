//! Delivery feedback: the events dispatchers publish and the feeder writes.

use serde::{Deserialize, Serialize};

use super::{AppId, Channel, DeviceId, MessageId, UserId};

/// Where a delivery stands. Later states outrank earlier ones; the terminal failures outrank all.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting: in an inbox, or scheduled for another attempt.
    Queued,
    /// Handed to the provider.
    Sent,
    /// The provider or recipient confirmed delivery.
    Delivered,
    /// The recipient read it.
    Read,
    /// Given up: permanent error or attempts exhausted.
    Failed,
    /// The message's TTL passed before delivery.
    Expired,
    /// The address is no longer valid; it was removed.
    Unregistered,
    /// Not sent: the app cancelled it before its step began.
    Cancelled,
    /// Not sent, on the recipient's own choice: a preference opted them out (`error` says
    /// `preference`) or the message dropped in their quiet hours (`quiet_hours`).
    Skipped,
}

impl DeliveryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [DeliveryStatus; 9] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
        DeliveryStatus::Expired,
        DeliveryStatus::Unregistered,
        DeliveryStatus::Cancelled,
        DeliveryStatus::Skipped,
    ];

    /// The lowercase name used in the API and in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
            DeliveryStatus::Unregistered => "unregistered",
            DeliveryStatus::Cancelled => "cancelled",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    fn stage(self) -> i64 {
        match self {
            DeliveryStatus::Queued => 1,
            DeliveryStatus::Sent => 2,
            DeliveryStatus::Delivered => 3,
            DeliveryStatus::Read => 4,
            DeliveryStatus::Failed
            | DeliveryStatus::Expired
            | DeliveryStatus::Unregistered
            | DeliveryStatus::Cancelled
            | DeliveryStatus::Skipped => 5,
        }
    }

    /// The event's rank: the feeder applies an event only if its rank is at least the stored one,
    /// so a delivery never moves backwards. Within a stage, a later attempt outranks an earlier one.
    pub fn rank(self, attempt: u32) -> i64 {
        self.stage() * 1_000 + i64::from(attempt.min(999))
    }
}

/// A change of one delivery's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// The app.
    pub app: AppId,
    /// The message.
    pub message: MessageId,
    /// The channel.
    pub channel: Channel,
    /// The recipient.
    pub user: UserId,
    /// The recipient's device on the channel.
    pub device: DeviceId,
    /// The new status.
    pub status: DeliveryStatus,
    /// Attempts made so far (1 for the first).
    pub attempt: u32,
    /// What went wrong, for failures and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's own code for it, when the provider answered: an APNs `reason`, an FCM
    /// `errorCode`, an HTTP status (webhooks, web push), an SMTP reply code, an SMPP
    /// `command_status` (`0x0000000B`) or a receipt's `stat` (`UNDELIV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it happened, in Unix milliseconds.
    pub at: i64,
}

impl DeliveryEvent {
    /// The delivery's stable id, `message:channel:user:device`: the feedback key and the
    /// idempotency key toward providers.
    pub fn delivery_id(&self) -> String {
        delivery_id(&self.message, self.channel, &self.user, &self.device)
    }
}

/// The stable id of one delivery.
pub fn delivery_id(
    message: &MessageId,
    channel: Channel,
    user: &UserId,
    device: &DeviceId,
) -> String {
    format!("{message}:{channel}:{user}:{device}")
}

/// The record of an accepted message, written once by the feeder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The message.
    pub id: MessageId,
    /// The app that sent it.
    pub app: AppId,
    /// The target as the sender gave it (`{"user": ..}`, `{"users": [..]}` or `{"group": ..}`).
    pub to: serde_json::Value,
    /// The channels a job was published for.
    pub channels: Vec<Channel>,
    /// When it was accepted, in Unix milliseconds.
    pub created_at: i64,
    /// When it expires, in Unix milliseconds.
    pub expires_at: i64,
    /// When it is due, for a scheduled message (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
    /// Its escalation steps, for a message sent with `delivery`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::Step>,
    /// The app's cancellation key, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_key: Option<String>,
    /// The template it was rendered from, and its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<super::TemplateVersion>,
    /// Its category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// One AMQP message on the status queue: many events, so feedback costs no broker round trip
/// per delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusBatch {
    /// Messages accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRecord>,
    /// Delivery changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<DeliveryEvent>,
    /// Events for apps that are not a delivery's status (presence, inbound SMS, endpoint
    /// state): only the events service reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_events: Vec<super::AppEvent>,
    /// Escalation steps that did not run for a user (skipped or cancelled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::StepRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_lifecycle_and_attempts() {
        use DeliveryStatus::*;
        assert!(Queued.rank(1) < Queued.rank(2));
        assert!(Queued.rank(9) < Sent.rank(1));
        assert!(Sent.rank(3) < Delivered.rank(1));
        assert!(Delivered.rank(1) < Read.rank(1));
        assert!(Read.rank(1) < Failed.rank(1));
        assert_eq!(Failed.rank(2), Expired.rank(2));
    }
}
