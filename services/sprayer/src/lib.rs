//! Every Sprayer service in one process: the accepter, one dispatcher per served channel and the
//! feeder, sharing one shutdown token. For a laptop, for the tests, and for small installations.

use std::net::SocketAddr;

use sprayer_accepter::Accepter;
use sprayer_dispatcher::Dispatcher;
use sprayer_feeder::Feeder;
use sprayer_shared::Settings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The accepter could not start.
    #[error("accepter: {0}")]
    Accepter(#[from] sprayer_accepter::app::StartError),
    /// A dispatcher could not start.
    #[error("dispatcher: {0}")]
    Dispatcher(#[from] sprayer_dispatcher::app::StartError),
    /// The feeder could not start.
    #[error("feeder: {0}")]
    Feeder(#[from] sprayer_feeder::app::StartError),
}

/// Every service, built and ready to run.
pub struct Sprayer {
    accepter: Accepter,
    dispatchers: Vec<Dispatcher>,
    feeder: Feeder,
}

impl Sprayer {
    /// Builds every service from one set of settings; the API listener is bound now.
    pub async fn build(mut settings: Settings) -> Result<Sprayer, StartError> {
        // One process, one metrics registry: the accepter's /metrics covers every service.
        settings.dispatcher.ops_listen = None;
        settings.feeder.ops_listen = None;
        let mut dispatchers = Vec::new();
        for channel in &settings.accepter.channels {
            dispatchers.push(Dispatcher::build(settings.clone(), *channel).await?);
        }
        let feeder = Feeder::build(settings.clone()).await?;
        let accepter = Accepter::build(settings).await?;
        Ok(Sprayer {
            accepter,
            dispatchers,
            feeder,
        })
    }

    /// Where the API listens.
    pub fn address(&self) -> SocketAddr {
        self.accepter.address()
    }

    /// Runs everything until `shutdown`, then waits for every service to finish its work.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        for dispatcher in self.dispatchers {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = dispatcher.run_until_stopped(shutdown).await {
                    tracing::error!(%error, "dispatcher failed");
                }
            });
        }
        let feeder_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = self.feeder.run_until_stopped(feeder_shutdown).await {
                tracing::error!(%error, "feeder failed");
            }
        });
        let accepter_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = self
                .accepter
                .run_until_stopped(accepter_shutdown.clone())
                .await
            {
                tracing::error!(%error, "accepter failed; stopping");
                accepter_shutdown.cancel();
            }
        });
        while tasks.join_next().await.is_some() {}
    }
}
