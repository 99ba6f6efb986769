//! Jobs: what the accepter publishes to `jobs.<channel>` and dispatchers consume.

use serde::{Deserialize, Serialize};

use super::{AppId, Channel, DeviceId, GroupId, MessageId, UserId};

/// The content of a message, the same for every channel unless overridden.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// A short title (notification title, e-mail subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Free-form JSON object handed to the recipient as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How urgently providers should deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Deliver now, waking the device if the provider supports it.
    High,
    /// The provider may delay or batch.
    #[default]
    Normal,
    /// As `high`, and sent in the recipient's quiet hours too (a security alert, an outage).
    Critical,
}

impl Priority {
    /// Whether providers are asked to deliver at once (`high` and `critical`).
    pub fn is_urgent(self) -> bool {
        matches!(self, Priority::High | Priority::Critical)
    }
}

/// A delivery carried by a retry job: only what failed, with its attempts so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelivery {
    /// The recipient.
    pub user: UserId,
    /// The recipient's device (address) on the job's channel.
    pub device: DeviceId,
    /// Attempts already made.
    pub attempts: u32,
}

/// Who a job is for. Group and list jobs are split by the dispatcher into smaller jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTarget {
    /// One user: every device they registered on the channel.
    User(UserId),
    /// A list of users.
    Users(Vec<UserId>),
    /// A whole group, before it is split into shards.
    Group(GroupId),
    /// One of a group's shards.
    GroupShard {
        /// The group.
        group: GroupId,
        /// The shard index, below the configured shard count.
        shard: u16,
    },
    /// Deliveries to try again after a failure.
    Retry(Vec<PendingDelivery>),
}

/// One message to send over one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The message.
    pub message_id: MessageId,
    /// The app that sent it.
    pub app: AppId,
    /// The channel this job is for.
    pub channel: Channel,
    /// The recipients.
    pub target: JobTarget,
    /// The content.
    pub content: Content,
    /// The channel's override object from the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<serde_json::Value>,
    /// Priority asked by the sender.
    #[serde(default)]
    pub priority: Priority,
    /// When the message was accepted, in Unix milliseconds.
    pub created_at: i64,
    /// When the message expires, in Unix milliseconds: nothing is sent after it.
    pub expires_at: i64,
    /// Template, category and quiet-hours handling, when the message has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<Box<super::Personal>>,
}

impl Job {
    /// The same job aimed at other recipients.
    pub fn with_target(&self, target: JobTarget) -> Job {
        Job {
            target,
            ..self.clone()
        }
    }

    /// Whether the message has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at
    }
}

/// The AMQP `type` of a message that carries several jobs (`{"jobs": [...]}`); see
/// [`decode_jobs`].
pub const JOB_BATCH_KIND: &str = "jobs";

/// Several jobs in one broker message (AMQP `type` [`JOB_BATCH_KIND`]): the
/// accepter gathers the jobs of concurrent requests for one channel into one publish.
#[derive(Debug, Deserialize)]
struct JobBatch {
    jobs: Vec<Job>,
}

/// The jobs a broker message on `jobs.<channel>` carries: a batch when its AMQP `type` is
/// [`JOB_BATCH_KIND`], one job otherwise.
pub fn decode_jobs(kind: Option<&str>, body: &[u8]) -> Result<Vec<Job>, serde_json::Error> {
    if kind == Some(JOB_BATCH_KIND) {
        Ok(serde_json::from_slice::<JobBatch>(body)?.jobs)
    } else {
        Ok(vec![serde_json::from_slice(body)?])
    }
}
