//! Faults: a dispatcher killed mid-job, the broker stopped, Redis restarted, the MongoDB server
//! killed or frozen, webhook receivers that hang or reset. Nothing given a 202 is lost, and the
//! duplicates stay within the in-flight window. Each test owns the server it stops.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sprayer::Role;
use sprayer_shared::amqp::Topology;
use sprayer_shared::model::{AppId, Channel, GroupId};
use tokio::io::AsyncReadExt;

use crate::support::app::TestApp;
use crate::support::owned::mongo::OwnedMongo;
use crate::support::owned::process::SprayerProcess;
use crate::support::owned::rabbitmq::OwnedRabbit;
use crate::support::owned::redis::OwnedRedis;
use crate::support::receiver::{Hit, Receiver, webhook_secret};
use crate::support::stack::queue_depth_at;
use crate::support::wait::wait_until;

/// Registers users `<prefix>0..` with a webhook each (path = user) and puts them in `group`.
async fn register_group(
    app: &TestApp,
    receiver: &Receiver,
    prefix: &str,
    count: usize,
    group: &str,
) -> Vec<String> {
    let secret = webhook_secret();
    let users: Vec<String> = (0..count).map(|index| format!("{prefix}{index}")).collect();
    futures::stream::iter(users.iter())
        .for_each_concurrent(64, |user| {
            let secret = secret.clone();
            async move {
                app.put_webhook(user, "d1", &receiver.url(user), &secret)
                    .await;
                app.add_member(group, user).await;
            }
        })
        .await;
    users
}

/// Distinct (message, user) pairs received, and the requests beyond them.
fn distinct_and_duplicates(hits: &[Hit]) -> (usize, usize) {
    let distinct: HashSet<(String, &str)> = hits
        .iter()
        .map(|hit| (hit.message_id(), hit.path.as_str()))
        .collect();
    (distinct.len(), hits.len() - distinct.len())
}

/// The members of the group's largest shard that have `channel`.
async fn largest_shard(app: &TestApp, group: &str, channel: Channel) -> usize {
    let client = redis::Client::open(app.settings.redis.url.as_str()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let app_id = AppId::parse(app.app.clone()).expect("app id");
    let group = GroupId::parse(group.to_owned()).expect("group id");
    let mut pipe = redis::pipe();
    for shard in 0..app.settings.redis.group_shards {
        pipe.scard(sprayer_shared::redis::group_channel_key(
            &app_id, &group, channel, shard,
        ));
    }
    let sizes: Vec<usize> = pipe.query_async(&mut redis).await.expect("scard");
    sizes.into_iter().max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dispatcher_killed_mid_job_of_20000_loses_nothing_and_repeats_at_most_its_window() {
    let app = TestApp::spawn_roles(|_| {}, &[Role::Accepter, Role::Feeder]).await;
    let receiver = Receiver::start().await;
    let users = register_group(&app, &receiver, "m", 20_000, "big").await;
    let mut dispatcher = SprayerProcess::start(&app.settings, "dispatchers").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "big" }, "content": { "body": "all" } }))
        .await;
    let started = wait_until(Duration::from_secs(120), || async {
        (receiver.hits().len() >= 3_000).then_some(())
    })
    .await;
    assert!(started.is_some(), "deliveries started");
    dispatcher.kill().await;
    let at_kill = receiver.hits().len();
    let _dispatcher = SprayerProcess::start(&app.settings, "dispatchers").await;
    let summary = app
        .wait_for_status(&id, "http", "delivered", 20_000, Duration::from_secs(300))
        .await;
    assert_eq!(
        summary["summary"]["http"]["failed"].as_u64().unwrap_or(0),
        0
    );
    let hits = receiver.hits();
    let (distinct, duplicates) = distinct_and_duplicates(&hits);
    assert_eq!(
        distinct,
        users.len(),
        "every user got the message: none lost"
    );
    // A shard job is acked after all its sends: the jobs the killed process held (at most
    // `amqp.prefetch`) are sent again in full.
    let window =
        usize::from(app.settings.amqp.prefetch) * largest_shard(&app, "big", Channel::Http).await;
    assert!(
        duplicates <= window,
        "{duplicates} duplicates, more than the in-flight window of {window}"
    );
    eprintln!(
        "fault figures: dispatcher killed after {at_kill} of 20000 webhooks; 0 lost; {duplicates} sent twice (window {window})"
    );
}

/// Sends to `u1` every `every` until `until` passes; returns the accepted ids and counts by
/// status.
async fn steady_send(
    app: &TestApp,
    every: Duration,
    until: Instant,
    accepted: &mut Vec<String>,
    statuses: &mut HashMap<u16, usize>,
) {
    let mut sent = 0;
    while Instant::now() < until {
        sent += 1;
        let (status, body) = app
            .send(
                &json!({ "to": { "user": "u1" }, "content": { "body": format!("steady {sent}") } }),
                None,
            )
            .await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        if status == StatusCode::ACCEPTED {
            accepted.push(body["id"].as_str().expect("id").to_owned());
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until every message in `ids` shows one `delivered` webhook.
async fn all_delivered(app: &TestApp, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        app.wait_for_status(id, "http", "delivered", 1, left.max(Duration::from_secs(1)))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_broker_stopped_for_20s_the_api_answers_503_and_every_202_is_delivered() {
    let rabbit = OwnedRabbit::start().await;
    let app = TestApp::spawn_with(|settings| settings.amqp.url = rabbit.url()).await;
    let receiver = Receiver::start().await;
    app.put_webhook("u1", "d1", &receiver.url("u1"), &webhook_secret())
        .await;
    let mut accepted = Vec::new();
    let mut statuses = HashMap::new();
    let every = Duration::from_millis(100);
    steady_send(
        &app,
        every,
        Instant::now() + Duration::from_secs(3),
        &mut accepted,
        &mut statuses,
    )
    .await;
    let before = accepted.len();
    rabbit.stop().await;
    let stopped = Instant::now();
    let mut down = HashMap::new();
    steady_send(
        &app,
        every,
        stopped + Duration::from_secs(20),
        &mut accepted,
        &mut down,
    )
    .await;
    let during = accepted.len() - before;
    // `stop` returned once the node was wholly gone; `up` waits for a boot slot, then until it
    // serves AMQP again.
    let restarting = Instant::now();
    rabbit.up().await;
    let restarted = restarting.elapsed();
    // The services find the broker again by themselves: sends are accepted again.
    let back = wait_until(Duration::from_secs(60), || async {
        let (status, body) = app
            .send(
                &json!({ "to": { "user": "u1" }, "content": { "body": "back" } }),
                None,
            )
            .await;
        (status == StatusCode::ACCEPTED).then(|| body["id"].as_str().expect("id").to_owned())
    })
    .await
    .expect("the API accepts again once the broker is back");
    accepted.push(back);
    let mut after = HashMap::new();
    steady_send(
        &app,
        every,
        Instant::now() + Duration::from_secs(3),
        &mut accepted,
        &mut after,
    )
    .await;
    assert!(
        down.get(&503).copied().unwrap_or(0) > 0,
        "503 while the broker was down: {down:?}"
    );
    all_delivered(&app, &accepted, Duration::from_secs(120)).await;
    let received: HashSet<String> = receiver.hits().iter().map(Hit::message_id).collect();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !received.contains(*id))
        .collect();
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}");
    eprintln!(
        "fault figures: broker down 20 s, serving again {restarted:.1?} after its restart began; {} accepted ({before} before, {during} while it stopped, {} after), {} answered 503, 0 lost",
        accepted.len(),
        accepted.len() - before - during,
        down.get(&503).copied().unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_during_a_group_send_loses_nothing() {
    let mut redis = OwnedRedis::start().await;
    let app = TestApp::spawn_with(|settings| settings.redis.url = redis.url()).await;
    let receiver = Receiver::start().await;
    register_group(&app, &receiver, "r", 3_000, "g").await;
    let id = app
        .send_ok(&json!({ "to": { "group": "g" }, "content": { "body": "all" } }))
        .await;
    wait_until(Duration::from_secs(60), || async {
        (!receiver.hits().is_empty()).then_some(())
    })
    .await
    .expect("deliveries started");
    redis.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.up().await;
    // A message sent after the restart reaches the same members: the data survived.
    let after = app
        .send_ok(&json!({ "to": { "group": "g" }, "content": { "body": "after" } }))
        .await;
    for message in [&id, &after] {
        let summary = app
            .wait_for_status(
                message,
                "http",
                "delivered",
                3_000,
                Duration::from_secs(180),
            )
            .await;
        assert_eq!(
            summary["summary"]["http"]["failed"].as_u64().unwrap_or(0),
            0
        );
    }
    let (distinct, duplicates) = distinct_and_duplicates(&receiver.hits());
    assert_eq!(distinct, 6_000, "both messages reached all 3,000 members");
    eprintln!("fault figures: redis restarted mid-send; 0 lost; {duplicates} sent twice");
}

/// The MongoDB server goes away (killed, or frozen) for `outage` while messages are sent: the
/// deliveries go on, the status queue grows, and once it is back every status is recorded.
async fn mongodb_outage(frozen: bool, outage: Duration) {
    let mut mongo = OwnedMongo::start().await;
    let app = TestApp::spawn_with(|settings| {
        settings.mongodb.url = mongo.url();
        // The app's key is verified once before the outage and trusted through it.
        settings.accepter.key_cache_ttl = Duration::from_secs(600);
        // A small prefetch lets the queue show the backlog.
        settings.feeder.prefetch = 2;
        settings.feeder.batch_size = 20;
    })
    .await;
    let receiver = Receiver::start().await;
    register_group(&app, &receiver, "o", 20, "g").await;
    let status_queue = Topology::new(&app.settings.amqp).status_queue();
    if frozen {
        mongo.freeze(true);
    } else {
        mongo.kill().await;
    }
    let went = Instant::now();
    let mut ids = Vec::new();
    for index in 0..30 {
        let body = json!({ "to": { "group": "g" }, "content": { "body": format!("m{index}") } });
        ids.push(app.send_ok(&body).await);
    }
    let delivered = wait_until(Duration::from_secs(20), || async {
        (receiver.hits().len() >= 600).then_some(())
    })
    .await;
    assert!(
        delivered.is_some(),
        "deliveries go on without MongoDB: {} of 600",
        receiver.hits().len()
    );
    let backlog = wait_until(Duration::from_secs(10), || async {
        let depth = queue_depth_at(&app.settings.amqp.url, &status_queue).await;
        (depth > 0).then_some(depth)
    })
    .await
    .expect("status messages wait in their queue");
    tokio::time::sleep(outage.saturating_sub(went.elapsed())).await;
    if frozen {
        mongo.freeze(false);
    } else {
        mongo.up().await;
    }
    for id in &ids {
        let summary = app
            .wait_for_status(id, "http", "delivered", 20, Duration::from_secs(120))
            .await;
        assert_eq!(summary["total"].as_u64(), Some(20), "{summary}");
    }
    let (distinct, duplicates) = distinct_and_duplicates(&receiver.hits());
    assert_eq!(distinct, 600);
    assert_eq!(duplicates, 0, "MongoDB's outage sends nothing twice");
    eprintln!(
        "fault figures: MongoDB {} for {outage:?}; 600 deliveries went on; status backlog {backlog} messages; every status recorded",
        if frozen { "frozen" } else { "killed" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_mongodb_killed_for_30s_deliveries_go_on_and_every_status_is_recorded_after() {
    mongodb_outage(false, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_mongodb_frozen_for_30s_deliveries_go_on_and_every_status_is_recorded_after() {
    mongodb_outage(true, Duration::from_secs(30)).await;
}

/// A receiver that reads requests and never answers, counting them.
struct HangingReceiver {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl HangingReceiver {
    async fn start() -> HangingReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        if buffer[..read]
                            .windows(4)
                            .any(|window| window == b"\r\n\r\n")
                        {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        HangingReceiver { url, requests }
    }
}

/// A receiver that resets every connection as soon as it is accepted.
async fn resetting_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_and_resetting_receivers_time_out_retry_and_slow_no_one_else() {
    let per_host = 4;
    let app = TestApp::spawn_with(|settings| {
        settings.webhook.timeout = Duration::from_secs(2);
        settings.webhook.per_host_concurrency = per_host;
    })
    .await;
    let good = Receiver::start().await;
    let hanging = HangingReceiver::start().await;
    let resetting = resetting_receiver().await;
    let secret = webhook_secret();
    for index in 0..20 {
        let user = format!("good{index}");
        app.put_webhook(&user, "d1", &good.url(&user), &secret)
            .await;
        app.add_member("mixed", &user).await;
    }
    for index in 0..10 {
        let user = format!("hang{index}");
        app.put_webhook(&user, "d1", &format!("{}/{user}", hanging.url), &secret)
            .await;
        app.add_member("mixed", &user).await;
        let user = format!("reset{index}");
        app.put_webhook(&user, "d1", &format!("{resetting}/{user}"), &secret)
            .await;
        app.add_member("mixed", &user).await;
    }
    let sent = Instant::now();
    let id = app
        .send_ok(&json!({ "to": { "group": "mixed" }, "content": { "body": "x" } }))
        .await;
    // The good receiver's 20 are not held up behind the hanging host's timeouts: they are
    // delivered before the first of those (2 s) has run out.
    wait_until(Duration::from_secs(30), || async {
        (good.hits().len() >= 20).then_some(())
    })
    .await
    .expect("the good receiver got its 20");
    let good_took = sent.elapsed();
    assert!(
        good_took < Duration::from_millis(1_500),
        "the good receiver waited {good_took:?} behind the hanging one"
    );
    // Before the first timeout (2 s) frees a slot, the hanging host holds at most the per-host
    // limit of requests.
    tokio::time::sleep(
        (sent + Duration::from_millis(1_500)).saturating_duration_since(Instant::now()),
    )
    .await;
    let held = hanging.requests.load(Ordering::SeqCst);
    assert!(
        (1..=per_host).contains(&held),
        "{held} requests at once to one host (limit {per_host})"
    );
    // Every attempt at the others times out or is reset, is retried on the tiers (0.5, 1, 2 s),
    // and fails after the last.
    let summary = app
        .wait_for_status(&id, "http", "failed", 20, Duration::from_secs(120))
        .await;
    assert_eq!(summary["summary"]["http"]["delivered"], 20);
    let deliveries = app.all_deliveries(&id, 100).await;
    let attempts = app.settings.amqp.retry_tiers.len() as u64 + 1;
    for delivery in deliveries
        .iter()
        .filter(|delivery| delivery["status"] == "failed")
    {
        assert_eq!(delivery["attempts"].as_u64(), Some(attempts), "{delivery}");
        let error = delivery["error"].as_str().unwrap_or_default();
        let reason = format!("gave up after {attempts} attempts: ");
        assert!(
            ["timed out", "cannot connect", "request failed"]
                .iter()
                .any(|cause| error == format!("{reason}{cause}")),
            "{delivery}"
        );
    }
    assert_eq!(
        hanging.requests.load(Ordering::SeqCst),
        10 * attempts as usize,
        "each hanging delivery was tried once per tier"
    );
    eprintln!(
        "fault figures: good receiver done in {good_took:?} beside a hanging host (holding {held} of its {per_host} slots) and a resetting one; {} tries each, then failed",
        attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deliverer_rides_out_a_redis_restart_and_loses_no_websocket_message() {
    use crate::support::ws_client::WsClient;
    const WAIT: Duration = Duration::from_secs(30);
    let mut redis = OwnedRedis::start().await;
    let app = TestApp::spawn_with(|settings| {
        crate::support::stack::serve_ws(settings);
        settings.redis.url = redis.url();
    })
    .await;
    let token = app.ws_token("alice").await;
    let mut socket = WsClient::open(&app.ws_url(&token)).await;
    let before = app.send_ws("alice", "before").await;
    let got = socket
        .next_message(WAIT)
        .await
        .expect("the message arrives");
    assert_eq!(got["id"], before.as_str());
    socket.ack(std::slice::from_ref(&before)).await;
    app.wait_for_status(&before, "ws", "delivered", 1, WAIT)
        .await;

    redis.stop().await;
    // Sent while the inboxes are away: accepted (the job waits in its queue) or refused with
    // 503, never anything else.
    let (status, body) = app
        .send(
            &json!({ "to": { "user": "alice" }, "channels": ["ws"], "content": { "body": "during" } }),
            None,
        )
        .await;
    let during = match status {
        StatusCode::ACCEPTED => Some(body["id"].as_str().expect("id").to_owned()),
        StatusCode::SERVICE_UNAVAILABLE => None,
        other => panic!("{other}: {body}"),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.up().await;
    // The API's connection comes back by itself; until it has, calls that need Redis get 503.
    let token = wait_until(Duration::from_secs(30), || async {
        let response = app
            .request(reqwest::Method::POST, "/v1/users/alice/ws-token")
            .send()
            .await
            .ok()?;
        let minted: Value = response.json().await.ok()?;
        minted["token"].as_str().map(str::to_owned)
    })
    .await
    .expect("tokens are minted again");
    let after = app.send_ws("alice", "after").await;

    // The old socket may have been closed while Redis was away; a fresh one gets what is owed.
    drop(socket);
    let mut expected: HashSet<String> = during.iter().cloned().collect();
    expected.insert(after.clone());
    let mut fresh = WsClient::open(&app.ws_url(&token)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = HashSet::new();
    while !expected.is_subset(&received) && Instant::now() < deadline {
        if let Some(message) = fresh.next_message(Duration::from_secs(5)).await {
            let id = message["id"].as_str().expect("id").to_owned();
            // Acked without waiting for `acked`: waiting would read past the next message.
            assert!(
                fresh.ack_later(std::slice::from_ref(&id)).await,
                "the socket is open"
            );
            received.insert(id);
        }
    }
    assert!(
        expected.is_subset(&received),
        "owed {expected:?}, received {received:?}"
    );
    assert!(!received.contains(&before), "an acked message came back");
    for id in &expected {
        app.wait_for_status(id, "ws", "delivered", 1, WAIT).await;
    }
    eprintln!(
        "fault figures: redis restarted under the deliverer; the message sent during it {}; 0 lost",
        if during.is_some() {
            "accepted and delivered"
        } else {
            "refused with 503"
        }
    );
}
