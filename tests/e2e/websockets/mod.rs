//! The `ws` channel: the deliverer's sockets, a real browser, and two deliverer nodes.
//!
//! - [`channel`]: inboxes, acks, order, expiry, tokens, heartbeats and draining.
//! - [`browser`]: the demo page in headless Chromium shows a message and acks it.
//! - [`nodes`]: two deliverer nodes share users; a killed one loses nothing.

mod browser;
mod center;
mod channel;
mod clients;
mod nodes;
mod streams;
