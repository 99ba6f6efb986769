//! Building and running one deliverer node: the listener, the `jobs.ws` consumer, the wake-up
//! subscription, the `conn:` refresher, the expiry sweeper and the feedback publisher.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Publisher, Topology};
use sprayer_shared::listen::Listener;
use sprayer_shared::model::NodeId;
use sprayer_shared::ops::Readiness;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::registry::Registry;
use crate::reporter::Reporter;
use crate::storer::Storer;

/// How long sockets get to close after they were told to reconnect elsewhere.
const SOCKET_GRACE: Duration = Duration::from_secs(10);
/// How long queued feedback may take to publish when the node stops.
const FEEDBACK_GRACE: Duration = Duration::from_secs(15);

/// Why a deliverer node could not start.
pub type StartError = sprayer_shared::StartError<NodeIdError>;

/// `deliverer.node_id` is not a node id.
#[derive(Debug, thiserror::Error)]
#[error("deliverer.node_id: {0}")]
pub struct NodeIdError(#[from] sprayer_shared::model::IdError);

/// A built node, bound and ready to run.
pub struct Deliverer {
    hub: Arc<Hub>,
    storer: Arc<Storer>,
    pubsub: Vec<redis::Client>,
    listener: Listener,
    publisher: Arc<Publisher>,
    reporter_task: JoinHandle<()>,
    reporter_stop: CancellationToken,
}

impl Deliverer {
    /// Connects to Redis, binds `deliverer.listen` and prepares the tasks.
    pub async fn build(settings: Settings) -> Result<Deliverer, StartError> {
        let settings = Arc::new(settings);
        let deliverer = &settings.deliverer;
        let pubsub = sprayer_shared::redis::pubsub_clients(&settings.redis)?;
        let redis = sprayer_shared::redis::connect(&settings.redis).await?;
        let publisher = Arc::new(Publisher::with_brokers(
            Brokers::for_settings(&settings.amqp)?,
            Topology::new(&settings.amqp),
        ));
        let node = match &deliverer.node_id {
            Some(id) => NodeId::parse(id.as_str())
                .map_err(|error| StartError::Service(NodeIdError(error)))?,
            None => NodeId::generate(),
        };
        let registry = Arc::new(Registry::new(
            node,
            redis.clone(),
            deliverer.conn_ttl,
            nodes_key(&settings),
        ));
        let reporter_stop = CancellationToken::new();
        let (reporter, reporter_task) = Reporter::start(
            publisher.clone(),
            settings.dispatcher.status_batch,
            settings.dispatcher.status_linger,
            reporter_stop.clone(),
        );
        let listener = Listener::bind(
            deliverer.listen,
            deliverer
                .tls
                .as_ref()
                .map(|tls| tls.files("deliverer.tls"))
                .as_ref(),
        )
        .await?;
        let events = sprayer_shared::amqp::committer::event_committer(
            publisher.clone(),
            settings.dispatcher.status_batch,
            settings.dispatcher.status_linger,
            usize::from(settings.amqp.prefetch),
        );
        let storer = Arc::new(Storer {
            events,
            settings: settings.clone(),
            redis: redis.clone(),
            publisher: publisher.clone(),
            due_key: due_key(&settings),
            seq_key: seq_key(&settings),
            nodes_key: nodes_key(&settings),
            registry: registry.clone(),
        });
        let presence = Arc::new(crate::presence::Presence::new(
            redis.clone(),
            registry.node().clone(),
            &settings,
            publisher.clone(),
        ));
        let hub = Arc::new(Hub {
            presence,
            settings,
            redis,
            registry,
            reporter,
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            publisher: publisher.clone(),
        });
        Ok(Deliverer {
            hub,
            storer,
            pubsub,
            listener,
            publisher,
            reporter_task,
            reporter_stop,
        })
    }

    /// Where `/v1/ws` listens.
    pub fn address(&self) -> SocketAddr {
        self.listener.address()
    }

    /// The base URL of `/v1/ws` (`ws://…` or `wss://…`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.listener.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.listener.address())
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        self.hub.registry.node()
    }

    /// Serves and consumes until `shutdown`; then tells every socket to reconnect elsewhere,
    /// finishes the jobs it holds and publishes the feedback it has.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let hub = self.hub;
        tracing::info!(address = %self.listener.address(), tls = self.listener.is_tls(), node = %hub.registry.node(), "deliverer listening");
        let mut tasks = JoinSet::new();
        tasks.spawn(crate::consumer::run(self.storer.clone(), shutdown.clone()));
        tasks.spawn(crate::wake::listen(
            self.pubsub,
            hub.registry.node().clone(),
            hub.registry.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(hub.registry.clone().keep_alive(shutdown.clone()));
        tasks.spawn(
            hub.presence
                .clone()
                .keep_alive(hub.registry.clone(), shutdown.clone()),
        );
        tasks.spawn(
            hub.presence
                .clone()
                .sweep(hub.settings.deliverer.sweep_interval, shutdown.clone()),
        );
        tasks.spawn(crate::sweeper::run(
            hub.redis.clone(),
            self.storer.due_key.as_str().into(),
            hub.reporter.clone(),
            hub.settings.deliverer.sweep_interval,
            shutdown.clone(),
        ));
        let router = crate::http::router(hub.clone())
            .merge(sprayer_shared::ops::router(readiness(&hub, self.publisher)));
        let server = tokio::spawn(self.listener.serve(router, shutdown.clone()));
        shutdown.cancelled().await;
        hub.draining.cancel();
        hub.tracker.close();
        if tokio::time::timeout(SOCKET_GRACE, hub.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sockets still open after the grace period");
        }
        hub.registry.forget_all().await;
        while tasks.join_next().await.is_some() {}
        self.reporter_stop.cancel();
        if tokio::time::timeout(FEEDBACK_GRACE, self.reporter_task)
            .await
            .is_err()
        {
            tracing::warn!("feedback not all published before stopping");
        }
        tracing::info!("deliverer stopped");
        server.await.unwrap_or(Ok(()))
    }
}

/// `<amqp.prefix>ws-seq`: the last WebSocket sequence number given.
pub fn seq_key(settings: &Settings) -> String {
    format!("{}ws-seq", settings.amqp.prefix)
}

/// `<amqp.prefix>ws-nodes`: ZSET of live deliverer nodes by until when they are known alive.
pub fn nodes_key(settings: &Settings) -> String {
    format!("{}ws-nodes", settings.amqp.prefix)
}

/// `<amqp.prefix>inbox-due`: the index of inboxes by earliest expiry. It carries the queue
/// prefix because its sweeper reports to that installation's status queue.
pub fn due_key(settings: &Settings) -> String {
    format!("{}inbox-due", settings.amqp.prefix)
}

fn readiness(hub: &Hub, publisher: Arc<Publisher>) -> sprayer_shared::ops::ReadinessCheck {
    Readiness::new()
        .until(hub.draining.clone())
        .rabbitmq(publisher)
        .redis(hub.redis.clone())
        .build()
}
