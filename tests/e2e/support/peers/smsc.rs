//! The SMSC simulator (node, npm `smpp`): binds, `submit_sm`, delivery receipts, restarts on
//! its state file, mobile-originated messages queued by the test.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::{Peer, start};
use crate::support::local::{TempDir, free_port, root};

/// The SMSC simulator (node, npm `smpp`): binds, `submit_sm`, delivery receipts, restarts.
pub struct SmscPeer {
    /// The process.
    pub peer: Peer,
    dir: TempDir,
    system_id: String,
    password: String,
}

impl SmscPeer {
    /// Starts one for the account `system_id`/`password`, sending receipts after `receipt_delay_ms`.
    pub fn start(system_id: &str, password: &str, receipt_delay_ms: u64) -> SmscPeer {
        let dir = TempDir::new("sprayer-smsc");
        let port = free_port();
        let peer = Self::spawn(dir.path(), port, system_id, password, receipt_delay_ms);
        SmscPeer {
            peer,
            dir,
            system_id: system_id.to_owned(),
            password: password.to_owned(),
        }
    }

    fn spawn(
        dir: &Path,
        port: u16,
        system_id: &str,
        password: &str,
        receipt_delay_ms: u64,
    ) -> Peer {
        let script = root().join("tests/peers/smsc_peer.js");
        assert!(
            root().join("tests/peers/node_modules/smpp").exists(),
            "npm smpp is missing: run `make test` (it installs the test peers)"
        );
        let mut command = Command::new("node");
        command
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("state.json"))
            .arg(dir.join("log.jsonl"))
            .args([system_id, password])
            .arg(receipt_delay_ms.to_string());
        start(command, port, "SMSC")
    }

    /// Kills it with SIGKILL (its pending receipts stay in its state file).
    pub fn kill(&mut self) {
        let _ = self.peer.child.kill();
        let _ = self.peer.child.wait();
    }

    /// Starts it again on the same port and state file.
    pub fn restart(&mut self, receipt_delay_ms: u64) {
        self.kill();
        self.peer = Self::spawn(
            self.dir.path(),
            self.peer.port,
            &self.system_id,
            &self.password,
            receipt_delay_ms,
        );
    }

    /// The `sms` provider settings of an app that binds to it with its account, sending from
    /// `source`.
    pub fn provider_settings(&self, source: &str) -> serde_json::Value {
        serde_json::json!({
            "host": "127.0.0.1", "port": self.peer.port, "system_id": self.system_id,
            "password": self.password, "source": source,
        })
    }

    /// Queues a mobile-originated `deliver_sm` for the simulator to send to a bound session
    /// (and again while it is refused): `source_addr`, `destination_addr`, `data_coding`,
    /// `esm_class`, `short_message` (hex) and the optional fields the simulator's header lists
    /// (`message_payload` in hex, the `sar_*` TLVs, `source_addr_ton`, `dest_addr_ton`).
    pub fn send_mo(&self, pdu: &serde_json::Value) {
        let mut line = pdu.to_string();
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("state.json.mo"))
            .expect("the MO file opens");
        file.write_all(line.as_bytes()).expect("the MO is queued");
    }

    /// Every logged event (`kind` = `submit`, `receipt` or `mo`).
    pub fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The accepted `submit_sm` PDUs.
    pub fn accepted_submits(&self) -> Vec<serde_json::Value> {
        self.log()
            .into_iter()
            .filter(|event| event["kind"] == "submit" && event["status"] == 0)
            .collect()
    }
}

/// The bytes of a PDU field the simulator logs as hex.
pub fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex"))
        .collect()
}

/// UCS-2 (UTF-16BE) bytes as text.
pub fn ucs2_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).expect("UTF-16")
}
