//! The channels' protocols. A channel only makes one attempt at one delivery and says what came
//! of it; retry, expiry, status events and pruning are the same for all (see [`crate::outcome`]).
//!
//! Every channel is a [`Sender`]. A channel that sends through a provider the app sets up
//! implements [`ProviderChannel`] instead and gets [`Sender`] from it: the app's settings and the
//! parsed address arrive ready, and an app without settings or an unreadable address is reported
//! the same way on every channel. A new provider channel is one file implementing that trait (and
//! its arm in [`crate::startup`]).
//!
//! - [`apns`], [`fcm`] and [`webpush`]: HTTP push providers, over [`push_client`];
//! - [`email`]: SMTP relays; [`sms`]: SMPP binds and their delivery receipts;
//! - [`webhook`]: signed webhooks (the `http` channel), a plain [`Sender`]: it has no provider.

pub mod apns;
pub mod email;
pub mod fcm;
pub mod sms;
pub mod webhook;
pub mod webpush;

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use sprayer_shared::config::PushSettings;
use sprayer_shared::expand::Recipient;
use sprayer_shared::model::{Channel, Job, Providers};

use crate::outcome::Outcome;

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

/// A channel that sends through a provider the app has set up (its credentials, relay or
/// account in [`Providers`]). Implementing it is all a provider channel does: the [`Sender`]
/// below looks up the app's settings and parses the stored address, once for all channels.
pub trait ProviderChannel: Send + Sync {
    /// The channel served, named in the outcome of an app without settings.
    const CHANNEL: Channel;
    /// The app's settings for the provider.
    type Provider: Sync;
    /// An endpoint's address, as the channel stores it (JSON).
    type Address: DeserializeOwned + Send + Sync;

    /// The app's settings for this channel's provider, if it has set them up.
    fn provider(providers: &Providers) -> Option<&Self::Provider>;

    /// Makes one attempt at `recipient` of `job` at `address`, with the app's `provider`.
    fn send_to(
        &self,
        provider: &Self::Provider,
        address: &Self::Address,
        job: &Job,
        recipient: &Recipient,
    ) -> impl Future<Output = Outcome> + Send;
}

/// The preamble every provider channel shares: an app without settings for the channel and an
/// address that cannot be read fail the delivery, with the same text on every channel.
impl<C: ProviderChannel> Sender for C {
    fn needs_providers(&self) -> bool {
        true
    }

    fn send<'a>(
        &'a self,
        job: &'a Job,
        providers: &'a Providers,
        recipient: &'a Recipient,
        address: &'a str,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(provider) = C::provider(providers) else {
                return not_configured(C::CHANNEL);
            };
            match stored_address::<C::Address>(address) {
                Ok(address) => self.send_to(provider, &address, job, recipient).await,
                Err(outcome) => outcome,
            }
        })
    }
}

/// Reads an endpoint's stored address; an unreadable one fails the delivery.
pub fn stored_address<T: DeserializeOwned>(stored: &str) -> Result<T, Outcome> {
    serde_json::from_str(stored).map_err(|error| Outcome::Failed {
        error: format!("stored endpoint unreadable: {error}"),
    })
}

/// The outcome for an app that has not set up the channel.
fn not_configured(channel: Channel) -> Outcome {
    Outcome::Failed {
        error: format!("the app has no {channel} provider settings"),
    }
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

/// Could not set up the HTTP/2 client.
#[derive(Debug, thiserror::Error)]
pub enum PushClientError {
    /// The client could not be built.
    #[error("cannot build the push client: {0}")]
    Client(#[from] reqwest::Error),
    /// The extra CA file could not be read.
    #[error("cannot read push.extra_ca_file {path}: {source}")]
    CaFileUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The extra CA file holds no PEM certificates that can be used.
    #[error("cannot read push.extra_ca_file {path}: {source}")]
    CaFileInvalid {
        /// The file.
        path: String,
        /// Why.
        source: reqwest::Error,
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
        let shown = || path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| PushClientError::CaFileUnreadable {
            path: shown(),
            source,
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            PushClientError::CaFileInvalid {
                path: shown(),
                source,
            }
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}
