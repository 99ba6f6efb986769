//! Building and running the feeder.

use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Topology};
use sprayer_shared::mongo::Mongo;
use tokio_util::sync::CancellationToken;

use crate::consumer::Feed;

/// Why the feeder could not start.
pub type StartError = sprayer_shared::StartError;

/// A built feeder.
pub struct Feeder {
    feed: Arc<Feed>,
}

impl Feeder {
    /// Sets up the feeder; indexes are created now if MongoDB answers, else at the first write.
    pub async fn build(settings: Settings) -> Result<Feeder, StartError> {
        let mongo = Mongo::connect(&settings.mongodb).await?;
        if let Err(error) = mongo.ensure_indexes(settings.mongodb.retention).await {
            tracing::warn!(%error, "cannot create MongoDB indexes now; feedback waits for MongoDB");
        }
        Ok(Feeder {
            feed: Arc::new(Feed {
                topology: Topology::new(&settings.amqp),
                brokers: Brokers::for_settings(&settings.amqp)?,
                settings: Arc::new(settings),
                mongo,
            }),
        })
    }

    /// Feeds until `shutdown`; serves the ops endpoints when `feeder.ops_listen` is set.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        if let Some(listen) = self.feed.settings.feeder.ops_listen {
            let ready = sprayer_shared::ops::Readiness::new()
                .mongodb(self.feed.mongo.clone())
                .build();
            sprayer_shared::ops::serve_ops(
                listen,
                self.feed
                    .settings
                    .feeder
                    .ops_tls
                    .as_ref()
                    .map(|tls| tls.files("feeder.ops_tls"))
                    .as_ref(),
                ready,
                shutdown.clone(),
            )
            .await?;
        }
        crate::consumer::run(self.feed, shutdown).await;
        Ok(())
    }
}
