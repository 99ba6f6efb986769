//! The `ws` channel: the deliverer's sockets, a real browser, and two deliverer nodes.

mod browser;
mod channel;
mod nodes;
