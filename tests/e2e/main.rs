//! End-to-end tests: the real services in-process, against real Redis, RabbitMQ and MongoDB
//! (started by `make test`) and real HTTP receivers on loopback. Each test runs in its own
//! namespace, so they run in parallel.

mod admin;
mod apns;
mod cluster;
mod console;
mod delivery;
mod email;
mod faults;
mod fcm;
mod fcm_peer;
mod feedback;
mod helpers;
mod isolation;
mod outages;
mod owned;
mod peers;
mod redis_cluster;
mod retries;
mod schemathesis;
mod secrets;
mod security;
mod sms;
mod validation;
mod webpush;
mod ws;
mod ws_browser;
mod ws_nodes;
mod wsclient;
