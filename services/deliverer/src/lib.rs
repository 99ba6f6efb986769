//! The WebSocket deliverer: the one stateful Sprayer service. It holds browser sockets and
//! keeps every user's WebSocket messages in a durable inbox in Redis until a browser of the
//! user acknowledges them.
//!
//! - [`consumer`] takes `jobs.ws`; its [`storer`] stores each message in its recipients'
//!   [`inbox`]es and publishes [`wake`]-ups to the nodes that hold their sockets (found in
//!   `conn:`);
//! - [`http`] upgrades `GET /v1/ws`, and [`socket`] runs each socket: the backlog, live
//!   messages, acks, heartbeats and close codes, by the frame [`protocol`]; [`preferences`]
//!   lets the user's own browser read and set their preferences with their token; [`center`]
//!   is the notification centre (history with read state, counts, HTTP access); [`stream`]
//!   serves the inbox as Server-Sent Events and long-poll;
//! - [`registry`] is this node's map of sockets and its `conn:` entries; [`presence`] counts
//!   every node's sockets of each user and makes `user.online` and `user.offline`;
//! - [`reporter`] publishes `sent`, `delivered` and `expired`; [`sweeper`] expires messages of
//!   users who do not connect;
//! - [`startup`] builds and runs a node; [`hub`] is what its sockets share;
//! - [`fuzzing`] is the body of the `ws_frame` fuzz target.

pub mod center;
pub mod consumer;
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod inbox;
pub mod preferences;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod reporter;
pub mod socket;
pub mod startup;
pub mod storer;
pub mod stream;
pub mod sweeper;
pub mod user_routes;
pub mod wake;

pub use startup::Deliverer;
