//! Building and running the accepter: connect the stores, bind the listener, serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Publisher, Topology};
use sprayer_shared::listen::Listener;
use sprayer_shared::mongo::Mongo;
use sprayer_shared::ops::Readiness;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::apps::Apps;
use crate::problem;
use crate::queues::QueueDepths;
use crate::routes;
use crate::state::AppState;

/// Why the accepter could not start.
pub type StartError = sprayer_shared::StartError<ClientError>;

/// The HTTP client for event endpoint tests could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for event endpoint tests: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// A built accepter, bound and ready to serve.
pub struct Accepter {
    api: Listener,
    router: Router,
    /// The admin API's listener and routes, when `admin.token` is set.
    admin: Option<(Listener, Router)>,
    /// Filled by the queue poll, which starts with the listeners.
    queues: QueueDepths,
    /// The queue poll's brokers.
    brokers: Brokers,
    settings: Arc<Settings>,
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
        let redis = sprayer_shared::redis::connect(&settings.redis).await?;
        let publisher = Arc::new(Publisher::with_brokers(
            Brokers::for_settings(&settings.amqp)?,
            Topology::new(&settings.amqp),
        ));
        if let Err(error) = publisher.check().await {
            tracing::warn!(%error, "rabbitmq not reachable yet; POST /v1/messages answers 503 until it is");
        }
        let event_client = reqwest::Client::builder()
            .dns_resolver(
                sprayer_shared::netguard::AddressGuard::new(&settings.webhook.allow_networks)
                    .resolver(),
            )
            .connect_timeout(settings.webhook.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Sprayer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| StartError::Service(error.into()))?;
        let state = AppState {
            event_client,
            apps: Arc::new(crate::apps::Apps::new(
                mongo.clone(),
                settings.accepter.key_cache_ttl,
            )),
            settings: settings.clone(),
            commits: crate::commit::Commits::start(&publisher),
            publisher,
            redis,
            mongo,
            queues: QueueDepths::default(),
        };
        let queues = state.queues.clone();
        let brokers = state.publisher.brokers();
        let admin = match settings.admin.token {
            Some(_) => Some((
                Listener::bind(
                    settings.admin.listen,
                    settings
                        .admin
                        .tls
                        .as_ref()
                        .map(|tls| tls.files("admin.tls"))
                        .as_ref(),
                )
                .await?,
                admin_router(state.clone()),
            )),
            None => None,
        };
        let router = router(state);
        let api = Listener::bind(
            settings.accepter.listen,
            settings
                .accepter
                .tls
                .as_ref()
                .map(|tls| tls.files("accepter.tls"))
                .as_ref(),
        )
        .await?;
        Ok(Accepter {
            api,
            router,
            admin,
            queues,
            brokers,
            settings,
        })
    }

    /// The address the API listens on.
    pub fn address(&self) -> SocketAddr {
        self.api.address()
    }

    /// The API's base URL (`http://…` or `https://…`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.api.scheme(), self.api.address())
    }

    /// The admin API's base URL, when it is served.
    pub fn admin_url(&self) -> Option<String> {
        self.admin
            .as_ref()
            .map(|(listener, _)| format!("{}://{}", listener.scheme(), listener.address()))
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.address().port()
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(address = %self.api.address(), tls = self.api.is_tls(), "accepter listening");
        tokio::spawn(
            self.queues
                .run(self.brokers, self.settings, shutdown.clone()),
        );
        if let Some((listener, router)) = self.admin {
            tracing::info!(address = %listener.address(), tls = listener.is_tls(), "admin API listening");
            tokio::spawn(listener.serve(router, shutdown.clone()));
        }
        self.api.serve(self.router, shutdown).await
    }
}

/// The admin API (apps, keys, provider settings, stats) and the operator console, on a
/// listener of its own.
fn admin_router(state: AppState) -> Router {
    with_layers(routes::admin(), state)
}

/// The app API and the operations endpoints.
fn router(state: AppState) -> Router {
    let ready = Readiness::new()
        .rabbitmq(state.publisher.clone())
        .redis(state.redis.clone())
        .mongodb(state.mongo.clone())
        .build();
    with_layers(routes::api(), state).merge(sprayer_shared::ops::router(ready))
}

/// Problem answers for unknown routes and methods, the body limit, metrics and traces.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.settings.accepter.max_body_bytes;
    routes
        .fallback(problem::no_route)
        .method_not_allowed_fallback(problem::wrong_method)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http())
}

/// The app registry over the configured MongoDB, for the administration CLI.
pub async fn apps(settings: &Settings) -> Result<Apps, mongodb::error::Error> {
    let mongo = Mongo::connect(&settings.mongodb).await?;
    mongo.ensure_indexes(settings.mongodb.retention).await?;
    Ok(Apps::new(mongo, settings.accepter.key_cache_ttl))
}
