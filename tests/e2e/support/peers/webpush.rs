//! The web push service stand-in (Python): checks VAPID and decrypts aes128gcm like a browser.

use std::process::Command;

use super::{Peer, python, start};
use crate::support::local::{free_port, root};

/// The web push service stand-in (Python: VAPID check and aes128gcm decryption).
pub struct WebpushPeer {
    /// The process.
    pub peer: Peer,
}

impl WebpushPeer {
    /// Starts one.
    pub fn start() -> WebpushPeer {
        let port = free_port();
        let mut command = Command::new(python());
        command
            .arg(root().join("tests/peers/webpush_peer.py"))
            .arg(port.to_string());
        WebpushPeer {
            peer: start(command, port, "web push"),
        }
    }

    /// A new browser subscription named `name`.
    pub async fn subscribe(&self, name: &str) -> serde_json::Value {
        reqwest::get(format!(
            "http://127.0.0.1:{}/subscribe/{name}",
            self.peer.port
        ))
        .await
        .expect("peer answers")
        .json()
        .await
        .expect("subscription")
    }

    /// Every push decrypted so far.
    pub async fn received(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("http://127.0.0.1:{}/received", self.peer.port))
            .await
            .expect("peer answers")
            .json()
            .await
            .expect("list")
    }
}
