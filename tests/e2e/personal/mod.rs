//! Personal messages: templates in the user's locale, preferences and categories, quiet hours,
//! and the inputs refused.

mod browser;
mod inputs;
mod preferences;
mod quiet_hours;
mod templates;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::TestApp;

/// `method path` with a JSON body as the app; the status and answer.
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = app
        .request(method, path)
        .json(body)
        .send()
        .await
        .expect("answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `PUT path` that must answer 200.
pub async fn put_ok(app: &TestApp, path: &str, body: &Value) -> Value {
    let (status, answer) = call(app, reqwest::Method::PUT, path, body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
    answer
}
