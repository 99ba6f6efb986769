//! What is kept out and kept apart: unsafe webhooks, limits, TLS, secrets, other apps.

mod isolation;
mod secrets;
mod tls;
