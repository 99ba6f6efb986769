//! A confirming publisher that reconnects on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, Connection};
use tokio::sync::Mutex;

use super::{AmqpError, Brokers, Outgoing, Topology, within_setup_time};

/// A publisher with confirms over a few shared channels of one connection, taken in turn (the
/// broker handles each channel in one process: one channel for every concurrent request would
/// be the bottleneck). It connects on first use and again after the connection breaks, to the
/// next of its [`Brokers`]; while no broker is reachable it fails fast for a second between
/// attempts, so callers can answer 503 at once.
pub struct Publisher {
    brokers: Brokers,
    topology: Topology,
    state: Mutex<PublisherState>,
    turn: AtomicUsize,
}

#[derive(Default)]
struct PublisherState {
    live: Option<(Connection, Vec<lapin::Channel>)>,
    last_failure: Option<(Instant, String)>,
}

/// Channels a publisher spreads its publishes over.
const PUBLISH_CHANNELS: usize = 8;

const RETRY_CONNECT_AFTER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Publisher {
    /// A publisher for `url` (one broker URL or a comma-separated list: see [`Brokers`]),
    /// declaring `topology` on every new connection.
    pub fn new(url: &str, topology: Topology) -> Publisher {
        Publisher::with_brokers(Brokers::new(url), topology)
    }

    /// A publisher for `brokers` (see [`Brokers::for_settings`]), declaring `topology` on
    /// every new connection.
    pub fn with_brokers(brokers: Brokers, topology: Topology) -> Publisher {
        Publisher {
            brokers,
            topology,
            state: Mutex::new(PublisherState::default()),
            turn: AtomicUsize::new(0),
        }
    }

    /// The publisher's brokers, for a consumer of the same process to connect to (starting
    /// from the first).
    pub fn brokers(&self) -> Brokers {
        self.brokers.clone()
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<lapin::Channel, AmqpError> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().await;
        if let Some((connection, channels)) = &state.live {
            let channel = &channels[turn % channels.len()];
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            tracing::warn!("rabbitmq publisher connection lost; reconnecting");
            state.live = None;
        }
        if let Some((at, reason)) = &state.last_failure
            && at.elapsed() < RETRY_CONNECT_AFTER
        {
            return Err(AmqpError::Unavailable(reason.clone()));
        }
        match self.open().await {
            Ok((connection, channels)) => {
                let channel = channels[turn % channels.len()].clone();
                state.live = Some((connection, channels));
                state.last_failure = None;
                Ok(channel)
            }
            Err(error) => {
                state.last_failure = Some((Instant::now(), error.to_string()));
                Err(error)
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Vec<lapin::Channel>), AmqpError> {
        let connection = self.brokers.connect(CONNECT_TIMEOUT).await?;
        let channels = within_setup_time("setting up the publisher", async {
            let mut channels = Vec::with_capacity(PUBLISH_CHANNELS);
            for _ in 0..PUBLISH_CHANNELS {
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                channels.push(channel);
            }
            self.topology.declare_all(&channels[0]).await?;
            Ok(channels)
        })
        .await?;
        Ok((connection, channels))
    }

    /// Whether the broker is reachable now.
    pub async fn check(&self) -> Result<(), AmqpError> {
        self.channel().await.map(|_| ())
    }

    /// Publishes every message (persistent, JSON) and waits until the broker confirmed them all.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        // Each publish is confirmed: the broker's work per message is one of these and one
        // delivery with its ack (`sprayer_amqp_deliveries_total`).
        metrics::counter!("sprayer_amqp_publishes_total").increment(messages.len() as u64);
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"));
            if let Some(kind) = message.kind {
                properties = properties.with_type(ShortString::from(kind));
            }
            let confirm = channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )
                .await;
            match confirm {
                Ok(confirm) => confirms.push(confirm),
                Err(error) => {
                    self.forget(&channel).await;
                    return Err(error.into());
                }
            }
        }
        let confirmations = try_join_all(confirms).await;
        match confirmations {
            Ok(confirmations)
                if confirmations
                    .iter()
                    .all(|c| matches!(c, Confirmation::Ack(_))) =>
            {
                Ok(())
            }
            Ok(_) => Err(AmqpError::Nacked),
            Err(error) => {
                self.forget(&channel).await;
                Err(error.into())
            }
        }
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), AmqpError> {
        self.publish_all(std::slice::from_ref(&message)).await
    }

    /// Publishes app events (presence, endpoint state, inbound SMS) as one status message and
    /// waits for its confirm.
    pub async fn publish_app_events(
        &self,
        events: Vec<crate::model::AppEvent>,
    ) -> Result<(), AmqpError> {
        let batch = crate::model::StatusBatch {
            app_events: events,
            steps: Vec::new(),
            ..crate::model::StatusBatch::default()
        };
        self.publish(self.topology().status_message(&batch)?).await
    }

    async fn forget(&self, broken: &lapin::Channel) {
        let mut state = self.state.lock().await;
        if state
            .live
            .as_ref()
            .is_some_and(|(_, channels)| channels.iter().any(|channel| channel.id() == broken.id()))
        {
            state.live = None;
        }
    }
}
