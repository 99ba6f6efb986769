//! What the tests take from the machine they run on: the repository's root, free loopback
//! ports, and temporary folders that go away with the test.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A response's `Content-Type` (empty when it has none).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Runs `command` to its end; panics with its output unless it succeeded. Returns stdout and
/// stderr together.
pub fn run_command(command: &mut std::process::Command) -> String {
    let output = command.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A temporary folder, removed on drop (kept when `SPRAYER_KEEP_PEER_FILES` is set, to look
/// at a failed test's files).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes a new one under the system's temporary folder.
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
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
