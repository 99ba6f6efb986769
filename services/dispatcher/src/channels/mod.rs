//! The channels' protocols. A channel only sends one delivery and says what came of it; retry,
//! expiry, status events and pruning are the same for all (see [`crate::outcome`]).

pub mod apns;
pub mod email;
pub mod fcm;
pub mod sms;
pub mod webhook;
pub mod webpush;

use std::time::Duration;

use futures::future::BoxFuture;
use sprayer_shared::config::PushSettings;
use sprayer_shared::model::{Channel, Job, Providers};

use crate::outcome::Outcome;
use sprayer_shared::expand::Recipient;

/// Sends one delivery over a channel.
pub trait Sender: Send + Sync {
    /// Whether the channel needs the app's provider settings (credentials, relay).
    fn needs_providers(&self) -> bool {
        false
    }

    /// Makes one attempt at `recipient` at its stored `address`, with the app's `providers`
    /// (empty unless [`Sender::needs_providers`]).
    fn send<'a>(
        &'a self,
        job: &'a Job,
        providers: &'a Providers,
        recipient: &'a Recipient,
        address: &'a str,
    ) -> BoxFuture<'a, Outcome>;
}

/// Reads an endpoint's stored address; an unreadable one fails the delivery.
pub fn stored_address<T: serde::de::DeserializeOwned>(stored: &str) -> Result<T, Outcome> {
    serde_json::from_str(stored).map_err(|error| Outcome::Failed {
        error: format!("stored endpoint unreadable: {error}"),
    })
}

/// `Retry-After` in seconds (HTTP dates are not honoured; the tier's delay applies then).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The outcome of a request to `provider` that got no answer: retried.
pub fn unanswered(provider: &str, error: &reqwest::Error) -> Outcome {
    Outcome::Retry {
        error: if error.is_timeout() {
            format!("{provider} timed out")
        } else {
            format!("cannot reach {provider}")
        },
        after: None,
    }
}

/// The outcome for an app that has not set up the channel.
pub fn not_configured(channel: Channel) -> Outcome {
    Outcome::Failed {
        error: format!("the app has no {channel} provider settings"),
    }
}

/// Could not set up the HTTP/2 client.
#[derive(Debug, thiserror::Error)]
pub enum PushClientError {
    /// The client could not be built.
    #[error("cannot build the push client: {0}")]
    Client(#[from] reqwest::Error),
    /// The extra CA file could not be read.
    #[error("cannot read push.extra_ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// An HTTP client for push providers: HTTP/2 where offered, the public roots plus the optional
/// extra CAs.
pub fn push_client(settings: &PushSettings) -> Result<reqwest::Client, PushClientError> {
    Ok(push_client_builder(settings)?.build()?)
}

/// The builder of [`push_client`], for clients that add to it (a client certificate).
pub fn push_client_builder(
    settings: &PushSettings,
) -> Result<reqwest::ClientBuilder, PushClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Sprayer/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.extra_ca_file {
        let ca_error = |reason: String| PushClientError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| ca_error(error.to_string()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}
