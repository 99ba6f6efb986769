//! Events pushed to apps: event endpoints verified by a third-party Standard Webhooks library,
//! the ordered feed, secret rotation, bad input and isolation; presence across nodes; inbound
//! SMS reassembled from the SMSC simulator.

mod endpoints;
mod inbound;
mod outages;
mod presence;
mod retention;
mod support;
