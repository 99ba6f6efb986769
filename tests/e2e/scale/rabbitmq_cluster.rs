//! A RabbitMQ cluster: Sprayer on three nodes of the test's own, with quorum queues and every
//! node in `amqp.url`. The core flow delivers exactly once and every queue is a quorum queue
//! replicated on the three nodes; the node the services are connected to, stopped in the middle
//! of a group send and a steady stream of sends, costs at most a few 503s while they move to
//! another node, and nothing given a 202 is lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sprayer_shared::Settings;
use sprayer_shared::config::QueueType;
use sprayer_shared::model::Channel;

use crate::support::app::TestApp;
use crate::support::owned::rabbitmq::OwnedRabbitCluster;
use crate::support::receiver::{Hit, Receiver, register_group, signature_valid, webhook_secret};
use crate::support::wait::wait_until;

/// Sprayer on `cluster`: quorum queues, every node listed, the first node first.
fn on_cluster(settings: &mut Settings, cluster: &OwnedRabbitCluster) {
    settings.amqp.url = cluster.url();
    settings.amqp.queue_type = QueueType::Quorum;
}

/// Distinct (message, user) pairs among `hits`, and the requests beyond them.
fn distinct_and_duplicates(hits: &[&Hit]) -> (usize, usize) {
    let distinct: HashSet<(String, &str)> = hits
        .iter()
        .map(|hit| (hit.message_id(), hit.path.as_str()))
        .collect();
    (distinct.len(), hits.len() - distinct.len())
}

/// Sends `body`; the answer must come within 30 s.
async fn send_bounded(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    tokio::time::timeout(Duration::from_secs(30), app.send(body, None))
        .await
        .expect("POST /v1/messages answered within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_three_node_cluster_with_quorum_queues_a_group_message_reaches_each_member_once() {
    const MEMBERS: usize = 500;
    let cluster = OwnedRabbitCluster::start(3).await;
    let app = TestApp::spawn_with(|settings| on_cluster(settings, &cluster)).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users = register_group(&app, &receiver, &secret, MEMBERS, "team").await;
    let started = Instant::now();
    let id = app
        .send_ok(
            &json!({ "to": { "group": "team" }, "content": { "title": "Hi", "body": "cluster" } }),
        )
        .await;
    let summary = app
        .wait_for_status(
            &id,
            "http",
            "delivered",
            MEMBERS as u64,
            Duration::from_secs(120),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(summary["total"].as_u64(), Some(MEMBERS as u64), "{summary}");
    assert_eq!(
        summary["summary"]["http"]["failed"].as_u64().unwrap_or(0),
        0
    );

    // Exactly once: one signed request per member, each to its own endpoint.
    let hits = receiver.hits();
    let hit_refs: Vec<&Hit> = hits.iter().collect();
    let (distinct, duplicates) = distinct_and_duplicates(&hit_refs);
    assert_eq!(
        (distinct, duplicates),
        (MEMBERS, 0),
        "one request per member"
    );
    let reached: HashSet<&str> = hits.iter().map(|hit| hit.path.as_str()).collect();
    assert!(users.iter().all(|user| reached.contains(user.as_str())));
    for hit in &hits {
        assert!(signature_valid(&secret, hit), "signature of {}", hit.id);
        assert_eq!(hit.message_id(), id);
        let body: Value = serde_json::from_slice(&hit.body).expect("JSON body");
        assert_eq!(body["data"]["user"].as_str(), Some(hit.path.as_str()));
    }
    // Exact feedback: one delivered row per member, each after one attempt.
    let deliveries = app.all_deliveries(&id, 200).await;
    assert_eq!(deliveries.len(), MEMBERS);
    for delivery in &deliveries {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }

    // Every queue Sprayer declared is a quorum queue with a member on each node; the queues
    // that dead-letter do it at least once.
    let listed = cluster.nodes[1]
        .ctl(&[
            "list_queues",
            "name",
            "type",
            "members",
            "arguments",
            "--formatter",
            "json",
        ])
        .await;
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("queue list JSON");
    let prefix = &app.settings.amqp.prefix;
    let ours: Vec<&Value> = listed
        .iter()
        .filter(|queue| {
            queue["name"]
                .as_str()
                .is_some_and(|name| name.starts_with(prefix.as_str()))
        })
        .collect();
    // `status`, `status.dead`, `steps`, `steps.dead`, and per channel the jobs, dead and retry
    // queues.
    let expected = 4 + Channel::ALL.len() * (2 + app.settings.amqp.retry_tiers.len());
    assert_eq!(ours.len(), expected, "{ours:?}");
    for queue in &ours {
        assert_eq!(queue["type"], "quorum", "{queue}");
        let members = queue["members"].as_array().map_or(0, Vec::len);
        assert_eq!(members, 3, "{queue}");
        let name = queue["name"].as_str().unwrap_or_default();
        let arguments = queue["arguments"].to_string();
        if !name.ends_with(".dead") {
            assert!(arguments.contains("at-least-once"), "{queue}");
        }
    }
    eprintln!(
        "cluster figures: 3 nodes, {} quorum queues; a group of {MEMBERS} delivered in {took:?}: {distinct} delivered, 0 duplicates, feedback exact",
        ours.len()
    );
}

/// Client connections per node (by the node's AMQP port), as `nodes[1]` (never stopped) sees
/// the cluster.
async fn connections_per_node(cluster: &OwnedRabbitCluster) -> Vec<usize> {
    let listed = cluster.nodes[1]
        .ctl(&["list_connections", "port", "--formatter", "json"])
        .await;
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("connection list JSON");
    cluster
        .nodes
        .iter()
        .map(|node| {
            listed
                .iter()
                .filter(|connection| connection["port"] == node.port)
                .count()
        })
        .collect()
}

/// One answer of the steady sender.
struct Answer {
    at: Instant,
    status: StatusCode,
    id: Option<String>,
}

/// Sends to `user` every `every` until `done`, recording each answer.
async fn steady_send(
    app: &TestApp,
    user: &str,
    every: Duration,
    done: &AtomicBool,
    answers: &Mutex<Vec<Answer>>,
) {
    let mut sent = 0;
    while !done.load(Ordering::Relaxed) {
        sent += 1;
        let body =
            json!({ "to": { "user": user }, "content": { "body": format!("steady {sent}") } });
        let (status, answer) = send_bounded(app, &body).await;
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}: {answer}"
        );
        let id = answer["id"].as_str().map(str::to_owned);
        answers.lock().expect("lock").push(Answer {
            at: Instant::now(),
            status,
            id,
        });
        tokio::time::sleep(every).await;
    }
}

fn accepted_after(answers: &Mutex<Vec<Answer>>, after: Instant) -> Vec<String> {
    answers
        .lock()
        .expect("lock")
        .iter()
        .filter(|answer| answer.at > after)
        .filter_map(|answer| answer.id.clone())
        .collect()
}

/// What happened to the steady sends after `stopped`: answers by status, how many of the
/// accepted were delivered, the feedback of the last delivered one, and where the services are
/// connected now.
async fn after_the_stop(
    app: &TestApp,
    receiver: &Receiver,
    answers: &Mutex<Vec<Answer>>,
    stopped: Instant,
    cluster: &OwnedRabbitCluster,
) -> String {
    let by_status = answers
        .lock()
        .expect("lock")
        .iter()
        .filter(|answer| answer.at > stopped)
        .fold(HashMap::new(), |mut counts, answer| {
            *counts.entry(answer.status.as_u16()).or_insert(0) += 1;
            counts
        });
    let accepted = accepted_after(answers, stopped);
    let received: HashSet<String> = receiver.hits().iter().map(Hit::message_id).collect();
    let delivered: Vec<&String> = accepted
        .iter()
        .filter(|id| received.contains(*id))
        .collect();
    let feedback = match delivered.last() {
        Some(id) => app.summary(id).await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    format!(
        "answers after the stop by status {by_status:?}; {} accepted, {} of them delivered; feedback of the last delivered: {feedback}; webhooks received in all: {}; connections per node now: {:?}",
        accepted.len(),
        delivered.len(),
        receiver.hits().len(),
        connections_per_node(cluster).await
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_node_stopped_mid_send_costs_only_503s_while_reconnecting_and_loses_nothing() {
    const MEMBERS: usize = 3_000;
    /// The longest the services may take to move to another node.
    const RECONNECT_WITHIN: Duration = Duration::from_secs(20);
    let cluster = OwnedRabbitCluster::start(3).await;
    let app = TestApp::spawn_with(|settings| on_cluster(settings, &cluster)).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    register_group(&app, &receiver, &secret, MEMBERS, "crowd").await;
    app.put_webhook("steady", "d1", &receiver.url("steady"), &secret)
        .await;

    let done = AtomicBool::new(false);
    let answers = Mutex::new(Vec::new());
    // Four senders, so that some publishes are in flight when the node goes.
    let sender = async {
        futures::future::join_all(
            (0..4).map(|_| steady_send(&app, "steady", Duration::from_millis(50), &done, &answers)),
        )
        .await;
    };
    let scenario = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let group = app
            .send_ok(&json!({ "to": { "group": "crowd" }, "content": { "body": "everyone" } }))
            .await;
        let sending = wait_until(Duration::from_secs(90), || async {
            let hits = receiver.hits();
            (hits.iter().filter(|hit| hit.message_id() == group).count() >= 300).then_some(())
        })
        .await;
        assert!(sending.is_some(), "the group send got going");
        // The services connected to the first node listed: stop it (SIGTERM).
        let before = connections_per_node(&cluster).await;
        assert!(
            before[0] >= 3 && before[1..].iter().all(|count| *count == 0),
            "the services are connected to the first node: {before:?}"
        );
        let stop_began = Instant::now();
        let at_stop = receiver.hits().len();
        cluster.nodes[0].stop().await;
        let stopped = Instant::now();
        // Sends go on through another node: a message accepted after the stop is delivered
        // (a dispatcher consumes) and its feedback recorded (the feeder consumes), while the
        // first node is still down.
        let moved = wait_until(Duration::from_secs(60), || async {
            let received: HashSet<String> = receiver.hits().iter().map(Hit::message_id).collect();
            for id in accepted_after(&answers, stopped) {
                if received.contains(&id)
                    && let Some(summary) = app.summary(&id).await
                    && summary["summary"]["http"]["delivered"].as_u64() == Some(1)
                {
                    return Some(Instant::now());
                }
            }
            None
        })
        .await;
        let Some(moved) = moved else {
            panic!(
                "a message accepted with the first node down is delivered and fed back within 60 s: {}",
                after_the_stop(&app, &receiver, &answers, stopped, &cluster).await
            );
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.nodes[0].up().await;
        let rejoined = wait_until(Duration::from_secs(60), || async {
            (cluster.running_nodes(1).await.len() == 3).then_some(())
        })
        .await;
        assert!(rejoined.is_some(), "the first node is back in the cluster");
        tokio::time::sleep(Duration::from_secs(2)).await;
        done.store(true, Ordering::Relaxed);
        let after = connections_per_node(&cluster).await;
        assert!(
            after[0] == 0 && after[1..].iter().sum::<usize>() >= 3,
            "the services moved to the other nodes and stayed there: {after:?}"
        );
        let connections = (before, after);
        (group, stop_began, stopped, moved, at_stop, connections)
    };
    let ((), (group, stop_began, stopped, moved, at_stop, connections)) =
        tokio::join!(sender, scenario);
    let answers = answers.into_inner().expect("lock");

    // 503 only while the services reconnect, never before the stop nor long after it.
    let unavailable: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    for answer in &unavailable {
        assert!(
            answer.at >= stop_began && answer.at <= stopped + RECONNECT_WITHIN,
            "a 503 {:?} after the stop began (the node was down after {:?})",
            answer.at.duration_since(stop_began),
            stopped.duration_since(stop_began)
        );
    }
    let accepted: Vec<&String> = answers
        .iter()
        .filter_map(|answer| answer.id.as_ref())
        .collect();
    assert!(
        answers.iter().any(|answer| answer.at > stopped
            && answer.at < stopped + RECONNECT_WITHIN
            && answer.status == StatusCode::ACCEPTED),
        "sends are accepted again within {RECONNECT_WITHIN:?} of the stop"
    );

    // Every 202 is delivered, with exact feedback.
    let all_received = wait_until(Duration::from_secs(180), || async {
        let received: HashSet<String> = receiver.hits().iter().map(Hit::message_id).collect();
        accepted
            .iter()
            .all(|id| received.contains(*id))
            .then_some(())
    })
    .await;
    let received: HashSet<String> = receiver.hits().iter().map(Hit::message_id).collect();
    let lost: Vec<&&String> = accepted
        .iter()
        .filter(|id| !received.contains(**id))
        .collect();
    assert!(
        all_received.is_some() && lost.is_empty(),
        "accepted but never delivered: {lost:?}"
    );
    let summary = app
        .wait_for_status(
            &group,
            "http",
            "delivered",
            MEMBERS as u64,
            Duration::from_secs(180),
        )
        .await;
    assert_eq!(summary["total"].as_u64(), Some(MEMBERS as u64), "{summary}");
    assert_eq!(
        summary["summary"]["http"]["failed"].as_u64().unwrap_or(0),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &accepted {
        let left = deadline.saturating_duration_since(Instant::now());
        let summary = app
            .wait_for_status(id, "http", "delivered", 1, left.max(Duration::from_secs(1)))
            .await;
        assert_eq!(summary["total"].as_u64(), Some(1), "{summary}");
    }
    let hits = receiver.hits();
    let group_hits: Vec<&Hit> = hits
        .iter()
        .filter(|hit| hit.message_id() == group)
        .collect();
    let (group_distinct, group_duplicates) = distinct_and_duplicates(&group_hits);
    assert_eq!(
        group_distinct, MEMBERS,
        "every member got the group message"
    );
    let steady_hits: Vec<&Hit> = hits.iter().filter(|hit| hit.path == "steady").collect();
    let (steady_distinct, steady_duplicates) = distinct_and_duplicates(&steady_hits);
    // A request whose confirm was lost with the connection answers 503 although the broker may
    // have taken its job: at most one such delivery per 503, never more.
    let delivered_after_503 = steady_distinct - accepted.len();
    assert!(
        delivered_after_503 <= unavailable.len(),
        "{steady_distinct} steady messages delivered for {} accepted and {} answered 503",
        accepted.len(),
        unavailable.len()
    );

    let by_status = answers.iter().fold(HashMap::new(), |mut counts, answer| {
        *counts.entry(answer.status.as_u16()).or_insert(0) += 1;
        counts
    });
    let outage = unavailable
        .last()
        .map(|last| last.at.duration_since(stop_began));
    eprintln!(
        "cluster figures: first of 3 nodes stopped after {at_stop} webhooks (stop took {:?}; connections per node before and after: {:?} -> {:?}); steady sends: {} sent, {} accepted, {} answered 503 (last {outage:?} after the stop began; {delivered_after_503} of them taken by the broker all the same), {steady_distinct} delivered, {steady_duplicates} duplicates; a message accepted after the stop was delivered and fed back {:?} after it; group of {MEMBERS}: {group_distinct} delivered, {group_duplicates} duplicates; 0 lost",
        stopped.duration_since(stop_began),
        connections.0,
        connections.1,
        answers.len(),
        by_status.get(&202).copied().unwrap_or(0),
        by_status.get(&503).copied().unwrap_or(0),
        moved.duration_since(stopped),
    );
}
