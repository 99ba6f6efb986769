//! Two deliverer nodes: node A is a separate `sprayer run --only deliverer` process, node B
//! runs in the test. A user on node B receives a message whose job node A stored; node A is
//! killed with SIGKILL in the middle of a stream and its users reconnect to node B.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sprayer_shared::Settings;
use sprayer_shared::model::now_ms;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::app::TestApp;
use crate::support::stack::{REDIS_URL, serve_ws};
use crate::support::wait::wait_until;
use crate::support::ws_client::{Frame, WsClient};

const WAIT: Duration = Duration::from_secs(30);

/// `target/debug/sprayer`, built by `cargo test --workspace` (the sprayer crate's own tests
/// need it) and by `make test`.
fn sprayer_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("sprayer"))
        .expect("target folder");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p sprayer` (make test does)",
        binary.display()
    );
    binary
}

/// A deliverer node in its own process, sharing the test's namespace.
struct NodeProcess {
    child: Child,
    base: String,
}

impl NodeProcess {
    async fn start(settings: &Settings, node_id: &str) -> NodeProcess {
        use secrecy::ExposeSecret;
        let secret = settings.deliverer.token_secret.as_ref().expect("secret");
        let mut child = Command::new(sprayer_binary())
            .args(["run", "--only", "deliverer"])
            .env("SPRAYER_AMQP_URL", &settings.amqp.url)
            .env("SPRAYER_AMQP_PREFIX", &settings.amqp.prefix)
            .env("SPRAYER_AMQP_QUEUE_EXPIRES", "10m")
            .env("SPRAYER_REDIS_URL", &settings.redis.url)
            .env("SPRAYER_MONGODB_URL", &settings.mongodb.url)
            .env("SPRAYER_MONGODB_DATABASE", &settings.mongodb.database)
            .env("SPRAYER_ACCEPTER_CHANNELS", r#"["http","ws"]"#)
            .env("SPRAYER_DELIVERER_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_DELIVERER_NODE_ID", node_id)
            .env("SPRAYER_DELIVERER_TOKEN_SECRET", secret.expose_secret())
            .env("SPRAYER_DELIVERER_CONN_TTL", "3s")
            .env("SPRAYER_TELEMETRY_FILTER", "warn")
            .env_remove("SPRAYER_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the sprayer binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("WebSocket deliverer on ws://") {
                    return rest
                        .split('/')
                        .next()
                        .map(|address| format!("ws://{address}"));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the node prints its address");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeProcess { child, base }
    }

    async fn metric(&self, name: &str) -> f64 {
        let url = format!("{}/metrics", self.base.replacen("ws://", "http://", 1));
        let text = reqwest::get(url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn jobs_ws_consumers(settings: &Settings) -> u32 {
    let connection = sprayer_shared::amqp::connect(&settings.amqp.url, Duration::from_secs(5))
        .await
        .expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let queue = sprayer_shared::amqp::Topology::new(&settings.amqp)
        .jobs_queue(sprayer_shared::model::Channel::Ws);
    let declared = channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await;
    let count = declared.map(|queue| queue.consumer_count()).unwrap_or(0);
    let _ = connection.close(200, "bye".into()).await;
    count
}

/// What one user's client saw.
#[derive(Debug, Default)]
struct Seen {
    received: Vec<String>,
    confirmed: HashSet<String>,
    after_confirmed_ack: Vec<String>,
    reconnects: u32,
}

/// A user's client: connects to `first`, acks everything, and after losing the socket
/// reconnects to `fallback` with a fresh token, until `expected` distinct messages arrived.
async fn follow(
    app: &TestApp,
    user: String,
    first: String,
    fallback: String,
    expected: usize,
) -> Seen {
    let mut seen = Seen::default();
    let mut base = first;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let token = app.ws_token(&user).await;
        let mut client = WsClient::open(&format!("{base}/v1/ws?token={token}")).await;
        // As the browser client does: acks not confirmed before the socket was lost go again.
        let unconfirmed: Vec<String> = seen
            .received
            .iter()
            .filter(|id| !seen.confirmed.contains(*id))
            .cloned()
            .collect();
        if !unconfirmed.is_empty() && !client.ack_later(&unconfirmed).await {
            seen.reconnects += 1;
            continue;
        }
        loop {
            if tokio::time::Instant::now() > deadline {
                return seen;
            }
            match client.next(Duration::from_secs(5)).await {
                Some(Frame::Json(frame)) if frame["type"] == "message" => {
                    let id = frame["message"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if seen.confirmed.contains(&id) {
                        seen.after_confirmed_ack.push(id.clone());
                    }
                    seen.received.push(id.clone());
                    if !client.ack_later(&[id]).await {
                        break;
                    }
                }
                Some(Frame::Json(frame)) if frame["type"] == "acked" => {
                    for id in frame["ids"].as_array().into_iter().flatten() {
                        seen.confirmed
                            .insert(id.as_str().unwrap_or_default().to_owned());
                    }
                    if seen.confirmed.len() >= expected {
                        return seen;
                    }
                }
                Some(Frame::Json(_)) | None => {}
                Some(Frame::Closed(..) | Frame::Ended) => break,
            }
        }
        seen.reconnects += 1;
        base = fallback.clone();
    }
}

#[tokio::test]
async fn two_nodes_share_users_and_a_killed_node_loses_nothing() {
    use sprayer::Role;
    // The API, dispatchers and feeder in the test; node A in its own process, started first so
    // that it is the active consumer of jobs.ws; node B in the test.
    let app =
        TestApp::spawn_roles(serve_ws, &[Role::Accepter, Role::Dispatchers, Role::Feeder]).await;
    let mut node_a =
        NodeProcess::start(&app.settings, &crate::support::stack::unique("node-a-")).await;
    let active = wait_until(WAIT, || async {
        (jobs_ws_consumers(&app.settings).await >= 1).then_some(())
    })
    .await;
    assert!(active.is_some(), "node A consumes jobs.ws");
    let node_b = sprayer_deliverer::Deliverer::build(app.settings.clone())
        .await
        .expect("node B starts");
    let base_b = format!("ws://{}", node_b.address());
    let stop_b = tokio_util::sync::CancellationToken::new();
    tokio::spawn(node_b.run_until_stopped(stop_b.clone()));
    let _stop_b = stop_b.drop_guard();

    // A user on node B gets a message whose job node A consumed.
    let stored_before = node_a.metric("sprayer_ws_stored_total").await;
    let token = app.ws_token("bea").await;
    let mut on_b = WsClient::open(&format!("{base_b}/v1/ws?token={token}")).await;
    let id = app.send_ws("bea", "via node A").await;
    let message = on_b
        .next_message(WAIT)
        .await
        .expect("delivered through node B");
    assert_eq!(message["id"], id.as_str());
    // Node A hands the message over before it has finished storing it.
    let stored = wait_until(WAIT, || async {
        (node_a.metric("sprayer_ws_stored_total").await > stored_before).then_some(())
    })
    .await;
    assert!(stored.is_some(), "node A stored it");
    on_b.ack(&[id]).await;

    // Twenty users on node A, a stream of 60 messages to their group; node A dies after 20.
    let users: Vec<String> = (0..20).map(|n| format!("k{n}")).collect();
    for user in &users {
        let _ = app.ws_token(user).await;
        app.add_member("stream", user).await;
    }
    const MESSAGES: usize = 60;
    let followers = futures::future::join_all(users.iter().map(|user| {
        follow(
            &app,
            user.clone(),
            node_a.base.clone(),
            base_b.clone(),
            MESSAGES,
        )
    }));
    let stream = async {
        // Every follower is connected to node A before the stream starts.
        let all_on_a = wait_until(WAIT, || async {
            (node_a.metric("sprayer_ws_sockets").await >= users.len() as f64).then_some(())
        })
        .await;
        assert!(all_on_a.is_some(), "the users connect to node A");
        let mut sent = Vec::new();
        for n in 0..MESSAGES {
            if n == 20 {
                node_a.child.start_kill().expect("SIGKILL node A");
                let _ = node_a.child.wait().await;
            }
            sent.push(
                app.send_ok(&json!({
                    "to": {"group": "stream"}, "channels": ["ws"],
                    "content": {"body": format!("{n}")},
                }))
                .await,
            );
        }
        sent
    };
    let started = std::time::Instant::now();
    let (seen_by_user, sent) = tokio::join!(followers, stream);
    let took = started.elapsed();
    let mut duplicates = 0;
    let mut reconnects = 0;
    for (user, seen) in users.iter().zip(seen_by_user) {
        let distinct: HashSet<&String> = seen.received.iter().collect();
        let missing: Vec<&String> = sent.iter().filter(|id| !distinct.contains(id)).collect();
        assert!(missing.is_empty(), "{user} never got {missing:?}");
        assert!(
            seen.after_confirmed_ack.is_empty(),
            "{user} got messages again after their ack was confirmed: {:?}",
            seen.after_confirmed_ack
        );
        duplicates += seen.received.len() - distinct.len();
        reconnects += seen.reconnects;
    }
    assert!(
        reconnects >= users.len() as u32,
        "every user reconnected to node B"
    );
    eprintln!(
        "kill -9 of node A: {} users x {MESSAGES} messages, 0 lost, {duplicates} sent twice (unconfirmed acks), {reconnects} reconnects, {took:?}",
        users.len()
    );

    // Feedback: every delivery ends delivered.
    for id in &sent {
        app.wait_for_status(id, "ws", "delivered", users.len() as u64, WAIT)
            .await;
    }

    // Node A's entries in conn: lapse.
    let redis = redis::Client::open(REDIS_URL)
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = format!("conn:{{{}:k0}}", app.app);
    let lapsed = wait_until(Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let nodes: HashMap<String, i64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .ok()?;
            let live_a = nodes
                .iter()
                .any(|(node, until)| node.starts_with("node-a-") && *until > now_ms());
            (!live_a).then_some(())
        }
    })
    .await;
    assert!(
        lapsed.is_some(),
        "node A is still listed as holding k0's sockets"
    );
}
