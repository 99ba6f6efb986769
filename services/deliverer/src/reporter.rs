//! Delivery feedback from the sockets (`sent`, `delivered`, `expired`), gathered into status
//! batches and published with confirms, retrying while the broker is away.

use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::amqp::Publisher;
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events waiting to be published, at most.
const QUEUE: usize = 65_536;
/// Most events gathered before publishing.
const LARGEST_BATCH: usize = 20_000;

/// Hands events to the publishing task; clone freely. The task ends when every clone is gone.
#[derive(Clone)]
pub struct Reporter {
    sender: mpsc::Sender<DeliveryEvent>,
}

/// A `ws` delivery event for `user` of `app`; `None` when `message` is not a message id.
pub fn ws_event(
    app: &AppId,
    user: &UserId,
    message: &str,
    status: DeliveryStatus,
    error: Option<&str>,
) -> Option<DeliveryEvent> {
    Some(DeliveryEvent {
        app: app.clone(),
        message: MessageId::parse(message).ok()?,
        channel: Channel::Ws,
        user: user.clone(),
        device: DeviceId::inbox(),
        status,
        attempt: 1,
        error: error.map(str::to_owned),
        code: None,
        at: now_ms(),
    })
}

/// Counts a `ws` delivery event in `sprayer_ws_events_total` and, as every channel does, in
/// `sprayer_deliveries_total{channel="ws"}`.
pub fn count(event: &DeliveryEvent) {
    let status = event.status.as_str();
    metrics::counter!("sprayer_ws_events_total", "status" => status).increment(1);
    metrics::counter!("sprayer_deliveries_total", "channel" => "ws", "status" => status)
        .increment(1);
}

impl Reporter {
    /// Starts the publishing task; after `stop` it publishes what is queued and ends.
    /// The first event of a batch waits `linger` for more (`dispatcher.status_linger`, as the
    /// stored events do, so that a delivery's `queued` and `delivered` usually reach the feeder
    /// together and are written as one document).
    pub fn start(
        publisher: Arc<Publisher>,
        batch: usize,
        linger: Duration,
        stop: CancellationToken,
    ) -> (Reporter, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let task = tokio::spawn(publish_loop(
            publisher,
            receiver,
            batch.max(1),
            linger,
            stop,
        ));
        (Reporter { sender }, task)
    }

    /// Queues `event`; waits when the queue is full.
    pub async fn report(&self, event: Option<DeliveryEvent>) {
        if let Some(event) = event {
            count(&event);
            let _ = self.sender.send(event).await;
        }
    }
}

async fn publish_loop(
    publisher: Arc<Publisher>,
    mut receiver: mpsc::Receiver<DeliveryEvent>,
    batch: usize,
    linger: Duration,
    stop: CancellationToken,
) {
    let mut events = Vec::with_capacity(batch);
    loop {
        let received = tokio::select! {
            received = receiver.recv_many(&mut events, batch) => received,
            _ = stop.cancelled() => {
                while events.len() < QUEUE {
                    match receiver.try_recv() {
                        Ok(event) => events.push(event),
                        Err(_) => break,
                    }
                }
                publish(&publisher, std::mem::take(&mut events)).await;
                return;
            }
        };
        if received == 0 {
            return;
        }
        // Let a burst (a broadcast to many sockets) gather, so that feedback goes in a few
        // large batches rather than one per socket.
        let linger = tokio::time::sleep(linger);
        tokio::pin!(linger);
        while events.len() < LARGEST_BATCH {
            let room = LARGEST_BATCH - events.len();
            tokio::select! {
                _ = &mut linger => break,
                more = receiver.recv_many(&mut events, room) => {
                    if more == 0 {
                        break;
                    }
                }
            }
        }
        publish(&publisher, std::mem::take(&mut events)).await;
    }
}

async fn publish(publisher: &Publisher, events: Vec<DeliveryEvent>) {
    for chunk in events.chunks(1_000) {
        let status = StatusBatch {
            messages: Vec::new(),
            deliveries: chunk.to_vec(),
            app_events: Vec::new(),
            steps: Vec::new(),
        };
        let message = match publisher.topology().status_message(&status) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "cannot encode delivery events");
                continue;
            }
        };
        let mut backoff = Duration::from_millis(100);
        while let Err(error) = publisher.publish(message.clone()).await {
            tracing::warn!(%error, "cannot publish delivery events; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
