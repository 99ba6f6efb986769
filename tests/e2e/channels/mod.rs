//! Each delivery channel against a real peer of its protocol.

mod apns;
mod email;
mod fcm;
mod sms;
mod webhook;
mod webpush;
