//! The status feeder: consumes status batches ([`consumer`]) and writes them to MongoDB in bulk
//! with the rank rule ([`write`]); [`app`] builds and runs it.

pub mod app;
pub mod consumer;
pub mod write;

pub use app::Feeder;
