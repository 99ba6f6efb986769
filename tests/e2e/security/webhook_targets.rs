//! Webhooks kept off private networks: loopback, private and link-local addresses are refused
//! unless an operator allows them, and redirects are never followed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::receiver::{Behavior, Receiver, webhook_secret};

async fn put_webhook_status(app: &TestApp, user: &str, url: &str) -> (u16, Value) {
    let response = app
        .request(Method::PUT, &format!("/v1/users/{user}/endpoints/http/d1"))
        .json(&json!({ "url": url, "secret": webhook_secret() }))
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_private_loopback_and_link_local_addresses_are_refused_unless_allowed() {
    // No network allowed: the installation a public operator runs.
    let app = TestApp::spawn_with(|settings| settings.webhook.allow_networks.clear()).await;
    let receiver = Receiver::start().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let (status, problem) = put_webhook_status(&app, "u1", url).await;
        assert_eq!(status, 422, "{url}: {problem}");
        assert_eq!(problem["field"], "/url", "{url}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("not a public address")),
            "{problem}"
        );
    }
    // A name is checked when it is resolved: `localhost` is registered, never reached.
    let local_name = receiver.url("u1").replace("127.0.0.1", "localhost");
    let (status, body) = put_webhook_status(&app, "u1", &local_name).await;
    assert_eq!(status, 201, "{body}");
    let id = app
        .send_ok(&json!({ "to": { "user": "u1" }, "content": { "body": "x" } }))
        .await;
    app.wait_for_status(&id, "http", "failed", 1, Duration::from_secs(20))
        .await;
    let deliveries = app.all_deliveries(&id, 10).await;
    assert!(
        deliveries[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("no public address")),
        "{deliveries:?}"
    );
    assert!(
        receiver.hits().is_empty(),
        "the loopback receiver got nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    // Loopback is allowed here (the test settings), so the first request goes out; the
    // receiver's redirect to another path of its own is not followed.
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.plan("u1", &[Behavior::Redirect("/hook/elsewhere")]);
    app.put_webhook("u1", "d1", &receiver.url("u1"), &webhook_secret())
        .await;
    let id = app
        .send_ok(&json!({ "to": { "user": "u1" }, "content": { "body": "x" } }))
        .await;
    app.wait_for_status(&id, "http", "failed", 1, Duration::from_secs(20))
        .await;
    assert_eq!(receiver.hits_for("u1").len(), 1);
    assert!(receiver.hits_for("elsewhere").is_empty(), "not followed");
    let deliveries = app.all_deliveries(&id, 10).await;
    assert_eq!(deliveries[0]["error"], "receiver answered 302");
}
