//! An event endpoint (Python) that verifies every batch with the PyPI `standardwebhooks`
//! library against the secrets it is given, and logs what it took.

use std::process::Command;

use serde_json::{Value, json};

use super::{Peer, python, start};
use crate::support::local::{TempDir, free_port, root};

/// The event receiver.
pub struct EventReceiver {
    /// The process.
    pub peer: Peer,
    dir: TempDir,
    http: reqwest::Client,
}

impl EventReceiver {
    /// Starts one; it verifies nothing until [`EventReceiver::set`] gives it secrets.
    pub fn start() -> EventReceiver {
        let dir = TempDir::new("sprayer-events");
        let port = free_port();
        let mut command = Command::new(python());
        command
            .arg(root().join("tests/peers/event_receiver.py"))
            .arg(port.to_string())
            .arg(dir.path().join("log.jsonl"));
        EventReceiver {
            peer: start(command, port, "event receiver"),
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Where batches go.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.peer.port)
    }

    /// The secrets batches are verified against, and whether it answers 200 (`true`) or 503.
    pub async fn set(&self, secrets: &[&str], up: bool) {
        self.http
            .post(format!("http://127.0.0.1:{}/control", self.peer.port))
            .json(&json!({"secrets": secrets, "mode": if up { "ok" } else { "down" }}))
            .send()
            .await
            .expect("the event receiver answers")
            .error_for_status()
            .expect("control taken");
    }

    /// Every request logged: `{"kind", "webhook_id", "verified_by", "body"}`.
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The events of the batches it took (verified, answered 200), in the order they came.
    pub fn events(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|entry| entry["kind"] == "batch")
            .flat_map(|entry| {
                entry["body"]["data"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}
