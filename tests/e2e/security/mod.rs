//! What is kept out and kept apart.
//!
//! - [`webhook_targets`]: webhooks to private networks refused, redirects never followed.
//! - [`limits`]: rates, group and list sizes, slow or large request heads, bad bodies.
//! - [`tls`]: TLS on every listener, to Redis and to RabbitMQ, with private CAs.
//! - [`secrets`]: no secret reaches the logs or an error body.
//! - [`isolation`]: another app sees, changes and reaches nothing of an app's.

mod isolation;
mod limits;
mod secrets;
mod tls;
mod webhook_targets;
