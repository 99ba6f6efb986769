//! An SMTP server (Python aiosmtpd) storing the mails it takes in a Maildir.

use std::process::Command;

use super::{Peer, python, start};
use crate::support::local::{TempDir, free_port, root};

/// An SMTP server (aiosmtpd) storing mails in a Maildir.
pub struct SmtpPeer {
    /// The process.
    pub peer: Peer,
    /// Its Maildir.
    pub maildir: TempDir,
}

impl SmtpPeer {
    /// Starts one.
    pub fn start() -> SmtpPeer {
        let maildir = TempDir::new("sprayer-smtp");
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
