//! Delivery orchestration: escalation steps, scheduled sends and cancellation. The accepter
//! turns a send with `delivery` or `send_at` into a [`Plan`]; the scheduler runs it step by step
//! for each recipient (see the book's orchestration page).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AppId, Channel, Content, DeliveryStatus, Job, JobTarget, MessageId, Priority, UserId};

/// What stops an escalation chain for a user once a step's delivery reaches it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    /// Handed to the provider, or written to the user's socket (ws).
    Sent,
    /// Confirmed: a webhook's 2xx, an SMS receipt, a push or a mail accepted by its provider (they
    /// report nothing later), a WebSocket message acked.
    #[default]
    Delivered,
    /// A WebSocket message acked by the browser: only on steps with `ws`.
    Acked,
}

impl Until {
    /// Every condition.
    pub const ALL: [Until; 3] = [Until::Sent, Until::Delivered, Until::Acked];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Until::Sent => "sent",
            Until::Delivered => "delivered",
            Until::Acked => "acked",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(name: &str) -> Option<Until> {
        Self::ALL.into_iter().find(|until| until.as_str() == name)
    }

    /// Whether a delivery on `channel` reaching `status` meets this condition.
    pub fn met_by(self, channel: Channel, status: DeliveryStatus) -> bool {
        use DeliveryStatus::{Delivered, Read, Sent};
        match self {
            Until::Sent => matches!(status, Sent | Delivered | Read),
            Until::Delivered => match channel {
                // Their providers confirm nothing after accepting: accepted is delivered.
                Channel::Apns | Channel::Fcm | Channel::Webpush | Channel::Email => {
                    matches!(status, Sent | Delivered | Read)
                }
                _ => matches!(status, Delivered | Read),
            },
            Until::Acked => channel == Channel::Ws && matches!(status, Delivered | Read),
        }
    }
}

/// Whether a delivery at `status` is over without reaching its recipient.
pub fn failed_for_good(status: DeliveryStatus) -> bool {
    matches!(
        status,
        DeliveryStatus::Failed
            | DeliveryStatus::Expired
            | DeliveryStatus::Unregistered
            | DeliveryStatus::Cancelled
            | DeliveryStatus::Skipped
    )
}

/// One step of an escalation chain, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The channels the step sends over (no channel is in two steps).
    pub channels: Vec<Channel>,
    /// How long the step waits for `until` before the next one starts, in milliseconds;
    /// `None` on the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// What stops the chain.
    #[serde(default)]
    pub until: Until,
}

/// A message the scheduler runs: what the accepter checked, kept in Redis until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The message.
    pub id: MessageId,
    /// The app that sent it.
    pub app: AppId,
    /// The recipients as given (a user, a list or a group).
    pub target: JobTarget,
    /// The content.
    pub content: Content,
    /// Per-channel overrides.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, serde_json::Value>,
    /// Priority.
    #[serde(default)]
    pub priority: Priority,
    /// When it was accepted (Unix ms).
    pub created_at: i64,
    /// When it is due (Unix ms): `send_at`, or when it was accepted.
    pub send_at: i64,
    /// When it expires (Unix ms): `send_at` plus the TTL.
    pub expires_at: i64,
    /// The steps; a message without `delivery` has one, over its channels.
    pub steps: Vec<Step>,
    /// The app's cancellation key, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_key: Option<String>,
    /// Template, category and quiet-hours handling, when the message has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<Box<super::Personal>>,
}

impl Plan {
    /// The step that sends over `channel`.
    pub fn step_of(&self, channel: Channel) -> Option<usize> {
        self.steps
            .iter()
            .position(|step| step.channels.contains(&channel))
    }

    /// The job of step `channel` for `users`.
    pub fn job(&self, channel: Channel, users: Vec<UserId>) -> Job {
        Job {
            message_id: self.id.clone(),
            app: self.app.clone(),
            channel,
            target: JobTarget::Users(users),
            content: self.content.clone(),
            overrides: self.overrides.get(channel.as_str()).cloned(),
            priority: self.priority,
            created_at: self.created_at,
            expires_at: self.expires_at,
            personal: self.personal.clone(),
        }
    }
}

/// Why a step did not run for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// The user had no endpoint on the step's channels: the next step started at once.
    Skipped,
    /// Stopped: by an earlier step whose `until` was met, by the app, or by expiry.
    Cancelled,
}

impl StepState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
        }
    }
}

/// Why a step did not run for one user, for the feedback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The app.
    pub app: AppId,
    /// The message.
    pub message: MessageId,
    /// The recipient.
    pub user: UserId,
    /// The step's index.
    pub step: u8,
    /// Skipped or cancelled.
    pub state: StepState,
    /// Why, in words (`no endpoint on apns, fcm`, `step 1 acked`, `cancelled by the app`,
    /// `expired`).
    pub reason: String,
    /// When (Unix ms).
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_follows_each_channels_meaning() {
        use DeliveryStatus::*;
        assert!(Until::Acked.met_by(Channel::Ws, Delivered));
        assert!(!Until::Acked.met_by(Channel::Ws, Sent));
        assert!(!Until::Acked.met_by(Channel::Http, Delivered));
        assert!(Until::Delivered.met_by(Channel::Apns, Sent));
        assert!(!Until::Delivered.met_by(Channel::Sms, Sent));
        assert!(Until::Delivered.met_by(Channel::Sms, Delivered));
        assert!(!Until::Delivered.met_by(Channel::Ws, Sent));
        assert!(Until::Sent.met_by(Channel::Ws, Sent));
        assert!(!Until::Sent.met_by(Channel::Sms, Queued));
        assert!(!Until::Sent.met_by(Channel::Sms, Failed));
        assert!(failed_for_good(Unregistered) && !failed_for_good(Queued));
    }
}
