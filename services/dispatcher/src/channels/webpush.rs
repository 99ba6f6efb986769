//! The `webpush` channel: RFC 8030 push with the payload encrypted for the subscription
//! (RFC 8291, aes128gcm) and the app identified by VAPID (RFC 8292), through web-push-native.
//!
//! The payload is JSON: `message_id`, `title`, `body`, `data`, then the `webpush` override's
//! keys (`topic` and `urgency` set headers instead). `TTL` is what is left of the message's;
//! `Urgency` is `high` for high priority. 201 (or any 2xx) is `sent`; 404 and 410 are
//! `unregistered` and the subscription is removed; 429 and 5xx are retried; others `failed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{Channel, Job, Providers, WebpushEndpoint, WebpushProvider, now_ms};
use web_push_native::jwt_simple::algorithms::ES256KeyPair;
use web_push_native::{Auth, WebPushBuilder, p256::PublicKey};

use super::ProviderChannel;
use crate::outcome::Outcome;

/// The most plaintext one encrypted record carries under the usual 4096-byte push limit.
pub const WEBPUSH_MAX_PAYLOAD: usize = 3_993;
/// The longest a VAPID token may live; push services refuse longer ones.
const VAPID_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Why no push request could be made for a subscription; each fails the delivery, with its text.
#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    /// The app's VAPID private key is not a raw P-256 scalar in base64url.
    #[error("the app's VAPID key is not 32 bytes of base64url")]
    VapidKeyLength,
    /// The app's VAPID private key is not a valid P-256 key.
    #[error("the app's VAPID key: {0}")]
    VapidKey(web_push_native::jwt_simple::Error),
    /// The subscription's `p256dh` is not a P-256 public key.
    #[error("the subscription's p256dh is not a P-256 key")]
    BrowserKey,
    /// The subscription's `auth` secret is not 16 bytes.
    #[error("the subscription's auth is not 16 bytes")]
    AuthSecret,
    /// The subscription's endpoint is not a URL.
    #[error("the subscription's endpoint is not a URL")]
    Endpoint(#[source] http::uri::InvalidUri),
    /// The payload could not be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The payload is larger than one encrypted record carries.
    #[error("payload of {0} bytes is over the web push limit")]
    PayloadTooLarge(usize),
    /// The payload could not be encrypted or the VAPID token signed.
    #[error("cannot encrypt the payload: {0}")]
    Encrypt(#[source] web_push_native::Error),
    /// The `urgency` override is not a header value.
    #[error("invalid urgency")]
    Urgency(#[source] http::header::InvalidHeaderValue),
    /// The `topic` override is not a header value.
    #[error("invalid topic")]
    Topic(#[source] http::header::InvalidHeaderValue),
    /// The request could not be turned into a reqwest request.
    #[error(transparent)]
    Request(#[from] reqwest::Error),
}

/// The web push sender.
pub struct WebPush {
    client: reqwest::Client,
    keys: Mutex<HashMap<String, Arc<ES256KeyPair>>>,
}

fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

impl WebPush {
    /// A sender over `client`.
    pub fn new(client: reqwest::Client) -> WebPush {
        WebPush {
            client,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn key_pair(&self, provider: &WebpushProvider) -> Result<Arc<ES256KeyPair>, WebPushError> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(key) = keys.get(&provider.private_key) {
            return Ok(key.clone());
        }
        let raw = decode(&provider.private_key)
            .filter(|raw| raw.len() == 32)
            .ok_or(WebPushError::VapidKeyLength)?;
        let key = Arc::new(ES256KeyPair::from_bytes(&raw).map_err(WebPushError::VapidKey)?);
        keys.insert(provider.private_key.clone(), key.clone());
        Ok(key)
    }

    fn request(
        &self,
        job: &Job,
        provider: &WebpushProvider,
        subscription: &WebpushEndpoint,
    ) -> Result<reqwest::Request, WebPushError> {
        let key = self.key_pair(provider)?;
        let browser_key = decode(&subscription.keys.p256dh)
            .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
            .ok_or(WebPushError::BrowserKey)?;
        let auth = decode(&subscription.keys.auth)
            .filter(|auth| auth.len() == 16)
            .ok_or(WebPushError::AuthSecret)?;
        let endpoint: http::Uri = subscription
            .endpoint
            .parse()
            .map_err(WebPushError::Endpoint)?;
        let body = serde_json::to_vec(&payload(job))?;
        if body.len() > WEBPUSH_MAX_PAYLOAD {
            return Err(WebPushError::PayloadTooLarge(body.len()));
        }
        let mut request = WebPushBuilder::new(endpoint, browser_key, Auth::clone_from_slice(&auth))
            .with_valid_duration(VAPID_LIFETIME)
            .with_vapid(&key, &provider.subject)
            .build(body)
            .map_err(WebPushError::Encrypt)?;
        let left = u64::try_from((job.expires_at - now_ms()) / 1000).unwrap_or(0);
        let overrides = job.overrides.as_ref();
        let urgency =
            overrides
                .and_then(|o| o["urgency"].as_str())
                .unwrap_or(if job.priority.is_urgent() {
                    "high"
                } else {
                    "normal"
                });
        let headers = request.headers_mut();
        headers.insert("ttl", left.into());
        headers.insert(
            "urgency",
            http::HeaderValue::from_str(urgency).map_err(WebPushError::Urgency)?,
        );
        if let Some(topic) = overrides.and_then(|o| o["topic"].as_str()) {
            headers.insert(
                "topic",
                http::HeaderValue::from_str(topic).map_err(WebPushError::Topic)?,
            );
        }
        Ok(reqwest::Request::try_from(request)?)
    }
}

impl ProviderChannel for WebPush {
    const CHANNEL: Channel = Channel::Webpush;
    type Provider = WebpushProvider;
    type Address = WebpushEndpoint;

    fn provider(providers: &Providers) -> Option<&WebpushProvider> {
        providers.webpush.as_ref()
    }

    async fn send_to(
        &self,
        provider: &WebpushProvider,
        subscription: &WebpushEndpoint,
        job: &Job,
        _recipient: &Recipient,
    ) -> Outcome {
        let request = match self.request(job, provider, subscription) {
            Ok(request) => request,
            Err(error) => return Outcome::failed(&error),
        };
        let started = Instant::now();
        let sent = self.client.execute(request).await;
        metrics::histogram!("sprayer_provider_seconds", "channel" => Self::CHANNEL.as_str())
            .record(started.elapsed().as_secs_f64());
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let after = super::retry_after(response.headers());
                let _ = response.bytes().await;
                classify(status, after).with_code(status.to_string())
            }
            Err(error) => super::unanswered("the push service", &error),
        }
    }
}

/// The JSON the browser's service worker receives.
fn payload(job: &Job) -> Value {
    let mut payload = Map::new();
    payload.insert("message_id".into(), json!(job.message_id));
    if let Some(title) = &job.content.title {
        payload.insert("title".into(), json!(title));
    }
    if let Some(body) = &job.content.body {
        payload.insert("body".into(), json!(body));
    }
    if let Some(data) = &job.content.data {
        payload.insert("data".into(), Value::Object(data.clone()));
    }
    if let Some(Value::Object(overrides)) = &job.overrides {
        for (key, value) in overrides {
            if key != "topic" && key != "urgency" {
                payload.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(payload)
}

fn classify(status: u16, after: Option<Duration>) -> Outcome {
    let error = format!("push service answered {status}");
    match status {
        200..=299 => Outcome::Sent,
        404 | 410 => Outcome::Unregistered { error },
        429 | 500..=599 => Outcome::Retry { error, after },
        _ => Outcome::Failed { error },
    }
}
