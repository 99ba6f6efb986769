//! The status feeder: consumes status batches ([`consumer`]) and writes them to MongoDB in bulk
//! with the rank rule ([`write`](mod@write)); [`startup`] builds and runs it.

pub mod consumer;
pub mod startup;
pub mod write;

pub use startup::Feeder;
