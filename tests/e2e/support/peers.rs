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
            if std::env::var_os("SPRAYER_KEEP_PEER_FILES").is_some() {
                return;
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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
    pub dir: tempdir::TempDir,
}

impl TestCa {
    /// Makes a CA and a server certificate signed by it.
    pub fn new() -> TestCa {
        let dir = tempdir::TempDir::new("sprayer-ca");
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

/// The web push service stand-in (Python: VAPID check and aes128gcm decryption).
pub struct WebpushPeer {
    /// The process.
    pub peer: Peer,
}

impl WebpushPeer {
    /// Starts one.
    pub fn start() -> WebpushPeer {
        let port = free_port();
        let mut command = Command::new(python());
        command
            .arg(root().join("tests/peers/webpush_peer.py"))
            .arg(port.to_string());
        WebpushPeer {
            peer: start(command, port, "web push"),
        }
    }

    /// A new browser subscription named `name`.
    pub async fn subscribe(&self, name: &str) -> serde_json::Value {
        reqwest::get(format!(
            "http://127.0.0.1:{}/subscribe/{name}",
            self.peer.port
        ))
        .await
        .expect("peer answers")
        .json()
        .await
        .expect("subscription")
    }

    /// Every push decrypted so far.
    pub async fn received(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("http://127.0.0.1:{}/received", self.peer.port))
            .await
            .expect("peer answers")
            .json()
            .await
            .expect("list")
    }
}

/// The SMSC simulator (node, npm `smpp`): binds, `submit_sm`, delivery receipts, restarts.
pub struct SmscPeer {
    /// The process.
    pub peer: Peer,
    dir: tempdir::TempDir,
    system_id: String,
    password: String,
}

impl SmscPeer {
    /// Starts one for the account `system_id`/`password`, sending receipts after `receipt_delay_ms`.
    pub fn start(system_id: &str, password: &str, receipt_delay_ms: u64) -> SmscPeer {
        let dir = tempdir::TempDir::new("sprayer-smsc");
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

    /// Every logged event (`kind` = `submit` or `receipt`).
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
