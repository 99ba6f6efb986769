//! The channels' protocols. A channel only sends one delivery and says what came of it; retry,
//! expiry, status events and pruning are the same for all (see [`crate::outcome`]).

pub mod apns;
pub mod email;
pub mod http;

use futures::future::BoxFuture;
use sprayer_shared::model::{Channel, Job, Providers};

use crate::expand::Recipient;
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

/// The outcome for an app that has not set up the channel.
pub fn not_configured(channel: Channel) -> Outcome {
    Outcome::Failed {
        error: format!("the app has no {channel} provider settings"),
    }
}
