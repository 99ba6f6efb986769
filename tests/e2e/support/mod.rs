//! What the tests share.

pub mod fcm_peer;
pub mod helpers;
pub mod owned;
pub mod peers;
pub mod ws_client;
