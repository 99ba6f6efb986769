//! The operations endpoints every service serves: `/healthz`, `/readyz` and `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::listen::{ListenError, Listener, TlsSettings};

/// A boxed readiness check: `Ok` when the service can do its work, else what is missing.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The three operations routes, with `ready` deciding `/readyz`.
pub fn router(ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn readyz(State(ready): State<ReadinessCheck>) -> Response {
    match ready().await {
        Ok(()) => "ready".into_response(),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, missing).into_response(),
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics_handle().render(),
    )
        .into_response()
}

/// Serves the operations routes with `ready` on `listen` (TLS when `tls` is given) until
/// `shutdown`, in a task; returns the bound address.
pub async fn serve_ops(
    listen: SocketAddr,
    tls: Option<&TlsSettings>,
    ready: ReadinessCheck,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ListenError> {
    let listener = Listener::bind(listen, tls).await?;
    let address = listener.address();
    tracing::info!(%address, tls = listener.is_tls(), "ops endpoints listening");
    tokio::spawn(listener.serve(router(ready), shutdown));
    Ok(address)
}
