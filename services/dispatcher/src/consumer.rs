//! The consumer loop: take jobs from `jobs.<channel>` (manual ack, bounded prefetch), run each
//! in its own task, ack when done, requeue after a pause when a store failed, and send jobs that
//! cannot be read to the dead-letter queue. Reconnects with backoff, to the next broker of
//! `amqp.url` in turn; on shutdown stops taking jobs and finishes the ones it holds, and when
//! the connection is lost stops them (they cannot be acked: the broker gives them out again).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::ShortString;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming};
use sprayer_shared::model::decode_jobs;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatch;

/// How long in-flight jobs may take to finish after shutdown is asked.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Pause before a job whose stores failed goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Consumes until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(dispatch: Arc<Dispatch>, shutdown: CancellationToken) {
    let name = format!("dispatcher.{}", dispatch.channel);
    let brokers = dispatch.publisher.brokers();
    amqp::run_with_reconnect(&name, &shutdown, || {
        session(dispatch.clone(), &brokers, shutdown.clone())
    })
    .await;
    tracing::info!(channel = %dispatch.channel, "dispatcher stopped");
}

async fn session(
    dispatch: Arc<Dispatch>,
    brokers: &Brokers,
    shutdown: CancellationToken,
) -> Result<(), AmqpError> {
    let topology = dispatch.publisher.topology();
    let prefetch = dispatch.settings.amqp.prefetch;
    let Consuming {
        connection,
        channel,
        mut consumer,
    } = brokers
        .consume_jobs(topology, dispatch.channel, prefetch)
        .await?;
    let mut tasks = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    tasks.spawn(handle(dispatch.clone(), delivery, shutdown.clone()));
                }
            },
        }
    };
    if shutdown.is_cancelled() {
        let _ = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
    } else if !channel.status().connected() {
        // The jobs in hand can no longer be acked: the broker gives them out again in full.
        // Stopping them now keeps what is sent twice to what they had already sent.
        tracing::warn!(
            jobs = tasks.len(),
            "rabbitmq connection lost; the jobs in hand return to the queue"
        );
        tasks.abort_all();
    }
    if tokio::time::timeout(DRAIN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("jobs still running after the grace period; they return to the queue");
        tasks.abort_all();
    }
    amqp::close(&connection).await;
    ended
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
