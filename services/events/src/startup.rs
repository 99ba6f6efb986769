//! Building and running the events service.

use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Publisher, Topology};
use sprayer_shared::feed::Feed;
use sprayer_shared::mongo::Mongo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::sender::Senders;
use crate::writer::Writer;

/// Why the events service could not start.
pub type StartError = sprayer_shared::StartError<ClientError>;

/// The HTTP client for event endpoints could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the event HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// A built events service.
pub struct Events {
    writer: Arc<Writer>,
    senders: Arc<Senders>,
    mongo: Mongo,
}

impl Events {
    /// Connects to MongoDB and Redis; indexes are created now if MongoDB answers, else later.
    pub async fn build(settings: Settings) -> Result<Events, StartError> {
        let mongo = Mongo::connect(&settings.mongodb).await?;
        let feed = Feed::new(&mongo);
        if let Err(error) = feed.ensure_indexes().await {
            tracing::warn!(%error, "cannot create the event feed's indexes now");
        }
        let redis = sprayer_shared::redis::connect(&settings.redis).await?;
        let topology = Topology::new(&settings.amqp);
        let brokers = Brokers::for_settings(&settings.amqp)?;
        let (head, head_changes) = watch::channel(0);
        let client =
            Senders::client(&settings).map_err(|error| StartError::Service(error.into()))?;
        let settings = Arc::new(settings);
        let publisher = Arc::new(Publisher::with_brokers(brokers.clone(), topology.clone()));
        Ok(Events {
            writer: Arc::new(Writer {
                settings: settings.clone(),
                feed: feed.clone(),
                topology,
                brokers,
                head,
            }),
            senders: Arc::new(Senders {
                settings,
                feed,
                redis,
                publisher,
                client,
                node: format!("events-{:016x}", rand::random::<u64>()),
                head: head_changes,
            }),
            mongo,
        })
    }

    /// Runs until `shutdown`; serves the ops endpoints when `events.ops_listen` is set.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let settings = self.writer.settings.clone();
        if let Some(listen) = settings.events.ops_listen {
            let ready = sprayer_shared::ops::Readiness::new()
                .mongodb(self.mongo.clone())
                .build();
            sprayer_shared::ops::serve_ops(
                listen,
                settings
                    .events
                    .ops_tls
                    .as_ref()
                    .map(|tls| tls.files("events.ops_tls"))
                    .as_ref(),
                ready,
                shutdown.clone(),
            )
            .await?;
        }
        let retention = tokio::spawn(crate::retention::run(
            self.writer.feed.clone(),
            settings.events.retention,
            shutdown.clone(),
        ));
        let senders = tokio::spawn(crate::sender::run(self.senders, shutdown.clone()));
        crate::writer::run(self.writer, shutdown).await;
        let _ = senders.await;
        let _ = retention.await;
        Ok(())
    }
}
