//! `POST /v1/users/{user}/ws-token`: a short-lived signed token the user's browser opens
//! `GET /v1/ws?token=…` on a deliverer with. Minting opens the user's inbox (the `ws` endpoint
//! `inbox`), so messages sent over `ws` from then on wait there until a browser takes them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{Channel, DeviceId, UserId, WsEndpoint, now_ms};
use utoipa::ToSchema;

use crate::extract::decode;
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::{Registration, checked_id, register_all};
use crate::state::{AppState, Caller};

/// What may be asked of a token.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Seconds the token can be used to connect, from 1 up to the installation's
    /// `deliverer.token_ttl` (its default). An open socket stays open past it.
    pub ttl: Option<u64>,
}

/// A minted token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The token: pass it as `?token=` or in the first `auth` frame.
    pub token: String,
    /// The user it is for.
    pub user: String,
    /// When it stops being accepted for new connections (RFC 3339).
    pub expires_at: String,
    /// Where to connect, when the installation set `deliverer.public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Mint a WebSocket token for a user.
#[utoipa::path(
    post, path = "/v1/users/{user}/ws-token", tag = "endpoints",
    params(("user" = String, Path)),
    request_body(content = Option<TokenRequest>, description = "Optional; an empty body takes the defaults"),
    responses(
        (status = 200, body = TokenView),
        (status = 404, description = "WebSocket delivery is not served here", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn mint(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::PathParams(user): crate::extract::PathParams<String>,
    body: Bytes,
) -> Result<Json<TokenView>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let settings = &state.settings.deliverer;
    let secret = match &settings.token_secret {
        Some(secret) if state.settings.accepter.channels.contains(&Channel::Ws) => secret,
        _ => {
            return Err(ApiError::not_found(
                "WebSocket delivery (channel ws) is not served by this installation",
            ));
        }
    };
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        decode(&body)?
    };
    let longest = settings.token_ttl.as_secs().max(1);
    let ttl = match request.ttl {
        None => longest,
        Some(ttl) if (1..=longest).contains(&ttl) => ttl,
        Some(_) => {
            return Err(ApiError::validation(
                "/ttl",
                format!("must be between 1 and {longest} seconds"),
            ));
        }
    };
    let inbox = Registration {
        user,
        channel: Channel::Ws,
        device: DeviceId::inbox(),
        stored: serde_json::to_string(&WsEndpoint::default()).unwrap_or_else(|_| "{}".into()),
    };
    register_all(&state, &caller.app, std::slice::from_ref(&inbox)).await?;
    let user = inbox.user;
    let now = now_ms() / 1000;
    let expires = now + i64::try_from(ttl).unwrap_or(i64::MAX / 2);
    let token = sprayer_shared::wstoken::mint(
        secret.expose_secret().as_bytes(),
        &caller.app,
        &user,
        now,
        expires,
    )
    .map_err(|error| ApiError::unavailable("token signer", &error))?;
    metrics::counter!("sprayer_ws_tokens_total").increment(1);
    Ok(Json(TokenView {
        token,
        user: user.to_string(),
        expires_at: mongodb::bson::DateTime::from_millis(expires * 1000)
            .try_to_rfc3339_string()
            .unwrap_or_default(),
        url: settings
            .public_url
            .as_deref()
            .map(|base| format!("{}/v1/ws", base.trim_end_matches('/'))),
    }))
}
