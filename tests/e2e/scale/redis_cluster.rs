//! A Redis Cluster: Sprayer on three masters of the test's own (`redis.cluster = true`, every
//! node in `redis.url`). A pipeline across slots is split and answers in order. The core flows
//! work as on one server: endpoints and groups through the API, a group large enough to be split
//! into shard jobs and a list, each delivered exactly once with exact feedback, idempotency, the
//! rate limit; the keys spread over every node. One node stopped in the middle of a group send
//! and started again a few seconds later costs a pause and loses nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sprayer::Role;
use sprayer_shared::Settings;
use sprayer_shared::config::RedisSettings;

use crate::support::app::TestApp;
use crate::support::owned::redis::OwnedRedisCluster;
use crate::support::receiver::{
    Behavior, Hit, Receiver, register_group, signature_valid, webhook_secret,
};
use crate::support::wait::wait_until;

/// Sprayer on `cluster`: cluster mode, every node listed.
pub(super) fn on_cluster(settings: &mut Settings, cluster: &OwnedRedisCluster) {
    settings.redis.url = cluster.url();
    settings.redis.cluster = true;
}

/// The requests for message `id`: distinct users reached, and the requests beyond them.
fn reached(hits: &[Hit], id: &str) -> (HashSet<String>, usize) {
    let of_message: Vec<&Hit> = hits.iter().filter(|hit| hit.message_id() == id).collect();
    let users: HashSet<String> = of_message.iter().map(|hit| hit.path.clone()).collect();
    let duplicates = of_message.len() - users.len();
    (users, duplicates)
}

/// Every member of `group`, read through the API page by page.
async fn members(app: &TestApp, group: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/v1/groups/{group}/members?limit=200");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
    panic!("the member pages of {group} do not end");
}

/// Checks that `id` reached exactly `expected`, once each, signed, with one `delivered` row
/// per user after one attempt.
pub(super) async fn assert_delivered_once(
    app: &TestApp,
    receiver: &Receiver,
    secret: &str,
    id: &str,
    expected: &HashSet<String>,
) {
    let summary = app
        .wait_for_status(
            id,
            "http",
            "delivered",
            expected.len() as u64,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(
        summary["total"].as_u64(),
        Some(expected.len() as u64),
        "{summary}"
    );
    let hits = receiver.hits();
    let (users, duplicates) = reached(&hits, id);
    assert_eq!(&users, expected, "the users reached");
    assert_eq!(duplicates, 0, "one request per user");
    for hit in hits.iter().filter(|hit| hit.message_id() == id) {
        assert!(signature_valid(secret, hit), "signature of {}", hit.id);
        let body: Value = serde_json::from_slice(&hit.body).expect("JSON body");
        assert_eq!(body["data"]["user"].as_str(), Some(hit.path.as_str()));
    }
    let deliveries = app.all_deliveries(id, 500).await;
    assert_eq!(deliveries.len(), expected.len());
    for delivery in &deliveries {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
}

#[tokio::test]
async fn on_a_redis_cluster_a_pipeline_across_slots_is_split_and_answers_in_order() {
    const KEYS: i64 = 300;
    let cluster = OwnedRedisCluster::start(3).await;
    let settings = RedisSettings {
        url: cluster.url(),
        cluster: true,
        ..RedisSettings::default()
    };
    let mut redis = sprayer_shared::redis::connect(&settings)
        .await
        .expect("connects to the cluster");
    assert!(redis.is_cluster());
    // Each key's SET (ignored) and INCR go to its slot's node in their order; the replies of
    // the INCRs come back in command order.
    let mut pipe = redis::pipe();
    for index in 0..KEYS {
        pipe.set(format!("k{index}"), index).ignore();
    }
    for index in 0..KEYS {
        pipe.incr(format!("k{index}"), 1);
    }
    let started = Instant::now();
    let values: Vec<i64> = pipe.query_async(&mut redis).await.expect("the pipeline");
    let took = started.elapsed();
    assert_eq!(values, (1..=KEYS).collect::<Vec<_>>());
    let keys = cluster.keys_per_node().await;
    assert!(
        keys.iter().all(|count| *count > 0),
        "keys per node {keys:?}"
    );
    // A transaction is not split: across slots the cluster refuses it, and nothing is written.
    let crossed = redis::pipe()
        .atomic()
        .set("tx-a", 1)
        .set("tx-b", 2)
        .query_async::<()>(&mut redis)
        .await;
    assert!(crossed.is_err(), "a transaction across slots is refused");
    let written: Option<i64> = redis::cmd("GET")
        .arg("tx-a")
        .query_async(&mut redis)
        .await
        .expect("GET");
    assert_eq!(written, None);
    eprintln!(
        "redis cluster figures: a pipeline of {} commands over {KEYS} keys (keys per node {keys:?}) answered in order in {took:?}",
        2 * KEYS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_three_node_redis_cluster_groups_lists_idempotency_and_rate_limits_work() {
    const MEMBERS: usize = 1_500;
    const LISTED: usize = 200;
    let cluster = OwnedRedisCluster::start(3).await;
    let app = TestApp::spawn_with(|settings| on_cluster(settings, &cluster)).await;
    assert!(
        app.settings.dispatcher.inline_threshold < MEMBERS,
        "the group is split into shard jobs"
    );
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let registering = Instant::now();
    let users = register_group(&app, &receiver, &secret, MEMBERS, "team").await;
    let registered_in = registering.elapsed();

    // What was written reads back: a user's endpoints, the group's members page by page.
    let (status, endpoints) = app.get("/v1/users/u7/endpoints").await;
    assert_eq!(status, StatusCode::OK, "{endpoints}");
    assert_eq!(endpoints["items"].as_array().map(Vec::len), Some(1));
    let listed: HashSet<String> = members(&app, "team").await.into_iter().collect();
    let everyone: HashSet<String> = users.iter().cloned().collect();
    assert_eq!(listed, everyone, "the member list");

    // A group larger than the inline threshold: split into shard jobs, each member once.
    let started = Instant::now();
    let group = app
        .send_ok(&json!({ "to": { "group": "team" }, "content": { "title": "Hi", "body": "all" } }))
        .await;
    assert_delivered_once(&app, &receiver, &secret, &group, &everyone).await;
    let group_took = started.elapsed();

    // A list.
    let list_users: Vec<&String> = users.iter().take(LISTED).collect();
    let list = app
        .send_ok(&json!({ "to": { "users": list_users }, "content": { "body": "some" } }))
        .await;
    let expected: HashSet<String> = list_users.iter().map(|user| (*user).clone()).collect();
    assert_delivered_once(&app, &receiver, &secret, &list, &expected).await;

    // A group filled in one request: its members span every node and each gets it once.
    let squad: Vec<&String> = users.iter().skip(LISTED).take(LISTED).collect();
    let response = app
        .request(Method::POST, "/v1/groups/squad/members")
        .json(&json!({ "users": squad }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    let added: Value = response.json().await.expect("JSON");
    assert_eq!(added, json!({ "added": LISTED, "present": 0 }));
    let expected: HashSet<String> = squad.iter().map(|user| (*user).clone()).collect();
    let listed: HashSet<String> = members(&app, "squad").await.into_iter().collect();
    assert_eq!(listed, expected, "the bulk-added members");
    let bulk = app
        .send_ok(&json!({ "to": { "group": "squad" }, "content": { "body": "squad" } }))
        .await;
    assert_delivered_once(&app, &receiver, &secret, &bulk, &expected).await;

    // Endpoints imported in one request, for users already in a group: every node's keys are
    // written and each user gets the group's message once.
    let newcomers: Vec<String> = (0..LISTED).map(|index| format!("n{index}")).collect();
    let response = app
        .request(Method::POST, "/v1/groups/newcomers/members")
        .json(&json!({ "users": newcomers }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    let entries: Vec<Value> = newcomers
        .iter()
        .map(|user| TestApp::webhook_entry(user, &receiver, &secret))
        .collect();
    assert_eq!(
        app.import_endpoints(&entries).await,
        json!({ "created": LISTED, "replaced": 0 })
    );
    let imported = app
        .send_ok(&json!({ "to": { "group": "newcomers" }, "content": { "body": "welcome" } }))
        .await;
    let expected: HashSet<String> = newcomers.iter().cloned().collect();
    assert_delivered_once(&app, &receiver, &secret, &imported, &expected).await;

    // Idempotency: the same key and body gives the same id, replayed; another body is refused.
    let body = json!({ "to": { "user": "u1" }, "content": { "body": "once" } });
    let (status, first) = app.send(&body, Some("order-42")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let replay = app
        .request(Method::POST, "/v1/messages")
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.expect("JSON");
    assert_eq!(replayed["id"], first["id"]);
    let other = json!({ "to": { "user": "u1" }, "content": { "body": "other" } });
    let (status, _) = app.send(&other, Some("order-42")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let once = first["id"].as_str().expect("id").to_owned();
    let only_u1: HashSet<String> = ["u1".to_owned()].into();
    assert_delivered_once(&app, &receiver, &secret, &once, &only_u1).await;

    // Leaving a group and losing one's last endpoint take a user out of the group's sends.
    let response = app
        .request(Method::DELETE, "/v1/groups/team/members/u0")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .request(Method::DELETE, "/v1/users/u1/endpoints/http/d1")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = app
        .send_ok(&json!({ "to": { "group": "team" }, "content": { "body": "again" } }))
        .await;
    let remaining: HashSet<String> = everyone
        .iter()
        .filter(|user| *user != "u0" && *user != "u1")
        .cloned()
        .collect();
    assert_delivered_once(&app, &receiver, &secret, &again, &remaining).await;

    // The keys are spread over every node.
    let keys = cluster.keys_per_node().await;
    assert!(
        keys.iter().all(|count| *count > 100),
        "keys per node {keys:?}"
    );

    // The rate limit (its state in `rl:{<app>}`) answers 429 above the app's rate.
    let limited = TestApp::spawn_roles(
        |settings| {
            on_cluster(settings, &cluster);
            settings.accepter.rate_per_second = 2;
            settings.accepter.rate_burst = 3;
        },
        &[Role::Accepter],
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let response = limited
            .request(Method::GET, "/v1/users/nobody/endpoints")
            .send()
            .await
            .expect("answers");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response.headers()["retry-after"]
                .to_str()
                .ok()
                .and_then(|text| text.parse::<u64>().ok());
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..3], [404, 404, 404], "the burst: {statuses:?}");
    assert!(statuses[3..].contains(&429), "above the rate: {statuses:?}");
    assert!(
        retry_after.is_some_and(|seconds| (1..=2).contains(&seconds)),
        "Retry-After {retry_after:?}"
    );
    eprintln!(
        "redis cluster figures: 3 nodes, keys per node {keys:?}; {MEMBERS} members registered in {registered_in:?}; a group of {MEMBERS} (split into shard jobs) delivered in {group_took:?}, a list of {LISTED}, an idempotent replay and a group of {} after two left: each once, feedback exact; rate limit: {statuses:?}",
        remaining.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_node_stopped_mid_send_and_started_again_loses_nothing() {
    const MEMBERS: usize = 1_500;
    /// How long the node stays down: longer than the cluster's node timeout (2 s), so the
    /// others mark it failed and the cluster refuses commands until it is back.
    const DOWN_FOR: Duration = Duration::from_secs(4);
    let mut cluster = OwnedRedisCluster::start(3).await;
    let app = TestApp::spawn_with(|settings| {
        on_cluster(settings, &cluster);
        // Few sends at once against a receiver that takes 40 ms each: the send lasts seconds.
        settings.dispatcher.concurrency = 16;
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users = register_group(&app, &receiver, &secret, MEMBERS, "crowd").await;
    for user in &users {
        receiver.plan(user, &[Behavior::Hang(Duration::from_millis(40))]);
    }
    let started = Instant::now();
    let id = app
        .send_ok(&json!({ "to": { "group": "crowd" }, "content": { "body": "everyone" } }))
        .await;
    let sending = wait_until(Duration::from_secs(60), || async {
        (receiver.hits().len() >= 150).then_some(())
    })
    .await;
    assert!(sending.is_some(), "the group send got going");
    let at_stop = receiver.hits().len();
    let stopping = Instant::now();
    cluster.nodes[1].stop().await;
    let stopped = Instant::now();
    // The others see it fail: the cluster refuses commands while it is away.
    let failed = wait_until(Duration::from_secs(15), || async {
        let state = cluster.nodes[0]
            .command::<String>(&redis::cmd("CLUSTER").arg("INFO").to_owned())
            .await
            .unwrap_or_default();
        state.contains("cluster_state:fail").then_some(())
    })
    .await;
    assert!(failed.is_some(), "the cluster noticed the node is down");
    tokio::time::sleep(DOWN_FOR.saturating_sub(stopped.elapsed())).await;
    let during = receiver.hits().len() - at_stop;
    cluster.nodes[1].up().await;
    let restarted = Instant::now();
    let healed = cluster
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("the cluster is healthy again within 60 s");

    let summary = app
        .wait_for_status(
            &id,
            "http",
            "delivered",
            MEMBERS as u64,
            Duration::from_secs(180),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(summary["total"].as_u64(), Some(MEMBERS as u64), "{summary}");
    assert_eq!(
        summary["summary"]["http"]["failed"].as_u64().unwrap_or(0),
        0,
        "{summary}"
    );
    let (reached_users, duplicates) = reached(&receiver.hits(), &id);
    let everyone: HashSet<String> = users.iter().cloned().collect();
    assert_eq!(reached_users, everyone, "every member got the message");

    // The stopped node kept its keys (append-only file and nodes.conf): a message sent now
    // reaches every member again.
    let after = app
        .send_ok(&json!({ "to": { "group": "crowd" }, "content": { "body": "after" } }))
        .await;
    app.wait_for_status(
        &after,
        "http",
        "delivered",
        MEMBERS as u64,
        Duration::from_secs(120),
    )
    .await;
    let (after_users, after_duplicates) = reached(&receiver.hits(), &after);
    assert_eq!(after_users, everyone, "every member got the message after");
    eprintln!(
        "redis cluster figures: node 2 of 3 stopped after {at_stop} of {MEMBERS} webhooks (stop took {:?}), down {:?} ({during} webhooks meanwhile), healthy {healed:?} after its restart; all {MEMBERS} delivered {took:?} after the send, {duplicates} duplicates, 0 lost; after the restart another {MEMBERS} delivered, {after_duplicates} duplicates",
        stopped.duration_since(stopping),
        restarted.duration_since(stopped),
    );
}
