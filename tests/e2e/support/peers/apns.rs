//! The APNs stand-in (node's HTTP/2 server over TLS): checks the provider token against the
//! key's public half, or the client certificate, and logs every request.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Peer, start};
use crate::support::certificates::TestCa;
use crate::support::local::{free_port, root};

/// The APNs stand-in (node's HTTP/2 server), logging every request.
pub struct ApnsPeer {
    /// The process.
    pub peer: Peer,
    log: PathBuf,
}

impl ApnsPeer {
    /// Starts one that accepts tokens signed by the key whose public half is `public_key`.
    pub fn start(
        ca: &TestCa,
        public_key: &Path,
        team_id: &str,
        key_id: &str,
        topic: &str,
    ) -> ApnsPeer {
        Self::start_with_client_ca(ca, public_key, team_id, key_id, topic, false)
    }

    /// Starts one that also takes client certificates signed by the test CA when `client_ca`.
    pub fn start_with_client_ca(
        ca: &TestCa,
        public_key: &Path,
        team_id: &str,
        key_id: &str,
        topic: &str,
        client_ca: bool,
    ) -> ApnsPeer {
        let port = free_port();
        let log = ca.dir.path().join(format!("apns-{port}.log"));
        let mut command = Command::new("node");
        command
            .arg(root().join("tests/peers/apns_peer.js"))
            .arg(port.to_string())
            .arg(ca.dir.path().join("server.pem"))
            .arg(ca.dir.path().join("server.key"))
            .arg(public_key)
            .args([team_id, key_id, topic])
            .arg(&log);
        if client_ca {
            command.arg(ca.ca_file());
        }
        ApnsPeer {
            peer: start(command, port, "APNs"),
            log,
        }
    }

    /// The base URL to configure.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.peer.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}
