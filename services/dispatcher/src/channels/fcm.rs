//! The `fcm` channel: FCM HTTP v1 (`POST {base}/v1/projects/{project}/messages:send`) with OAuth2
//! access tokens of the app's service account (gcp_auth: the key file's `token_uri` is honoured
//! and tokens are cached until shortly before they expire).
//!
//! The message carries `notification` from the title and body, `data` (values as strings),
//! and Android options from the message: priority, TTL (what is left of the message's) and the
//! override's `collapse_key`; the `fcm` override's other keys are merged into the message.
//! 200 is `sent`; 404 `UNREGISTERED` and 400 for an invalid registration token are
//! `unregistered` and the token is removed; 401 makes a new access token and retries; 429 and
//! 5xx are retried honouring `Retry-After`; other answers are `failed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcp_auth::{CustomServiceAccount, Token, TokenProvider};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{Channel, FcmProvider, Job, Providers, TokenEndpoint, now_ms};

use super::ProviderChannel;
use crate::outcome::Outcome;

/// The OAuth2 scope for sending.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Why no authorised request could be made for FCM.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    /// The settings name no project, and the service account names none either.
    #[error("the app's FCM settings name no project")]
    NoProject,
    /// The service account is not one gcp_auth can sign tokens with.
    #[error("the app's FCM service account cannot be used: {0}")]
    ServiceAccount(#[source] gcp_auth::Error),
    /// The token endpoint gave no access token (unreachable, or it refused): retried.
    #[error("cannot get an FCM access token")]
    AccessToken(#[source] gcp_auth::Error),
}

impl FcmError {
    /// The outcome of the attempt: only a missing access token may pass.
    fn outcome(&self) -> Outcome {
        match self {
            FcmError::AccessToken(_) => Outcome::Retry {
                error: self.to_string(),
                after: None,
            },
            FcmError::NoProject | FcmError::ServiceAccount(_) => Outcome::failed(self),
        }
    }
}

/// The FCM sender.
pub struct Fcm {
    client: reqwest::Client,
    accounts: Mutex<HashMap<String, Arc<CustomServiceAccount>>>,
}

impl Fcm {
    /// A sender over `client`.
    pub fn new(client: reqwest::Client) -> Fcm {
        Fcm {
            client,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    fn account_key(provider: &FcmProvider) -> String {
        hex::encode(Sha256::digest(
            provider.service_account.to_string().as_bytes(),
        ))
    }

    fn account(&self, provider: &FcmProvider) -> Result<Arc<CustomServiceAccount>, FcmError> {
        let key = Self::account_key(provider);
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(account) = accounts.get(&key) {
            return Ok(account.clone());
        }
        let account = CustomServiceAccount::from_json(&provider.service_account.to_string())
            .map_err(FcmError::ServiceAccount)?;
        let account = Arc::new(account);
        accounts.insert(key, account.clone());
        Ok(account)
    }

    fn forget_account(&self, provider: &FcmProvider) {
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accounts.remove(&Self::account_key(provider));
    }

    /// The project to send in and an access token of the app's service account.
    async fn authorise<'a>(
        &self,
        provider: &'a FcmProvider,
    ) -> Result<(&'a str, Arc<Token>), FcmError> {
        let project = provider.project().ok_or(FcmError::NoProject)?;
        let account = self.account(provider)?;
        let access = account
            .token(&[SCOPE])
            .await
            .map_err(FcmError::AccessToken)?;
        Ok((project, access))
    }
}

impl ProviderChannel for Fcm {
    const CHANNEL: Channel = Channel::Fcm;
    type Provider = FcmProvider;
    type Address = TokenEndpoint;

    fn provider(providers: &Providers) -> Option<&FcmProvider> {
        providers.fcm.as_ref()
    }

    async fn send_to(
        &self,
        provider: &FcmProvider,
        device: &TokenEndpoint,
        job: &Job,
        _recipient: &Recipient,
    ) -> Outcome {
        let (project, access) = match self.authorise(provider).await {
            Ok(authorised) => authorised,
            Err(error) => return error.outcome(),
        };
        let url = format!(
            "{}/v1/projects/{project}/messages:send",
            provider.base_url()
        );
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .bearer_auth(access.as_str())
            .json(&message(job, &device.token))
            .send()
            .await;
        metrics::histogram!("sprayer_provider_seconds", "channel" => Self::CHANNEL.as_str())
            .record(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(response) => response,
            Err(error) => return super::unanswered("FCM", &error),
        };
        let status = response.status();
        let after = super::retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED {
            self.forget_account(provider);
        }
        let code = match error_code(&body) {
            "" => status.as_u16().to_string(),
            code => code.to_owned(),
        };
        classify(status, &body, after).with_code(code)
    }
}

/// The FCM v1 message for one registration token.
fn message(job: &Job, token: &str) -> Value {
    let mut message = Map::new();
    message.insert("token".into(), json!(token));
    let mut notification = Map::new();
    if let Some(title) = &job.content.title {
        notification.insert("title".into(), json!(title));
    }
    if let Some(body) = &job.content.body {
        notification.insert("body".into(), json!(body));
    }
    if !notification.is_empty() {
        message.insert("notification".into(), Value::Object(notification));
    }
    if let Some(data) = &job.content.data {
        let strings: Map<String, Value> = data
            .iter()
            .map(|(key, value)| {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                (key.clone(), Value::String(text))
            })
            .collect();
        message.insert("data".into(), Value::Object(strings));
    }
    let overrides = job.overrides.as_ref().and_then(Value::as_object);
    let left = ((job.expires_at - now_ms()) / 1000).max(0);
    let mut android = json!({
        "priority": if job.priority.is_urgent() { "HIGH" } else { "NORMAL" },
        "ttl": format!("{left}s"),
    });
    if let Some(collapse) = overrides
        .and_then(|o| o.get("collapse_key"))
        .and_then(Value::as_str)
    {
        android["collapse_key"] = json!(collapse);
    }
    message.insert("android".into(), android);
    for (key, value) in overrides.into_iter().flatten() {
        if key != "collapse_key" {
            message.insert(key.clone(), value.clone());
        }
    }
    json!({ "message": message })
}

/// FCM's own code for a refusal: its `errorCode`, else the error's `status`.
fn error_code(body: &Value) -> &str {
    body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|detail| detail["errorCode"].as_str())
        .or_else(|| body["error"]["status"].as_str())
        .unwrap_or("")
}

fn classify(status: StatusCode, body: &Value, after: Option<Duration>) -> Outcome {
    let error_code = error_code(body);
    let text = body["error"]["message"].as_str().unwrap_or("");
    let error = format!("FCM answered {} {error_code}", status.as_u16())
        .trim_end()
        .to_owned();
    match status.as_u16() {
        200 => Outcome::Sent,
        404 if error_code == "UNREGISTERED" => Outcome::Unregistered { error },
        400 if error_code == "INVALID_ARGUMENT" && text.contains("registration token") => {
            Outcome::Unregistered { error }
        }
        401 | 429 | 500..=599 => Outcome::Retry { error, after },
        _ => Outcome::Failed { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fcm_error(status: &str, code: &str, message: &str) -> Value {
        json!({ "error": { "status": status, "message": message, "details": [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code } ] } })
    }

    #[test]
    fn fcm_answers_map_to_outcomes() {
        assert_eq!(
            classify(StatusCode::OK, &json!({ "name": "x" }), None),
            Outcome::Sent
        );
        let gone = fcm_error(
            "NOT_FOUND",
            "UNREGISTERED",
            "Requested entity was not found.",
        );
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &gone, None),
            Outcome::Unregistered { .. }
        ));
        let invalid = fcm_error(
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &invalid, None),
            Outcome::Unregistered { .. }
        ));
        let bad_payload = fcm_error(
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "Invalid JSON payload",
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &bad_payload, None),
            Outcome::Failed { .. }
        ));
        let quota = fcm_error("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "");
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &quota,
                Some(Duration::from_secs(3))
            ),
            Outcome::Retry {
                error: "FCM answered 429 QUOTA_EXCEEDED".into(),
                after: Some(Duration::from_secs(3))
            }
        );
    }
}
