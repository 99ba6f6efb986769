//! The `apns` channel: HTTP/2 to APNs (many concurrent streams over few connections) with
//! token authentication: an ES256 JWT signed with the app's .p8 key, cached for 50 minutes.
//!
//! Headers: `apns-topic`, `apns-push-type`, `apns-priority`, `apns-expiration` (the message's
//! expiry), `apns-collapse-id` (the override's `collapse_id`) and `apns-id` (a UUID derived from
//! the delivery id, the same on every retry). 200 is `sent`; 400 `BadDeviceToken` and 410
//! `Unregistered` are `unregistered` and the token is removed; 403 on the provider token drops
//! the cached token and retries; 429 and 5xx are retried honouring `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sprayer_shared::config::PushSettings;
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{
    APNS_MAX_PAYLOAD, ApnsProvider, Channel, Job, Providers, TokenEndpoint, apns_is_alert,
    apns_payload, delivery_id, now_ms,
};

use super::{ProviderChannel, PushClientError};
use crate::outcome::Outcome;

/// How long a provider token is used; APNs refuses tokens older than an hour.
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// Why a notification could not be put together for APNs; each fails the delivery, with its text.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    /// The payload is larger than APNs takes.
    #[error("payload of {0} bytes is over APNs' limit")]
    PayloadTooLarge(usize),
    /// The payload could not be encoded.
    #[error("cannot encode the payload: {0}")]
    Encode(#[from] serde_json::Error),
    /// The app's push certificate (certificate authentication) is not a PEM certificate and key.
    #[error("the app's APNs certificate cannot be read: {0}")]
    Certificate(#[source] reqwest::Error),
    /// The push client under the certificate could not be set up.
    #[error(transparent)]
    PushClient(#[from] PushClientError),
    /// The client presenting the certificate could not be built.
    #[error("cannot build the APNs client: {0:?}")]
    CertificateClient(#[source] reqwest::Error),
    /// The app's .p8 key (token authentication) is not an EC private key in PEM.
    #[error("the app's APNs key cannot be read: {0}")]
    SigningKey(#[source] jsonwebtoken::errors::Error),
    /// The provider token could not be signed.
    #[error("cannot sign the APNs token: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// A header value (the topic, the collapse id) is not a valid header value.
    #[error("cannot build the APNs headers")]
    Headers,
}

/// The APNs sender.
pub struct Apns {
    client: reqwest::Client,
    settings: PushSettings,
    tokens: Mutex<HashMap<String, (Instant, String)>>,
    certificate_clients: Mutex<HashMap<String, reqwest::Client>>,
}

impl Apns {
    /// A sender over `client`.
    pub fn new(client: reqwest::Client, settings: PushSettings) -> Apns {
        Apns {
            client,
            settings,
            tokens: Mutex::new(HashMap::new()),
            certificate_clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client presenting the app's push certificate (certificate authentication).
    fn certificate_client(&self, pem: &str) -> Result<reqwest::Client, ApnsError> {
        let key = hex::encode(Sha256::digest(pem.as_bytes()));
        let mut clients = self
            .certificate_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let identity =
            reqwest::Identity::from_pem(pem.as_bytes()).map_err(ApnsError::Certificate)?;
        let client = super::push_client_builder(&self.settings)?
            .identity(identity)
            .build()
            .map_err(ApnsError::CertificateClient)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn token_key(provider: &ApnsProvider) -> String {
        format!("{}:{}", provider.team_id, provider.key_id)
    }

    /// The provider token for `provider`, made or reused.
    fn provider_token(&self, provider: &ApnsProvider) -> Result<String, ApnsError> {
        let key = Self::token_key(provider);
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((made, token)) = tokens.get(&key)
            && made.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let signing_key = EncodingKey::from_ec_pem(provider.private_key.as_bytes())
            .map_err(ApnsError::SigningKey)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(provider.key_id.clone());
        let claims = Claims {
            iss: &provider.team_id,
            iat: u64::try_from(now_ms() / 1000).unwrap_or(0),
        };
        let token =
            jsonwebtoken::encode(&header, &claims, &signing_key).map_err(ApnsError::Signing)?;
        tokens.insert(key, (Instant::now(), token.clone()));
        Ok(token)
    }

    fn forget_token(&self, provider: &ApnsProvider) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.remove(&Self::token_key(provider));
    }

    /// The POST of the notification to `device`, authenticated as the app's settings say.
    fn request(
        &self,
        job: &Job,
        provider: &ApnsProvider,
        device: &TokenEndpoint,
        recipient: &Recipient,
    ) -> Result<reqwest::RequestBuilder, ApnsError> {
        let payload = apns_payload(&job.content, job.overrides.as_ref());
        let body = serde_json::to_vec(&payload)?;
        if body.len() > APNS_MAX_PAYLOAD {
            return Err(ApnsError::PayloadTooLarge(body.len()));
        }
        let (client, token) = match &provider.certificate {
            Some(pem) => (self.certificate_client(pem)?, None),
            None => (self.client.clone(), Some(self.provider_token(provider)?)),
        };
        let id = delivery_id(
            &job.message_id,
            job.channel,
            &recipient.user,
            &recipient.device,
        );
        let headers =
            headers(job, provider, &payload, token.as_deref(), &id).ok_or(ApnsError::Headers)?;
        let url = format!("{}/3/device/{}", provider.base_url(), device.token);
        Ok(client.post(url).headers(headers).body(body))
    }
}

impl ProviderChannel for Apns {
    const CHANNEL: Channel = Channel::Apns;
    type Provider = ApnsProvider;
    type Address = TokenEndpoint;

    fn provider(providers: &Providers) -> Option<&ApnsProvider> {
        providers.apns.as_ref()
    }

    async fn send_to(
        &self,
        provider: &ApnsProvider,
        device: &TokenEndpoint,
        job: &Job,
        recipient: &Recipient,
    ) -> Outcome {
        let request = match self.request(job, provider, device, recipient) {
            Ok(request) => request,
            Err(error) => return Outcome::failed(&error),
        };
        let started = Instant::now();
        let sent = request.send().await;
        metrics::histogram!("sprayer_provider_seconds", "channel" => Self::CHANNEL.as_str())
            .record(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(response) => response,
            Err(error) => return super::unanswered("APNs", &error),
        };
        let status = response.status();
        let after = super::retry_after(response.headers());
        let reason = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|body| body["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let code = if reason.is_empty() {
            status.as_u16().to_string()
        } else {
            reason.clone()
        };
        let outcome = classify(status, &reason, after).with_code(code);
        if status == StatusCode::FORBIDDEN {
            self.forget_token(provider);
        }
        outcome
    }
}

fn headers(
    job: &Job,
    provider: &ApnsProvider,
    payload: &serde_json::Value,
    token: Option<&str>,
    id: &str,
) -> Option<HeaderMap> {
    let overrides = job.overrides.as_ref();
    let alert = apns_is_alert(payload);
    let push_type = overrides
        .and_then(|o| o["push_type"].as_str())
        .unwrap_or(if alert { "alert" } else { "background" });
    // Background pushes must go at priority 5.
    let priority = if job.priority.is_urgent() && push_type != "background" {
        "10"
    } else {
        "5"
    };
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {token}")).ok()?,
        );
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("apns-topic", HeaderValue::from_str(&provider.topic).ok()?);
    headers.insert("apns-push-type", HeaderValue::from_str(push_type).ok()?);
    headers.insert("apns-priority", HeaderValue::from_static(priority));
    headers.insert("apns-expiration", HeaderValue::from(job.expires_at / 1000));
    let apns_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, id.as_bytes());
    headers.insert(
        "apns-id",
        HeaderValue::from_str(&apns_id.hyphenated().to_string()).ok()?,
    );
    if let Some(collapse) = overrides.and_then(|o| o["collapse_id"].as_str()) {
        headers.insert("apns-collapse-id", HeaderValue::from_str(collapse).ok()?);
    }
    Some(headers)
}

fn classify(status: StatusCode, reason: &str, after: Option<Duration>) -> Outcome {
    let error = if reason.is_empty() {
        format!("APNs answered {}", status.as_u16())
    } else {
        format!("APNs answered {} {reason}", status.as_u16())
    };
    match status.as_u16() {
        200 => Outcome::Sent,
        410 => Outcome::Unregistered { error },
        400 if reason == "BadDeviceToken" => Outcome::Unregistered { error },
        403 if matches!(reason, "ExpiredProviderToken" | "InvalidProviderToken") => {
            Outcome::Retry { error, after: None }
        }
        429 | 500..=599 => Outcome::Retry { error, after },
        _ => Outcome::Failed { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_answers_map_to_outcomes() {
        assert_eq!(classify(StatusCode::OK, "", None), Outcome::Sent);
        assert!(matches!(
            classify(StatusCode::GONE, "Unregistered", None),
            Outcome::Unregistered { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, "BadDeviceToken", None),
            Outcome::Unregistered { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, "BadTopic", None),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, "ExpiredProviderToken", None),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", None),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, "", None),
            Outcome::Retry { .. }
        ));
    }
}
