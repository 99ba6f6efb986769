//! Every Sprayer service in one process: the accepter, one dispatcher per served channel, the
//! WebSocket deliverer (when `ws` is served), the feeder, the events service and the scheduler, sharing one
//! shutdown token. For a
//! laptop, for the tests, and for small installations. [`Role`]s pick a subset, so the same
//! binary can run a single service (`sprayer run --only deliverer`).

use std::net::SocketAddr;

use sprayer_accepter::Accepter;
use sprayer_deliverer::Deliverer;
use sprayer_dispatcher::Dispatcher;
use sprayer_events::Events;
use sprayer_feeder::Feeder;
use sprayer_scheduler::Scheduler;
use sprayer_shared::Settings;
use sprayer_shared::model::Channel;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The accepter could not start.
    #[error("accepter: {0}")]
    Accepter(sprayer_accepter::startup::StartError),
    /// A dispatcher could not start.
    #[error("dispatcher: {0}")]
    Dispatcher(#[from] sprayer_dispatcher::startup::StartError),
    /// The feeder could not start.
    #[error("feeder: {0}")]
    Feeder(sprayer_feeder::startup::StartError),
    /// The deliverer could not start.
    #[error("deliverer: {0}")]
    Deliverer(#[from] sprayer_deliverer::startup::StartError),
    /// The events service could not start.
    #[error("events: {0}")]
    Events(sprayer_events::startup::StartError),
    /// The scheduler could not start.
    #[error("scheduler: {0}")]
    Scheduler(sprayer_scheduler::startup::StartError),
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
    /// The events service: event feeds and event endpoints.
    Events,
    /// The scheduler: scheduled sends and escalation steps.
    Scheduler,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Accepter,
        Role::Dispatchers,
        Role::Deliverer,
        Role::Feeder,
        Role::Events,
        Role::Scheduler,
    ];
}

/// The services, built and ready to run.
pub struct Sprayer {
    accepter: Option<Accepter>,
    dispatchers: Vec<Dispatcher>,
    deliverer: Option<Deliverer>,
    feeder: Option<Feeder>,
    events: Option<Events>,
    scheduler: Option<Scheduler>,
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
            settings.events.ops_listen = None;
            settings.scheduler.ops_listen = None;
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
            Some(
                Feeder::build(settings.clone())
                    .await
                    .map_err(StartError::Feeder)?,
            )
        } else {
            None
        };
        let events = if roles.contains(&Role::Events) {
            Some(
                Events::build(settings.clone())
                    .await
                    .map_err(StartError::Events)?,
            )
        } else {
            None
        };
        let scheduler = if roles.contains(&Role::Scheduler) {
            Some(
                Scheduler::build(settings.clone())
                    .await
                    .map_err(StartError::Scheduler)?,
            )
        } else {
            None
        };
        let accepter = if all {
            Some(
                Accepter::build(settings)
                    .await
                    .map_err(StartError::Accepter)?,
            )
        } else {
            None
        };
        Ok(Sprayer {
            accepter,
            dispatchers,
            deliverer,
            feeder,
            events,
            scheduler,
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
    /// Every service is treated alike: the first one that fails stops them all (the others
    /// finish what they hold), and its failure, naming it, is what this returns, so that the
    /// process exits non-zero and an orchestrator restarts it.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServiceFailed> {
        let mut tasks: JoinSet<Result<(), ServiceFailed>> = JoinSet::new();
        let failed = |service: String| {
            move |error: &dyn std::fmt::Display| ServiceFailed {
                service,
                reason: error.to_string(),
            }
        };
        for dispatcher in self.dispatchers {
            let name = format!("dispatcher {}", dispatcher.channel());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                dispatcher
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed(name)(&error))
            });
        }
        if let Some(deliverer) = self.deliverer {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                deliverer
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed("deliverer".to_owned())(&error))
            });
        }
        if let Some(feeder) = self.feeder {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                feeder
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed("feeder".to_owned())(&error))
            });
        }
        if let Some(events) = self.events {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                events
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed("events".to_owned())(&error))
            });
        }
        if let Some(scheduler) = self.scheduler {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                scheduler
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed("scheduler".to_owned())(&error))
            });
        }
        if let Some(accepter) = self.accepter {
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                accepter
                    .run_until_stopped(shutdown)
                    .await
                    .map_err(|error| failed("accepter".to_owned())(&error))
            });
        }
        let mut first_failure = None;
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.unwrap_or_else(|error| {
                Err(ServiceFailed {
                    service: "a service task".to_owned(),
                    reason: error.to_string(),
                })
            });
            if let Err(failure) = outcome {
                tracing::error!(service = %failure.service, reason = %failure.reason, "service failed; stopping every service");
                shutdown.cancel();
                first_failure.get_or_insert(failure);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// A service of the process stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{service} failed: {reason}")]
pub struct ServiceFailed {
    /// The service (`accepter`, `dispatcher sms`, `deliverer`, `feeder`, `events`).
    pub service: String,
    /// Why.
    pub reason: String,
}
