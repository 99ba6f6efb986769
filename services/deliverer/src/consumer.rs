//! The `jobs.ws` consumer: each job's message stored by the [`Storer`] in its recipients'
//! inboxes, then its feedback published with confirms and the job acked.
//!
//! `jobs.ws` has a single active consumer, and this loop stores jobs one after the other in
//! queue order, so a user's inbox keeps the order messages were sent in. Publishing feedback
//! and acking run beside the next job. Another node's consumer takes over when this one goes.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::ShortString;
use sprayer_shared::amqp::{JobConsumer, OnConnectionLost};
use sprayer_shared::model::{Channel, decode_jobs};
use tokio_util::sync::CancellationToken;

use crate::storer::Storer;

/// How long feedback publishing may take to finish after shutdown is asked.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Pause before a job whose stores failed goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Consumes `jobs.ws` until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(storer: Arc<Storer>, shutdown: CancellationToken) {
    let brokers = storer.publisher.brokers();
    let consumer = JobConsumer {
        name: "deliverer.jobs",
        brokers: &brokers,
        topology: storer.publisher.topology(),
        channel: Channel::Ws,
        prefetch: storer.settings.amqp.prefetch,
        grace: DRAIN_GRACE,
        on_lost: OnConnectionLost::Finish,
    };
    consumer
        .run(&shutdown, |delivery| handle(&storer, delivery, &shutdown))
        .await;
}

/// Stores the jobs of one broker message in order; returns what is left to do (publish
/// feedback, ack) off the line. When one of a batch cannot be stored, the whole message goes
/// back: storing a redelivered job again is safe (see [`Storer::store`]).
async fn handle(
    storer: &Arc<Storer>,
    delivery: Delivery,
    shutdown: &CancellationToken,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let kind = delivery.properties.kind().as_ref().map(ShortString::as_str);
    let jobs = match decode_jobs(kind, &delivery.data) {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::error!(%error, "unreadable ws job; moved to the dead-letter queue");
            metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "unreadable")
                .increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return None;
        }
    };
    let mut events = Vec::new();
    for job in &jobs {
        match storer.store(job, delivery.redelivered).await {
            Ok(stored) => events.extend(stored),
            Err(error) => {
                tracing::warn!(%error, message = %job.message_id, "ws job not stored; requeued");
                metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "requeued")
                    .increment(jobs.len() as u64);
                sprayer_shared::shutdown::sleep_or_cancel(REQUEUE_PAUSE, shutdown).await;
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                return None;
            }
        }
    }
    let count = jobs.len() as u64;
    let storer = storer.clone();
    Some(async move {
        let settled = match storer.publish_events(&events).await {
            Ok(()) => {
                metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "done")
                    .increment(count);
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(error) => {
                tracing::warn!(%error, "ws feedback not published; job requeued");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        if let Err(error) = settled {
            tracing::warn!(%error, "cannot settle a ws job; the broker redelivers it");
        }
    })
}
