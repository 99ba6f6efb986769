//! A real browser: headless Chromium (Debian's `chromium`, driven by npm `playwright-core`)
//! opens the deliverer's demo page, receives a message sent through the API, shows it, and its
//! ack makes the feedback `delivered`; two tabs of its notification centre share the unread badge.

use std::time::Duration;

use crate::support::app::TestApp;
use crate::support::peers::browser::BrowserScript;
use crate::support::stack::serve_ws;

const WAIT: Duration = Duration::from_secs(60);

/// The demo page of the test's deliverer, opened with `token`.
fn demo_page(app: &TestApp, token: &str) -> String {
    let base = app
        .ws
        .as_deref()
        .expect("ws")
        .replacen("ws://", "http://", 1);
    format!("{base}/demo?token={token}&app={}", app.app)
}

#[tokio::test]
async fn the_demo_page_in_chromium_shows_a_message_and_its_ack_makes_it_delivered() {
    let app = TestApp::spawn_with(serve_ws).await;
    let token = app.ws_token("browser-user").await;
    let page = demo_page(&app, &token);
    let seconds = WAIT.as_secs().to_string();
    let mut browser =
        BrowserScript::start("browser_demo.js", &[&page, "Hello from the API", &seconds]);
    assert_eq!(
        browser.next_line(WAIT).await,
        "CONNECTED websocket",
        "the page connects"
    );

    let id = app
        .send_ok(&serde_json::json!({
            "to": {"user": "browser-user"}, "channels": ["ws"],
            "content": {"title": "Greeting", "body": "Hello from the API", "data": {"n": 1}},
        }))
        .await;
    assert_eq!(
        browser.next_line(WAIT).await,
        format!("SHOWN {id}"),
        "the page shows it"
    );
    assert_eq!(
        browser.next_line(WAIT).await,
        format!("ACKED {id}"),
        "the page acks it"
    );
    browser.assert_success(WAIT).await;
    app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
}

#[tokio::test]
async fn the_notification_centre_shows_the_unread_badge_and_mark_all_read_clears_every_tab() {
    let app = TestApp::spawn_with(serve_ws).await;
    let token = app.ws_token("centre-user").await;
    let page = demo_page(&app, &token);
    let seconds = WAIT.as_secs().to_string();
    let mut browser = BrowserScript::start("browser_centre.js", &[&page, "3", &seconds]);
    assert_eq!(
        browser.next_line(WAIT).await,
        "CONNECTED",
        "both tabs connect"
    );
    for n in 0..3 {
        app.send_ws("centre-user", &format!("note {n}")).await;
    }
    assert_eq!(
        browser.next_line(WAIT).await,
        "BADGE 3 3",
        "both badges count 3"
    );
    assert_eq!(
        browser.next_line(WAIT).await,
        "CLEARED 0 0",
        "mark all read on one tab clears both"
    );
    browser.assert_success(WAIT).await;
}

#[tokio::test]
async fn without_websocket_the_page_falls_back_to_sse_and_still_gets_and_acks_messages() {
    let app = TestApp::spawn_with(serve_ws).await;
    let token = app.ws_token("no-socket-user").await;
    let page = demo_page(&app, &token);
    let seconds = WAIT.as_secs().to_string();
    for (without, transport) in [("WebSocket", "sse"), ("WebSocket,EventSource", "poll")] {
        let body = format!("Over {transport}");
        let mut browser =
            BrowserScript::start("browser_demo.js", &[&page, &body, &seconds, without]);
        assert_eq!(
            browser.next_line(WAIT).await,
            format!("CONNECTED {transport}"),
            "without {without}"
        );
        let id = app.send_ws("no-socket-user", &body).await;
        assert_eq!(browser.next_line(WAIT).await, format!("SHOWN {id}"));
        assert_eq!(
            browser.next_line(WAIT).await,
            format!("ACKED {id}"),
            "acked over HTTP"
        );
        browser.assert_success(WAIT).await;
        app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
    }
}
