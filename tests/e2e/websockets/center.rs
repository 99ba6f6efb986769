//! The notification centre: one user's history with seen, read and archived state, its counts,
//! and live sync. Two sockets of one user on two deliverer nodes: a read on one shows on the
//! other within a second, with exact counts; 50 concurrent reads over HTTP leave the counts
//! exact; a read is reported as the delivery's `read`; acks over HTTP remove messages as the
//! socket's do; bad input is a problem naming its field.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::{Frame, WsClient};

const WAIT: Duration = Duration::from_secs(30);

/// The next frame of `kind` within `within`, skipping others.
async fn next_of(client: &mut WsClient, kind: &str, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next(left).await? {
            Frame::Json(frame) if frame["type"] == kind => return Some(frame),
            Frame::Json(_) => {}
            other => panic!("the socket closed while waiting for {kind}: {other:?}"),
        }
    }
}

/// A user route of the deliverer at `base` with `token`: status and body.
async fn call(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the deliverer answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The user's counts once they are `expected` (a socket may get a message before its store
/// has finished), or the last seen.
async fn counts_become(app: &TestApp, base: &str, token: &str, expected: Value) -> Value {
    let found = wait_until(WAIT, || async {
        let (_, counts) = call(app, base, Method::GET, "/v1/inbox/counts", token, None).await;
        (counts == expected).then_some(counts)
    })
    .await;
    match found {
        Some(counts) => counts,
        None => {
            call(app, base, Method::GET, "/v1/inbox/counts", token, None)
                .await
                .1
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_sync_across_nodes_counts_stay_exact_and_reads_are_reported() {
    let app = TestApp::spawn_with(serve_ws).await;
    let mut settings = app.settings.clone();
    settings.deliverer.node_id = Some(crate::support::stack::unique("centre-"));
    let node = sprayer_deliverer::Deliverer::build(settings)
        .await
        .expect("a second node starts");
    let second = format!("ws://{}", node.address());
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(node.run_until_stopped(stop.clone()));
    let first = app.ws.clone().expect("ws");
    let http = first.replacen("ws://", "http://", 1);
    let token = app.ws_token("reader").await;
    let mut here = WsClient::open(&app.ws_url(&token)).await;
    let mut there = WsClient::open(&format!("{second}/v1/ws?token={token}")).await;

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.send_ws("reader", &format!("note {n}")).await);
    }
    for id in &ids {
        let message = here.next_message(WAIT).await.expect("a message here");
        assert_eq!(message["id"], id.as_str());
        let message = there.next_message(WAIT).await.expect("a message there");
        assert_eq!(message["id"], id.as_str());
    }
    here.ack(&ids).await;
    let counts = counts_become(
        &app,
        &http,
        &token,
        json!({"unread": 3, "unseen": 3, "total": 3}),
    )
    .await;
    assert_eq!(counts, json!({"unread": 3, "unseen": 3, "total": 3}));

    // A read on this node shows on the other within a second, with the counts.
    here.send(&json!({"type": "state", "ids": [ids[1]], "read": true}))
        .await;
    let started = tokio::time::Instant::now();
    let state = next_of(&mut there, "state", Duration::from_secs(1))
        .await
        .expect("the state change reaches the other node's socket within 1 s");
    assert_eq!(
        state["changes"],
        json!([{"id": ids[1], "seen": true, "read": true, "archived": false}])
    );
    let counts = next_of(&mut there, "counts", Duration::from_secs(1))
        .await
        .expect("counts follow");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (counts["unread"].as_u64(), counts["unseen"].as_u64()),
        (Some(2), Some(2))
    );
    let own = next_of(&mut here, "counts", WAIT)
        .await
        .expect("the reader's own socket too");
    assert_eq!(own["unread"], 2);
    app.wait_for_status(&ids[1], "ws", "read", 1, WAIT).await;

    // 50 more, read by 50 concurrent calls: the counts stay exact.
    let mut more = Vec::new();
    for n in 0..50 {
        more.push(app.send_ws("reader", &format!("more {n}")).await);
    }
    let counts = counts_become(
        &app,
        &http,
        &token,
        json!({"unread": 52, "unseen": 52, "total": 53}),
    )
    .await;
    assert_eq!(counts, json!({"unread": 52, "unseen": 52, "total": 53}));
    let reads = more.iter().map(|id| {
        call(
            &app,
            &http,
            Method::POST,
            "/v1/inbox/state",
            &token,
            Some(json!({"ids": [id], "read": true})),
        )
    });
    for (status, answer) in futures::future::join_all(reads).await {
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (_, counts) = call(&app, &http, Method::GET, "/v1/inbox/counts", &token, None).await;
    assert_eq!(counts, json!({"unread": 2, "unseen": 2, "total": 53}));
    let (_, again) = call(
        &app,
        &http,
        Method::POST,
        "/v1/inbox/state",
        &token,
        Some(json!({"ids": [more[0]], "read": true})),
    )
    .await;
    assert_eq!(
        again["changed"],
        json!([]),
        "a read read again changes nothing"
    );

    // The list, newest first, by state, in pages.
    let (status, unread) = call(
        &app,
        &http,
        Method::GET,
        "/v1/inbox?state=unread",
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{unread}");
    let listed: Vec<&str> = unread["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[0].as_str()]);
    assert_eq!(unread["items"][0]["message"]["body"], "note 2");
    let (_, page) = call(&app, &http, Method::GET, "/v1/inbox?limit=20", &token, None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(20));
    assert_eq!(page["items"][0]["id"], more[49].as_str());
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, rest) = call(
        &app,
        &http,
        Method::GET,
        &format!("/v1/inbox?limit=100&cursor={cursor}"),
        &token,
        None,
    )
    .await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(33));
    assert_eq!(rest["next_cursor"], Value::Null);

    // Everything read, then the older ones archived.
    let (_, all) = call(
        &app,
        &http,
        Method::POST,
        "/v1/inbox/state",
        &token,
        Some(json!({"all": true, "read": true})),
    )
    .await;
    assert_eq!(
        all["counts"],
        json!({"unread": 0, "unseen": 0, "total": 53})
    );
    let newest_seq = page["items"][0]["seq"].as_str().expect("seq").to_owned();
    let (_, archived) = call(
        &app,
        &http,
        Method::POST,
        "/v1/inbox/state",
        &token,
        Some(json!({"before": newest_seq, "archived": true})),
    )
    .await;
    assert_eq!(
        archived["changed"].as_array().map(Vec::len),
        Some(52),
        "{archived}"
    );
    let (_, active) = call(&app, &http, Method::GET, "/v1/inbox", &token, None).await;
    assert_eq!(active["items"].as_array().map(Vec::len), Some(1));
    let (_, kept) = call(
        &app,
        &http,
        Method::GET,
        "/v1/inbox?state=archived&limit=100",
        &token,
        None,
    )
    .await;
    assert_eq!(kept["items"].as_array().map(Vec::len), Some(52));

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, running).await;
}

/// A bad request: method, path, body, bearer, the status and the field it names.
type Case<'a> = (Method, &'a str, Option<Value>, &'a str, StatusCode, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_over_http_and_bad_input() {
    let app = TestApp::spawn_with(serve_ws).await;
    let http = app.ws.clone().expect("ws").replacen("ws://", "http://", 1);
    let token = app.ws_token("acker").await;
    let other = app.ws_token("somebody").await;
    let id = app.send_ws("acker", "ack me over HTTP").await;
    let theirs = app.send_ws("somebody", "not yours").await;
    app.wait_for_status(&id, "ws", "queued", 1, WAIT).await;

    let (status, acked) = call(
        &app,
        &http,
        Method::POST,
        "/v1/inbox/ack",
        &token,
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
    // Out of the pending inbox: a socket opened now gets nothing, though the history keeps it.
    let mut client = WsClient::open(&app.ws_url(&token)).await;
    let marker = app.send_ws("acker", "marker").await;
    let first = client.next_message(WAIT).await.expect("the marker");
    assert_eq!(
        first["id"],
        marker.as_str(),
        "the acked message did not come back"
    );
    // The history keeps both (the marker's store may end a moment after the socket had it).
    let counts = counts_become(
        &app,
        &http,
        &token,
        json!({"unread": 2, "unseen": 2, "total": 2}),
    )
    .await;
    assert_eq!(counts["total"], 2, "{counts}");
    let (_, list) = call(
        &app,
        &http,
        Method::GET,
        "/v1/inbox?state=all",
        &token,
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    // Bad input, each a problem naming its field.
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/v1/inbox?state=new",
            None,
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "state",
        ),
        (
            Method::GET,
            "/v1/inbox?cursor=soon",
            None,
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cursor",
        ),
        (
            Method::GET,
            "/v1/inbox?limit=0",
            None,
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            Method::POST,
            "/v1/inbox/state",
            Some(json!({"ids": [theirs], "read": true})),
            &token,
            StatusCode::NOT_FOUND,
            "/ids/0",
        ),
        (
            Method::POST,
            "/v1/inbox/state",
            Some(json!({"ids": [id], "loud": true})),
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/loud",
        ),
        (
            Method::POST,
            "/v1/inbox/state",
            Some(json!({"ids": [id]})),
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/",
        ),
        (
            Method::POST,
            "/v1/inbox/state",
            Some(json!({"ids": ["no way"], "read": true})),
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/ids/0",
        ),
        (
            Method::POST,
            "/v1/inbox/ack",
            Some(json!({"ids": []})),
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
            "/ids",
        ),
        (
            Method::GET,
            "/v1/inbox/counts",
            None,
            &app.key,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            Method::GET,
            "/v1/inbox",
            None,
            "not.a.token",
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
    ];
    for (method, path, body, bearer, status, field) in cases {
        let (got, problem) = call(&app, &http, method.clone(), path, bearer, body).await;
        assert_eq!(got, status, "{method} {path}: {problem}");
        assert_eq!(problem["field"], field, "{method} {path}: {problem}");
    }
    let expected = json!({"unread": 1, "unseen": 1, "total": 1});
    let untouched = counts_become(&app, &http, &other, expected.clone()).await;
    assert_eq!(
        untouched, expected,
        "the other user's history is untouched: {untouched}"
    );
}
