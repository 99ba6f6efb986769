//! The user's own preferences from the browser: the demo page's panel in headless Chromium
//! reads and saves them with the user's WebSocket token; a message of the category the user
//! turned off is skipped, a required one reaches the page; no token but the user's own may
//! read or change them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::put_ok;
use crate::support::app::TestApp;
use crate::support::peers::browser::BrowserScript;
use crate::support::stack::serve_ws;

const WAIT: Duration = Duration::from_secs(60);

/// The JSON after `word ` on a line the script reported.
fn reported(line: &str, word: &str) -> Value {
    let json = line
        .strip_prefix(word)
        .and_then(|rest| rest.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{word} …, not {line:?}"));
    serde_json::from_str(json).expect("the panel as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sets_their_own_preferences_from_the_browser_and_no_other_token_can() {
    let app = TestApp::spawn_with(serve_ws).await;
    put_ok(
        &app,
        "/v1/categories/marketing",
        &json!({"description": "Offers"}),
    )
    .await;
    put_ok(
        &app,
        "/v1/categories/security",
        &json!({"required": true, "description": "Security alerts"}),
    )
    .await;
    let token = app.ws_token("pref-user").await;
    let other = app.ws_token("someone-else").await;
    let deliverer = app
        .ws
        .as_deref()
        .expect("ws")
        .replacen("ws://", "http://", 1);
    let url = format!("{deliverer}/v1/users/pref-user/preferences");
    let call = async |method: reqwest::Method, bearer: Option<&str>, body: Option<Value>| {
        let mut request = app.http.request(method, &url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the deliverer answers");
        let status = response.status();
        let kind = crate::support::local::content_type(&response);
        (
            status,
            kind,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let off = json!({"channels": {"email": false}});

    // Refused: no token, the app's key, another user's token; bad input names its field.
    let (status, kind, problem) = call(reqwest::Method::PUT, None, Some(off.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(kind, "application/problem+json");
    assert_eq!(problem["field"], "Authorization");
    let (status, _, problem) = call(reqwest::Method::PUT, Some(&app.key), Some(off.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the app's key: {problem}");
    let (status, _, problem) = call(reqwest::Method::GET, Some(&app.key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the app's key: {problem}");
    let (status, _, problem) = call(reqwest::Method::PUT, Some(&other), Some(off.clone())).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another user's token: {problem}"
    );
    assert_eq!(problem["field"], "user");
    let (status, _, problem) = call(reqwest::Method::GET, Some(&other), None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another user's token: {problem}"
    );
    let bad = [
        (
            json!({"categories": {"nope": {"enabled": false}}}),
            "/categories/nope",
        ),
        (json!({"channels": {"pager": false}}), "/channels/pager"),
        (json!({"channels": {"sms": "no"}}), "/channels/sms"),
    ];
    for (body, field) in bad {
        let (status, _, problem) = call(reqwest::Method::PUT, Some(&token), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, _, view) = call(reqwest::Method::GET, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["user"], "pref-user");
    assert_eq!(view["preferences"], json!({}), "nothing refused was stored");
    assert_eq!(
        view["categories"],
        json!([
            {"key": "marketing", "required": false, "description": "Offers"},
            {"key": "security", "required": true, "description": "Security alerts"},
        ])
    );

    // The panel: everything on, the required category fixed; sms and marketing turned off.
    let page = format!("{deliverer}/demo?token={token}&app={}", app.app);
    let seconds = WAIT.as_secs().to_string();
    let mut browser = BrowserScript::start(
        "browser_preferences.js",
        &[&page, "sms", "marketing", "Your password changed", &seconds],
    );
    let loaded = reported(&browser.next_line(WAIT).await, "LOADED");
    let on = json!({"checked": true, "disabled": false});
    let fixed = json!({"checked": true, "disabled": true});
    let off_box = json!({"checked": false, "disabled": false});
    for name in [
        "channel:sms",
        "channel:email",
        "channel:push",
        "channel:ws",
        "category:marketing",
    ] {
        assert_eq!(loaded[name], on, "{name} in {loaded}");
    }
    assert_eq!(loaded["category:security"], fixed, "{loaded}");
    assert_eq!(browser.next_line(WAIT).await, "SAVED");
    let reloaded = reported(&browser.next_line(WAIT).await, "RELOADED");
    assert_eq!(reloaded["channel:sms"], off_box, "{reloaded}");
    assert_eq!(reloaded["category:marketing"], off_box, "{reloaded}");
    assert_eq!(reloaded["channel:email"], on, "{reloaded}");
    assert_eq!(reloaded["category:security"], fixed, "{reloaded}");

    // Stored as the app reads them, and applied to what is sent.
    let (status, stored) = app.get("/v1/users/pref-user/preferences").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["channels"]["sms"], false, "{stored}");
    assert_eq!(stored["channels"]["email"], true, "{stored}");
    assert_eq!(
        stored["categories"]["marketing"]["enabled"], false,
        "{stored}"
    );
    let offer = app
        .send_ok(
            &json!({"to": {"user": "pref-user"}, "channels": ["ws"], "category": "marketing",
            "content": {"title": "Sale", "body": "Half price"}}),
        )
        .await;
    let summary = app.wait_for_status(&offer, "ws", "skipped", 1, WAIT).await;
    assert_eq!(summary["total"], 1, "{summary}");
    let alert = app
        .send_ok(
            &json!({"to": {"user": "pref-user"}, "channels": ["ws"], "category": "security",
            "content": {"title": "Security", "body": "Your password changed"}}),
        )
        .await;
    assert_eq!(browser.next_line(WAIT).await, format!("SHOWN {alert}"));
    browser.assert_success(WAIT).await;
    let (_, theirs) = app.get("/v1/users/someone-else/preferences").await;
    assert_eq!(
        theirs,
        json!({}),
        "the other user's preferences are untouched"
    );
}
