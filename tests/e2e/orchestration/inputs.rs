//! Bad orchestration input: each a 422 naming the field, nothing accepted.

use serde_json::{Value, json};
use sprayer_shared::feed::rfc3339_ms;
use sprayer_shared::model::now_ms;

use crate::support::app::TestApp;
use crate::support::stack::serve_ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_steps_schedules_and_keys_are_422_naming_the_field() {
    let app = TestApp::spawn_with(serve_ws).await;
    let base = json!({ "to": { "user": "ann" }, "content": { "body": "hi" } });
    let with = |extra: Value| {
        let mut body = base.clone();
        for (name, value) in extra.as_object().expect("object") {
            body[name] = value.clone();
        }
        body
    };
    let cases = [
        (
            json!({ "ttl": 60, "delivery": { "steps": [{ "channels": ["ws"], "wait": "2m" }, { "channels": ["http"] }] } }),
            "/delivery/steps/0/wait",
        ),
        (
            json!({ "send_at": rfc3339_ms(now_ms() - 3_600_000) }),
            "/send_at",
        ),
        (
            json!({ "send_at": rfc3339_ms(now_ms() + 31 * 24 * 3_600_000) }),
            "/send_at",
        ),
        (json!({ "send_at": "tomorrow" }), "/send_at"),
        (
            json!({ "delivery": { "steps": [{ "channels": ["apns"] }] } }),
            "/delivery/steps/0/channels/0",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["pager"] }] } }),
            "/delivery/steps/0/channels/0",
        ),
        (json!({ "delivery": { "steps": [] } }), "/delivery/steps"),
        (
            json!({ "delivery": { "steps": [{ "channels": ["http"], "wait": "1m", "until": "acked" }, { "channels": ["ws"] }] } }),
            "/delivery/steps/0/until",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"], "until": "read" }] } }),
            "/delivery/steps/0/until",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"] }, { "channels": ["http"] }] } }),
            "/delivery/steps/0/wait",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"], "wait": "1m" }] } }),
            "/delivery/steps/0/wait",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"], "wait": "soon" }, { "channels": ["http"] }] } }),
            "/delivery/steps/0/wait",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"], "wait": "1m" }, { "channels": ["ws"] }] } }),
            "/delivery/steps/1/channels/0",
        ),
        (
            json!({ "delivery": { "steps": [{ "channels": ["ws"] }], "policy": "urgent" } }),
            "/delivery",
        ),
        (
            json!({ "delivery": { "policy": "nope" } }),
            "/delivery/policy",
        ),
        (
            json!({ "channels": ["ws"], "delivery": { "steps": [{ "channels": ["ws"] }] } }),
            "/channels",
        ),
        (json!({ "cancel_key": "" }), "/cancel_key"),
    ];
    for (extra, field) in cases {
        let body = with(extra);
        let (status, problem) = app.send(&body, None).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // Policies are checked the same way, and cancellations too.
    let response = app
        .request(reqwest::Method::PUT, "/v1/policies/bad")
        .json(&json!({ "steps": [{ "channels": ["ws"], "wait": "1m" }] }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["field"], "/steps/0/wait");
    let response = app
        .request(reqwest::Method::POST, "/v1/cancellations")
        .json(&json!({ "cancel_key": "k", "users": [] }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);
}
