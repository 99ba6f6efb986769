//! What goes wrong: processes killed, servers stopped, frozen or unreachable, receivers that
//! fail, hang or reset. Nothing given a 202 is lost.
//!
//! - [`restarts`]: a dispatcher killed, the broker, Redis or MongoDB stopped, receivers hanging.
//! - [`outages`]: a broker that cannot be reached gets 503s, never a 202.
//! - [`retries`]: receiver failures retried through the tiers, permanent ones not, expiry.

mod outages;
mod restarts;
mod retries;
