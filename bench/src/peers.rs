//! The soak's SMS and email peers: the tests' SMSC simulator (node, npm `smpp`) and SMTP
//! server (Python aiosmtpd), installed by `scripts/stack.sh soak`, on loopback ports of their
//! own, with their logs and mails in a folder removed when the peers stop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The SMSC account of the soak.
pub const SMSC_ACCOUNT: (&str, &str) = ("soak", "soak-pw");

/// The two peers.
pub struct Peers {
    /// The SMSC's port.
    pub smsc_port: u16,
    /// The SMTP server's port.
    pub smtp_port: u16,
    processes: Vec<Child>,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(child: &mut Child, port: u16, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the {name} peer exited ({status}) before it listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the {name} peer did not listen on {port} within 30 s")
}

impl Peers {
    /// Starts both; `receipt_delay_ms` is how long the SMSC waits before a delivery receipt.
    pub fn start(receipt_delay_ms: u64) -> anyhow::Result<Peers> {
        let root = std::env::current_dir()?;
        let dir = std::env::temp_dir().join(format!("sprayer-soak-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let mut peers = Peers {
            smsc_port: free_port()?,
            smtp_port: free_port()?,
            processes: Vec::new(),
            dir,
        };
        anyhow::ensure!(
            root.join("tests/peers/node_modules/smpp").exists(),
            "npm smpp is missing: `make soak` installs it (scripts/stack.sh soak)"
        );
        let mut smsc = Command::new("node")
            .arg(root.join("tests/peers/smsc_peer.js"))
            .arg(peers.smsc_port.to_string())
            .arg(peers.dir.join("smsc-state.json"))
            .arg(peers.dir.join("smsc-log.jsonl"))
            .args([SMSC_ACCOUNT.0, SMSC_ACCOUNT.1])
            .arg(receipt_delay_ms.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the SMSC peer (node)")?;
        wait_for_port(&mut smsc, peers.smsc_port, "SMSC")?;
        peers.processes.push(smsc);
        let stack = std::env::var_os("SPRAYER_STACK_DIR")
            .map_or_else(|| root.join(".stack"), PathBuf::from);
        let python = stack.join("venv/bin/python");
        anyhow::ensure!(
            python.exists(),
            "{} is missing: `make soak` installs it (scripts/stack.sh soak)",
            python.display()
        );
        let mut smtp = Command::new(python)
            .arg(root.join("tests/peers/smtp_peer.py"))
            .arg(peers.smtp_port.to_string())
            .arg(peers.dir.join("mail"))
            .stdout(Stdio::null())
            .spawn()
            .context("starting the SMTP peer (aiosmtpd)")?;
        wait_for_port(&mut smtp, peers.smtp_port, "SMTP")?;
        peers.processes.push(smtp);
        Ok(peers)
    }

    /// `submit_sm` PDUs the SMSC accepted, and how many of them carried the same destination
    /// and text as an earlier one (a part submitted twice).
    pub fn sms_submits(&self) -> (u64, u64) {
        let log = std::fs::read_to_string(self.dir.join("smsc-log.jsonl")).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let (mut accepted, mut again) = (0, 0);
        for event in log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        {
            if event["kind"] == "submit" && event["status"] == 0 {
                accepted += 1;
                let key = (
                    event["destination_addr"].to_string(),
                    event["short_message"].to_string(),
                );
                if !seen.insert(key) {
                    again += 1;
                }
            }
        }
        (accepted, again)
    }

    /// Mails the SMTP server stored.
    pub fn mails(&self) -> u64 {
        count_files(&self.dir.join("mail/new")) + count_files(&self.dir.join("mail/cur"))
    }
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count() as u64)
}

impl Drop for Peers {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
