//! Events pushed to apps: event endpoints verified by a third-party Standard Webhooks library,
//! the ordered feed, secret rotation, bad input and isolation.

mod endpoints;
mod support;
