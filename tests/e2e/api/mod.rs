//! The APIs around the messages: admin, console, feedback, bad input, the OpenAPI documents.
//!
//! - [`admin`]: apps and keys through the admin API, paged lists of endpoints and members.
//! - [`console`]: the operator console, the stats and gauges behind it, in headless Chromium.
//! - [`feedback`]: duplicate and late status events never move a delivery back.
//! - [`schemathesis`]: generated requests against the OpenAPI documents.
//! - [`validation`]: bad input gets a problem+json naming the field, and nothing is enqueued.

mod admin;
mod console;
mod feedback;
mod python_sdk;
mod schemathesis;
mod validation;
