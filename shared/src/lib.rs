//! The library every Sprayer service uses. Its modules build on each other in this order, and
//! none imports one that comes after it:
//!
//! 1. [`model`]: identifiers, channels, jobs and delivery feedback: what travels between services;
//!    [`sms_text`]: SMS text encoding (GSM 03.38 or UCS-2) and parts;
//! 2. [`config`]: the settings of every service (one module per section), loaded from defaults,
//!    a file and the environment, and checked without reading a file or opening a connection;
//! 3. [`tls`]: the TLS files the settings name, read and checked when a service starts;
//! 4. [`amqp`] (topology, brokers, publisher, consumer set-up), [`redis`] and [`mongo`]: the
//!    connections and the key and document layouts; [`listen`]: every HTTP listener;
//!    [`telemetry`], [`shutdown`], [`netguard`] (the webhook address guard and its resolver),
//!    [`signing`] (Standard Webhooks signatures) and [`wstoken`] (the signed tokens browsers
//!    open WebSockets with);
//! 5. [`expand`]: a job's target into recipients, shared by the dispatchers and the deliverer;
//!    [`ops`]: health, readiness and metrics endpoints; [`startup`]: why a service could not
//!    start; [`feed`]: the app event feed's documents, cursors and reads; [`schedule`]: the
//!    scheduler's durable timers and escalation state in Redis, shared by the accepter and the
//!    scheduler; [`personal`]: templates, profiles, preferences and quiet hours, applied per
//!    recipient by the dispatchers and the deliverer.

pub mod amqp;
pub mod config;
pub mod expand;
pub mod feed;
pub mod listen;
pub mod model;
pub mod mongo;
pub mod netguard;
pub mod ops;
pub mod personal;
pub mod redis;
pub mod schedule;
pub mod shutdown;
pub mod signing;
pub mod sms_text;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod wstoken;

#[cfg(test)]
mod layers;

pub use config::Settings;
pub use startup::StartError;
