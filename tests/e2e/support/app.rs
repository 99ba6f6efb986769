//! The app under test: every Sprayer service started in-process on port 0 against the shared
//! servers, in the test's own namespace, with one app created through the admin API, and typed
//! calls of its API.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sprayer::Sprayer;
use sprayer_shared::Settings;
use tokio_util::sync::CancellationToken;

use super::receiver::Receiver;
use super::stack::{require_servers, test_settings};
use super::wait::wait_until;

/// Every role but the events service: what most tests need (the events service reads a copy
/// of every status message, which only the tests of events look at).
const WITHOUT_EVENTS: [sprayer::Role; 5] = [
    sprayer::Role::Accepter,
    sprayer::Role::Dispatchers,
    sprayer::Role::Deliverer,
    sprayer::Role::Feeder,
    sprayer::Role::Scheduler,
];

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

    /// Starts every service but the events service with the test settings changed by
    /// `adjust` (the tests of events start it: [`TestApp::spawn_with_events`]).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_roles(adjust, &WITHOUT_EVENTS).await
    }

    /// Starts every service, the events service too, with the test settings changed by
    /// `adjust`.
    pub async fn spawn_with_events(adjust: impl FnOnce(&mut Settings)) -> TestApp {
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
        // The API closes a keep-alive connection that sends no request head for 10 s
        // (`listen::HEAD_TIMEOUT`): the client lets its idle ones go well before that, so that a
        // request never races the server's close (an `IncompleteMessage` under load).
        let builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(4));
        // Over TLS, the tests' certificate authority (`ca.pem`) sits beside the certificate.
        let http = match &settings.accepter.tls {
            Some(tls) => {
                let ca = std::fs::read(tls.cert.with_file_name("ca.pem")).expect("the test CA");
                builder.add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            }
            None => builder,
        }
        .build()
        .expect("client");
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
