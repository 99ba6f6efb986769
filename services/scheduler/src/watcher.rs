//! The step watcher: reads the `steps` queue (a copy of every status message) and applies the
//! outcomes of planned messages' deliveries to their users' chains, one script call per
//! message and step for the whole status message: a step whose `until` is met stops the
//! user's chain (the later steps are recorded `cancelled`); a step whose deliveries all failed
//! starts the next one at once (a run timer due now). The status message is acked once that is
//! stored and the records are published; while Redis or the broker is away it waits and acks
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::try_join_all;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming, Topology};
use sprayer_shared::model::{MessageId, StatusBatch, failed_for_good, now_ms};
use sprayer_shared::schedule::{self, Timer, parse_stopped, parse_users, scripts};
use tokio_util::sync::CancellationToken;

use crate::steps::{Outbox, StepError, Stepper};

/// Watches until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(
    stepper: Arc<Stepper>,
    topology: Topology,
    brokers: Brokers,
    shutdown: CancellationToken,
) {
    amqp::run_with_reconnect("step watcher", &shutdown, || {
        session(stepper.clone(), &topology, &brokers, shutdown.clone())
    })
    .await;
    tracing::info!("step watcher stopped");
}

async fn session(
    stepper: Arc<Stepper>,
    topology: &Topology,
    brokers: &Brokers,
    shutdown: CancellationToken,
) -> Result<(), AmqpError> {
    let Consuming {
        connection,
        channel: _channel,
        mut consumer,
    } = brokers
        .consume_steps(topology, stepper.settings.scheduler.prefetch)
        .await?;
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    metrics::counter!("sprayer_amqp_deliveries_total", "queue" => "steps").increment(1);
                    if !handle(&stepper, delivery, &shutdown).await {
                        break Ok(());
                    }
                }
            },
        }
    };
    amqp::close(&connection).await;
    result
}

/// Applies one status message, trying again until it is done; false on shutdown.
async fn handle(stepper: &Stepper, delivery: Delivery, shutdown: &CancellationToken) -> bool {
    let Ok(batch) = serde_json::from_slice::<StatusBatch>(&delivery.data) else {
        tracing::warn!("a status message that does not parse goes to steps.dead");
        if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
            tracing::warn!(%error, "cannot reject a status message");
        }
        return true;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match apply(stepper, &batch).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot apply step outcomes; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(%error, "cannot ack a status message");
    }
    true
}

/// One script call's worth: the outcomes of one step of one message.
type Outcomes = BTreeMap<(MessageId, usize), Vec<(String, &'static str, String)>>;

async fn apply(stepper: &Stepper, batch: &StatusBatch) -> Result<(), StepError> {
    if batch.deliveries.is_empty() {
        return Ok(());
    }
    let mut redis = stepper.redis.clone();
    let mut messages: Vec<MessageId> = batch
        .deliveries
        .iter()
        .map(|event| event.message.clone())
        .collect();
    messages.sort();
    messages.dedup();
    let plans = stepper
        .plans
        .get(&mut redis, &stepper.keys, &messages)
        .await?;
    let mut outcomes: Outcomes = BTreeMap::new();
    for event in &batch.deliveries {
        let Some(Some(plan)) = plans.get(&event.message) else {
            continue;
        };
        let Some(step) = plan.step_of(event.channel) else {
            continue;
        };
        let kind = if plan.steps[step].until.met_by(event.channel, event.status) {
            "m"
        } else if failed_for_good(event.status) {
            "f"
        } else {
            continue;
        };
        outcomes
            .entry((event.message.clone(), step))
            .or_default()
            .push((
                event.user.as_str().to_owned(),
                kind,
                format!("{step}:{}", event.delivery_id()),
            ));
    }
    if outcomes.is_empty() {
        return Ok(());
    }
    let calls = outcomes.into_iter().map(|((message, step), outcomes)| {
        let mut redis = redis.clone();
        let plan = plans
            .get(&message)
            .cloned()
            .flatten()
            .expect("only planned messages have outcomes");
        let keys = stepper.keys.message(&message);
        let next = Timer::Run {
            message,
            step: step + 1,
            // 64 random bits: no other outcome call, on any replica, names the same batch.
            batch: format!("x{:016x}", rand::random::<u64>()),
        };
        let mut invocation = scripts::OUTCOMES.prepare_invoke();
        invocation
            .key(&keys.state)
            .key(&keys.users)
            .key(&keys.remaining)
            .key(&keys.timers)
            .key(&keys.items)
            .key(&keys.mine)
            .key(&keys.fired)
            .key(&keys.failed)
            .arg(now_ms())
            .arg(schedule::keys_expire_at(&plan))
            .arg(next.to_string())
            .arg(plan.steps.len());
        for (user, kind, delivery) in &outcomes {
            invocation.arg(user).arg(step).arg(*kind).arg(delivery);
        }
        async move {
            let (stopped, moved, _ended): (String, String, String) =
                invocation.invoke_async(&mut redis).await?;
            Ok::<_, StepError>((plan, step, stopped, moved))
        }
    });
    let results = try_join_all(calls).await?;
    let mut outbox = Outbox::default();
    for (plan, step, stopped, moved) in results {
        let stopped = parse_stopped(&stopped);
        if !stopped.is_empty() {
            metrics::counter!("sprayer_scheduler_chains_stopped_total")
                .increment(stopped.len() as u64);
            let reason = format!("stopped: step {step} {}", plan.steps[step].until.as_str());
            outbox
                .records
                .extend(schedule::stopped_records(&plan, &stopped, &reason));
        }
        let moved = parse_users(&moved);
        metrics::counter!("sprayer_scheduler_escalations_total").increment(moved.len() as u64);
    }
    stepper.publish_and_ack(&mut redis, outbox).await
}
