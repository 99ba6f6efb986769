//! The harness every test shares, by what it is:
//!
//! - [`stack`]: the shared servers (RabbitMQ, Redis, MongoDB) and each test's namespace in them.
//! - [`app`]: the app under test, every service in-process on port 0, and typed API calls.
//! - [`receiver`]: the webhook receiver, webhook secrets and signatures.
//! - [`wait`]: `wait_until`, polling a condition instead of sleeping.
//! - [`isolation`]: the check that two apps of one installation never cross.
//! - [`ws_client`]: a WebSocket client with deadlines, acks and close codes.
//! - [`peers`]: the protocol peers of the channels (SMTP, APNs, FCM, web push, SMSC).
//! - [`owned`]: servers and Sprayer processes a test owns and stops (RabbitMQ nodes and
//!   clusters, Redis servers and clusters, a MongoDB-compatible server, `sprayer run`).
//! - [`certificates`]: a test certificate authority, client certificates and key pairs.
//! - [`local`]: the repository's root, free loopback ports and temporary folders.

pub mod app;
pub mod certificates;
pub mod isolation;
pub mod local;
pub mod owned;
pub mod peers;
pub mod receiver;
pub mod stack;
pub mod wait;
pub mod ws_client;
