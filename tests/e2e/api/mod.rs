//! The HTTP APIs themselves: the admin API, the console, what the feedback counts, bad input,
//! and the OpenAPI documents.

mod admin;
mod console;
mod feedback;
mod schemathesis;
mod validation;
