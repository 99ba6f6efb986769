//! The `sms` channel: SMPP 3.4 through one long-lived transceiver bind per app account, kept up
//! with `enquire_link` and rebound with backoff when it drops, `sms.window` submits outstanding.
//!
//! A text goes as GSM 03.38 or UCS-2 ([`text`]), split into concatenated parts (UDH) when long,
//! with `registered_delivery` set and a validity period ending at the message's expiry. Each
//! part's SMSC message id is kept in Redis (`smsid:<app>:<id>`, `sms.receipt_ttl`) so that the
//! delivery receipt (`deliver_sm`) sets the delivery `delivered` or `failed`, whichever bind it
//! arrives on. `submit_sm_resp` OK is `sent`; an invalid destination is `unregistered` and the
//! number is removed; throttling, a full queue and timeouts are retried; other errors `failed`.
//! A mobile-originated `deliver_sm` on a bind becomes an `inbound.sms` event of its app
//! ([`inbound`]), concatenated parts joined in Redis whichever bind receives them.

pub mod inbound;
pub mod receipts;
pub use sprayer_shared::sms_text as text;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpp34::SmppError;
use smpp34::client::{BIND_TYPE, SMSC, SmppClient};
use sprayer_shared::amqp::Publisher;
use sprayer_shared::config::SmsSettings;
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{
    AppId, Channel, Job, Providers, SmsEndpoint, SmsProvider, delivery_id, now_ms,
};
use sprayer_shared::redis::RedisConnection;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::ProviderChannel;
use crate::outcome::Outcome;
use receipts::BindListener;

/// One app account's bind: the current SMSC handle (`None` while (re)binding) and the window
/// of outstanding `submit_sm` (kept here: the SMPP client does not bound it itself).
struct Session {
    bound: watch::Sender<Option<Arc<SMSC>>>,
    window: Arc<Semaphore>,
}

/// The SMS sender and its binds.
pub struct Sms {
    settings: SmsSettings,
    redis: RedisConnection,
    publisher: Arc<Publisher>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    stop: CancellationToken,
    keywords: Arc<inbound::Keywords>,
}

impl Drop for Sms {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How long a connected session may take to bind.
const BIND_TIMEOUT: Duration = Duration::from_secs(10);

/// What Redis keeps per SMSC message id, to match receipts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptTarget {
    /// The message.
    pub message: String,
    /// The recipient.
    pub user: String,
    /// The recipient's device.
    pub device: String,
    /// The attempt that was accepted.
    pub attempt: u32,
}

/// `smsid:<app>:<SMSC message id>`.
pub fn receipt_key(app: &AppId, smsc_id: &str) -> String {
    format!("smsid:{app}:{smsc_id}")
}

impl Sms {
    /// A sender; binds are opened on first use per app account.
    pub fn new(settings: SmsSettings, redis: RedisConnection, publisher: Arc<Publisher>) -> Sms {
        Sms {
            keywords: Arc::new(inbound::Keywords::new(&settings)),
            settings,
            redis,
            publisher,
            sessions: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        }
    }

    fn session(&self, app: &AppId, provider: &SmsProvider) -> Arc<Session> {
        let key = format!(
            "{app}|{}|{}|{}|{}",
            provider.host,
            provider.port,
            provider.system_id,
            hex::encode(Sha256::digest(provider.password.as_bytes()))
        );
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(session) = sessions.get(&key) {
            return session.clone();
        }
        let (bound, _) = watch::channel(None);
        let session = Arc::new(Session {
            bound,
            window: Arc::new(Semaphore::new(self.settings.window.max(1))),
        });
        let listener = Arc::new(BindListener {
            app: app.clone(),
            system_id: provider.system_id.clone(),
            bound: session.bound.clone(),
            drops: watch::channel(0).0,
            redis: self.redis.clone(),
            publisher: self.publisher.clone(),
            keywords: self.keywords.clone(),
        });
        tokio::spawn(keep_bound(
            provider.clone(),
            self.settings.clone(),
            listener,
            self.stop.clone(),
        ));
        sessions.insert(key, session.clone());
        session
    }

    async fn bound(&self, session: &Session) -> Option<Arc<SMSC>> {
        let mut watcher = session.bound.subscribe();
        let waited =
            tokio::time::timeout(self.settings.bind_wait, watcher.wait_for(Option::is_some)).await;
        waited.ok()?.ok()?.clone()
    }

    /// Keeps a part's SMSC id for its receipts; a failure only loses the receipts.
    async fn remember(&self, job: &Job, recipient: &Recipient, smsc_id: &str) {
        if smsc_id.is_empty() {
            return;
        }
        let target = ReceiptTarget {
            message: job.message_id.to_string(),
            user: recipient.user.to_string(),
            device: recipient.device.to_string(),
            attempt: recipient.attempts + 1,
        };
        let Ok(value) = serde_json::to_string(&target) else {
            return;
        };
        let ttl = self.settings.receipt_ttl.as_secs().max(1);
        let mut redis = self.redis.clone();
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(receipt_key(&job.app, smsc_id))
            .arg(&value)
            .arg("EX")
            .arg(ttl)
            .query_async(&mut redis)
            .await;
        if let Err(error) = stored {
            let id = delivery_id(
                &job.message_id,
                job.channel,
                &recipient.user,
                &recipient.device,
            );
            tracing::warn!(%error, delivery = %id, "cannot keep SMSC ids; its receipts will not match");
        }
    }
}

impl ProviderChannel for Sms {
    const CHANNEL: Channel = Channel::Sms;
    type Provider = SmsProvider;
    type Address = SmsEndpoint;

    fn provider(providers: &Providers) -> Option<&SmsProvider> {
        providers.sms.as_ref()
    }

    async fn send_to(
        &self,
        provider: &SmsProvider,
        endpoint: &SmsEndpoint,
        job: &Job,
        recipient: &Recipient,
    ) -> Outcome {
        let text = job
            .overrides
            .as_ref()
            .and_then(|overrides| overrides["text"].as_str())
            .or(job.content.body.as_deref())
            .or(job.content.title.as_deref())
            .unwrap_or("");
        if text.is_empty() {
            return Outcome::Failed {
                error: "no text to send (give a body or an sms override text)".into(),
            };
        }
        let encoded = text::encode(text);
        let Ok(total) = u8::try_from(encoded.parts.len()) else {
            return Outcome::Failed {
                error: "the text is longer than 255 parts".into(),
            };
        };
        let session = self.session(&job.app, provider);
        let Some(smsc) = self.bound(&session).await else {
            return Outcome::Retry {
                error: "the SMSC bind is not up".into(),
                after: None,
            };
        };
        let (source_ton, source_npi, source) = address_of_source(&provider.source);
        let destination = endpoint.msisdn.trim_start_matches('+').to_owned();
        let reference: u8 = rand::random();
        let validity = validity_period(job.expires_at - now_ms());
        let started = Instant::now();
        // Timed on every answer of the SMSC, not only on success: a slow refusal is slow too.
        let outcome = 'submit: {
            for (index, payload) in encoded.parts.iter().enumerate() {
                let (esm_class, short_message) = if total > 1 {
                    let sequence = u8::try_from(index + 1).unwrap_or(u8::MAX);
                    let mut bytes = text::concatenation_header(reference, total, sequence).to_vec();
                    bytes.extend_from_slice(payload);
                    (0x40, bytes)
                } else {
                    (0x00, payload.clone())
                };
                let Ok(_slot) = session.window.acquire().await else {
                    break 'submit Outcome::Retry {
                        error: "the SMPP window is closed".into(),
                        after: None,
                    };
                };
                let answer = smsc
                    .submit_sm()
                    .source_addr_ton(source_ton)
                    .source_addr_npi(source_npi)
                    .source_addr(source.clone())
                    .dest_addr_ton(1)
                    .dest_addr_npi(1)
                    .destination_addr(destination.clone())
                    .esm_class(esm_class)
                    .priority_flag(if job.priority.is_urgent() { 1 } else { 0 })
                    .validity_period(validity.clone())
                    .registered_delivery(1)
                    .data_coding(encoded.data_coding)
                    .short_message(short_message)
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.is_success() => {
                        // Kept at once: the receipt may come right after the answer.
                        let smsc_id = response.message_id.unwrap_or_default();
                        self.remember(job, recipient, &smsc_id).await;
                    }
                    Ok(response) => {
                        let status = response.command_status();
                        break 'submit classify(status).with_code(format!("0x{status:08X}"));
                    }
                    Err(error) => {
                        break 'submit Outcome::Retry {
                            error: format!("no submit_sm_resp ({error:?})"),
                            after: None,
                        };
                    }
                }
            }
            Outcome::Sent
        };
        metrics::histogram!("sprayer_provider_seconds", "channel" => Self::CHANNEL.as_str())
            .record(started.elapsed().as_secs_f64());
        outcome
    }
}

/// TON/NPI and text of the sender: international number, short code or alphanumeric.
fn address_of_source(source: &str) -> (u8, u8, String) {
    if let Some(digits) = source.strip_prefix('+') {
        (1, 1, digits.to_owned())
    } else if source.chars().all(|c| c.is_ascii_digit()) {
        (3, 0, source.to_owned())
    } else {
        (5, 0, source.to_owned())
    }
}

/// A relative validity period (`YYMMDDhhmmss000R`) of `left_ms`, so the SMSC drops what it
/// could not deliver before the message expires.
fn validity_period(left_ms: i64) -> String {
    let seconds = (left_ms / 1000).max(60);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (years, days) = (days / 365, days % 365);
    let (months, days) = (days / 30, days % 30);
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}000R",
        years.min(99),
        months,
        days,
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// What a `submit_sm_resp` that is not OK means for the attempt, from its `command_status`.
pub fn classify(status: u32) -> Outcome {
    let error = format!("SMSC answered 0x{status:08X}");
    match status {
        s if s == SmppError::ESME_RINVDSTADR as u32 => Outcome::Unregistered { error },
        s if s == SmppError::ESME_RTHROTTLED as u32 || s == SmppError::ESME_RMSGQFUL as u32 => {
            Outcome::Retry { error, after: None }
        }
        s if s == SmppError::ESME_RSYSERR as u32 || s == SmppError::ESME_RSUBMITFAIL as u32 => {
            Outcome::Retry { error, after: None }
        }
        _ => Outcome::Failed { error },
    }
}

/// Binds and rebinds one account until `stop`, with backoff between failed attempts.
async fn keep_bound(
    provider: SmsProvider,
    settings: SmsSettings,
    listener: Arc<BindListener>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    while !stop.is_cancelled() {
        let mut client = SmppClient::new_with_default_timers(
            provider.host.clone(),
            provider.port,
            provider.tls,
            BIND_TYPE::TRX,
            provider.system_id.clone(),
            provider.password.clone(),
            provider.system_type.clone(),
            0,
            0,
            String::new(),
            listener.clone(),
            5_000,
            millis(settings.enquire_link),
            300_000,
            millis(settings.response_timeout),
            1_500,
            settings.window.max(1),
        );
        let started = Instant::now();
        let mut drops = listener.drops.subscribe();
        drops.mark_unchanged();
        let mut bound = listener.bound.subscribe();
        client.start().await;
        // `start` returns once connected; the bind completes (or fails) after it.
        let is_bound = tokio::select! {
            result = tokio::time::timeout(BIND_TIMEOUT, bound.wait_for(Option::is_some)) => matches!(result, Ok(Ok(_))),
            _ = drops.changed() => false,
            _ = stop.cancelled() => false,
        };
        if is_bound {
            tokio::select! {
                _ = drops.changed() => {}
                _ = stop.cancelled() => {}
            }
            let current = listener.bound.borrow().clone();
            if let Some(smsc) = current {
                let _ = smsc.send_unbind().await;
            }
        }
        client.stop().await;
        listener.bound.send_replace(None);
        if stop.is_cancelled() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(200);
        }
        tracing::warn!(host = %provider.host, port = provider.port, "SMPP bind lost; rebinding");
        if !sprayer_shared::shutdown::sleep_or_cancel(backoff, &stop).await {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_periods_are_relative_and_submit_statuses_classified() {
        assert_eq!(validity_period(3_600_000), "000000010000000R");
        assert_eq!(validity_period(90_061_000), "000001010101000R");
        assert_eq!(
            validity_period(1_000),
            "000000000100000R",
            "at least a minute"
        );
        assert!(matches!(classify(0x0B), Outcome::Unregistered { .. }));
        assert!(matches!(classify(0x58), Outcome::Retry { .. }));
        assert!(matches!(classify(0x45), Outcome::Retry { .. }));
        assert!(matches!(classify(0x0A), Outcome::Failed { .. }));
        assert_eq!(address_of_source("+3161"), (1, 1, "3161".into()));
        assert_eq!(address_of_source("Shop"), (5, 0, "Shop".into()));
    }
}
