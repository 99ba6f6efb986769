//! What every end-to-end test uses: a Sprayer started in-process against the real Redis,
//! RabbitMQ and MongoDB in its own namespace (queue prefix, database, app), typed API calls, a
//! webhook receiver that verifies nothing itself but records everything, and `wait_until`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sprayer::Sprayer;
use sprayer_shared::Settings;
use tokio_util::sync::CancellationToken;

/// Loopback addresses of the shared servers (started by `make test`).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// MongoDB: `SPRAYER_MONGODB_URL` when set, else the local server.
pub fn mongodb_url() -> String {
    std::env::var("SPRAYER_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// A short random name for namespaces.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Settings for a test: its own queue prefix and database, short retry tiers, port 0.
pub fn test_settings() -> Settings {
    let namespace = unique("t");
    let mut settings = Settings::default();
    settings.amqp.url = AMQP_URL.into();
    settings.amqp.prefix = format!("{namespace}.");
    settings.amqp.retry_tiers = vec![
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ];
    settings.amqp.queue_expires = Some(Duration::from_secs(600));
    settings.redis.url = REDIS_URL.into();
    settings.mongodb.url = mongodb_url();
    settings.mongodb.database = format!("sprayer_{namespace}");
    settings.accepter.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin.token = Some(unique("admin-").into());
    settings.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // The tests' peers run on loopback: allow it explicitly, as an operator would a private
    // network. Rate limits are off but in the tests of rate limits.
    settings.webhook.allow_networks = vec!["127.0.0.0/8".parse().expect("a network")];
    settings.accepter.rate_per_second = 0;
    settings.feeder.batch_wait = Duration::from_millis(20);
    settings.deliverer.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.deliverer.token_secret = Some(unique("ws-token-secret-for-the-tests-").into());
    settings.deliverer.sweep_interval = Duration::from_millis(200);
    settings.deliverer.conn_ttl = Duration::from_secs(3);
    settings
}

/// The test settings with the `ws` channel served beside `http`.
pub fn serve_ws(settings: &mut Settings) {
    settings.accepter.channels = vec![
        sprayer_shared::model::Channel::Http,
        sprayer_shared::model::Channel::Ws,
    ];
}

/// Sends the logs of the services a test runs in its own process to the test's output, which
/// the test harness shows when the test fails: warnings, and the broker connections the
/// services make (`SPRAYER_TEST_LOG`, a `RUST_LOG`-style filter, changes what is shown).
pub fn log_to_test_output() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let filter = std::env::var("SPRAYER_TEST_LOG")
            .ok()
            .and_then(|filter| tracing_subscriber::EnvFilter::try_new(filter).ok())
            .unwrap_or_else(|| {
                tracing_subscriber::EnvFilter::new("warn,sprayer_shared::amqp=info")
            });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// Fails loudly, naming the server, when one of the shared servers does not answer. Sends the
/// logs of the test's services to its output first (see [`log_to_test_output`]).
pub async fn require_servers() {
    log_to_test_output();
    let amqp = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default()).await;
    assert!(
        amqp.is_ok(),
        "RabbitMQ is not reachable at {AMQP_URL}: run `make test` (it starts it)"
    );
    let redis = async {
        let client = redis::Client::open(REDIS_URL)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    }
    .await;
    assert!(
        redis.is_ok(),
        "Redis is not reachable at {REDIS_URL}: run `make test` (it starts it)"
    );
    let mongo = async {
        let client = mongodb::Client::with_uri_str(mongodb_url()).await?;
        client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
    }
    .await;
    assert!(
        mongo.is_ok(),
        "MongoDB is not reachable at {}: run `make test` (it starts it)",
        mongodb_url()
    );
}

/// A running Sprayer (all services) with one app created through the admin API.
pub struct TestApp {
    /// The API's base URL.
    pub base: String,
    /// The admin API's base URL.
    pub admin: String,
    /// The app's id.
    pub app: String,
    /// The app's key.
    pub key: String,
    /// The settings it runs with.
    pub settings: Settings,
    /// A client for the API.
    pub http: reqwest::Client,
    /// The deliverer's base URL (`ws://127.0.0.1:port`), when `ws` is served.
    pub ws: Option<String>,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts every service with the test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts every service with the test settings changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_roles(adjust, &sprayer::Role::ALL).await
    }

    /// Starts the services of `roles` with the test settings changed by `adjust`.
    pub async fn spawn_roles(
        adjust: impl FnOnce(&mut Settings),
        roles: &[sprayer::Role],
    ) -> TestApp {
        require_servers().await;
        let mut settings = test_settings();
        adjust(&mut settings);
        let sprayer = Sprayer::build_roles(settings.clone(), roles)
            .await
            .expect("sprayer starts");
        let base = sprayer.url().expect("the accepter runs");
        let admin = sprayer.admin_url().expect("the admin API runs");
        let ws = sprayer.ws_url();
        let shutdown = CancellationToken::new();
        tokio::spawn(sprayer.run_until_stopped(shutdown.clone()));
        let mut app = Self::with_app(base, admin, settings, shutdown).await;
        app.ws = ws;
        app
    }

    /// Starts the accepter alone: jobs stay in their queues for the test to look at.
    pub async fn spawn_accepter_only() -> TestApp {
        require_servers().await;
        let settings = test_settings();
        let accepter = sprayer_accepter::Accepter::build(settings.clone())
            .await
            .expect("accepter starts");
        let base = accepter.url();
        let admin = accepter.admin_url().expect("the admin API runs");
        let shutdown = CancellationToken::new();
        tokio::spawn(accepter.run_until_stopped(shutdown.clone()));
        Self::with_app(base, admin, settings, shutdown).await
    }

    async fn with_app(
        base: String,
        admin: String,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> TestApp {
        // Over TLS, the tests' certificate authority (`ca.pem`) sits beside the certificate.
        let http = match &settings.accepter.tls {
            Some(tls) => {
                let ca = std::fs::read(tls.cert.with_file_name("ca.pem")).expect("the test CA");
                reqwest::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
                    .build()
                    .expect("client")
            }
            None => reqwest::Client::new(),
        };
        let mut app = TestApp {
            base,
            admin,
            app: String::new(),
            key: String::new(),
            settings,
            http,
            ws: None,
            shutdown,
        };
        let (app_id, key) = app.create_app("test").await;
        app.app = app_id;
        app.key = key;
        app
    }

    /// Creates another app on the same installation; returns its id and key.
    pub async fn create_app(&self, name: &str) -> (String, String) {
        let token = self.admin_token();
        let response = self
            .http
            .post(format!("{}/admin/v1/apps", self.admin))
            .bearer_auth(token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("admin API answers");
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        (
            created["id"].as_str().expect("id").to_owned(),
            created["key"].as_str().expect("key").to_owned(),
        )
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        use secrecy::ExposeSecret;
        self.settings
            .admin
            .token
            .as_ref()
            .expect("admin token")
            .expose_secret()
            .to_owned()
    }

    /// A request with the app's key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.key, method, path)
    }

    /// A request with another key.
    pub fn request_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    /// Registers a webhook endpoint for `user` as `key`'s app.
    pub async fn put_webhook_as(
        &self,
        key: &str,
        user: &str,
        device: &str,
        url: &str,
        secret: &str,
    ) {
        let response = self
            .request_as(
                key,
                reqwest::Method::PUT,
                &format!("/v1/users/{user}/endpoints/http/{device}"),
            )
            .json(&json!({ "url": url, "secret": secret }))
            .send()
            .await
            .expect("answers");
        assert!(
            response.status().is_success(),
            "PUT endpoint: {}",
            response.status()
        );
    }

    /// Registers an endpoint of any channel for `user` as `key`'s app.
    pub async fn put_endpoint_as(
        &self,
        key: &str,
        user: &str,
        channel: &str,
        device: &str,
        address: &Value,
    ) -> StatusCode {
        self.request_as(
            key,
            reqwest::Method::PUT,
            &format!("/v1/users/{user}/endpoints/{channel}/{device}"),
        )
        .json(address)
        .send()
        .await
        .expect("answers")
        .status()
    }

    /// Sets `app`'s provider settings for `channel` through the admin API.
    pub async fn set_provider(&self, app: &str, channel: &str, settings: &Value) {
        let response = self
            .http
            .put(format!(
                "{}/admin/v1/apps/{app}/providers/{channel}",
                self.admin
            ))
            .bearer_auth(self.admin_token())
            .json(settings)
            .send()
            .await
            .expect("admin API answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "set {channel} provider: {body}");
    }

    /// Registers a webhook endpoint for `user`.
    pub async fn put_webhook(&self, user: &str, device: &str, url: &str, secret: &str) {
        self.put_webhook_as(&self.key, user, device, url, secret)
            .await;
    }

    /// Registers `endpoints` (`{"user", "channel", "device", "address"}` each) in one
    /// `POST /v1/endpoints`; the 200 answer's `{"created", "replaced"}`.
    pub async fn import_endpoints(&self, endpoints: &[Value]) -> Value {
        let response = self
            .request(reqwest::Method::POST, "/v1/endpoints")
            .json(&json!({ "endpoints": endpoints }))
            .send()
            .await
            .expect("answers");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The webhook of `user` (device `d1`) at the receiver's path named after the user, as
    /// `POST /v1/endpoints` takes it.
    pub fn webhook_entry(user: &str, receiver: &Receiver, secret: &str) -> Value {
        json!({ "user": user, "channel": "http", "device": "d1",
                "address": { "url": receiver.url(user), "secret": secret } })
    }

    /// Adds `user` to `group`.
    pub async fn add_member(&self, group: &str, user: &str) {
        let response = self
            .request(
                reqwest::Method::PUT,
                &format!("/v1/groups/{group}/members/{user}"),
            )
            .send()
            .await
            .expect("answers");
        assert!(
            response.status().is_success(),
            "PUT member: {}",
            response.status()
        );
    }

    /// Mints a WebSocket token for `user` with `key`; the answer as JSON.
    pub async fn ws_token_as(&self, key: &str, user: &str) -> Value {
        let response = self
            .request_as(
                key,
                reqwest::Method::POST,
                &format!("/v1/users/{user}/ws-token"),
            )
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::OK, "minting a ws token");
        response.json().await.expect("JSON")
    }

    /// Mints a WebSocket token for `user` of the test's app.
    pub async fn ws_token(&self, user: &str) -> String {
        let answer = self.ws_token_as(&self.key, user).await;
        answer["token"].as_str().expect("token").to_owned()
    }

    /// The URL a browser opens with `token`.
    pub fn ws_url(&self, token: &str) -> String {
        let base = self.ws.as_deref().expect("the test serves ws");
        format!("{base}/v1/ws?token={token}")
    }

    /// Sends a message that must be accepted; returns its id.
    pub async fn send_ws(&self, user: &str, body: &str) -> String {
        self.send_ok(&json!({
            "to": {"user": user},
            "channels": ["ws"],
            "content": {"title": "t", "body": body},
        }))
        .await
    }

    /// Sends a message; returns status, body and headers.
    pub async fn send(&self, body: &Value, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .request(reqwest::Method::POST, "/v1/messages")
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends a message that must be accepted; returns its id.
    pub async fn send_ok(&self, body: &Value) -> String {
        let (status, answer) = self.send(body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    /// `GET path` as the app: status and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The message's summary once it exists, else `None`.
    pub async fn summary(&self, id: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("/v1/messages/{id}")).await;
        (status == StatusCode::OK).then_some(body)
    }

    /// Waits until the message's `channel` summary shows `count` deliveries with `status`.
    pub async fn wait_for_status(
        &self,
        id: &str,
        channel: &str,
        status: &str,
        count: u64,
        within: Duration,
    ) -> Value {
        let found = wait_until(within, || async {
            let summary = self.summary(id).await?;
            (summary["summary"][channel][status].as_u64() == Some(count)).then_some(summary)
        })
        .await;
        if let Some(summary) = found {
            return summary;
        }
        let last = self.summary(id).await;
        let (_, deliveries) = self
            .get(&format!("/v1/messages/{id}/deliveries?limit=5"))
            .await;
        panic!(
            "message {id}: not {count} {status} on {channel} within {within:?}: {last:?} {deliveries}"
        )
    }

    /// Every delivery of a message, page by page.
    pub async fn all_deliveries(&self, id: &str, page_size: u32) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/messages/{id}/deliveries?limit={page_size}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            all.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }
}

/// Polls `check` every 50 ms until it gives a value or `within` has passed.
pub async fn wait_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
