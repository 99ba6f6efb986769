//! What is kept out: webhooks to private networks, apps above their limits, slow or oversized
//! request heads, bodies that are not JSON; and TLS on the listeners and to Redis.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sprayer_accepter::Accepter;
use sprayer_shared::config::TlsSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::helpers::{
    Behavior, Receiver, TestApp, register_group, serve_ws, test_settings, webhook_secret,
};
use crate::support::owned::{OwnedRabbit, OwnedRedis};
use crate::support::peers::TestCa;
use crate::support::ws_client::WsClient;
use sprayer::Sprayer;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_serves_tls_when_configured() {
    let ca = TestCa::new();
    let tls = TlsSettings {
        cert: ca.dir.path().join("server.pem"),
        key: ca.dir.path().join("server.key"),
    };
    let app = TestApp::spawn_with(|settings| {
        crate::support::helpers::serve_ws(settings);
        settings.accepter.tls = Some(tls.clone());
        settings.admin.tls = Some(tls.clone());
        settings.deliverer.tls = Some(tls.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    assert!(app.admin.starts_with("https://"), "{}", app.admin);
    let ws = app.ws.clone().expect("ws served");
    assert!(ws.starts_with("wss://"), "{ws}");
    let ca_pem = std::fs::read(ca.ca_file()).expect("ca");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("pem"))
        .build()
        .expect("client");
    // The app API (the test app was made through the admin API over TLS already).
    let response = trusting
        .get(format!("{}/v1/users/u1/endpoints", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("answers over TLS");
    assert_eq!(response.status(), 404, "u1 has no endpoints yet");
    let deliverer = ws.replacen("wss://", "https://", 1);
    let response = trusting
        .get(format!("{deliverer}/healthz"))
        .send()
        .await
        .expect("answers over TLS");
    assert_eq!(response.status(), 200);
    // Plain HTTP to a TLS listener gets no answer.
    let plain = app.base.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        refused.is_err() || refused.is_ok_and(|response| response.status() != 200),
        "plain HTTP is not served on a TLS listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca_carries_groups_inboxes_and_live_sockets() {
    const MEMBERS: usize = 20;
    const WAIT: Duration = Duration::from_secs(30);
    let ca = TestCa::new();
    let redis = OwnedRedis::start_tls(ca.dir.path()).await;
    let url = redis.url();
    assert!(url.starts_with("rediss://localhost:"), "{url}");

    // Trusting another CA than the one that signed the server's certificate: no start.
    let other = TestCa::new();
    let mut settings = test_settings();
    settings.redis.url = url.clone();
    settings.redis.ca_file = Some(other.ca_file());
    let error = Sprayer::build_roles(settings, &sprayer::Role::ALL)
        .await
        .err()
        .expect("a server certificate of an untrusted CA stops the start")
        .to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // A CA file that cannot be read is named.
    let mut settings = test_settings();
    settings.redis.url = url.clone();
    settings.redis.ca_file = Some(ca.dir.path().join("missing.pem"));
    let error = Sprayer::build_roles(settings, &sprayer::Role::ALL)
        .await
        .err()
        .expect("an unreadable redis.ca_file stops the start")
        .to_string();
    assert!(error.contains("redis.ca_file"), "{error}");

    // Trusting it: groups, endpoints, inboxes and the deliverer's wake-ups all go over TLS (the
    // server has no plain port).
    let app = TestApp::spawn_with(|settings| {
        serve_ws(settings);
        settings.redis.url = url.clone();
        settings.redis.ca_file = Some(ca.ca_file());
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    register_group(&app, &receiver, &secret, MEMBERS, "secure").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "secure" }, "content": { "body": "over TLS" } }))
        .await;
    app.wait_for_status(&id, "http", "delivered", MEMBERS as u64, WAIT)
        .await;
    let hits = receiver.hits();
    assert_eq!(
        hits.iter().filter(|hit| hit.message_id() == id).count(),
        MEMBERS,
        "one webhook per member"
    );

    let token = app.ws_token("alice").await;
    let stored = app.send_ws("alice", "kept for later").await;
    app.wait_for_status(&stored, "ws", "queued", 1, WAIT).await;
    let mut socket = WsClient::open(&app.ws_url(&token)).await;
    let first = socket.next_message(WAIT).await.expect("the inbox arrives");
    assert_eq!(first["id"], stored.as_str());
    let live = app.send_ws("alice", "live").await;
    let next = socket.next_message(WAIT).await.expect("the live message");
    assert_eq!(next["id"], live.as_str());
    socket.ack(&[stored.clone(), live.clone()]).await;
    app.wait_for_status(&live, "ws", "delivered", 1, WAIT).await;
    socket.close().await;

    // What Sprayer keeps is in the TLS server.
    let pem = std::fs::read(ca.ca_file()).expect("ca");
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test connects over TLS");
    let keys: usize = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("DBSIZE");
    assert!(
        keys > MEMBERS,
        "the members' endpoints and groups are there: {keys}"
    );
    eprintln!(
        "redis tls figures: a group of {MEMBERS} delivered, an inbox and a live ws message over rediss:// ({keys} keys); another CA and a missing CA file refused at start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_over_mutual_tls_needs_the_client_certificate_and_carries_groups_and_sockets() {
    const MEMBERS: usize = 10;
    const WAIT: Duration = Duration::from_secs(30);
    let ca = TestCa::new();
    ca.client_identity("sprayer");
    let redis = OwnedRedis::start_mutual_tls(ca.dir.path()).await;
    let url = redis.url();
    let with_tls = |settings: &mut sprayer_shared::Settings| {
        serve_ws(settings);
        settings.redis.url = url.clone();
        settings.redis.ca_file = Some(ca.ca_file());
        settings.redis.cert_file = Some(ca.dir.path().join("client.pem"));
        settings.redis.key_file = Some(ca.dir.path().join("client.key"));
    };
    let start = async |adjust: &dyn Fn(&mut sprayer_shared::Settings)| {
        let mut settings = test_settings();
        with_tls(&mut settings);
        adjust(&mut settings);
        Sprayer::build_roles(settings, &sprayer::Role::ALL)
            .await
            .err()
            .map(|error| error.to_string())
    };
    // Without the client certificate the server hangs up: no start.
    let without = start(&|settings| {
        settings.redis.cert_file = None;
        settings.redis.key_file = None;
    })
    .await
    .expect("a server asking for a client certificate refuses one without");
    assert!(without.contains("redis"), "{without}");
    let missing = start(&|settings| {
        settings.redis.cert_file = Some(ca.dir.path().join("missing.pem"));
    })
    .await
    .expect("an unreadable redis.cert_file stops the start");
    assert!(missing.contains("cannot read redis.cert_file"), "{missing}");

    // With it: groups and endpoints, and the deliverer's wake-ups for a live socket.
    let app = TestApp::spawn_with(with_tls).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    register_group(&app, &receiver, &secret, MEMBERS, "mutual").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "mutual" }, "content": { "body": "mutual TLS" } }))
        .await;
    app.wait_for_status(&id, "http", "delivered", MEMBERS as u64, WAIT)
        .await;
    let token = app.ws_token("bob").await;
    let mut socket = WsClient::open(&app.ws_url(&token)).await;
    let live = app.send_ws("bob", "live over mutual TLS").await;
    let received = socket.next_message(WAIT).await.expect("the live message");
    assert_eq!(received["id"], live.as_str());
    socket.ack(std::slice::from_ref(&live)).await;
    app.wait_for_status(&live, "ws", "delivered", 1, WAIT).await;
    socket.close().await;
    eprintln!(
        "redis mutual tls figures: a group of {MEMBERS} delivered and a live ws message with a client certificate; refused: without it ({without}), a missing cert file ({missing})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_over_mutual_tls_with_a_private_ca_carries_jobs_and_feedback() {
    const USERS: usize = 20;
    const WAIT: Duration = Duration::from_secs(60);
    let ca = TestCa::new();
    ca.client_identity("sprayer");
    let rabbit = OwnedRabbit::start_tls(ca.dir.path()).await;
    let url = rabbit.url();
    assert!(url.starts_with("amqps://"), "{url}");
    let with_tls = |settings: &mut sprayer_shared::Settings| {
        settings.amqp.url = url.clone();
        settings.amqp.ca_file = Some(ca.ca_file());
        settings.amqp.cert_file = Some(ca.dir.path().join("client.pem"));
        settings.amqp.key_file = Some(ca.dir.path().join("client.key"));
    };

    // What the broker refuses, and what Sprayer refuses before it starts.
    let connect = async |adjust: &dyn Fn(&mut sprayer_shared::Settings)| {
        let mut settings = test_settings();
        with_tls(&mut settings);
        adjust(&mut settings);
        sprayer_shared::amqp::Brokers::for_settings(&settings.amqp)
            .expect("the files are readable")
            .connect(Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    connect(&|_| {})
        .await
        .expect("the client certificate and the CA are accepted");
    let no_client_certificate = connect(&|settings| {
        settings.amqp.cert_file = None;
        settings.amqp.key_file = None;
    })
    .await
    .expect_err("the broker asks for a client certificate");
    assert!(
        no_client_certificate.starts_with("rabbitmq"),
        "{no_client_certificate}"
    );
    let other = TestCa::new();
    let untrusted = connect(&|settings| settings.amqp.ca_file = Some(other.ca_file()))
        .await
        .expect_err("a broker certificate of an untrusted CA is refused");
    assert!(
        untrusted.to_lowercase().contains("certificate"),
        "{untrusted}"
    );
    let mut settings = test_settings();
    with_tls(&mut settings);
    settings.amqp.key_file = Some(ca.dir.path().join("missing.key"));
    let error = Sprayer::build_roles(settings, &sprayer::Role::ALL)
        .await
        .err()
        .expect("an unreadable amqp.key_file stops the start")
        .to_string();
    assert!(error.contains("cannot read amqp.key_file"), "{error}");

    // With both: jobs, retries' topology and the status feed all go over TLS.
    let app = TestApp::spawn_with(with_tls).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    register_group(&app, &receiver, &secret, USERS, "tls").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "tls" }, "content": { "body": "over amqps" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", USERS as u64, WAIT)
        .await;
    assert_eq!(summary["total"], USERS, "{summary}");
    let hits = receiver.hits();
    assert_eq!(
        hits.iter().filter(|hit| hit.message_id() == id).count(),
        USERS,
        "one webhook per member"
    );
    // Every connection the broker holds is TLS, with the client certificate shown.
    let listed = rabbit
        .ctl(&[
            "list_connections",
            "ssl",
            "peer_cert_subject",
            "--formatter",
            "json",
        ])
        .await;
    let connections: Vec<Value> = serde_json::from_str(&listed).expect("connection list JSON");
    assert!(connections.len() >= 3, "publisher and consumers: {listed}");
    assert!(
        connections
            .iter()
            .all(|connection| connection["ssl"] == true
                && connection["peer_cert_subject"]
                    .as_str()
                    .is_some_and(|subject| subject.contains("CN=sprayer"))),
        "{listed}"
    );
    eprintln!(
        "rabbitmq tls figures: a group of {USERS} delivered over amqps:// with a client certificate ({} connections); refused: without a client certificate ({no_client_certificate}), trusting another CA ({untrusted}), a missing key file ({error})",
        connections.len()
    );
}
