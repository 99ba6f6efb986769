//! Every Sprayer service in one process: the accepter, one dispatcher per served channel, the
//! WebSocket deliverer (when `ws` is served) and the feeder, sharing one shutdown token. For a
//! laptop, for the tests, and for small installations. [`Role`]s pick a subset, so the same
//! binary can run a single service (`sprayer run --only deliverer`).

use std::net::SocketAddr;

use sprayer_accepter::Accepter;
use sprayer_deliverer::Deliverer;
use sprayer_dispatcher::Dispatcher;
use sprayer_feeder::Feeder;
use sprayer_shared::Settings;
use sprayer_shared::model::Channel;
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
    /// The deliverer could not start.
    #[error("deliverer: {0}")]
    Deliverer(#[from] sprayer_deliverer::app::StartError),
}

/// A service this process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The REST API.
    Accepter,
    /// One dispatcher per served channel but `ws`.
    Dispatchers,
    /// The WebSocket deliverer (when `ws` is served).
    Deliverer,
    /// The status feeder.
    Feeder,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::Accepter,
        Role::Dispatchers,
        Role::Deliverer,
        Role::Feeder,
    ];
}

/// The services, built and ready to run.
pub struct Sprayer {
    accepter: Option<Accepter>,
    dispatchers: Vec<Dispatcher>,
    deliverer: Option<Deliverer>,
    feeder: Option<Feeder>,
}

impl Sprayer {
    /// Builds every service from one set of settings; the listeners are bound now.
    pub async fn build(settings: Settings) -> Result<Sprayer, StartError> {
        Self::build_roles(settings, &Role::ALL).await
    }

    /// Builds the services of `roles`.
    pub async fn build_roles(
        mut settings: Settings,
        roles: &[Role],
    ) -> Result<Sprayer, StartError> {
        let all = roles.contains(&Role::Accepter);
        if all {
            // One process, one metrics registry: the accepter's /metrics covers every service.
            settings.dispatcher.ops_listen = None;
            settings.feeder.ops_listen = None;
        }
        let mut dispatchers = Vec::new();
        if roles.contains(&Role::Dispatchers) {
            for channel in &settings.accepter.channels {
                if *channel != Channel::Ws {
                    dispatchers.push(Dispatcher::build(settings.clone(), *channel).await?);
                }
            }
        }
        let serves_ws = settings.accepter.channels.contains(&Channel::Ws);
        let deliverer = if roles.contains(&Role::Deliverer) && serves_ws {
            Some(Deliverer::build(settings.clone()).await?)
        } else {
            None
        };
        let feeder = if roles.contains(&Role::Feeder) {
            Some(Feeder::build(settings.clone()).await?)
        } else {
            None
        };
        let accepter = if all {
            Some(Accepter::build(settings).await?)
        } else {
            None
        };
        Ok(Sprayer {
            accepter,
            dispatchers,
            deliverer,
            feeder,
        })
    }

    /// Where the API listens, when this process runs it.
    pub fn address(&self) -> Option<SocketAddr> {
        self.accepter.as_ref().map(Accepter::address)
    }

    /// The API's base URL (`http://…` or `https://…`), when this process runs it.
    pub fn url(&self) -> Option<String> {
        self.accepter.as_ref().map(Accepter::url)
    }

    /// The admin API's base URL, when this process runs it (the accepter with `admin.token`).
    pub fn admin_url(&self) -> Option<String> {
        self.accepter.as_ref().and_then(Accepter::admin_url)
    }

    /// Where `/v1/ws` listens, when this process runs the deliverer.
    pub fn deliverer_address(&self) -> Option<SocketAddr> {
        self.deliverer.as_ref().map(Deliverer::address)
    }

    /// The deliverer's base URL (`ws://…` or `wss://…`), when this process runs it.
    pub fn ws_url(&self) -> Option<String> {
        self.deliverer.as_ref().map(Deliverer::ws_url)
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
        if let Some(deliverer) = self.deliverer {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = deliverer.run_until_stopped(shutdown.clone()).await {
                    tracing::error!(%error, "deliverer failed; stopping");
                    shutdown.cancel();
                }
            });
        }
        if let Some(feeder) = self.feeder {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = feeder.run_until_stopped(shutdown).await {
                    tracing::error!(%error, "feeder failed");
                }
            });
        }
        if let Some(accepter) = self.accepter {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = accepter.run_until_stopped(shutdown.clone()).await {
                    tracing::error!(%error, "accepter failed; stopping");
                    shutdown.cancel();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}
