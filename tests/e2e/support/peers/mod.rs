//! The protocol peers the channel tests talk to, each a real server on a loopback port, stopped
//! when dropped: most run in a process of their own ([`Peer`]), the FCM stand-in in the test.
//!
//! - [`smtp`]: an SMTP server storing mails in a Maildir (`email`).
//! - [`apns`]: an HTTP/2 TLS server checking provider tokens and certificates (`apns`).
//! - [`fcm`]: the OAuth2 grant and HTTP v1 send endpoints (`fcm`).
//! - [`webpush`]: a push service checking VAPID and decrypting like a browser (`webpush`).
//! - [`smsc`]: an SMPP 3.4 SMSC simulator with delivery receipts (`sms`).
//! - [`events`]: an event endpoint verifying batches with the `standardwebhooks` library.
//! - [`browser`]: headless Chromium running a page script.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::local::root;

pub mod apns;
pub mod browser;
pub mod events;
pub mod fcm;
pub mod smsc;
pub mod smtp;
pub mod webpush;

/// The Python of the peers' virtualenv (made by `make test`).
pub fn python() -> PathBuf {
    let stack =
        std::env::var_os("SPRAYER_STACK_DIR").map_or_else(|| root().join(".stack"), PathBuf::from);
    let python = stack.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test` (it installs the test peers)",
        python.display()
    );
    python
}

/// A peer process, killed on drop.
pub struct Peer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits for its first line to be `ready`.
fn start(mut command: Command, port: u16, what: &str) -> Peer {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start the {what} peer: {error}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("peer output");
    assert_eq!(line.trim(), "ready", "the {what} peer did not start");
    Peer { child, port }
}
