//! The webhook receiver: a loopback HTTP server that verifies nothing itself but records every
//! request and answers as planned per path; Standard Webhooks secrets and signature checks; and
//! users registered with one webhook each at the receiver.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::app::TestApp;

/// A fresh Standard Webhooks secret.
pub fn webhook_secret() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// Checks a Standard Webhooks signature the way a receiver would.
pub fn signature_valid(secret: &str, hit: &Hit) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{}.{}.", hit.id, hit.timestamp).as_bytes());
    mac.update(&hit.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    hit.signature
        .split(' ')
        .any(|candidate| candidate == expected)
}

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy)]
pub enum Behavior {
    /// Answer this status at once.
    Status(u16),
    /// Answer 200 after this long.
    Hang(Duration),
    /// Answer 302 with this `Location`.
    Redirect(&'static str),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The path after `/hook/`.
    pub path: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: Bytes,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    plans: Mutex<HashMap<String, VecDeque<Behavior>>>,
}

/// A webhook receiver on a loopback port: records every request, answers 200 unless a plan
/// for the path says otherwise.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub base: String,
    state: Arc<ReceiverState>,
    _stop: tokio_util::sync::DropGuard,
}

impl Receiver {
    /// Starts a receiver.
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let router = axum::Router::new()
            .route("/hook/{*path}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        Receiver {
            base: format!("http://{address}/hook"),
            state,
            _stop: stop.drop_guard(),
        }
    }

    /// The URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Answers the next requests to `path` as listed, then 200.
    pub fn plan(&self, path: &str, behaviors: &[Behavior]) {
        self.state
            .plans
            .lock()
            .expect("lock")
            .insert(path.to_owned(), behaviors.iter().copied().collect());
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().expect("lock").clone()
    }

    /// Requests to `path` so far.
    pub fn hits_for(&self, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|hit| hit.path == path)
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    state.hits.lock().expect("lock").push(Hit {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        path: path.clone(),
        body,
        received_ms: sprayer_shared::model::now_ms(),
    });
    let behavior = state
        .plans
        .lock()
        .expect("lock")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    match behavior {
        None => StatusCode::OK.into_response(),
        Some(Behavior::Status(code)) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        Some(Behavior::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Some(Behavior::Redirect(location)) => (
            StatusCode::FOUND,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response(),
    }
}

impl Hit {
    /// The `message_id` the webhook carried (empty when the body is not a Sprayer webhook).
    pub fn message_id(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|body| body["data"]["message_id"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Registers users `u0..` with a webhook each (path = user) and puts them in `group`.
pub async fn register_group(
    app: &TestApp,
    receiver: &Receiver,
    secret: &str,
    count: usize,
    group: &str,
) -> Vec<String> {
    use futures::StreamExt;
    let users = register_users(app, receiver, secret, count).await;
    futures::stream::iter(users.iter())
        .for_each_concurrent(64, |user| app.add_member(group, user))
        .await;
    users
}

/// Registers `count` users `u0..` with one webhook each (path = user) and returns their ids.
pub async fn register_users(
    app: &TestApp,
    receiver: &Receiver,
    secret: &str,
    count: usize,
) -> Vec<String> {
    use futures::StreamExt;
    let users: Vec<String> = (0..count).map(|index| format!("u{index}")).collect();
    futures::stream::iter(users.iter())
        .for_each_concurrent(32, |user| async move {
            app.put_webhook(user, "d1", &receiver.url(user), secret)
                .await;
        })
        .await;
    users
}
