//! What goes wrong: processes killed, servers stopped, frozen or unreachable, receivers that
//! fail, hang or reset.

pub mod outages;
mod restarts;
mod retries;
