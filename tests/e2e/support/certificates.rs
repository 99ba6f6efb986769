//! Certificates made with `openssl` for a test: a certificate authority with a server
//! certificate for `localhost`, client certificates it signs, and P-256 key pairs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::local::TempDir;

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A test certificate authority and a server certificate for `localhost` and `127.0.0.1`.
pub struct TestCa {
    /// Holds `ca.pem`, `server.pem`, `server.key`.
    pub dir: TempDir,
}

impl TestCa {
    /// Makes a CA and a server certificate signed by it.
    pub fn new() -> TestCa {
        let dir = TempDir::new("sprayer-ca");
        let path = dir.path();
        openssl(
            path,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Sprayer test CA",
            ],
        );
        openssl(
            path,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            path.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write");
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        TestCa { dir }
    }

    /// A client certificate for `common_name` signed by the CA, with its key, as one PEM.
    pub fn client_identity(&self, common_name: &str) -> String {
        let path = self.dir.path();
        openssl(
            path,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                &format!("/CN={common_name}"),
            ],
        );
        std::fs::write(path.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write");
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
                "-extfile",
                "client.ext",
            ],
        );
        let read = |name: &str| std::fs::read_to_string(path.join(name)).expect("pem");
        format!("{}{}", read("client.pem"), read("client.key"))
    }

    /// The CA certificate, for clients to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// An EC P-256 key pair in PEM: the private key as PKCS#8 (an APNs .p8 file) and the public key.
pub fn p256_key_pair(dir: &Path, name: &str) -> (String, PathBuf) {
    let private = format!("{name}.p8");
    let public = format!("{name}.pub.pem");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &private,
        ],
    );
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    (
        std::fs::read_to_string(dir.join(&private)).expect("key"),
        dir.join(public),
    )
}
