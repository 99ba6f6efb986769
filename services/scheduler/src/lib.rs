//! The scheduler: runs the messages the accepter planned (sent with `delivery` or `send_at`).
//!
//! - [`timers`] claims due timers from Redis, on every replica at once (each timer goes to one),
//!   and does their work with [`steps`]: a message coming due, a step beginning for a batch of
//!   users, a step's wait ending.
//! - [`watcher`] reads a copy of every status message (the `steps` queue) and moves users along
//!   their chains: a step whose `until` is met stops the chain; a step whose deliveries all
//!   failed starts the next at once.
//! - [`startup`] builds and runs it.
//!
//! The timers and each user's place in the chain live in Redis (see
//! [`sprayer_shared::schedule`]); a replica holds nothing another could not take over.

pub mod plans;
pub mod startup;
pub mod steps;
pub mod timers;
pub mod watcher;

pub use startup::Scheduler;
