//! A channel dispatcher: consumes `jobs.<channel>`, expands each job into recipients
//! ([`sprayer_shared::expand`]), sends through the channel's protocol ([`channels`]), and turns what happened
//! into status events, retries and dead letters ([`outcome`], [`dispatch`]). [`consumer`] is
//! the broker loop and [`app`] builds and runs it all.

pub mod app;
pub mod channels;
pub mod consumer;
pub mod dispatch;
pub mod limits;
pub mod outcome;
pub mod providers;

pub use app::Dispatcher;
