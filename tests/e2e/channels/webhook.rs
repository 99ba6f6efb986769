//! Messages reach every recipient's webhook exactly once, signed, and the feedback says so.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sprayer_shared::amqp::{JOB_BATCH_KIND, Publisher, Topology};
use sprayer_shared::model::{
    AppId, Channel, Content, Job, JobTarget, MessageId, Priority, UserId, now_ms,
};

use crate::support::app::TestApp;
use crate::support::receiver::{Receiver, register_users, signature_valid, webhook_secret};
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;

/// Checks that each of `users` got exactly one signed request for `message`.
fn assert_exactly_once(receiver: &Receiver, secret: &str, users: &[String], message: &str) {
    let hits = receiver.hits();
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for hit in &hits {
        *per_user.entry(hit.path.as_str()).or_default() += 1;
        assert!(signature_valid(secret, hit), "bad signature on {}", hit.id);
        let body: serde_json::Value = serde_json::from_slice(&hit.body).expect("json body");
        assert_eq!(body["data"]["message_id"], message);
        assert_eq!(body["data"]["user"], hit.path.as_str());
        assert_eq!(hit.id, format!("{message}:http:{}:d1", hit.path));
    }
    for user in users {
        assert_eq!(
            per_user.get(user.as_str()),
            Some(&1),
            "{user} got {:?}",
            per_user.get(user.as_str())
        );
    }
    assert_eq!(hits.len(), users.len(), "no request for anyone else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_1000_gets_one_signed_webhook_each_and_the_feedback_counts_them() {
    // A low inline threshold makes the group go through shard jobs, as large groups do.
    let app = TestApp::spawn_with(|settings| settings.dispatcher.inline_threshold = 100).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users = register_users(&app, &receiver, &secret, 1_000).await;
    futures::future::join_all(users.iter().map(|user| app.add_member("everyone", user))).await;

    let started = Instant::now();
    let id = app
        .send_ok(&json!({ "to": { "group": "everyone" }, "content": { "title": "Hello", "body": "all of you" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", 1_000, Duration::from_secs(60))
        .await;
    println!(
        "1,000-member group: POST to 1,000 delivered in feedback in {:?}",
        started.elapsed()
    );
    assert_eq!(summary["total"], 1_000, "{summary}");
    assert_eq!(summary["to"], json!({ "group": "everyone" }));
    // A moment more for any duplicate to show up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&receiver, &secret, &users, &id);

    let deliveries = app.all_deliveries(&id, 128).await;
    assert_eq!(deliveries.len(), 1_000);
    assert!(
        deliveries
            .iter()
            .all(|delivery| delivery["status"] == "delivered" && delivery["attempts"] == 1)
    );
    let mut ids: Vec<&str> = deliveries
        .iter()
        .map(|delivery| delivery["id"].as_str().expect("id"))
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1_000, "pages neither overlap nor skip");
}

/// `POST /v1/groups/{group}/members`; the 200 answer.
async fn add_members(app: &TestApp, group: &str, users: &[&str]) -> serde_json::Value {
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/groups/{group}/members"),
        )
        .json(&json!({ "users": users }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_filled_in_bulk_gets_one_webhook_each() {
    let app = TestApp::spawn_with(|settings| settings.dispatcher.inline_threshold = 100).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    // u0..u299 have a webhook before they join; u300..u399 register theirs after.
    let users: Vec<String> = (0..400).map(|index| format!("u{index}")).collect();
    let early = register_users(&app, &receiver, &secret, 300).await;
    assert_eq!(early, users[..300]);
    let first: Vec<&str> = users[..250].iter().map(String::as_str).collect();
    assert_eq!(
        add_members(&app, "bulk", &first).await,
        json!({ "added": 250, "present": 0 })
    );
    // Overlapping the first batch, with a repeat and a user who registers nothing.
    let mut second: Vec<&str> = users[200..400].iter().map(String::as_str).collect();
    second.extend(["u399", "nobody"]);
    assert_eq!(
        add_members(&app, "bulk", &second).await,
        json!({ "added": 151, "present": 50 })
    );
    for user in &users[300..] {
        app.put_webhook(user, "d1", &receiver.url(user), &secret)
            .await;
    }

    let id = app
        .send_ok(&json!({ "to": { "group": "bulk" }, "content": { "body": "joined in bulk" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", 400, Duration::from_secs(60))
        .await;
    assert_eq!(summary["total"], 400, "{summary}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&receiver, &secret, &users, &id);

    // The listing counts every member once, "nobody" included.
    let (status, page) = app.get("/v1/groups/bulk/members?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["items"].as_array().expect("items").len(),
        401,
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_imported_in_bulk_reach_their_groups_once_each() {
    let app = TestApp::spawn_with(|settings| {
        settings.dispatcher.inline_threshold = 100;
        serve_ws(settings);
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users: Vec<String> = (0..300).map(|index| format!("u{index}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    // u0..u149 join before they have an endpoint, u150..u299 after theirs are imported.
    add_members(&app, "imported", &names[..150]).await;
    let webhooks: Vec<serde_json::Value> = users
        .iter()
        .map(|user| TestApp::webhook_entry(user, &receiver, &secret))
        .collect();
    assert_eq!(
        app.import_endpoints(&webhooks).await,
        json!({ "created": 300, "replaced": 0 })
    );
    add_members(&app, "imported", &names[150..]).await;
    // Importing some again replaces them; a new channel of a user is created beside.
    let mut again = webhooks[..50].to_vec();
    again.push(json!({ "user": "u0", "channel": "ws", "device": "inbox", "address": {} }));
    assert_eq!(
        app.import_endpoints(&again).await,
        json!({ "created": 1, "replaced": 50 })
    );
    let (status, listed) = app.get("/v1/users/u0/endpoints").await;
    assert_eq!(status, 200, "{listed}");
    let listed: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["channel"].as_str().unwrap_or_default(),
                item["device"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(listed, [("http", "d1"), ("ws", "inbox")]);

    let id = app
        .send_ok(&json!({ "to": { "group": "imported" }, "channels": ["http"], "content": { "body": "imported" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", 300, Duration::from_secs(60))
        .await;
    assert_eq!(summary["total"], 300, "{summary}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&receiver, &secret, &users, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_list_of_users_gets_one_webhook_each() {
    let app = TestApp::spawn_with(|settings| settings.dispatcher.inline_threshold = 100).await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users = register_users(&app, &receiver, &secret, 250).await;
    // One user without any endpoint is in the list too: nothing is sent to them.
    let mut to = users.clone();
    to.push("nobody".into());
    let id = app
        .send_ok(&json!({ "to": { "users": to }, "content": { "body": "list" } }))
        .await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", 250, Duration::from_secs(30))
        .await;
    assert_eq!(summary["total"], 250, "{summary}");
    assert_eq!(summary["to"], json!({ "users": 251 }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&receiver, &secret, &users, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_user_gets_the_message_on_every_device() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("alice", "laptop", &receiver.url("alice-laptop"), &secret)
        .await;
    app.put_webhook("alice", "phone", &receiver.url("alice-phone"), &secret)
        .await;
    let id = app
        .send_ok(&json!({ "to": { "user": "alice" }, "content": { "title": "t", "data": { "k": 1 } }, "overrides": { "http": { "title": "T" } } }))
        .await;
    app.wait_for_status(&id, "http", "delivered", 2, Duration::from_secs(20))
        .await;
    for path in ["alice-laptop", "alice-phone"] {
        let hits = receiver.hits_for(path);
        assert_eq!(hits.len(), 1, "{path}");
        assert!(signature_valid(&secret, &hits[0]));
        let body: serde_json::Value = serde_json::from_slice(&hits[0].body).expect("json");
        assert_eq!(body["type"], "message");
        assert_eq!(
            body["data"]["title"], "T",
            "the http override replaces the title"
        );
        assert_eq!(body["data"]["data"], json!({ "k": 1 }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_idempotency_key_gives_the_same_message_and_one_delivery() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("bob", "d1", &receiver.url("bob"), &secret)
        .await;
    let body = json!({ "to": { "user": "bob" }, "content": { "body": "once" } });
    let (first_status, first) = app.send(&body, Some("order-42")).await;
    let (second_status, second) = app.send(&body, Some("order-42")).await;
    assert_eq!(first_status, 202);
    assert_eq!(second_status, 202);
    assert_eq!(first["id"], second["id"]);
    let id = first["id"].as_str().expect("id");
    app.wait_for_status(id, "http", "delivered", 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits_for("bob").len(), 1);

    // The same key with another body is refused, naming the header.
    let (status, problem) = app
        .send(
            &json!({ "to": { "user": "bob" }, "content": { "body": "other" } }),
            Some("order-42"),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "Idempotency-Key");
    // A new key is a new message.
    let (_, third) = app.send(&body, Some("order-43")).await;
    assert_ne!(third["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_jobs_in_one_broker_message_reaches_every_user_once() {
    // The accepter gathers the jobs of concurrent requests into one broker message; this
    // publishes such a batch itself, so that the dispatcher's side is shown on its own.
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users = register_users(&app, &receiver, &secret, 5).await;
    let app_id = AppId::parse(app.app.clone()).expect("valid");
    let jobs: Vec<Job> = users
        .iter()
        .map(|user| Job {
            message_id: MessageId::generate(),
            app: app_id.clone(),
            channel: Channel::Http,
            target: JobTarget::User(UserId::parse(user.clone()).expect("valid")),
            content: Content {
                title: None,
                body: Some(format!("batched for {user}")),
                data: None,
            },
            overrides: None,
            priority: Priority::Normal,
            created_at: now_ms(),
            expires_at: now_ms() + 60_000,
            personal: None,
        })
        .collect();
    let encoded: Vec<Vec<u8>> = jobs
        .iter()
        .map(|job| serde_json::to_vec(job).expect("json"))
        .collect();
    let publisher = Publisher::new(&app.settings.amqp.url, Topology::new(&app.settings.amqp));
    let batch = publisher
        .topology()
        .job_batch_message(Channel::Http, &encoded);
    assert_eq!(batch.kind, Some(JOB_BATCH_KIND));
    publisher.publish(batch).await.expect("confirmed");
    wait_until(Duration::from_secs(20), || async {
        (receiver.hits().len() >= users.len()).then_some(())
    })
    .await
    .expect("every job of the batch delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), users.len(), "one request each");
    for (user, job) in users.iter().zip(&jobs) {
        let hits = receiver.hits_for(user);
        assert_eq!(hits.len(), 1, "{user}");
        assert_eq!(hits[0].id, format!("{}:http:{user}:d1", job.message_id));
        let body: serde_json::Value = serde_json::from_slice(&hits[0].body).expect("json");
        assert_eq!(body["data"]["body"], format!("batched for {user}"));
    }
}
