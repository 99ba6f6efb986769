//! Loads the TLS files the settings name ([`TlsFiles`]): every file read and parsed once when a
//! service starts, and a file that cannot be read or holds no certificate or key named by its
//! setting. RabbitMQ ([`crate::amqp`]), Redis ([`crate::redis`]) and the listeners
//! ([`crate::listen`]) build their TLS configurations from the [`TlsMaterial`] this gives.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::tls::{TlsFile, TlsFiles};

/// Why a TLS file cannot be used; each names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {setting} {}: {error}", .path.display())]
    Unreadable {
        /// The setting that names it (`amqp.ca_file`).
        setting: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file holds no PEM certificate, or one that does not parse.
    #[error("{setting} {} holds no PEM certificate, or one that does not parse", .path.display())]
    NoCertificate {
        /// The setting that names it.
        setting: String,
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key.
    #[error("{setting} {} holds no PEM private key: {error}", .path.display())]
    NoKey {
        /// The setting that names it.
        setting: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// A certificate without its key, or a key without its certificate.
    #[error("{0} and {1} go together")]
    Unpaired(String, String),
}

/// A certificate chain and its private key, as read (PEM) and as parsed.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain's PEM text.
    pub cert_pem: Vec<u8>,
    /// The certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key's PEM text.
    pub key_pem: Vec<u8>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

/// The TLS files of a connection or listener, read and checked.
#[derive(Debug, Default)]
pub struct TlsMaterial {
    /// The certificate authorities to trust: PEM text, known to hold certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate and key to show.
    pub identity: Option<Identity>,
}

impl TlsMaterial {
    /// Reads and parses every file `files` names.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
        let ca_pem = match &files.ca {
            Some(path) => Some(certificates(files, TlsFile::Ca, path)?.0),
            None => None,
        };
        let identity = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let (cert_pem, certs) = certificates(files, TlsFile::Cert, cert)?;
                let setting = files.setting(TlsFile::Key);
                let key_pem = read(&setting, key)?;
                let key =
                    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::NoKey {
                        setting,
                        path: key.clone(),
                        error,
                    })?;
                Some(Identity {
                    cert_pem,
                    certs,
                    key_pem,
                    key,
                })
            }
            (None, None) => None,
            _ => {
                return Err(TlsError::Unpaired(
                    files.setting(TlsFile::Cert),
                    files.setting(TlsFile::Key),
                ));
            }
        };
        Ok(TlsMaterial { ca_pem, identity })
    }

    /// Whether no file was named.
    pub fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.identity.is_none()
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Unreadable {
        setting: setting.to_owned(),
        path: path.to_path_buf(),
        error,
    })
}

/// The PEM text of a file of certificates and the certificates, when it holds at least one
/// and all parse.
fn certificates(
    files: &TlsFiles,
    file: TlsFile,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsError> {
    let setting = files.setting(file);
    let pem = read(&setting, path)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok((pem, certs)),
        _ => Err(TlsError::NoCertificate {
            setting,
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unusable_file_is_named_by_its_setting() {
        let files = |ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>| {
            TlsFiles::client("amqp", ca, cert, key)
        };
        let missing = Path::new("/nonexistent/rabbit-ca.pem");
        let error = TlsMaterial::load(&files(Some(missing), None, None))
            .expect_err("a missing file")
            .to_string();
        assert!(
            error.starts_with("cannot read amqp.ca_file /nonexistent/rabbit-ca.pem: "),
            "{error}"
        );
        let not_pem = std::env::temp_dir().join(format!("sprayer-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let error = TlsMaterial::load(&files(Some(&not_pem), None, None))
            .expect_err("not PEM")
            .to_string();
        assert_eq!(
            error,
            format!(
                "amqp.ca_file {} holds no PEM certificate, or one that does not parse",
                not_pem.display()
            )
        );
        let error = TlsMaterial::load(&files(None, Some(&not_pem), None))
            .expect_err("a certificate alone")
            .to_string();
        assert_eq!(error, "amqp.cert_file and amqp.key_file go together");
        std::fs::remove_file(&not_pem).ok();
        let listener = crate::config::TlsSettings {
            cert: missing.to_path_buf(),
            key: missing.to_path_buf(),
        };
        let error = TlsMaterial::load(&listener.files("accepter.tls"))
            .expect_err("a missing listener certificate")
            .to_string();
        assert!(
            error.starts_with("cannot read accepter.tls.cert "),
            "{error}"
        );
        assert!(
            TlsMaterial::load(&files(None, None, None))
                .expect("nothing to read")
                .is_empty()
        );
    }
}
