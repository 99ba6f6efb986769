//! Bad input for templates, profiles, preferences and sends: each a 422 naming the field.

use serde_json::{Value, json};

use super::{call, put_ok};
use crate::support::app::TestApp;

#[tokio::test]
async fn bad_templates_profiles_preferences_and_sends_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let put = |path: &'static str, body: Value| {
        let app = &app;
        async move { call(app, reqwest::Method::PUT, path, &body).await }
    };
    let (status, problem) = put(
        "/v1/templates/broken",
        json!({"default_locale": "en", "locales": {"en": {"body": "Hi\n{{ name }"}}}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "/locales/en/body", "{problem}");
    assert!(problem.to_string().contains("line 2, column"), "{problem}");
    put_ok(
        &app,
        "/v1/templates/hello",
        &json!({
            "default_locale": "en",
            "schema": {"type": "object", "properties": {"count": {"type": "integer"}}},
            "locales": {"en": {"body": "{{ name }} has {{ count }} new"}}
        }),
    )
    .await;
    let cases = [
        (
            put(
                "/v1/templates/bad-locale",
                json!({"default_locale": "en", "locales": {"en": {}, "e n": {}}}),
            )
            .await,
            "/locales/e n",
        ),
        (
            put("/v1/users/ann", json!({"timezone": "Mars/Olympus"})).await,
            "/timezone",
        ),
        (
            put("/v1/users/ann", json!({"locale": "not a tag"})).await,
            "/locale",
        ),
        (
            put(
                "/v1/users/ann",
                json!({"quiet_hours": {"from": "25:00", "to": "07:00"}}),
            )
            .await,
            "/quiet_hours/from",
        ),
        (
            put(
                "/v1/users/ann",
                json!({"quiet_hours": {"from": "22:00", "to": "07:00", "days": ["someday"]}}),
            )
            .await,
            "/quiet_hours/days/0",
        ),
        (
            put(
                "/v1/users/ann/preferences",
                json!({"categories": {"unknown": {"enabled": false}}}),
            )
            .await,
            "/categories/unknown",
        ),
        (
            put(
                "/v1/users/ann/preferences",
                json!({"channels": {"pager": false}}),
            )
            .await,
            "/channels/pager",
        ),
    ];
    for ((status, problem), field) in cases {
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let sends = [
        (
            json!({"to": {"user": "ann"}, "template": "hello", "data": {"count": 1}}),
            "/data/name",
        ),
        (
            json!({"to": {"user": "ann"}, "template": "hello", "data": {"name": "A", "count": "one"}}),
            "/data/count",
        ),
        (
            json!({"to": {"user": "ann"}, "template": "nope", "data": {}}),
            "/template",
        ),
        (
            json!({"to": {"user": "ann"}, "template": "hello", "data": {"name": "A", "count": 1}, "locale": "x y"}),
            "/locale",
        ),
        (
            json!({"to": {"user": "ann"}, "template": "hello", "data": {"name": "A", "count": 1}, "content": {"body": "b"}}),
            "/content/body",
        ),
        (
            json!({"to": {"user": "ann"}, "content": {"body": "b"}, "category": "unknown"}),
            "/category",
        ),
        (
            json!({"to": {"user": "ann"}, "content": {"body": "b"}, "quiet_hours": "sometimes"}),
            "/quiet_hours",
        ),
        (
            json!({"to": {"user": "ann"}, "data": {"x": 1}, "content": {"body": "b"}}),
            "/data",
        ),
        (json!({"to": {"user": "ann"}}), "/content"),
    ];
    for (body, field) in sends {
        let (status, problem) = app.send(&body, None).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
}
