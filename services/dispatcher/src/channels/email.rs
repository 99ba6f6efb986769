//! The `email` channel: multipart text and HTML mail through the app's SMTP relay, one pooled
//! transport per app and relay.
//!
//! `Message-ID` is derived from the delivery id (stable across retries) and the delivery id
//! travels in `X-Sprayer-Delivery`. 250 is `sent`; 550, 551 and 553 (the address is refused) are
//! `unregistered` and the address is removed; other 5xx are `failed`; 4xx and connection errors
//! are retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::AddressError;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{
    Channel, EmailEndpoint, EmailProvider, Job, Providers, SmtpTls, delivery_id,
};

use super::ProviderChannel;
use crate::outcome::Outcome;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Why a mail could not be handed to the relay; each fails the delivery, with its text.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The app's `from` is not a mailbox.
    #[error("the app's From address: {0}")]
    FromAddress(#[source] AddressError),
    /// The endpoint's address is not a mailbox.
    #[error("the recipient address: {0}")]
    RecipientAddress(#[source] AddressError),
    /// The message could not be put together.
    #[error("cannot build the mail: {0}")]
    Build(#[from] lettre::error::Error),
    /// No transport can be made of the app's relay settings (no TLS set-up for its host).
    #[error("the app's relay settings: {0}")]
    RelaySettings(#[from] lettre::transport::smtp::Error),
}

/// The e-mail sender.
#[derive(Default)]
pub struct Mailer {
    transports: Mutex<HashMap<String, Arc<Transport>>>,
}

impl Mailer {
    fn transport(&self, provider: &EmailProvider) -> Result<Arc<Transport>, EmailError> {
        let identity = format!(
            "{}|{}|{:?}|{}|{}",
            provider.host,
            provider.port,
            provider.tls,
            provider.username.as_deref().unwrap_or(""),
            hex::encode(Sha256::digest(
                provider.password.as_deref().unwrap_or("").as_bytes()
            )),
        );
        let mut transports = self
            .transports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(transport) = transports.get(&identity) {
            return Ok(transport.clone());
        }
        let builder = match provider.tls {
            SmtpTls::None => Transport::builder_dangerous(&provider.host),
            SmtpTls::Starttls => Transport::starttls_relay(&provider.host)?,
            SmtpTls::Tls => Transport::relay(&provider.host)?,
        };
        let mut builder = builder
            .port(provider.port)
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(
                PoolConfig::new()
                    .max_size(16)
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let (Some(username), Some(password)) = (&provider.username, &provider.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        let transport = Arc::new(builder.build());
        transports.insert(identity, transport.clone());
        Ok(transport)
    }
}

impl ProviderChannel for Mailer {
    const CHANNEL: Channel = Channel::Email;
    type Provider = EmailProvider;
    type Address = EmailEndpoint;

    fn provider(providers: &Providers) -> Option<&EmailProvider> {
        providers.email.as_ref()
    }

    async fn send_to(
        &self,
        provider: &EmailProvider,
        endpoint: &EmailEndpoint,
        job: &Job,
        recipient: &Recipient,
    ) -> Outcome {
        let message = match compose(job, provider, recipient, endpoint) {
            Ok(message) => message,
            Err(error) => return Outcome::failed(&error),
        };
        let transport = match self.transport(provider) {
            Ok(transport) => transport,
            Err(error) => return Outcome::failed(&error),
        };
        let started = Instant::now();
        let result = transport.send(message).await;
        metrics::histogram!("sprayer_provider_seconds", "channel" => Self::CHANNEL.as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => Outcome::Sent,
            Err(error) => match error.status() {
                Some(code) => classify(&error).with_code(code.to_string()),
                None => classify(&error),
            },
        }
    }
}

fn classify(error: &lettre::transport::smtp::Error) -> Outcome {
    let code = error.status().map(|code| code.to_string());
    let text = match &code {
        Some(code) => format!("relay answered {code}"),
        None => "cannot reach the relay".to_owned(),
    };
    match code.as_deref() {
        Some("550" | "551" | "553") => Outcome::Unregistered { error: text },
        _ if error.is_permanent() => Outcome::Failed { error: text },
        _ => Outcome::Retry {
            error: text,
            after: None,
        },
    }
}

fn override_text<'a>(job: &'a Job, field: &str) -> Option<&'a str> {
    job.overrides.as_ref()?.get(field)?.as_str()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The mail: subject from the title, text from the body, HTML from the `email` override's
/// `html` or else the body escaped; `subject` and `text` can be overridden too.
fn compose(
    job: &Job,
    provider: &EmailProvider,
    recipient: &Recipient,
    endpoint: &EmailEndpoint,
) -> Result<Message, EmailError> {
    let from: Mailbox = provider.from.parse().map_err(EmailError::FromAddress)?;
    let to: Mailbox = endpoint
        .address
        .parse()
        .map_err(EmailError::RecipientAddress)?;
    let subject = override_text(job, "subject")
        .or(job.content.title.as_deref())
        .unwrap_or("");
    let text = override_text(job, "text")
        .or(job.content.body.as_deref())
        .unwrap_or("")
        .to_owned();
    let html = override_text(job, "html")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "<!doctype html><html><body><p>{}</p></body></html>",
                escape_html(&text)
            )
        });
    let id = delivery_id(
        &job.message_id,
        job.channel,
        &recipient.user,
        &recipient.device,
    );
    let digest = hex::encode(&Sha256::digest(id.as_bytes())[..16]);
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{digest}@{domain}>")));
    builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Sprayer-Delivery"),
        id,
    ));
    if let Some(data) = job.content.data.as_ref().filter(|data| !data.is_empty()) {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Sprayer-Data"),
            Value::Object(data.clone()).to_string(),
        ));
    }
    Ok(builder.multipart(MultiPart::alternative_plain_html(text, html))?)
}
