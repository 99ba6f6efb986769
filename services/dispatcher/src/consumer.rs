//! The consumer loop: take jobs from `jobs.<channel>` (manual ack, bounded prefetch), run each
//! in its own task, ack when done, requeue after a pause when a store failed, and send jobs that
//! cannot be read to the dead-letter queue. Reconnects with backoff, to the next broker of
//! `amqp.url` in turn; on shutdown stops taking jobs and finishes the ones it holds, and when
//! the connection is lost stops them (they cannot be acked: the broker gives them out again).

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::ShortString;
use sprayer_shared::amqp::{JobConsumer, OnConnectionLost};
use sprayer_shared::model::decode_jobs;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatch;

/// How long in-flight jobs may take to finish after shutdown is asked.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Pause before a job whose stores failed goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Consumes until `shutdown`, reconnecting whenever the broker goes away; each broker
/// message runs in a task of its own.
pub async fn run(dispatch: Arc<Dispatch>, shutdown: CancellationToken) {
    let name = format!("dispatcher.{}", dispatch.channel);
    let brokers = dispatch.publisher.brokers();
    let consumer = JobConsumer {
        name: &name,
        brokers: &brokers,
        topology: dispatch.publisher.topology(),
        channel: dispatch.channel,
        prefetch: dispatch.settings.amqp.prefetch,
        grace: DRAIN_GRACE,
        on_lost: OnConnectionLost::Abort,
    };
    consumer
        .run(&shutdown, |delivery| {
            std::future::ready(Some(handle(dispatch.clone(), delivery, shutdown.clone())))
        })
        .await;
}

async fn handle(dispatch: Arc<Dispatch>, delivery: Delivery, shutdown: CancellationToken) {
    let channel = dispatch.channel.as_str();
    let kind = delivery.properties.kind().as_ref().map(ShortString::as_str);
    let jobs = match decode_jobs(kind, &delivery.data) {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::error!(%error, "unreadable job; moved to the dead-letter queue");
            metrics::counter!("sprayer_jobs_total", "channel" => channel, "result" => "unreadable")
                .increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let failed = dispatch.run_all(&jobs).await;
    metrics::counter!("sprayer_jobs_total", "channel" => channel, "result" => "done")
        .increment((jobs.len() - failed.len()) as u64);
    if failed.is_empty() {
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(%error, "cannot settle a job; the broker redelivers it");
        }
        return;
    }
    metrics::counter!("sprayer_jobs_total", "channel" => channel, "result" => "requeued")
        .increment(failed.len() as u64);
    for (job, error) in &failed {
        tracing::warn!(%error, message = %job.message_id, "job not finished; requeued");
    }
    sprayer_shared::shutdown::sleep_or_cancel(REQUEUE_PAUSE, &shutdown).await;
    // Only the unfinished jobs of a batch go back: as jobs of their own, then the batch is
    // acked. When that cannot be published, the whole message goes back.
    let requeued = if failed.len() < jobs.len() {
        let topology = dispatch.publisher.topology();
        let queue = topology.jobs_queue(dispatch.channel);
        let messages: Result<Vec<_>, _> = failed
            .iter()
            .map(|(job, _)| topology.queued_job_message(queue.clone(), job))
            .collect();
        match messages {
            Ok(messages) => dispatch.publisher.publish_all(&messages).await.is_ok(),
            Err(_) => false,
        }
    } else {
        false
    };
    let settled = if requeued {
        delivery.ack(BasicAckOptions::default()).await
    } else {
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "cannot settle a job; the broker redelivers it");
    }
}
