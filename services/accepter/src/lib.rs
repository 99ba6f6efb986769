//! The accepter: Sprayer's REST API.
//!
//! [`app`] builds and runs it; [`routes`] holds one module per route group and the OpenAPI
//! document; [`state`] the shared state and the authenticating extractors; [`extract`] the
//! JSON extractor that reports bad input as [`problem`]+json; [`apps`] the app registry and key
//! checks, shared with the administration CLI; [`records`] publishes message records of
//! concurrent requests together; [`queues`] polls RabbitMQ for the depth of every queue.

pub mod app;
pub mod apps;
pub mod commit;
pub mod extract;
pub mod metrics;
pub mod problem;
pub mod queues;
pub mod ratelimit;
pub mod routes;
pub mod state;

pub use app::Accepter;
