//! The TLS files named in the settings. Two shapes, one type behind them: a listener's
//! certificate and key ([`TlsSettings`], `accepter.tls`, `admin.tls`, ...) and a client's files
//! toward a server (`amqp.ca_file`, `redis.cert_file`, ...). Both become a [`TlsFiles`], which
//! the settings check without reading anything and [`crate::tls`] loads when a service starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// TLS for one listener: a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsSettings {
    /// The files of the listener whose settings are at `section` (`accepter.tls`).
    pub fn files(&self, section: &'static str) -> TlsFiles {
        TlsFiles {
            section,
            names: ListenerNames,
            ca: None,
            cert: Some(self.cert.clone()),
            key: Some(self.key.clone()),
        }
    }
}

/// How the settings call a listener's files (`cert`, `key`) and a client's (`cert_file`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// `<section>.cert`, `<section>.key`.
    Listener,
    /// `<section>.ca_file`, `<section>.cert_file`, `<section>.key_file`.
    Client,
}

use Naming::{Client as ClientNames, Listener as ListenerNames};

/// The TLS files of one connection or listener, named as the settings name them so that every
/// problem says which setting to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    section: &'static str,
    names: Naming,
    /// Certificate authorities to trust (PEM).
    pub ca: Option<PathBuf>,
    /// A certificate chain to show, leaf first (PEM).
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
}

/// Which of a [`TlsFiles`]' files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate authorities.
    Ca,
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

impl TlsFiles {
    /// A client's files at `section` (`amqp`, `redis`): `ca_file`, `cert_file`, `key_file`.
    pub fn client(
        section: &'static str,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> TlsFiles {
        TlsFiles {
            section,
            names: ClientNames,
            ca: ca.map(Path::to_path_buf),
            cert: cert.map(Path::to_path_buf),
            key: key.map(Path::to_path_buf),
        }
    }

    /// The setting that names `file` (`amqp.key_file`, `accepter.tls.cert`).
    pub fn setting(&self, file: TlsFile) -> String {
        let name = match (self.names, file) {
            (ClientNames, TlsFile::Ca) => "ca_file",
            (ClientNames, TlsFile::Cert) => "cert_file",
            (ClientNames, TlsFile::Key) => "key_file",
            (ListenerNames, TlsFile::Ca) => "ca",
            (ListenerNames, TlsFile::Cert) => "cert",
            (ListenerNames, TlsFile::Key) => "key",
        };
        format!("{}.{name}", self.section)
    }

    /// Whether any file is named.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// What is wrong with the names alone (no file is read): a certificate without its key or
    /// a key without its certificate.
    pub fn problems(&self) -> Vec<String> {
        if self.cert.is_some() != self.key.is_some() {
            return vec![format!(
                "{} and {} go together",
                self.setting(TlsFile::Cert),
                self.setting(TlsFile::Key)
            )];
        }
        Vec::new()
    }
}
