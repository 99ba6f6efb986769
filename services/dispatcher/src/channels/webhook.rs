//! The webhook channel (named `http` in the API and the queues:
//! [`Channel::Http`](sprayer_shared::model::Channel::Http)): signed webhooks (Standard Webhooks)
//! over a keep-alive pool, with a per-host concurrency limit and a deadline that never runs past
//! the message's expiry.
//!
//! Each POST carries `webhook-id` (the delivery id, stable across retries), `webhook-timestamp`
//! and `webhook-signature` (`v1,` and base64 HMAC-SHA256 of `id.timestamp.body` under the
//! endpoint's secret). 2xx is `delivered`; 408, 429, 5xx, timeouts and connection errors are
//! retried (honouring `Retry-After`); any other answer is `failed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sprayer_shared::config::WebhookSettings;
use sprayer_shared::model::{Job, Providers, WebhookAddress, delivery_id, now_ms};
use sprayer_shared::netguard::AddressGuard;
use sprayer_shared::signing::signed_headers;
use tokio::sync::Semaphore;

use super::Sender;
use crate::outcome::Outcome;
use sprayer_shared::expand::Recipient;

/// Could not set up the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook client: {0}")]
pub struct WebhookClientError(#[from] reqwest::Error);

/// The webhook sender.
pub struct Webhooks {
    client: reqwest::Client,
    guard: AddressGuard,
    timeout: Duration,
    per_host_limit: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Webhooks {
    /// A sender with the given limits.
    pub fn new(settings: &WebhookSettings) -> Result<Webhooks, WebhookClientError> {
        let guard = AddressGuard::new(&settings.allow_networks);
        let client = reqwest::Client::builder()
            .dns_resolver(guard.resolver())
            .connect_timeout(settings.connect_timeout)
            .pool_max_idle_per_host(settings.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Sprayer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhooks {
            client,
            guard,
            timeout: settings.timeout,
            per_host_limit: settings.per_host_concurrency,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn host_permits(&self, url: &reqwest::Url) -> Arc<Semaphore> {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host_limit)))
            .clone()
    }

    async fn deliver(&self, job: &Job, recipient: &Recipient, stored: &str) -> Outcome {
        let address: WebhookAddress = match super::stored_address(stored) {
            Ok(address) => address,
            Err(outcome) => return outcome,
        };
        let (url, key) = match (reqwest::Url::parse(&address.url), address.signing_key()) {
            (Ok(url), Ok(key)) => (url, key),
            _ => {
                return Outcome::Failed {
                    error: "stored endpoint invalid".into(),
                };
            }
        };
        if let Some(host) = url.host()
            && !self.guard.permits_host(&host)
        {
            return Outcome::Failed {
                error: format!("{host} is not a public address (see webhook.allow_networks)"),
            };
        }
        let id = delivery_id(
            &job.message_id,
            job.channel,
            &recipient.user,
            &recipient.device,
        );
        let body = match serde_json::to_vec(&payload(job, recipient)) {
            Ok(body) => body,
            Err(error) => {
                return Outcome::Failed {
                    error: format!("cannot encode the payload: {error}"),
                };
            }
        };
        let permits = self.host_permits(&url);
        let Ok(_permit) = permits.acquire().await else {
            return Outcome::Retry {
                error: "host limiter closed".into(),
                after: None,
            };
        };
        let left = job.expires_at - now_ms();
        if left <= 0 {
            return Outcome::Expired;
        }
        let deadline = self
            .timeout
            .min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        let timestamp = now_ms() / 1000;
        let headers = match signed_headers(&id, timestamp, &body, &[&key]) {
            Some(headers) => headers,
            None => {
                return Outcome::Failed {
                    error: "cannot sign with the stored secret".into(),
                };
            }
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .timeout(deadline)
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status();
                let after = super::retry_after(response.headers());
                // Read the answer so the connection goes back to the pool.
                let _ = response.bytes().await;
                classify(status, after).with_code(status.as_u16().to_string())
            }
            Err(error) if error.is_timeout() && now_ms() >= job.expires_at => Outcome::Expired,
            Err(error) if sprayer_shared::netguard::refused_by_guard(&error).is_some() => {
                Outcome::Failed {
                    error: sprayer_shared::netguard::refused_by_guard(&error)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                }
            }
            Err(error) => Outcome::Retry {
                error: describe(&error),
                after: None,
            },
        };
        metrics::histogram!("sprayer_provider_seconds", "channel" => "http")
            .record(started.elapsed().as_secs_f64());
        outcome
    }
}

/// A plain [`Sender`], not a [`ProviderChannel`](super::ProviderChannel): a webhook has no
/// provider the app sets up (the endpoint itself carries the URL and the signing secret), so
/// there are no settings to look up, and asking for them would cost every job a cache read.
impl Sender for Webhooks {
    fn send<'a>(
        &'a self,
        job: &'a Job,
        _providers: &'a Providers,
        recipient: &'a Recipient,
        address: &'a str,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver(job, recipient, address))
    }
}

/// The webhook body: `{"type", "timestamp", "data"}` as Standard Webhooks suggests.
fn payload(job: &Job, recipient: &Recipient) -> Value {
    let mut data = Map::new();
    data.insert("message_id".into(), json!(job.message_id));
    data.insert("user".into(), json!(recipient.user));
    data.insert("device".into(), json!(recipient.device));
    if let Some(title) = &job.content.title {
        data.insert("title".into(), json!(title));
    }
    if let Some(body) = &job.content.body {
        data.insert("body".into(), json!(body));
    }
    if let Some(extra) = &job.content.data {
        data.insert("data".into(), Value::Object(extra.clone()));
    }
    if let Some(Value::Object(overrides)) = &job.overrides {
        for (field, value) in overrides {
            data.insert(field.clone(), value.clone());
        }
    }
    data.insert("priority".into(), json!(job.priority));
    data.insert("expires_at".into(), json!(rfc3339(job.expires_at)));
    json!({ "type": "message", "timestamp": rfc3339(job.created_at), "data": data })
}

fn rfc3339(ms: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since_epoch).to_string()
}

fn classify(status: StatusCode, after: Option<Duration>) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retry {
            error: format!("receiver answered {}", status.as_u16()),
            after,
        }
    } else {
        Outcome::Failed {
            error: format!("receiver answered {}", status.as_u16()),
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_design_says() {
        assert_eq!(classify(StatusCode::OK, None), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, None), Outcome::Delivered);
        for retried in [408, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(retried).expect("valid");
            assert!(
                matches!(classify(status, None), Outcome::Retry { .. }),
                "{retried}"
            );
        }
        for failed in [301, 400, 401, 404, 410, 422] {
            let status = StatusCode::from_u16(failed).expect("valid");
            assert!(
                matches!(classify(status, None), Outcome::Failed { .. }),
                "{failed}"
            );
        }
    }
}
