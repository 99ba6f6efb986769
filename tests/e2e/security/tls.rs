//! TLS: on every listener, to Redis with a private CA and with a client certificate, and to
//! RabbitMQ with mutual TLS.

use std::time::Duration;

use serde_json::{Value, json};
use sprayer::Sprayer;
use sprayer_shared::config::TlsSettings;

use crate::support::app::TestApp;
use crate::support::certificates::TestCa;
use crate::support::owned::rabbitmq::OwnedRabbit;
use crate::support::owned::redis::OwnedRedis;
use crate::support::receiver::{Receiver, register_group, webhook_secret};
use crate::support::stack::{serve_ws, test_settings};
use crate::support::ws_client::WsClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_serves_tls_when_configured() {
    let ca = TestCa::new();
    let tls = TlsSettings {
        cert: ca.dir.path().join("server.pem"),
        key: ca.dir.path().join("server.key"),
    };
    let app = TestApp::spawn_with(|settings| {
        crate::support::stack::serve_ws(settings);
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
