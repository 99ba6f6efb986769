//! The channels' protocols. A channel only sends one delivery and says what came of it; retry,
//! expiry, status events and pruning are the same for all (see [`crate::outcome`]).

pub mod http;

use futures::future::BoxFuture;
use sprayer_shared::model::Job;

use crate::expand::Recipient;
use crate::outcome::Outcome;

/// Sends one delivery over a channel.
pub trait Sender: Send + Sync {
    /// Makes one attempt at `recipient`, whose address is present.
    fn send<'a>(
        &'a self,
        job: &'a Job,
        recipient: &'a Recipient,
        address: &'a str,
    ) -> BoxFuture<'a, Outcome>;
}
