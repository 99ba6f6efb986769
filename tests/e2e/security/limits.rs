//! Limits: apps above their rate or their group and list sizes, slow or oversized request
//! heads, and bodies that are not JSON or nest too deep.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sprayer_accepter::Accepter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::app::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_above_its_rate_gets_429_with_retry_after_and_other_apps_do_not() {
    let app = TestApp::spawn_with(|settings| {
        settings.accepter.rate_per_second = 2;
        settings.accepter.rate_burst = 5;
    })
    .await;
    let (_, other_key) = app.create_app("other").await;
    // u1 has no endpoints: an admitted request gets 404, a refused one 429.
    let list = |key: &str| app.request_as(key, Method::GET, "/v1/users/u1/endpoints");
    for attempt in 0..5 {
        let status = list(&app.key).send().await.expect("answers").status();
        assert_eq!(status, 404, "request {attempt} is within the burst");
    }
    let response = list(&app.key).send().await.expect("answers");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/rate-limited");
    assert_eq!(problem["status"], 429);
    // A send above the rate is refused too, and nothing is accepted.
    let (status, _) = app
        .send(
            &json!({ "to": { "user": "u1" }, "content": { "body": "x" } }),
            None,
        )
        .await;
    assert_eq!(status, 429);
    // Another app has a bucket of its own.
    let status = list(&other_key).send().await.expect("answers").status();
    assert_eq!(status, 404);
    // After Retry-After the app may go on.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let status = list(&app.key).send().await.expect("answers").status();
    assert_eq!(status, 404);

    // An app's own limits replace the installation's: here, none at all.
    let mut settings = app.settings.clone();
    settings.admin.token = None;
    settings.accepter.app_limits.insert(
        app.app.clone(),
        sprayer_shared::config::AppLimits {
            rate_per_second: Some(0),
            ..Default::default()
        },
    );
    let accepter = Accepter::build(settings).await.expect("starts");
    let base = accepter.url();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(accepter.run_until_stopped(shutdown));
    for attempt in 0..20 {
        let status = app
            .http
            .get(format!("{base}/v1/users/u1/endpoints"))
            .bearer_auth(&app.key)
            .send()
            .await
            .expect("answers")
            .status();
        assert_eq!(status, 404, "request {attempt}: this app has no rate limit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_lists_are_held_to_the_apps_limits() {
    let app = TestApp::spawn_with(|settings| {
        settings.accepter.max_group_members = 3;
        settings.accepter.max_users = 2;
    })
    .await;
    for user in ["a", "b", "c"] {
        app.add_member("g", user).await;
    }
    let put = |user: &str| {
        app.request(Method::PUT, &format!("/v1/groups/g/members/{user}"))
            .send()
    };
    let response = put("d").await.expect("answers");
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["field"], "group", "{problem}");
    assert_eq!(put("a").await.expect("answers").status(), 200, "a member");
    let removed = app
        .request(Method::DELETE, "/v1/groups/g/members/a")
        .send()
        .await
        .expect("answers");
    assert_eq!(removed.status(), 204);
    assert_eq!(put("d").await.expect("answers").status(), 201, "room again");

    // A bulk add that would pass the limit adds nobody; one within it (a member and a
    // repeat) goes through.
    let post = |users: Value| {
        app.request(Method::POST, "/v1/groups/g/members")
            .json(&json!({ "users": users }))
            .send()
    };
    let response = post(json!(["b", "e"])).await.expect("answers");
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["field"], "group", "{problem}");
    let (_, page) = app.get("/v1/groups/g/members").await;
    assert!(
        !page["items"].to_string().contains("\"e\""),
        "e was not added: {page}"
    );
    let response = post(json!(["b", "c", "b"])).await.expect("answers");
    assert_eq!(response.status(), 200);
    let added: Value = response.json().await.expect("json");
    assert_eq!(added, json!({ "added": 0, "present": 2 }));

    let (status, problem) = app
        .send(
            &json!({ "to": { "users": ["a", "b", "c"] }, "content": { "body": "x" } }),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "/to/users");
}

/// Reads until the server closes the connection or `within` passes; returns what was read and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&read).into(), true),
            Ok(Ok(count)) => read.extend_from_slice(&buffer[..count]),
            Err(_) => return (String::from_utf8_lossy(&read).into(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_request_heads_are_cut_off_and_the_api_goes_on() {
    let app = TestApp::spawn_accepter_only().await;
    let address = app.base.trim_start_matches("http://").to_owned();

    // Slow headers: one byte a second never finishes a head; the connection is closed once the
    // head timeout (10 s) has passed.
    let mut slow = TcpStream::connect(&address).await.expect("connects");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    let started = Instant::now();
    let trickle = async {
        for _ in 0..30 {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), trickle)
        .await
        .ok();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(2)).await;
    assert!(closed, "the slow connection was closed");
    assert!(
        started.elapsed() < Duration::from_secs(16),
        "closed after {:?}",
        started.elapsed()
    );

    // A head larger than 64 KiB, and more than 100 header fields: refused, never served.
    let mut huge = TcpStream::connect(&address).await.expect("connects");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = huge.write_all(big.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut huge, Duration::from_secs(5)).await;
    assert!(closed, "the connection is closed");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let mut many = TcpStream::connect(&address).await.expect("connects");
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for field in 0..150 {
        head.push_str(&format!("X-F{field}: v\r\n"));
    }
    head.push_str("\r\n");
    many.write_all(head.as_bytes()).await.expect("writes");
    let (answer, _) = read_until_closed(&mut many, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // The API still serves everyone else.
    let healthy = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(healthy.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_json_or_too_deep_get_400_problems() {
    let app = TestApp::spawn_accepter_only().await;
    let post = |body: Vec<u8>| {
        app.request(Method::POST, "/v1/messages")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut invalid_utf8 = br#"{"to":{"user":"u1"},"content":{"body":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let nested = format!(
        r#"{{"to":{{"user":"u1"}},"content":{{"body":"x","data":{{"a":{}1{}}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    for (name, body) in [
        ("invalid UTF-8", invalid_utf8),
        ("nested", nested.into_bytes()),
    ] {
        let response = post(body).await.expect("answers");
        let status = response.status().as_u16();
        assert!(
            status == 400 || status == 422,
            "{name}: {status} instead of 400 or 422"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    let healthy = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(healthy.status(), 200);
}
