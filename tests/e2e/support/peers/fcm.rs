//! An FCM stand-in on a loopback port (axum): the OAuth2 token endpoint of a service-account
//! JWT grant (RS256 checked against the account's public key) and the HTTP v1 send endpoint,
//! which checks the access token. Registration tokens choose the answer: "gone…" 404
//! UNREGISTERED, "invalid…" 400 INVALID_ARGUMENT, "busy…" 429 once, "down…" 503 once, else 200.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Default)]
struct PeerState {
    public_key: String,
    client_email: String,
    token_uri: String,
    issued: HashSet<String>,
    grants: usize,
    seen: HashMap<String, usize>,
    sends: Vec<Value>,
}

/// The running peer.
pub struct FcmPeer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: Arc<Mutex<PeerState>>,
    _stop: DropGuard,
}

#[derive(Deserialize)]
struct Grant {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct GrantClaims {
    iss: String,
    aud: String,
    scope: String,
    exp: i64,
}

async fn token(State(state): State<Arc<Mutex<PeerState>>>, Form(grant): Form<Grant>) -> Response {
    let mut state = state.lock().expect("lock");
    state.grants += 1;
    if grant.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return (StatusCode::BAD_REQUEST, "unsupported_grant_type").into_response();
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(state.public_key.as_bytes()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad peer key").into_response();
    };
    // gcp_auth pads each part of its JWT; the signature covers the padded header and claims.
    let parts: Vec<&str> = grant.assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return (StatusCode::BAD_REQUEST, "malformed assertion").into_response();
    };
    let signed = format!("{header}.{claims}");
    let valid = jsonwebtoken::crypto::verify(
        signature.trim_end_matches('='),
        signed.as_bytes(),
        &key,
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap_or(false);
    let claims: Option<GrantClaims> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match claims {
        Some(claims)
            if valid
                && claims.scope.contains("firebase.messaging")
                && claims.aud == state.token_uri
                && claims.iss == state.client_email
                && claims.exp > sprayer_shared::model::now_ms() / 1000 =>
        {
            let access = format!("ya29.test-{:016x}", rand::random::<u64>());
            state.issued.insert(access.clone());
            axum::Json(
                json!({ "access_token": access, "expires_in": 3600, "token_type": "Bearer" }),
            )
            .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response(),
    }
}

fn fcm_error(status: StatusCode, name: &str, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "status": name, "message": message, "details": [
        { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code } ] } });
    (status, axum::Json(body)).into_response()
}

async fn send(
    State(state): State<Arc<Mutex<PeerState>>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut state = state.lock().expect("lock");
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| state.issued.contains(token)) {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "THIRD_PARTY_AUTH_ERROR",
            "bad access token",
        );
    }
    let project = project
        .trim_end_matches(":send")
        .trim_end_matches("/messages")
        .to_owned();
    let token = body["message"]["token"].as_str().unwrap_or("").to_owned();
    let count = {
        let count = state.seen.entry(token.clone()).or_default();
        *count += 1;
        *count
    };
    state
        .sends
        .push(json!({ "project": project, "body": body, "attempt": count }));
    if token.starts_with("gone") {
        fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "UNREGISTERED",
            "Requested entity was not found.",
        )
    } else if token.starts_with("invalid") {
        fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        )
    } else if token.starts_with("busy") && count == 1 {
        let mut response = fcm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "QUOTA_EXCEEDED",
            "slow down",
        );
        response
            .headers_mut()
            .insert("retry-after", "1".parse().expect("header"));
        response
    } else if token.starts_with("down") && count == 1 {
        fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "UNAVAILABLE",
            "try later",
        )
    } else {
        axum::Json(json!({ "name": format!("projects/{project}/messages/{count}") }))
            .into_response()
    }
}

impl FcmPeer {
    /// Starts a peer that trusts the service account `client_email` with `public_key` (PEM).
    pub async fn start(client_email: &str, public_key: &str) -> FcmPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(PeerState {
            public_key: public_key.to_owned(),
            client_email: client_email.to_owned(),
            token_uri: format!("{base}/token"),
            ..PeerState::default()
        }));
        let router = axum::Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{*rest}", post(send))
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        FcmPeer {
            base,
            state,
            _stop: stop.drop_guard(),
        }
    }

    /// The service account key file for this peer.
    pub fn service_account(&self, client_email: &str, private_key: &str, project: &str) -> Value {
        json!({
            "type": "service_account", "project_id": project, "private_key_id": "k1",
            "private_key": private_key, "client_email": client_email, "client_id": "1",
            "token_uri": format!("{}/token", self.base),
        })
    }

    /// Every send request so far.
    pub fn sends(&self) -> Vec<Value> {
        self.state.lock().expect("lock").sends.clone()
    }

    /// Access tokens granted so far.
    pub fn grants(&self) -> usize {
        self.state.lock().expect("lock").grants
    }
}
