//! A channel dispatcher: one process per channel consumes `jobs.<channel>`, expands each job
//! into recipients ([`sprayer_shared::expand`]), sends to each through the channel's protocol
//! and turns what happened into status events, retries and dead letters.
//!
//! - [`startup`] builds a dispatcher for one channel and runs it (with the optional ops
//!   endpoints);
//! - [`consumer`] is the broker loop (on the shared [`sprayer_shared::amqp::JobConsumer`]):
//!   takes jobs, acks, requeues, drains on shutdown;
//! - [`dispatch`] runs the jobs of one broker message: expansion, sends within the limits,
//!   then the retries, dead letters and status events published together;
//! - [`channels`] holds one module per channel protocol behind the one
//!   [`Sender`](channels::Sender) trait; the provider channels implement
//!   [`ProviderChannel`](channels::ProviderChannel), which looks up the app's provider settings
//!   and parses the address once for all of them;
//! - [`outcome`] is what one attempt came to and how outcomes become a job's report;
//! - [`provider_cache`] keeps the apps' provider settings (credentials, relays) read from
//!   MongoDB for a short while;
//! - [`throttle`] is the per-app concurrency and pace toward the provider;
//! - [`fuzzing`] is the body of the `smpp_pdu` fuzz target.

pub mod channels;
pub mod consumer;
pub mod dispatch;
pub mod fuzzing;
pub mod outcome;
pub mod provider_cache;
pub mod startup;
pub mod throttle;

pub use startup::Dispatcher;
