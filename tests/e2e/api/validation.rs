//! Bad input: the right status, a problem+json body naming the field, and nothing enqueued.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::receiver::webhook_secret;
use crate::support::stack::queue_depth;

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or("").to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "status {status}"
    );
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|kind| kind.starts_with("/problems/")),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    (status, body)
}

async fn post_raw(app: &TestApp, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .request(Method::POST, "/v1/messages")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answers");
    problem(response).await
}

async fn post_json(app: &TestApp, body: &Value) -> (u16, Value) {
    post_raw(app, serde_json::to_vec(body).expect("json")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_with_problem_json_and_nothing_is_enqueued() {
    let app = TestApp::spawn_accepter_only().await;
    let content = json!({ "body": "x" });

    let (status, body) = post_raw(&app, b"{\"to\": ".to_vec()).await;
    assert_eq!(status, 400, "malformed JSON: {body}");

    // A struct's fields in order, as an array: serde would take it, the API does not.
    let (status, body) = post_json(
        &app,
        &json!([{ "user": "u1" }, ["http"], content, null, null]),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/")),
        "an array body: {body}"
    );

    let (status, body) = post_json(&app, &json!({ "content": content })).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/")),
        "missing to: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("missing field `to`"),
        "{body}"
    );

    let (status, body) = post_json(&app, &json!({ "to": {}, "content": content })).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/to")),
        "empty to: {body}"
    );

    let (status, body) = post_json(
        &app,
        &json!({ "to": { "user": "u1" }, "channels": ["http", "pigeon"], "content": content }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/channels/1")),
        "unknown channel: {body}"
    );

    let (status, body) =
        post_json(&app, &json!({ "to": { "user": "" }, "content": content })).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/to/user")),
        "empty user: {body}"
    );

    let users: Vec<String> = (0..10_001).map(|index| format!("u{index}")).collect();
    let (status, body) = post_json(
        &app,
        &json!({ "to": { "users": users }, "content": content }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/to/users")),
        "10,001 users: {body}"
    );

    let (status, body) = post_json(
        &app,
        &json!({ "to": { "user": "u1" }, "content": content, "colour": "red" }),
    )
    .await;
    assert_eq!(status, 422, "unknown field: {body}");
    assert!(
        body["detail"].as_str().expect("detail").contains("colour"),
        "{body}"
    );

    let (status, body) = post_json(&app, &json!({ "to": { "user": "u1" }, "content": {} })).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/content")),
        "empty content: {body}"
    );

    let (status, body) = post_json(
        &app,
        &json!({ "to": { "user": "u1" }, "content": content, "ttl": 0 }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("/ttl")),
        "zero ttl: {body}"
    );

    let oversize = json!({ "to": { "user": "u1" }, "content": { "body": "x".repeat(300 * 1024) } });
    let (status, body) = post_json(&app, &oversize).await;
    assert_eq!(status, 413, "oversize body: {body}");

    let response = app
        .request(Method::POST, "/v1/messages")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("answers");
    let (status, body) = problem(response).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (415, Some("Content-Type"))
    );

    let body = json!({ "to": { "user": "u1" }, "content": content });
    let response = app
        .http
        .post(format!("{}/v1/messages", app.base))
        .json(&body)
        .send()
        .await
        .expect("answers");
    let (status, problem_body) = problem(response).await;
    assert_eq!(
        (status, problem_body["field"].as_str()),
        (401, Some("Authorization")),
        "missing key"
    );
    let wrong = "spr_0123456789abcdef_not-the-secret";
    let response = app
        .request_as(wrong, Method::POST, "/v1/messages")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(problem(response).await.0, 401, "wrong key");
    let tampered = format!("{}x", app.key);
    let response = app
        .request_as(&tampered, Method::POST, "/v1/messages")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(problem(response).await.0, 401, "right key id, wrong secret");

    let prefix = &app.settings.amqp.prefix;
    assert_eq!(
        queue_depth(&format!("{prefix}jobs.http")).await,
        0,
        "no job was enqueued"
    );
    assert_eq!(
        queue_depth(&format!("{prefix}status")).await,
        0,
        "no message record was enqueued"
    );

    // The same check sees a good message: one job and one message record.
    let (status, _) = app.send(&body, None).await;
    assert_eq!(status, 202);
    assert_eq!(queue_depth(&format!("{prefix}jobs.http")).await, 1);
    assert_eq!(queue_depth(&format!("{prefix}status")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_groups_and_queries_are_refused_naming_the_field() {
    let app = TestApp::spawn_accepter_only().await;
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (
            Method::PUT,
            "/v1/users/u1/endpoints/http/d1",
            Some(json!({ "url": "ftp://x", "secret": "whsec_AAAA" })),
            422,
            "/url",
        ),
        (
            Method::PUT,
            "/v1/users/u1/endpoints/http/d1",
            Some(json!({ "url": "https://example.com", "secret": "nope" })),
            422,
            "/secret",
        ),
        (
            Method::PUT,
            "/v1/users/u1/endpoints/http/d1",
            Some(json!({ "url": "https://example.com" })),
            422,
            "/",
        ),
        (
            Method::PUT,
            "/v1/users/u1/endpoints/pigeon/d1",
            Some(json!({})),
            422,
            "channel",
        ),
        (
            Method::PUT,
            "/v1/users/u1/endpoints/sms/d1",
            Some(json!({})),
            422,
            "channel",
        ),
        (
            Method::PUT,
            "/v1/users/a%3Ab/endpoints/http/d1",
            Some(json!({})),
            422,
            "user",
        ),
        (
            Method::PUT,
            "/v1/groups/g%7B1%7D/members/u1",
            None,
            422,
            "group",
        ),
        (
            Method::POST,
            "/v1/groups/g1/members",
            Some(json!({ "users": [] })),
            422,
            "/users",
        ),
        (
            Method::POST,
            "/v1/groups/g1/members",
            Some(json!({ "users": ["u1", "u{2}"] })),
            422,
            "/users/1",
        ),
        (
            Method::POST,
            "/v1/groups/g1/members",
            Some(json!({ "users": (0..1001).map(|n| format!("u{n}")).collect::<Vec<_>>() })),
            422,
            "/users",
        ),
        (
            Method::POST,
            "/v1/groups/g1/members",
            Some(json!({ "users": "u1" })),
            422,
            "/users",
        ),
        (
            Method::POST,
            "/v1/groups/g%7B1%7D/members",
            Some(json!({ "users": ["u1"] })),
            422,
            "group",
        ),
        (
            Method::GET,
            "/v1/groups/g1/members?limit=0",
            None,
            422,
            "limit",
        ),
        (
            Method::GET,
            "/v1/groups/g1/members?cursor=%21%21",
            None,
            422,
            "cursor",
        ),
        (
            Method::GET,
            "/v1/messages/nope/deliveries?status=lost",
            None,
            422,
            "status",
        ),
        (
            Method::GET,
            "/v1/messages/00000000000000000000000000000000",
            None,
            404,
            "id",
        ),
    ];
    for (method, path, body, expected, field) in cases {
        let mut request = app.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, problem_body) = problem(request.send().await.expect("answers")).await;
        assert_eq!(
            (status, problem_body["field"].as_str()),
            (expected, Some(field)),
            "{method} {path}: {problem_body}"
        );
    }
    let response = app
        .request(Method::GET, "/v1/nowhere")
        .send()
        .await
        .expect("answers");
    assert_eq!(problem(response).await.0, 404);
    let response = app
        .request(Method::DELETE, "/v1/messages")
        .send()
        .await
        .expect("answers");
    assert_eq!(problem(response).await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_endpoint_import_is_refused_naming_the_entry_and_registers_nothing() {
    let app = TestApp::spawn_accepter_only().await;
    let secret = webhook_secret();
    let hook = |user: &str| {
        json!({ "user": user, "channel": "http", "device": "d1",
                "address": { "url": "https://example.com/hook", "secret": secret } })
    };
    let with = |index: usize, key: &str, value: Value| {
        let mut endpoints = vec![hook("ok0"), hook("ok1"), hook("ok2")];
        endpoints[index][key] = value;
        json!({ "endpoints": endpoints })
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "endpoints": [] }), "/endpoints"),
        (
            json!({ "endpoints": (0..1001).map(|n| hook(&format!("u{n}"))).collect::<Vec<_>>() }),
            "/endpoints",
        ),
        (json!({ "endpoints": hook("ok0") }), "/endpoints"),
        (with(1, "user", json!("a:b")), "/endpoints/1/user"),
        (with(2, "channel", json!("pigeon")), "/endpoints/2/channel"),
        (with(2, "channel", json!("sms")), "/endpoints/2/channel"),
        (with(0, "device", json!("d{1}")), "/endpoints/0/device"),
        (
            with(1, "address", json!({ "url": "ftp://x", "secret": secret })),
            "/endpoints/1/address/url",
        ),
        (
            with(1, "address", json!({ "url": "https://example.com" })),
            "/endpoints/1/address",
        ),
        (
            with(
                2,
                "address",
                json!({ "url": "http://169.254.169.254/", "secret": secret }),
            ),
            "/endpoints/2/address/url",
        ),
        (with(2, "user", json!("ok0")), "/endpoints/2"),
        (
            json!({ "endpoints": [{ "user": "ok0", "channel": "http", "device": "d1" }] }),
            "/endpoints/0",
        ),
        (with(1, "sent", json!(true)), "/endpoints/1/sent"),
    ];
    for (body, field) in cases {
        let response = app
            .request(Method::POST, "/v1/endpoints")
            .json(&body)
            .send()
            .await
            .expect("answers");
        let (status, problem_body) = problem(response).await;
        assert_eq!(
            (status, problem_body["field"].as_str()),
            (422, Some(field)),
            "{problem_body}"
        );
    }
    // A refused import wrote none of its entries, the valid ones before the fault included.
    for user in ["ok0", "ok1", "ok2"] {
        let (status, body) = app.get(&format!("/v1/users/{user}/endpoints")).await;
        assert_eq!(status, 404, "{user}: {body}");
    }
    let response = app
        .request(Method::POST, "/v1/endpoints")
        .header("content-type", "application/json")
        .body("{\"endpoints\": [")
        .send()
        .await
        .expect("answers");
    assert_eq!(problem(response).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_api() {
    let app = TestApp::spawn_accepter_only().await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("json");
    assert!(
        document["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.")
    );
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/messages/{id}/deliveries",
        "/v1/users/{user}/endpoints/{channel}/{device}",
        "/v1/endpoints",
        "/v1/groups/{group}/members/{user}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    assert_eq!(
        document["components"]["schemas"]["NewEndpoints"]["required"],
        json!(["endpoints"])
    );
    assert!(document["components"]["schemas"]["Problem"].is_object());
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let response = app
            .http
            .get(format!("{}{probe}", app.base))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "{probe}");
    }
}
