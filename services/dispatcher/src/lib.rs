//! A channel dispatcher: consumes `jobs.<channel>`, expands each job into recipients
//! ([`sprayer_shared::expand`]), sends through the channel's protocol ([`channels`]), and turns what happened
//! into status events, retries and dead letters ([`outcome`], [`dispatch`]). [`consumer`] is
//! the broker loop and [`startup`] builds and runs it all.

pub mod channels;
pub mod consumer;
pub mod dispatch;
pub mod fuzzing;
pub mod limits;
pub mod outcome;
pub mod providers;
pub mod startup;

pub use startup::Dispatcher;
