//! End-to-end tests: the real services in-process, against real Redis, RabbitMQ and MongoDB
//! (started by `make test`) and real HTTP receivers on loopback. Each test runs in its own
//! namespace, so they run in parallel.
//!
//! The tests are grouped as the features are; `support` holds what they share.

mod api;
mod channels;
mod events;
mod faults;
mod orchestration;
mod personal;
mod scale;
mod security;
mod support;
mod websockets;
