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

use crate::config::TlsFiles;
use crate::listen::{ListenError, Listener};

/// A boxed readiness check: `Ok` when the service can do its work, else what is missing.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// One probe of [`Readiness`]: `Ok` or why not.
type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The readiness of a service, built from the stores it needs: `/readyz` answers 200 when
/// every probe passes, else 503 with each failing one as `<store>: <why>`, separated by `; `.
/// Probes run one after the other, in the order they were added.
#[derive(Default)]
pub struct Readiness {
    probes: Vec<(&'static str, Probe)>,
    stopping: Option<CancellationToken>,
}

impl Readiness {
    /// No probe yet: always ready.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// RabbitMQ reachable through `publisher`.
    pub fn rabbitmq(self, publisher: Arc<crate::amqp::Publisher>) -> Readiness {
        self.probe("rabbitmq", move || {
            let publisher = publisher.clone();
            async move { publisher.check().await.map_err(|error| error.to_string()) }
        })
    }

    /// Redis answers `PING`.
    pub fn redis(self, redis: crate::redis::RedisConnection) -> Readiness {
        self.probe("redis", move || {
            let mut redis = redis.clone();
            async move {
                ::redis::cmd("PING")
                    .query_async::<String>(&mut redis)
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
        })
    }

    /// MongoDB answers `ping`.
    pub fn mongodb(self, mongo: crate::mongo::Mongo) -> Readiness {
        self.probe("mongodb", move || {
            let mongo = mongo.clone();
            async move { mongo.ping().await.map_err(|error| error.to_string()) }
        })
    }

    /// Not ready once `draining` is cancelled (a node handing its work over before it stops).
    pub fn until(mut self, draining: CancellationToken) -> Readiness {
        self.stopping = Some(draining);
        self
    }

    /// Any other probe, reported as `<name>: <why>`.
    pub fn probe<F, Fut>(mut self, name: &'static str, probe: F) -> Readiness
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes
            .push((name, Arc::new(move || Box::pin(probe()))));
        self
    }

    /// The check `/readyz` runs.
    pub fn build(self) -> ReadinessCheck {
        let probes = Arc::new(self.probes);
        let stopping = self.stopping;
        Arc::new(move || {
            let probes = probes.clone();
            let stopping = stopping.clone();
            Box::pin(async move {
                if stopping.is_some_and(|token| token.is_cancelled()) {
                    return Err("stopping".to_owned());
                }
                let mut missing = Vec::new();
                for (name, probe) in probes.iter() {
                    if let Err(why) = probe().await {
                        missing.push(format!("{name}: {why}"));
                    }
                }
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing.join("; "))
                }
            })
        })
    }
}

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
    tls: Option<&TlsFiles>,
    ready: ReadinessCheck,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ListenError> {
    let listener = Listener::bind(listen, tls).await?;
    let address = listener.address();
    tracing::info!(%address, tls = listener.is_tls(), "ops endpoints listening");
    tokio::spawn(listener.serve(router(ready), shutdown));
    Ok(address)
}
