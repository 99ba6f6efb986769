//! A real browser: headless Chromium (Debian's `chromium`, driven by npm `playwright-core`)
//! opens the deliverer's demo page, receives a message sent through the API, shows it, and its
//! ack makes the feedback `delivered`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::app::TestApp;
use crate::support::local::root;
use crate::support::stack::serve_ws;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_demo_page_in_chromium_shows_a_message_and_its_ack_makes_it_delivered() {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run `make test` (it installs Debian's chromium)"
    );
    assert!(
        root()
            .join("tests/peers/node_modules/playwright-core")
            .exists(),
        "npm playwright-core is missing: run `make test` (it installs the test peers)"
    );
    let app = TestApp::spawn_with(serve_ws).await;
    let token = app.ws_token("browser-user").await;
    let page = format!(
        "{}/demo?token={token}&app={}",
        app.ws
            .as_deref()
            .expect("ws")
            .replacen("ws://", "http://", 1),
        app.app
    );
    let mut browser = Command::new("node")
        .arg(root().join("tests/peers/browser_demo.js"))
        .arg(&page)
        .arg("Hello from the API")
        .arg(WAIT.as_secs().to_string())
        .env("CHROMIUM_PATH", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser script");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next_line = async || {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    assert_eq!(
        next_line().await.as_deref(),
        Some("CONNECTED"),
        "the page connects"
    );

    let id = app
        .send_ok(&serde_json::json!({
            "to": {"user": "browser-user"}, "channels": ["ws"],
            "content": {"title": "Greeting", "body": "Hello from the API", "data": {"n": 1}},
        }))
        .await;
    assert_eq!(
        next_line().await,
        Some(format!("SHOWN {id}")),
        "the page shows it"
    );
    assert_eq!(
        next_line().await,
        Some(format!("ACKED {id}")),
        "the page acks it"
    );
    let status = tokio::time::timeout(WAIT, browser.wait()).await;
    assert!(
        matches!(status, Ok(Ok(status)) if status.success()),
        "the browser script ends cleanly: {status:?}"
    );
    app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
}
