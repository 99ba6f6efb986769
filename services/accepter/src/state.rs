//! What every handler shares, and the extractors that authenticate callers.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use sprayer_shared::Settings;
use sprayer_shared::amqp::Publisher;
use sprayer_shared::model::AppId;
use sprayer_shared::mongo::Mongo;
use sprayer_shared::redis::RedisConnection;
use subtle::ConstantTimeEq;

use crate::apps::{Apps, AuthError};
use crate::problem::ApiError;

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState {
    /// The settings the accepter started with.
    pub settings: Arc<Settings>,
    /// Publishes jobs and status batches with confirms.
    pub publisher: Arc<Publisher>,
    /// Endpoints, groups and idempotency keys.
    pub redis: RedisConnection,
    /// Apps and feedback.
    pub mongo: Mongo,
    /// Key verification.
    pub apps: Arc<Apps>,
    /// Jobs and message records, published together with those of concurrent requests.
    pub commits: crate::commit::Commits,
    /// The queue depths last polled from RabbitMQ.
    pub queues: crate::queues::QueueDepths,
    /// Sends event endpoint tests (the webhook address guard resolves its names).
    pub event_client: reqwest::Client,
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The app calling, from `Authorization: Bearer <app key>`, held to its request rate.
pub struct Caller {
    /// The app the key belongs to.
    pub app: AppId,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <app key>"))?;
        match state.apps.authenticate(key).await {
            Ok(app) => {
                let limits = state.settings.accepter.limits(app.as_str());
                crate::ratelimit::admit(&state.redis, &app, &limits)
                    .await
                    .map_err(|wait| ApiError::rate_limited(limits.rate_per_second, wait))?;
                Ok(Caller { app })
            }
            Err(AuthError::Invalid) => {
                metrics::counter!("sprayer_auth_failures_total").increment(1);
                Err(ApiError::unauthorized("the app key is not valid"))
            }
            Err(AuthError::Store(error)) => Err(ApiError::unavailable("mongodb", &error)),
        }
    }
}

/// An operator, from `Authorization: Bearer <admin token>`; the admin API answers 404 when no
/// admin token is configured.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.settings.admin.token else {
            return Err(ApiError::not_found(
                "the admin API is off (set admin.token to turn it on)",
            ));
        };
        let presented = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <admin token>"))?;
        if bool::from(
            presented
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("the admin token is not valid"))
        }
    }
}
