//! The domain: identifiers, channels, jobs and delivery feedback.

mod apns;
mod channel;
mod endpoint;
mod event;
mod ids;
mod job;
pub mod json;
mod orchestration;
mod personal;
mod providers;
mod status;

pub use apns::{APNS_HEADER_KEYS, APNS_MAX_PAYLOAD, apns_is_alert, apns_payload};
pub use channel::{Channel, UnknownChannel};
pub use endpoint::{
    AddressError, EmailEndpoint, SmsEndpoint, TokenEndpoint, WebhookAddress, WebpushEndpoint,
    WebpushKeys, WsEndpoint, parse_address, redacted_address, valid_email, valid_msisdn,
};
pub use event::{
    AppEvent, DeliveryData, EndpointDisabledData, EndpointPrunedData, EventEnvelope, EventType,
    InboundSmsData, MessageAcceptedData, TypeFilter, UnknownEventType, UserOfflineData,
    UserOnlineData, accepted_event_id, delivery_event_id, event_id,
};
pub use ids::{AppId, DeviceId, GroupId, IdError, MAX_ID_LEN, MessageId, NodeId, UserId};
pub use job::{Content, JOB_BATCH_KIND, Job, JobTarget, PendingDelivery, Priority, decode_jobs};
pub use orchestration::{Plan, Step, StepRecord, StepState, Until, failed_for_good};
pub use personal::{
    CategoryUse, Personal, QuietMode, TemplateSource, TemplateUse, TemplateVersion,
};
pub use providers::{
    ApnsEnvironment, ApnsProvider, EmailProvider, FcmProvider, Providers, SmsProvider, SmtpTls,
    WebpushProvider,
};
pub use status::{DeliveryEvent, DeliveryStatus, MessageRecord, StatusBatch, delivery_id};

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
