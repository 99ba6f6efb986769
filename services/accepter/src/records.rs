//! Message records gathered across concurrent requests: each accepted message's record goes to
//! the status queue, and publishing one broker message with a confirm per request would double
//! the broker's work per message (the jobs are the other). Records that arrive while earlier
//! ones are being published go together in the next status message (group commit); every
//! request still waits for the confirm of the message that carries its record.

use std::sync::Arc;

use sprayer_shared::amqp::{AmqpError, Publisher};
use sprayer_shared::model::{MessageRecord, StatusBatch};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most records in one status message.
const MOST_PER_MESSAGE: usize = 512;
/// Status messages being published at once.
const IN_FLIGHT: usize = 4;

type Waiter = (MessageRecord, oneshot::Sender<Result<(), String>>);

/// Publishes message records in shared status messages; clone freely.
#[derive(Clone)]
pub struct Records {
    sender: mpsc::Sender<Waiter>,
}

impl Records {
    /// Starts the gathering task.
    pub fn start(publisher: Arc<Publisher>) -> Records {
        let (sender, receiver) = mpsc::channel(4 * MOST_PER_MESSAGE);
        tokio::spawn(gather(publisher, receiver));
        Records { sender }
    }

    /// Publishes `record`; returns once the broker confirmed it.
    pub async fn publish(&self, record: MessageRecord) -> Result<(), AmqpError> {
        let (done, confirmed) = oneshot::channel();
        self.sender
            .send((record, done))
            .await
            .map_err(|_| AmqpError::Unavailable("the record publisher stopped".into()))?;
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(AmqpError::Unavailable(reason)),
            Err(_) => Err(AmqpError::Unavailable(
                "the record publisher stopped".into(),
            )),
        }
    }
}

async fn gather(publisher: Arc<Publisher>, mut receiver: mpsc::Receiver<Waiter>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MOST_PER_MESSAGE);
    // Waiting for a free slot first lets records gather while the others are in flight.
    while let Ok(slot) = slots.clone().acquire_owned().await {
        if receiver.recv_many(&mut batch, MOST_PER_MESSAGE).await == 0 {
            return;
        }
        let waiters = std::mem::take(&mut batch);
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let (records, dones): (Vec<_>, Vec<_>) = waiters.into_iter().unzip();
            let status = StatusBatch {
                messages: records,
                deliveries: Vec::new(),
            };
            let result = match publisher.topology().status_message(&status) {
                Ok(message) => publisher
                    .publish(message)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            for done in dones {
                let _ = done.send(result.clone());
            }
            drop(slot);
        });
    }
}
