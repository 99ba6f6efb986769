//! The library every Sprayer service uses.
//!
//! - [`model`]: identifiers, channels, jobs and delivery feedback: what travels between services;
//! - [`config`]: the settings of every service, loaded from defaults, a file and the environment;
//! - [`amqp`]: the RabbitMQ topology, a confirming publisher and a reconnect loop for consumers;
//! - [`redis`] and [`mongo`]: the connections and the key and document layouts;
//! - [`expand`]: a job's target into recipients, shared by the dispatchers and the deliverer;
//! - [`wstoken`]: the signed tokens browsers open WebSockets with;
//! - [`telemetry`], [`ops`] and [`shutdown`]: logs, metrics, health endpoints and graceful stop.

pub mod amqp;
pub mod config;
pub mod expand;
pub mod listen;
pub mod model;
pub mod mongo;
pub mod netguard;
pub mod ops;
pub mod redis;
pub mod shutdown;
pub mod telemetry;
pub mod wstoken;

pub use config::Settings;
