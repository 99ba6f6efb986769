//! Escalation steps against real peers: a WebSocket client that acks, the APNs peer, the SMSC
//! simulator.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sprayer_shared::model::Channel;

use crate::support::app::TestApp;
use crate::support::certificates::{TestCa, p256_key_pair};
use crate::support::peers::apns::ApnsPeer;
use crate::support::peers::smsc::SmscPeer;
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::WsClient;

const TOPIC: &str = "com.example.shop";
const WAIT: Duration = Duration::from_secs(20);

fn token(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:0>width$x}", width = 64 - prefix.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_stops_the_chain_a_silent_user_gets_the_push_and_a_dead_token_the_sms() {
    let ca = TestCa::new();
    let (private_key, public_key) = p256_key_pair(ca.dir.path(), "apns");
    let apns = ApnsPeer::start(&ca, &public_key, "TEAM123456", "KEY1234567", TOPIC);
    let smsc = SmscPeer::start("shop", "secret", 100);
    let ca_file = ca.ca_file();
    let app = TestApp::spawn_with(move |settings| {
        serve_ws(settings);
        settings.accepter.channels = vec![Channel::Http, Channel::Ws, Channel::Apns, Channel::Sms];
        settings.push.extra_ca_file = Some(ca_file);
        settings.sms.response_timeout = Duration::from_secs(3);
    })
    .await;
    app.set_provider(
        &app.app,
        "apns",
        &json!({ "team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": private_key, "topic": TOPIC, "base_url": apns.base_url() }),
    )
    .await;
    app.set_provider(
        &app.app,
        "sms",
        &json!({ "host": "127.0.0.1", "port": smsc.peer.port, "system_id": "shop", "password": "secret", "source": "Shop" }),
    )
    .await;
    // acker acks on the socket; silent reads and never acks; gone has no socket and an APNs
    // token the provider calls gone.
    let users = [("acker", "ab", 1), ("silent", "ab", 2), ("gone", "dead", 3)];
    let mut sockets = Vec::new();
    for (user, prefix, index) in users {
        let ws_token = app.ws_token(user).await;
        let status = app
            .put_endpoint_as(
                &app.key,
                user,
                "apns",
                "iphone",
                &json!({ "token": token(prefix, index) }),
            )
            .await;
        assert_eq!(status, 201);
        let status = app
            .put_endpoint_as(
                &app.key,
                user,
                "sms",
                "mobile",
                &json!({ "msisdn": format!("+3161000000{index}") }),
            )
            .await;
        assert_eq!(status, 201);
        if user != "gone" {
            sockets.push((user, WsClient::open(&app.ws_url(&ws_token)).await));
        }
    }
    let sent = Instant::now();
    let id = app
        .send_ok(&json!({
            "to": { "users": ["acker", "silent", "gone"] },
            "content": { "title": "Order 42", "body": "Your order shipped" },
            "delivery": { "steps": [
                { "channels": ["ws"], "wait": "2s", "until": "acked" },
                { "channels": ["apns"], "wait": "3s", "until": "delivered" },
                { "channels": ["sms"] },
            ] },
        }))
        .await;
    for (user, socket) in &mut sockets {
        let message = socket
            .next_message(WAIT)
            .await
            .expect("the ws step reaches every socket");
        assert_eq!(message["id"], id.as_str(), "{user}: {message}");
        if *user == "acker" {
            socket.ack(std::slice::from_ref(&id)).await;
        }
    }
    // The push step begins when the ws step's wait ends, for the two who did not ack.
    let pushed = wait_until(WAIT, || async {
        let tokens: Vec<String> = apns
            .requests()
            .iter()
            .filter_map(|request| request["token"].as_str().map(str::to_owned))
            .collect();
        (tokens.len() >= 2).then_some(tokens)
    })
    .await
    .expect("the push step reaches silent and gone");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "no push before the wait ended"
    );
    assert!(
        pushed.contains(&token("ab", 2)) && pushed.contains(&token("dead", 3)),
        "{pushed:?}"
    );
    assert!(
        !pushed.contains(&token("ab", 1)),
        "the user who acked gets no push"
    );
    // gone's only push came back unregistered: the SMS goes at once, before the push step's
    // wait ends; silent's push was accepted (delivered), so silent gets none.
    let texts = wait_until(WAIT, || async {
        let submits = smsc.accepted_submits();
        (!submits.is_empty()).then_some(submits)
    })
    .await
    .expect("the sms step reaches gone");
    assert!(
        sent.elapsed() < Duration::from_secs(2 + 3),
        "the sms went before the push step's wait ended"
    );
    // Past every wait, still only gone's SMS.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let submits = smsc.accepted_submits();
    assert_eq!(submits.len(), 1, "one SMS, to gone only: {texts:?}");
    assert_eq!(submits[0]["destination_addr"], "31610000003");
    assert_eq!(apns.requests().len(), 2, "no push repeated");

    let chain = |user: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            wait_until(WAIT, || async {
                let (status, body) = app
                    .get(&format!("/v1/messages/{id}/recipients/{user}"))
                    .await;
                assert_eq!(status, 200, "{body}");
                let states: Vec<String> = body["steps"]
                    .as_array()
                    .expect("steps")
                    .iter()
                    .map(|step| step["state"].as_str().unwrap_or("").to_owned())
                    .collect();
                (!states.contains(&"pending".to_owned())).then_some(body)
            })
            .await
            .unwrap_or_else(|| panic!("{user}'s chain settles"))
        }
    };
    let acker = chain("acker").await;
    assert_eq!(states(&acker), ["ran", "cancelled", "cancelled"]);
    assert_eq!(acker["steps"][1]["reason"], "stopped: step 0 acked");
    assert_eq!(acker["steps"][0]["deliveries"][0]["status"], "delivered");
    let silent = chain("silent").await;
    assert_eq!(states(&silent), ["ran", "ran", "cancelled"]);
    assert_eq!(silent["steps"][2]["reason"], "stopped: step 1 delivered");
    let gone = chain("gone").await;
    assert_eq!(states(&gone), ["ran", "ran", "ran"]);
    assert_eq!(gone["steps"][1]["deliveries"][0]["status"], "unregistered");

    let (_, summary) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(summary["steps"][1]["cancelled"], 1, "{summary}");
    assert_eq!(summary["steps"][2]["cancelled"], 2, "{summary}");
}

fn states(chain: &Value) -> Vec<String> {
    chain["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step["state"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_without_an_endpoint_is_skipped_at_once_and_a_policy_names_the_steps() {
    let receiver = crate::support::receiver::Receiver::start().await;
    let app = TestApp::spawn_with(serve_ws).await;
    // Only a webhook: the ws step is skipped for this user at once, not after its wait.
    app.put_webhook(
        "solo",
        "d1",
        &receiver.url("solo"),
        &crate::support::receiver::webhook_secret(),
    )
    .await;
    let (status, body) = app
        .request(reqwest::Method::PUT, "/v1/policies/urgent")
        .json(&json!({ "steps": [
            { "channels": ["ws"], "wait": "1m", "until": "acked" },
            { "channels": ["http"] },
        ] }))
        .send()
        .await
        .map(|response| (response.status(), response))
        .expect("answers");
    assert_eq!(status, 200);
    let stored: Value = body.json().await.expect("json");
    assert_eq!(stored["steps"][0]["wait"], "1m");
    let sent = Instant::now();
    let id = app
        .send_ok(&json!({ "to": { "user": "solo" }, "content": { "body": "hi" }, "delivery": { "policy": "urgent" } }))
        .await;
    let hit = wait_until(WAIT, || async {
        receiver.hits_for("solo").into_iter().next()
    })
    .await
    .expect("the webhook step runs");
    assert_eq!(hit.message_id(), id);
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "skipped at once, not after the minute"
    );
    let chain = wait_until(WAIT, || async {
        let (_, body) = app.get(&format!("/v1/messages/{id}/recipients/solo")).await;
        (states(&body) == ["skipped", "ran"]).then_some(body)
    })
    .await
    .expect("the chain shows the skipped step");
    assert_eq!(chain["steps"][0]["reason"], "no endpoint on ws");
    // A policy is listed, read and deleted; a send naming a missing one is refused.
    let (status, list) = app.get("/v1/policies").await;
    assert_eq!(
        (status.as_u16(), list["items"][0]["name"].as_str()),
        (200, Some("urgent"))
    );
    let response = app
        .request(reqwest::Method::DELETE, "/v1/policies/urgent")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 204);
    let (status, problem) = app
        .send(&json!({ "to": { "user": "solo" }, "content": { "body": "hi" }, "delivery": { "policy": "urgent" } }), None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "/delivery/policy", "{problem}");
}
