//! Headless Chromium (Debian's `chromium`, driven by npm `playwright-core`) running one of the
//! scripts of `tests/peers/`, which report what the page did one line at a time on stdout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::local::root;

/// A browser script running; killed when dropped.
pub struct BrowserScript {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl BrowserScript {
    /// Runs `tests/peers/<script>` with `args`; fails loudly when Chromium or playwright-core
    /// is missing.
    pub fn start(script: &str, args: &[&str]) -> BrowserScript {
        let chromium =
            std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: run `make test` (it installs Debian's chromium)"
        );
        assert!(
            root()
                .join("tests/peers/node_modules/playwright-core")
                .exists(),
            "npm playwright-core is missing: run `make test` (it installs the test peers)"
        );
        let mut child = Command::new("node")
            .arg(root().join("tests/peers").join(script))
            .args(args)
            .env("CHROMIUM_PATH", &chromium)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the browser script");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        BrowserScript { child, lines }
    }

    /// The next line the script reports within `wait` (empty when none came).
    pub async fn next_line(&mut self, wait: Duration) -> String {
        tokio::time::timeout(wait, self.lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default()
    }

    /// Waits up to `wait` for the script to end; panics unless it ended cleanly.
    pub async fn assert_success(mut self, wait: Duration) {
        let status = tokio::time::timeout(wait, self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(status)) if status.success()),
            "the browser script ends cleanly: {status:?}"
        );
    }
}
