//! Each delivery channel against a real peer of its protocol.
//!
//! - [`apns`]: an HTTP/2 TLS peer checking provider tokens and push certificates.
//! - [`email`]: a real SMTP server; each app keeps to its relay.
//! - [`fcm`]: an HTTP v1 stand-in with a real OAuth2 service-account grant.
//! - [`sms`]: an SMPP 3.4 SMSC simulator with delivery receipts.
//! - [`webhook`]: every recipient's webhook once, signed, for users, lists, groups and imports.
//! - [`webpush`]: a push service that checks VAPID and decrypts like a browser.

mod apns;
mod email;
mod fcm;
mod sms;
mod webhook;
mod webpush;
