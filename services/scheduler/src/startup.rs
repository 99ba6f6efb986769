//! Building and running the scheduler.

use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{Brokers, Publisher, Topology};
use sprayer_shared::schedule::Keys;
use tokio_util::sync::CancellationToken;

use crate::plans::Plans;
use crate::steps::Stepper;

/// Redis connections the timer shards share (beside the one of the watcher and readiness).
const SHARD_CONNECTIONS: usize = 4;

/// Why the scheduler could not start.
pub type StartError = sprayer_shared::StartError;

/// A built scheduler.
pub struct Scheduler {
    stepper: Arc<Stepper>,
    topology: Topology,
    brokers: Brokers,
}

impl Scheduler {
    /// Connects to Redis; the broker is reached when the work starts.
    pub async fn build(settings: Settings) -> Result<Scheduler, StartError> {
        let redis = sprayer_shared::redis::connect(&settings.redis).await?;
        let mut shard_connections = Vec::with_capacity(SHARD_CONNECTIONS);
        for _ in 0..SHARD_CONNECTIONS {
            shard_connections.push(sprayer_shared::redis::connect(&settings.redis).await?);
        }
        let topology = Topology::new(&settings.amqp);
        let brokers = Brokers::for_settings(&settings.amqp)?;
        let publisher = Arc::new(Publisher::with_brokers(brokers.clone(), topology.clone()));
        Ok(Scheduler {
            stepper: Arc::new(Stepper {
                keys: Keys::new(&settings.amqp.prefix),
                settings: Arc::new(settings),
                redis,
                shard_connections,
                publisher,
                plans: Arc::new(Plans::default()),
            }),
            topology,
            brokers,
        })
    }

    /// Runs until `shutdown`; serves the ops endpoints when `scheduler.ops_listen` is set.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let settings = self.stepper.settings.clone();
        if let Some(listen) = settings.scheduler.ops_listen {
            let ready = sprayer_shared::ops::Readiness::new()
                .redis(self.stepper.redis.clone())
                .rabbitmq(self.stepper.publisher.clone())
                .build();
            sprayer_shared::ops::serve_ops(
                listen,
                settings
                    .scheduler
                    .ops_tls
                    .as_ref()
                    .map(|tls| tls.files("scheduler.ops_tls"))
                    .as_ref(),
                ready,
                shutdown.clone(),
            )
            .await?;
        }
        let watcher = tokio::spawn(crate::watcher::run(
            self.stepper.clone(),
            self.topology,
            self.brokers,
            shutdown.clone(),
        ));
        crate::timers::run(self.stepper, shutdown).await;
        let _ = watcher.await;
        Ok(())
    }
}
