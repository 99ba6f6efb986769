//! Building and running the accepter: connect the stores, bind the listener, serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{Publisher, Topology};
use sprayer_shared::mongo::Mongo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::apps::Apps;
use crate::problem;
use crate::routes;
use crate::state::AppState;

/// Why the accepter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redis could not be set up.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// MongoDB could not be set up.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// A built accepter, bound and ready to serve.
pub struct Accepter {
    listener: TcpListener,
    router: Router,
    address: SocketAddr,
}

impl Accepter {
    /// Connects the stores, creates the indexes and binds the listener (port 0 picks one).
    pub async fn build(settings: Settings) -> Result<Accepter, StartError> {
        let settings = Arc::new(settings);
        let mongo = Mongo::connect(&settings.mongodb).await?;
        if let Err(error) = mongo.ensure_indexes(settings.mongodb.retention).await {
            // Feedback reads answer 503 until MongoDB is back; the indexes are made by the feeder too.
            tracing::warn!(%error, "cannot create MongoDB indexes now");
        }
        let redis = sprayer_shared::redis::connect(&settings.redis.url).await?;
        let publisher = Arc::new(Publisher::new(
            &settings.amqp.url,
            Topology::new(&settings.amqp),
        ));
        if let Err(error) = publisher.check().await {
            tracing::warn!(%error, "rabbitmq not reachable yet; POST /v1/messages answers 503 until it is");
        }
        let state = AppState {
            apps: Arc::new(crate::apps::Apps::new(
                mongo.clone(),
                settings.accepter.key_cache_ttl,
            )),
            settings: settings.clone(),
            records: crate::records::Records::start(publisher.clone()),
            publisher,
            redis,
            mongo,
        };
        let router = router(state);
        let address = settings.accepter.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| StartError::Listen { address, error })?;
        let address = listener
            .local_addr()
            .map_err(|error| StartError::Listen { address, error })?;
        Ok(Accepter {
            listener,
            router,
            address,
        })
    }

    /// The address the API listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(address = %self.address, "accepter listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

fn router(state: AppState) -> Router {
    let readiness_state = state.clone();
    let ready: sprayer_shared::ops::ReadinessCheck = Arc::new(move || {
        let state = readiness_state.clone();
        Box::pin(async move { readiness(&state).await })
    });
    let limit = state.settings.accepter.max_body_bytes;
    routes::api()
        .fallback(problem::no_route)
        .method_not_allowed_fallback(problem::wrong_method)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .merge(sprayer_shared::ops::router(ready))
}

async fn readiness(state: &AppState) -> Result<(), String> {
    let mut missing = Vec::new();
    if let Err(error) = state.publisher.check().await {
        missing.push(format!("rabbitmq: {error}"));
    }
    let mut redis = state.redis.clone();
    if let Err(error) = redis::cmd("PING").query_async::<String>(&mut redis).await {
        missing.push(format!("redis: {error}"));
    }
    if let Err(error) = state.mongo.ping().await {
        missing.push(format!("mongodb: {error}"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// The app registry over the configured MongoDB, for the administration CLI.
pub async fn apps(settings: &Settings) -> Result<Apps, mongodb::error::Error> {
    let mongo = Mongo::connect(&settings.mongodb).await?;
    mongo.ensure_indexes(settings.mongodb.retention).await?;
    Ok(Apps::new(mongo, settings.accepter.key_cache_ttl))
}
