//! Queue depths: every [`POLL_EVERY`] the accepter asks RabbitMQ how many messages wait in each
//! of the installation's queues and how many consumers take from them (passive declares on a
//! connection of its own), exports the answers as the gauges `sprayer_queue_messages{queue}` and
//! `sprayer_queue_consumers{queue}`, and keeps the last answer for the admin stats.
//!
//! Queues are named by role, without the installation's prefix (`jobs.http`,
//! `jobs.http.retry.10s`, `jobs.http.dead`, `status`, `status.dead`, `steps`, `steps.dead`), so
//! the label stays bounded.
//! A queue that does not exist (yet) is left out and asked about again only every
//! [`ABSENT_RECHECK`] polls (the broker answers such a declare by closing the channel, which the
//! client logs as an error); while the broker is unreachable the last answer stays, with its
//! time, and the poll tries again on its next turn.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Topology};
use sprayer_shared::model::now_ms;
use tokio_util::sync::CancellationToken;

/// How often the queues are polled.
pub const POLL_EVERY: Duration = Duration::from_secs(15);
/// How long one poll of every queue may take before it counts as failed.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Polls an absent queue is skipped for before it is asked about again (2 min).
pub const ABSENT_RECHECK: u32 = 8;

/// One queue as the broker last described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Messages ready for delivery (not those delivered and not yet acked).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// The last successful poll.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the broker answered, in ms since the epoch; `None` before its first answer.
    pub polled_at: Option<i64>,
    /// Every existing queue by role name, in the order of the topology: per served channel its
    /// jobs, retry tiers and dead letters, then the status queues.
    pub queues: Vec<(String, QueueDepth)>,
}

/// The last answer of the poll, shared with the handlers.
#[derive(Debug, Clone, Default)]
pub struct QueueDepths {
    last: Arc<RwLock<Snapshot>>,
}

impl QueueDepths {
    /// The last successful poll (empty before the first).
    pub fn snapshot(&self) -> Snapshot {
        self.last
            .read()
            .map(|snapshot| snapshot.clone())
            .unwrap_or_default()
    }

    fn store(&self, snapshot: Snapshot) {
        if let Ok(mut last) = self.last.write() {
            *last = snapshot;
        }
    }

    /// Polls now and then every [`POLL_EVERY`] until `shutdown`.
    pub async fn run(self, brokers: Brokers, settings: Arc<Settings>, shutdown: CancellationToken) {
        let queues = watched_queues(&settings);
        let mut poller = Poller {
            brokers,
            connection: None,
            channel: None,
            absent: HashMap::new(),
        };
        let mut failing = false;
        loop {
            let polled = tokio::select! {
                polled = tokio::time::timeout(POLL_TIMEOUT, poller.poll(&queues)) => polled,
                () = shutdown.cancelled() => break,
            };
            match polled {
                Ok(Ok(depths)) => {
                    if failing {
                        tracing::info!("queue depths polled again");
                        failing = false;
                    }
                    self.export(&queues, &depths);
                    self.store(Snapshot {
                        polled_at: Some(now_ms()),
                        queues: depths,
                    });
                }
                failed => {
                    metrics::counter!("sprayer_queue_poll_failures_total").increment(1);
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    // Said once per outage: readiness and the publisher report the broker too.
                    if !failing {
                        tracing::warn!(%error, "cannot poll queue depths; trying again every 15 s");
                        failing = true;
                    }
                    poller.forget();
                }
            }
            if !sprayer_shared::shutdown::sleep_or_cancel(POLL_EVERY, &shutdown).await {
                break;
            }
        }
        poller.close().await;
    }

    /// Sets the gauges; a queue gone since the last poll reads 0.
    fn export(&self, queues: &[(String, String)], depths: &[(String, QueueDepth)]) {
        let before = self.snapshot();
        let known = |list: &[(String, QueueDepth)], role: &str| {
            list.iter()
                .find(|(name, _)| name == role)
                .map(|(_, depth)| *depth)
        };
        for (role, _) in queues {
            let depth = match known(depths, role) {
                Some(depth) => depth,
                None if known(&before.queues, role).is_some() => QueueDepth::default(),
                None => continue,
            };
            metrics::gauge!("sprayer_queue_messages", "queue" => role.clone())
                .set(f64::from(depth.messages));
            metrics::gauge!("sprayer_queue_consumers", "queue" => role.clone())
                .set(f64::from(depth.consumers));
        }
    }
}

/// `(role, full name)` of every queue of the served channels, of the status path and of the
/// scheduler's step outcomes.
fn watched_queues(settings: &Settings) -> Vec<(String, String)> {
    let topology = Topology::new(&settings.amqp);
    let mut names = Vec::new();
    for &channel in &settings.accepter.channels {
        names.push(topology.jobs_queue(channel));
        names.extend(
            (0..topology.retry_tiers().len())
                .filter_map(|tier| topology.retry_queue(channel, tier)),
        );
        names.push(topology.dead_queue(channel));
    }
    names.push(topology.status_queue());
    names.push(topology.status_dead_queue());
    names.push(topology.steps_queue());
    names.push(topology.steps_dead_queue());
    let prefix = settings.amqp.prefix.as_str();
    names
        .into_iter()
        .map(|name| {
            let role = name.strip_prefix(prefix).unwrap_or(&name).to_owned();
            (role, name)
        })
        .collect()
}

/// A connection and a channel of the poll's own, opened when needed.
struct Poller {
    brokers: Brokers,
    connection: Option<lapin::Connection>,
    channel: Option<lapin::Channel>,
    /// Queues found absent, with the polls left before asking again.
    absent: HashMap<String, u32>,
}

impl Poller {
    /// Asks the broker about every queue; absent queues are left out.
    async fn poll(
        &mut self,
        queues: &[(String, String)],
    ) -> Result<Vec<(String, QueueDepth)>, AmqpError> {
        let mut depths = Vec::with_capacity(queues.len());
        for (role, name) in queues {
            if let Some(skips) = self.absent.get_mut(role)
                && *skips > 0
            {
                *skips -= 1;
                continue;
            }
            let channel = self.channel().await?;
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match channel
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await
            {
                Ok(queue) => {
                    self.absent.remove(role);
                    depths.push((
                        role.clone(),
                        QueueDepth {
                            messages: queue.message_count(),
                            consumers: queue.consumer_count(),
                        },
                    ));
                }
                // The broker closes the channel on a passive declare of an absent queue.
                Err(error) if is_not_found(&error) => {
                    self.channel = None;
                    self.absent.insert(role.clone(), ABSENT_RECHECK);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(depths)
    }

    async fn channel(&mut self) -> Result<lapin::Channel, AmqpError> {
        if let Some(channel) = &self.channel
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        if !self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.status().connected())
        {
            self.connection = Some(self.brokers.connect(CONNECT_TIMEOUT).await?);
        }
        let Some(connection) = &self.connection else {
            return Err(AmqpError::Unavailable("no connection".into()));
        };
        let channel = connection.create_channel().await?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Drops the connection after a failure, so the next poll starts afresh.
    fn forget(&mut self) {
        self.channel = None;
        self.connection = None;
    }

    async fn close(self) {
        if let Some(connection) = self.connection {
            amqp::close(&connection).await;
        }
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprayer_shared::model::Channel;

    #[test]
    fn queues_are_named_by_role_without_the_prefix() {
        let mut settings = Settings::default();
        settings.amqp.prefix = "t1.".into();
        settings.amqp.retry_tiers = vec![Duration::from_secs(1), Duration::from_secs(600)];
        settings.accepter.channels = vec![Channel::Http];
        let roles: Vec<String> = watched_queues(&settings)
            .into_iter()
            .map(|(role, name)| {
                assert_eq!(name, format!("t1.{role}"));
                role
            })
            .collect();
        assert_eq!(
            roles,
            [
                "jobs.http",
                "jobs.http.retry.1s",
                "jobs.http.retry.10m",
                "jobs.http.dead",
                "status",
                "status.dead",
                "steps",
                "steps.dead"
            ]
        );
    }
}
