//! Group commit to the broker. Every accepted message is one job per channel and one message
//! record, and a broker message with a confirm for each would bound the accepter by the broker's
//! per-message cost (its publish, its confirm, its delivery to a consumer and that consumer's
//! ack). Instead, what concurrent requests publish to one place goes together: jobs for one
//! channel in one batch message (see [`Topology::job_batch_message`]), message records in one
//! status message. Items that arrive while the last batch is being confirmed go in the next one,
//! so a lone request is published at once and a busy accepter publishes fewer, larger messages.
//! Every request still waits for the confirm of the message that carries its items, so a 202
//! still means the broker holds them.

use std::sync::Arc;

use sprayer_shared::amqp::{AmqpError, Outgoing, Publisher, Topology};
use sprayer_shared::model::Channel;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most items in one broker message.
const MOST_ITEMS: usize = 256;
/// A batch stops growing past this many bytes (a larger item goes alone).
const MOST_BYTES: usize = 512 * 1024;
/// Broker messages being published at once for one destination. One: the next batch gathers
/// while the last is confirmed. In the accept benchmark (64 clients) this gave the largest
/// batches and the highest rate with the lowest p99 (4 in flight: 8,100-9,000 requests/s,
/// p99 ~24 ms; 2: 9,000-9,600, ~18 ms; 1: 10,500-10,600, ~12 ms).
const IN_FLIGHT: usize = 1;

type Waiter = (Vec<u8>, oneshot::Sender<Result<(), String>>);
type Wrap = Box<dyn Fn(&Topology, &[Vec<u8>]) -> Outgoing + Send + Sync>;

/// Gathers JSON items for one destination into shared broker messages; clone freely.
#[derive(Clone)]
struct Committer {
    sender: mpsc::Sender<Waiter>,
}

impl Committer {
    /// Starts the gathering task; `wrap` makes one broker message of a batch of items.
    fn start(publisher: Arc<Publisher>, destination: &'static str, wrap: Wrap) -> Committer {
        let (sender, receiver) = mpsc::channel(4 * MOST_ITEMS);
        tokio::spawn(gather(publisher, destination, wrap, receiver));
        Committer { sender }
    }

    /// Publishes `item`; returns once the broker confirmed the message that carries it.
    async fn publish(&self, item: Vec<u8>) -> Result<(), AmqpError> {
        let stopped = || AmqpError::Unavailable("the publisher stopped".into());
        let (done, confirmed) = oneshot::channel();
        self.sender
            .send((item, done))
            .await
            .map_err(|_| stopped())?;
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(AmqpError::Unavailable(reason)),
            Err(_) => Err(stopped()),
        }
    }
}

async fn gather(
    publisher: Arc<Publisher>,
    destination: &'static str,
    wrap: Wrap,
    mut receiver: mpsc::Receiver<Waiter>,
) {
    let wrap = Arc::new(wrap);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // Waiting for a free slot first lets items gather while the others are in flight.
    while let Ok(slot) = slots.clone().acquire_owned().await {
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut bytes = first.0.len();
        let mut waiters = vec![first];
        while waiters.len() < MOST_ITEMS && bytes < MOST_BYTES {
            match receiver.try_recv() {
                Ok(waiter) => {
                    bytes += waiter.0.len();
                    waiters.push(waiter);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("sprayer_publish_batch_items", "destination" => destination)
            .record(waiters.len() as f64);
        let publisher = publisher.clone();
        let wrap = wrap.clone();
        tokio::spawn(async move {
            let (items, dones): (Vec<_>, Vec<_>) = waiters.into_iter().unzip();
            let message = wrap(publisher.topology(), &items);
            drop(items);
            let result = publisher
                .publish(message)
                .await
                .map_err(|error| error.to_string());
            for done in dones {
                let _ = done.send(result.clone());
            }
            drop(slot);
        });
    }
}

/// The accepter's publishing: one committer per job channel and one for message records.
#[derive(Clone)]
pub struct Commits {
    jobs: Vec<(Channel, Committer)>,
    records: Committer,
}

impl Commits {
    /// Starts a gathering task per destination.
    pub fn start(publisher: &Arc<Publisher>) -> Commits {
        let jobs = Channel::ALL
            .into_iter()
            .map(|channel| {
                let wrap: Wrap = Box::new(move |topology: &Topology, items: &[Vec<u8>]| {
                    topology.job_batch_message(channel, items)
                });
                (
                    channel,
                    Committer::start(publisher.clone(), channel.as_str(), wrap),
                )
            })
            .collect();
        let records = Committer::start(
            publisher.clone(),
            "status",
            Box::new(|topology: &Topology, items: &[Vec<u8>]| topology.records_message(items)),
        );
        Commits { jobs, records }
    }

    /// Publishes one job (its JSON) for `channel`; returns once the broker confirmed it.
    pub async fn job(&self, channel: Channel, job: Vec<u8>) -> Result<(), AmqpError> {
        match self.jobs.iter().find(|(each, _)| *each == channel) {
            Some((_, committer)) => committer.publish(job).await,
            None => Err(AmqpError::Unavailable(format!(
                "no publisher for {channel}"
            ))),
        }
    }

    /// Publishes one message record (its JSON); returns once the broker confirmed it.
    pub async fn record(&self, record: Vec<u8>) -> Result<(), AmqpError> {
        self.records.publish(record).await
    }
}
