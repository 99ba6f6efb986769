//! The accepter: Sprayer's REST API.
//!
//! - [`startup`] builds and runs it: the API listener, the admin listener and the queue poll;
//! - [`routes`] holds one module per route group and the OpenAPI documents; [`state`] the shared
//!   state and the authenticating extractors;
//! - [`extract`] is the JSON extractor that reports bad input as [`problem`]+json, the one
//!   mapping from error to answer;
//! - [`apps`] is the registry of apps (tenants) and their keys, shared with the administration
//!   CLI; [`ratelimit`] holds each app to its request rate, over every accepter;
//! - [`commit`] publishes what concurrent requests send together (group commit);
//!   [`queues`] polls RabbitMQ for the depth of every queue; [`metrics`] counts requests by
//!   route;
//! - [`fuzzing`] is the body of the `message_json` fuzz target.

pub mod apps;
pub mod commit;
pub mod extract;
pub mod fuzzing;
pub mod metrics;
pub mod problem;
pub mod queues;
pub mod ratelimit;
pub mod routes;
pub mod startup;
pub mod state;

pub use startup::Accepter;
