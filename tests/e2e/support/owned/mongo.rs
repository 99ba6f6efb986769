//! The MongoDB-compatible server of the test's own: killed with SIGKILL, or frozen and thawed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{signal, wait_port};
use crate::support::local::{TempDir, free_port, root};

/// The MongoDB-compatible server of the test's own, on its own storage folder.
pub struct OwnedMongo {
    /// Its port.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl OwnedMongo {
    /// Starts a fresh server.
    pub async fn start() -> OwnedMongo {
        let mut mongo = OwnedMongo {
            port: free_port(),
            dir: TempDir::new("sprayer-mongo"),
            child: None,
        };
        mongo.up().await;
        mongo
    }

    /// The server URL.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its storage (again): the Rust server `make test` built, else the
    /// Python one it fell back to.
    pub async fn up(&mut self) {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let rust = [home.join(".cargo/bin/secantusd-rs")]
            .into_iter()
            .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("secantusd-rs"))
                    .collect::<Vec<_>>()
            }))
            .find(|candidate| candidate.exists());
        let mut command = match rust {
            Some(binary) => Command::new(binary),
            None => {
                let stack = std::env::var_os("SPRAYER_STACK_DIR")
                    .map_or_else(|| root().join(".stack"), PathBuf::from);
                let mut command = Command::new(stack.join("venv/bin/python"));
                command.args(["-m", "secantus"]);
                command
            }
        };
        let child = command
            .args(["--port", &self.port.to_string(), "--storage-path"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the MongoDB-compatible server starts");
        self.child = Some(child);
        wait_port(self.port, true, Duration::from_secs(60), "mongodb").await;
    }

    /// Kills the server with SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        wait_port(self.port, false, Duration::from_secs(20), "mongodb").await;
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the server runs");
        signal(pid, if frozen { "STOP" } else { "CONT" });
    }
}
