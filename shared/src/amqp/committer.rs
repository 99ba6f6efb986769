//! Group commit to the broker: what concurrent callers publish to one place goes out together,
//! in one broker message with one confirm, and each caller waits for the confirm of the message
//! that carries its item. A broker message costs the broker a publish, a confirm, a delivery
//! and an ack whatever its size, so fewer, larger messages cost it less per item.
//!
//! Items that arrive while the last message is being confirmed go in the next one. A
//! [`Gathering::linger`] lets the first item of a message wait a moment for others, for
//! publishers whose callers can wait (status events: the delivery is done; only its ack waits);
//! [`Gathering::flush_at`] ends that wait once as many callers are waiting as can be (a
//! consumer's prefetch), so that lingering never caps a busy publisher's rate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{AmqpError, Outgoing, Publisher, Topology};

/// How a committer gathers.
#[derive(Debug, Clone, Copy)]
pub struct Gathering {
    /// Most weight (items, or bytes: see [`Committer::start`]) in one broker message; a larger
    /// item goes alone.
    pub most: usize,
    /// How long the first item waits for others (zero: none; what arrived meanwhile goes).
    pub linger: Duration,
    /// Callers waiting at which a lingering message goes at once.
    pub flush_at: usize,
}

type Waiter<T> = (T, oneshot::Sender<Result<(), String>>);
type Wrap<T> = Box<dyn Fn(&Topology, Vec<T>) -> Result<Vec<Outgoing>, AmqpError> + Send + Sync>;

/// Gathers items of one kind for one destination into shared broker messages; clone freely.
pub struct Committer<T> {
    sender: mpsc::Sender<Waiter<T>>,
}

impl<T> Clone for Committer<T> {
    fn clone(&self) -> Self {
        Committer {
            sender: self.sender.clone(),
        }
    }
}

/// Broker messages being published at once for one destination. One: the next batch gathers
/// while the last is confirmed. In the accept benchmark (64 clients) this gave the largest
/// batches and the highest rate with the lowest p99 (4 in flight: 8,100-9,000 requests/s,
/// p99 ~24 ms; 2: 9,000-9,600, ~18 ms; 1: 10,500-10,600, ~12 ms).
const IN_FLIGHT: usize = 1;

impl<T: Send + 'static> Committer<T> {
    /// Starts the gathering task. `weight` measures an item against [`Gathering::most`];
    /// `wrap` makes the broker messages of a batch (usually one); `destination` names the
    /// batches in `sprayer_publish_batch_items`.
    pub fn start(
        publisher: Arc<Publisher>,
        destination: &'static str,
        gathering: Gathering,
        weight: fn(&T) -> usize,
        wrap: Wrap<T>,
    ) -> Committer<T> {
        let (sender, receiver) = mpsc::channel(4 * gathering.flush_at.max(256));
        tokio::spawn(gather(
            publisher,
            destination,
            gathering,
            weight,
            wrap,
            receiver,
        ));
        Committer { sender }
    }

    /// Publishes `item`; returns once the broker confirmed the message that carries it.
    pub async fn publish(&self, item: T) -> Result<(), AmqpError> {
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

async fn gather<T: Send + 'static>(
    publisher: Arc<Publisher>,
    destination: &'static str,
    gathering: Gathering,
    weight: fn(&T) -> usize,
    wrap: Wrap<T>,
    mut receiver: mpsc::Receiver<Waiter<T>>,
) {
    let wrap = Arc::new(wrap);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // Waiting for a free slot first lets items gather while the others are in flight.
    while let Ok(slot) = slots.clone().acquire_owned().await {
        let Some(first) = receiver.recv().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + gathering.linger;
        let mut gathered = weight(&first.0);
        let mut waiters = vec![first];
        let full = |gathered: usize, waiters: usize| {
            gathered >= gathering.most || waiters >= gathering.flush_at.max(1)
        };
        while !full(gathered, waiters.len()) {
            let next = match receiver.try_recv() {
                Ok(waiter) => Some(waiter),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if gathering.linger.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, receiver.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            let Some(waiter) = next else { break };
            gathered += weight(&waiter.0);
            waiters.push(waiter);
        }
        metrics::histogram!("sprayer_publish_batch_items", "destination" => destination)
            .record(waiters.len() as f64);
        let publisher = publisher.clone();
        let wrap = wrap.clone();
        tokio::spawn(async move {
            let (items, dones): (Vec<_>, Vec<_>) = waiters.into_iter().unzip();
            let result = match wrap(publisher.topology(), items) {
                Ok(messages) => publisher.publish_all(&messages).await,
                Err(error) => Err(error),
            }
            .map_err(|error| error.to_string());
            for done in dones {
                let _ = done.send(result.clone());
            }
            drop(slot);
        });
    }
}

/// The status events of several callers, gathered into status messages of at most
/// `status_batch` events each; for the dispatchers and the deliverer.
pub type EventCommitter = Committer<Vec<crate::model::DeliveryEvent>>;

/// Starts an [`EventCommitter`]: events wait at most `linger` for others, and go at once when
/// `flush_at` callers wait (the consumer's prefetch: no more can come until some are acked).
pub fn event_committer(
    publisher: Arc<Publisher>,
    status_batch: usize,
    linger: Duration,
    flush_at: usize,
) -> EventCommitter {
    let status_batch = status_batch.max(1);
    Committer::start(
        publisher,
        "status",
        Gathering {
            most: status_batch,
            linger,
            flush_at,
        },
        Vec::len,
        Box::new(move |topology, batches| {
            let events: Vec<_> = batches.into_iter().flatten().collect();
            events
                .chunks(status_batch)
                .map(|chunk| {
                    topology
                        .status_message(&crate::model::StatusBatch {
                            messages: Vec::new(),
                            deliveries: chunk.to_vec(),
                            app_events: Vec::new(),
                            steps: Vec::new(),
                        })
                        .map_err(AmqpError::from)
                })
                .collect()
        }),
    )
}
