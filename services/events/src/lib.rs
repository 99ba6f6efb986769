//! The events service: the feed writer ([`writer`]) turns every status message into app events
//! and gives each its place in the app's feed; the senders ([`sender`]) push each app's feed to
//! its event endpoints as signed batches, one batch in flight per endpoint; [`retention`]
//! removes what is older than `events.retention`; [`startup`] builds and runs it.
//!
//! It runs beside delivery and never in its way: it reads its own copy of the status messages
//! (the `events` queue), so a slow or dead event receiver, or this service stopped, slows no
//! send and no feedback write.

pub mod derive;
pub mod retention;
pub mod sender;
pub mod startup;
pub mod writer;

pub use startup::Events;
