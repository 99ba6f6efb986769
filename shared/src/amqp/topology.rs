//! The exchanges and queues, their names and arguments, declared idempotently by every
//! service.
//!
//! ```text
//! <p>sprayer.jobs (direct) ──<channel>──► <p>jobs.<channel> ──rejected──► <p>jobs.<channel>.dead
//! <p>jobs.<channel>.retry.<delay> (TTL) ──expired──► <p>sprayer.jobs ──<channel>──► <p>jobs.<channel>
//! <p>sprayer.status (direct) ──status──► <p>status ──rejected──► <p>status.dead
//!                             ──status──► <p>events ──rejected──► <p>events.dead
//!                             ──status──► <p>steps ──rejected──► <p>steps.dead
//! ```
//!
//! `events` (a copy of every status message, for the events service's feed writer) is declared
//! by the events service only, so an installation that does not run it keeps no copies.

use std::time::Duration;

use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::AmqpError;
use super::envelope::STATUS_ROUTING_KEY;
use crate::config::{AmqpSettings, QueueType};
use crate::model::Channel;

/// Names and arguments of every exchange and queue, from the settings.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    retry_tiers: Vec<Duration>,
    queue_type: QueueType,
    queue_expires: Option<Duration>,
}

impl Topology {
    /// The topology the settings describe.
    pub fn new(settings: &AmqpSettings) -> Topology {
        Topology {
            prefix: settings.prefix.clone(),
            retry_tiers: settings.retry_tiers.clone(),
            queue_type: settings.queue_type,
            queue_expires: settings.queue_expires,
        }
    }

    /// The exchange jobs are published to, routed by channel name.
    pub fn jobs_exchange(&self) -> String {
        format!("{}sprayer.jobs", self.prefix)
    }

    /// The exchange status batches are published to.
    pub fn status_exchange(&self) -> String {
        format!("{}sprayer.status", self.prefix)
    }

    /// `jobs.<channel>`: what the channel's dispatchers consume.
    pub fn jobs_queue(&self, channel: Channel) -> String {
        format!("{}jobs.{channel}", self.prefix)
    }

    /// `jobs.<channel>.dead`: jobs given up on.
    pub fn dead_queue(&self, channel: Channel) -> String {
        format!("{}jobs.{channel}.dead", self.prefix)
    }

    /// `jobs.<channel>.retry.<delay>` for retry tier `tier` (0-based).
    pub fn retry_queue(&self, channel: Channel, tier: usize) -> Option<String> {
        let delay = self.retry_tiers.get(tier)?;
        Some(format!(
            "{}jobs.{channel}.retry.{}",
            self.prefix,
            tier_label(*delay)
        ))
    }

    /// The delay of each retry tier.
    pub fn retry_tiers(&self) -> &[Duration] {
        &self.retry_tiers
    }

    /// The queue the feeder consumes.
    pub fn status_queue(&self) -> String {
        format!("{}status", self.prefix)
    }

    /// Where status messages that cannot be read are kept.
    pub fn status_dead_queue(&self) -> String {
        format!("{}status.dead", self.prefix)
    }

    /// The queue the scheduler's step watcher consumes: a copy of every status message, from
    /// which it learns the outcomes of escalation steps.
    pub fn steps_queue(&self) -> String {
        format!("{}steps", self.prefix)
    }

    /// Where status messages the step watcher cannot read go.
    pub fn steps_dead_queue(&self) -> String {
        format!("{}steps.dead", self.prefix)
    }

    /// The queue the events service's feed writer consumes: a copy of every status message.
    pub fn events_queue(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Where status messages the feed writer cannot read are kept.
    pub fn events_dead_queue(&self) -> String {
        format!("{}events.dead", self.prefix)
    }

    /// The arguments every queue gets: its type and, when set, its expiry. Only arguments that
    /// classic and quorum queues both take are used (no priorities, no exclusive or auto-delete
    /// queues), so `amqp.queue_type` switches every queue.
    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            arguments.insert("x-queue-type".into(), string_value("quorum"));
        }
        if let Some(expires) = self.queue_expires {
            arguments.insert("x-expires".into(), millis_value(expires));
        }
        arguments
    }

    /// Dead-letters to `exchange` with `routing_key`. A quorum queue does it at least once (the
    /// broker keeps the message until the target queue confirmed it; this needs `reject-publish`
    /// overflow), so that a retry or a dead job is not dropped while a node fails over.
    fn dead_letter_to(&self, arguments: &mut FieldTable, exchange: &str, routing_key: &str) {
        arguments.insert("x-dead-letter-exchange".into(), string_value(exchange));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            string_value(routing_key),
        );
        if self.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-dead-letter-strategy".into(),
                string_value("at-least-once"),
            );
            arguments.insert("x-overflow".into(), string_value("reject-publish"));
        }
    }

    /// Declares the jobs exchange and the queues of `channel` (main, retry tiers, dead).
    pub async fn declare_channel(
        &self,
        amqp: &lapin::Channel,
        channel: Channel,
    ) -> Result<(), AmqpError> {
        let jobs_exchange = self.jobs_exchange();
        declare_exchange(amqp, &jobs_exchange).await?;
        let dead = self.dead_queue(channel);
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut main_arguments = self.queue_arguments();
        self.dead_letter_to(&mut main_arguments, "", &dead);
        if channel == Channel::Ws {
            // One deliverer at a time stores the WebSocket jobs, in queue order: that keeps each
            // user's inbox in sending order. Another node takes over when it goes away.
            main_arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        let main = self.jobs_queue(channel);
        declare_queue(amqp, &main, main_arguments).await?;
        bind(amqp, &main, &jobs_exchange, channel.as_str()).await?;
        for (tier, delay) in self.retry_tiers.iter().enumerate() {
            let mut arguments = self.queue_arguments();
            arguments.insert("x-message-ttl".into(), millis_value(*delay));
            self.dead_letter_to(&mut arguments, &jobs_exchange, channel.as_str());
            if let Some(queue) = self.retry_queue(channel, tier) {
                declare_queue(amqp, &queue, arguments).await?;
            }
        }
        Ok(())
    }

    /// Declares the status exchange and queues.
    pub async fn declare_status(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        let exchange = self.status_exchange();
        declare_exchange(amqp, &exchange).await?;
        let dead = self.status_dead_queue();
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut arguments = self.queue_arguments();
        self.dead_letter_to(&mut arguments, "", &dead);
        let queue = self.status_queue();
        declare_queue(amqp, &queue, arguments).await?;
        bind(amqp, &queue, &exchange, STATUS_ROUTING_KEY).await
    }

    /// Declares the events queue, bound beside the status queue. It has a single active
    /// consumer: one feed writer at a time gives every event its place in the feed.
    pub async fn declare_events(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        self.declare_status(amqp).await?;
        let dead = self.events_dead_queue();
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut arguments = self.queue_arguments();
        self.dead_letter_to(&mut arguments, "", &dead);
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        let queue = self.events_queue();
        declare_queue(amqp, &queue, arguments).await?;
        bind(amqp, &queue, &self.status_exchange(), STATUS_ROUTING_KEY).await
    }

    /// Declares the steps queue, bound beside the status queue. Every publisher declares it
    /// (see [`Topology::declare_all`]), so it holds the outcomes of a planned message from its
    /// first delivery on, even before a scheduler has started.
    pub async fn declare_steps(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        self.declare_status(amqp).await?;
        let dead = self.steps_dead_queue();
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut arguments = self.queue_arguments();
        self.dead_letter_to(&mut arguments, "", &dead);
        let queue = self.steps_queue();
        declare_queue(amqp, &queue, arguments).await?;
        bind(amqp, &queue, &self.status_exchange(), STATUS_ROUTING_KEY).await
    }

    /// Declares everything but the events queue: the status path, the steps queue and every
    /// channel's queues.
    pub async fn declare_all(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        self.declare_steps(amqp).await?;
        for channel in Channel::ALL {
            self.declare_channel(amqp, channel).await?;
        }
        Ok(())
    }
}

/// `1s`, `10s`, `10m`, `1500ms`: the label of a retry tier in its queue name.
fn tier_label(delay: Duration) -> String {
    let millis = delay.as_millis();
    if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn millis_value(duration: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

async fn declare_exchange(amqp: &lapin::Channel, name: &str) -> Result<(), AmqpError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    amqp.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        options,
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn declare_queue(
    amqp: &lapin::Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    amqp.queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    Ok(())
}

async fn bind(
    amqp: &lapin::Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), AmqpError> {
    amqp.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use lapin::types::ShortString;

    use super::*;
    #[test]
    fn names_carry_the_prefix_and_the_tier_delay() {
        let settings = AmqpSettings {
            prefix: "t1.".into(),
            retry_tiers: vec![
                Duration::from_millis(1500),
                Duration::from_secs(10),
                Duration::from_secs(600),
            ],
            ..AmqpSettings::default()
        };
        let topology = Topology::new(&settings);
        assert_eq!(topology.jobs_queue(Channel::Http), "t1.jobs.http");
        assert_eq!(
            topology.retry_queue(Channel::Http, 0).as_deref(),
            Some("t1.jobs.http.retry.1500ms")
        );
        assert_eq!(
            topology.retry_queue(Channel::Http, 1).as_deref(),
            Some("t1.jobs.http.retry.10s")
        );
        assert_eq!(
            topology.retry_queue(Channel::Http, 2).as_deref(),
            Some("t1.jobs.http.retry.10m")
        );
        assert_eq!(topology.retry_queue(Channel::Http, 3), None);
        assert_eq!(topology.dead_queue(Channel::Sms), "t1.jobs.sms.dead");
    }

    #[test]
    fn quorum_queues_dead_letter_at_least_once_and_classic_ones_keep_their_arguments() {
        let quorum = Topology::new(&AmqpSettings {
            queue_type: QueueType::Quorum,
            queue_expires: Some(Duration::from_secs(60)),
            ..AmqpSettings::default()
        });
        let mut arguments = quorum.queue_arguments();
        assert!(arguments.contains_key("x-queue-type"));
        assert!(arguments.contains_key("x-expires"));
        quorum.dead_letter_to(&mut arguments, "", "jobs.http.dead");
        for key in ["x-dead-letter-strategy", "x-overflow"] {
            assert!(arguments.contains_key(key), "{key}");
        }
        let classic = Topology::new(&AmqpSettings::default());
        let mut arguments = classic.queue_arguments();
        classic.dead_letter_to(&mut arguments, "", "jobs.http.dead");
        let keys: Vec<&str> = arguments.inner().keys().map(ShortString::as_str).collect();
        assert_eq!(
            keys,
            ["x-dead-letter-exchange", "x-dead-letter-routing-key"]
        );
    }
}
