//! The protocol peers the channel tests talk to, each a real server in its own process on a
//! loopback port, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The Python of the peers' virtualenv (made by `make test`).
fn python() -> PathBuf {
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

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
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

/// An SMTP server (aiosmtpd) storing mails in a Maildir.
pub struct SmtpPeer {
    /// The process.
    pub peer: Peer,
    /// Its Maildir.
    pub maildir: tempdir::TempDir,
}

impl SmtpPeer {
    /// Starts one.
    pub fn start() -> SmtpPeer {
        let maildir = tempdir::TempDir::new("sprayer-smtp");
        let port = free_port();
        let mut command = Command::new(python());
        command
            .arg(root().join("tests/peers/smtp_peer.py"))
            .arg(port.to_string())
            .arg(maildir.path().join("mail"));
        SmtpPeer {
            peer: start(command, port, "SMTP"),
            maildir,
        }
    }

    /// Every mail received so far, raw.
    pub fn mails(&self) -> Vec<Vec<u8>> {
        let mut mails = Vec::new();
        for folder in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail").join(folder)) {
                for entry in entries.flatten() {
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        mails.push(bytes);
                    }
                }
            }
        }
        mails
    }
}

/// A temporary directory removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// The directory.
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Makes a new one under the system's temporary folder.
        pub fn new(prefix: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&path).expect("temporary folder");
            TempDir(path)
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
