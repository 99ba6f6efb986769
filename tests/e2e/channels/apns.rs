//! The `apns` channel against an HTTP/2 TLS peer that verifies the provider token: content and
//! headers as APNs expects them, dead tokens pruned, throttling and outages retried, apps apart.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use crate::support::app::TestApp;
use crate::support::certificates::{TestCa, p256_key_pair};
use crate::support::isolation::{AppSide, TwoApps, assert_apps_do_not_cross};
use crate::support::peers::apns::ApnsPeer;
use crate::support::wait::wait_until;

const TOPIC: &str = "com.example.shop";

fn token(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:0>width$x}", width = 64 - prefix.len())
}

async fn apns_app(ca: &TestCa) -> TestApp {
    let ca_file = ca.ca_file();
    TestApp::spawn_with(move |settings| {
        settings.accepter.channels = vec![Channel::Http, Channel::Apns];
        settings.push.extra_ca_file = Some(ca_file);
    })
    .await
}

fn provider(peer: &ApnsPeer, team_id: &str, key_id: &str, private_key: &str) -> Value {
    json!({ "team_id": team_id, "key_id": key_id, "private_key": private_key, "topic": TOPIC, "base_url": peer.base_url() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_reaches_apns_with_signed_tokens_and_dead_tokens_are_pruned() {
    let ca = TestCa::new();
    let (private_key, public_key) = p256_key_pair(ca.dir.path(), "apns");
    let peer = ApnsPeer::start(&ca, &public_key, "TEAM123456", "KEY1234567", TOPIC);
    let app = apns_app(&ca).await;
    app.set_provider(
        &app.app,
        "apns",
        &provider(&peer, "TEAM123456", "KEY1234567", &private_key),
    )
    .await;

    let mut devices: Vec<(String, String)> = (0..30)
        .map(|index| (format!("phone{index}"), token("ab", index)))
        .collect();
    for (user, prefix) in [
        ("badtoken", "bad0"),
        ("gone", "dead"),
        ("throttled", "ba5e"),
        ("outage", "fa11"),
    ] {
        devices.push((user.to_owned(), token(prefix, 1)));
    }
    for (user, device_token) in &devices {
        let status = app
            .put_endpoint_as(
                &app.key,
                user,
                "apns",
                "iphone",
                &json!({ "token": device_token }),
            )
            .await;
        assert_eq!(status, 201);
        app.add_member("owners", user).await;
    }
    let id = app
        .send_ok(&json!({
            "to": { "group": "owners" },
            "channels": ["apns"],
            "priority": "high",
            "ttl": 600,
            "content": { "title": "Order shipped", "body": "It is on its way", "data": { "order": 42 } },
            "overrides": { "apns": { "aps": { "sound": "default" }, "collapse_id": "order-42" } },
        }))
        .await;
    let summary = app
        .wait_for_status(&id, "apns", "sent", 32, Duration::from_secs(30))
        .await;
    assert_eq!(summary["summary"]["apns"]["unregistered"], 2, "{summary}");
    // Each carries APNs's own reason as its code beside the text.
    let (_, gone) = app
        .get(&format!("/v1/messages/{id}/deliveries?status=unregistered"))
        .await;
    let mut codes: Vec<(String, String)> = gone["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["user"].as_str().unwrap_or("").to_owned(),
                item["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("badtoken".to_owned(), "BadDeviceToken".to_owned()),
            ("gone".to_owned(), "Unregistered".to_owned())
        ],
        "{gone}"
    );

    let requests = peer.requests();
    let mut per_token: HashMap<String, Vec<&Value>> = HashMap::new();
    for request in &requests {
        per_token
            .entry(request["token"].as_str().expect("token").to_owned())
            .or_default()
            .push(request);
    }
    let message = app.summary(&id).await.expect("summary");
    let expires =
        humantime::parse_rfc3339(message["expires_at"].as_str().expect("expires")).expect("time");
    let expires = expires
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    for (_, device_token) in devices.iter().take(30) {
        let seen = &per_token[device_token];
        assert_eq!(seen.len(), 1, "one request for {device_token}");
        let request = seen[0];
        assert_eq!(request["status"], 200, "{request}");
        assert_eq!(request["topic"], TOPIC);
        assert_eq!(request["push_type"], "alert");
        assert_eq!(request["priority"], "10");
        assert_eq!(request["collapse_id"], "order-42");
        assert_eq!(request["expiration"], expires.to_string());
        assert!(
            uuid_like(request["apns_id"].as_str().expect("apns-id")),
            "{request}"
        );
        assert_eq!(
            request["body"],
            json!({ "order": 42, "aps": { "alert": { "title": "Order shipped", "body": "It is on its way" }, "sound": "default" } })
        );
    }
    for prefix in ["ba5e", "fa11"] {
        let seen = &per_token[&token(prefix, 1)];
        assert_eq!(seen.len(), 2, "{prefix}: one failure, then success");
        assert_eq!(
            seen[0]["apns_id"], seen[1]["apns_id"],
            "apns-id is stable across retries"
        );
        assert_eq!(seen[1]["status"], 200);
    }
    let sessions: HashSet<i64> = requests
        .iter()
        .filter_map(|request| request["session"].as_i64())
        .collect();
    assert!(
        sessions.len() <= 4,
        "{} connections for {} requests: streams share connections",
        sessions.len(),
        requests.len()
    );

    for user in ["badtoken", "gone"] {
        let pruned = wait_until(Duration::from_secs(5), || async {
            (app.get(&format!("/v1/users/{user}/endpoints")).await.0 == 404).then_some(())
        })
        .await;
        assert!(pruned.is_some(), "{user}'s token was removed");
    }
    let again = app.send_ok(&json!({ "to": { "group": "owners" }, "channels": ["apns"], "content": { "data": { "refresh": true } } })).await;
    let summary = app
        .wait_for_status(&again, "apns", "sent", 32, Duration::from_secs(30))
        .await;
    assert_eq!(
        summary["total"], 32,
        "pruned tokens are off the group's APNs list: {summary}"
    );
    let silent = peer
        .requests()
        .into_iter()
        .rev()
        .find(|request| request["token"] == token("ab", 0))
        .expect("request");
    assert_eq!(
        (silent["push_type"].as_str(), silent["priority"].as_str()),
        (Some("background"), Some("5"))
    );
    assert_eq!(silent["body"]["aps"], json!({ "content-available": 1 }));
}

fn uuid_like(text: &str) -> bool {
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_with_their_own_apns_keys_never_cross_and_oversize_payloads_are_refused() {
    let ca = TestCa::new();
    let (first_key, first_public) = p256_key_pair(ca.dir.path(), "first");
    let (second_key, second_public) = p256_key_pair(ca.dir.path(), "second");
    let first_peer = ApnsPeer::start(&ca, &first_public, "TEAMAAAAAA", "KEYAAAAAAA", TOPIC);
    let second_peer = ApnsPeer::start(&ca, &second_public, "TEAMBBBBBB", "KEYBBBBBBB", TOPIC);
    let app = apns_app(&ca).await;
    let device = json!({ "token": token("cd", 7) });
    let two = TwoApps {
        channel: "apns",
        device: "iphone",
        content: json!({ "body": "hi" }),
        sides: [
            AppSide {
                provider: Some(provider(
                    &first_peer,
                    "TEAMAAAAAA",
                    "KEYAAAAAAA",
                    &first_key,
                )),
                address: device.clone(),
            },
            AppSide {
                provider: Some(provider(
                    &second_peer,
                    "TEAMBBBBBB",
                    "KEYBBBBBBB",
                    &second_key,
                )),
                address: device,
            },
        ],
    };
    // Each peer checks the provider token against its app's key: 200 means signed with it.
    let peers = [&first_peer, &second_peer];
    assert_apps_do_not_cross(
        &app,
        two,
        |side| std::future::ready(peers[side].requests()),
        |_, request| request["status"] == 200,
    )
    .await;

    let (status, problem) = app
        .send(&json!({ "to": { "user": "same" }, "channels": ["apns"], "content": { "body": "x".repeat(5000) } }), None)
        .await;
    assert_eq!(
        (status.as_u16(), problem["field"].as_str()),
        (422, Some("/content")),
        "{problem}"
    );
    let bad_token = app
        .put_endpoint_as(
            &app.key,
            "same",
            "apns",
            "ipad",
            &json!({ "token": "not-hex" }),
        )
        .await;
    assert_eq!(bad_token, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_authentication_presents_the_apps_push_certificate() {
    let ca = TestCa::new();
    let (_, public_key) = p256_key_pair(ca.dir.path(), "unused");
    let peer =
        ApnsPeer::start_with_client_ca(&ca, &public_key, "TEAM123456", "KEY1234567", TOPIC, true);
    let app = apns_app(&ca).await;
    let certificate = ca.client_identity(TOPIC);
    app.set_provider(
        &app.app,
        "apns",
        &json!({ "certificate": certificate, "topic": TOPIC, "base_url": peer.base_url() }),
    )
    .await;
    assert_eq!(
        app.put_endpoint_as(
            &app.key,
            "u",
            "apns",
            "iphone",
            &json!({ "token": token("ef", 1) })
        )
        .await,
        201
    );
    let id = app.send_ok(&json!({ "to": { "user": "u" }, "channels": ["apns"], "content": { "title": "t", "body": "b" } })).await;
    app.wait_for_status(&id, "apns", "sent", 1, Duration::from_secs(20))
        .await;
    let request = &peer.requests()[0];
    assert_eq!(request["client_certificate"], TOPIC, "{request}");
    assert!(
        request["authorization"].is_null(),
        "no provider token with a certificate"
    );

    let response = app
        .http
        .put(format!(
            "{}/admin/v1/apps/{}/providers/apns",
            app.admin, app.app
        ))
        .bearer_auth(app.admin_token())
        .json(&json!({ "certificate": "not a pem", "topic": TOPIC }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);
}
