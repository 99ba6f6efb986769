//! The work of due timers: a message coming due, a step beginning for a batch of users, a
//! step's wait ending.
//!
//! A step begins for a batch of users in a fixed order, each stage one Redis round trip for the
//! whole batch: mark the users as in the step (and find those the app cancelled), read their
//! endpoints on the step's channels, record how many deliveries each was sent and set the
//! step's deadline, publish the jobs (one job per channel for the batch) and the feedback with
//! a broker confirm, and only then ack the timer. A replica dying anywhere before the ack
//! leaves the timer to fire again; the users' state makes that repeat the same work, and only a
//! death between the publish and the ack sends the batch twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{AmqpError, Outgoing, Publisher};
use sprayer_shared::model::{
    Channel, DeliveryEvent, DeliveryStatus, DeviceId, JobTarget, MessageId, Plan, StatusBatch,
    StepRecord, StepState, UserId, now_ms,
};
use sprayer_shared::redis::{RedisConnection, endpoints_key, group_members_key};
use sprayer_shared::schedule::{self, Keys, Timer, parse_users, scripts, step_records};

use crate::plans::Plans;

/// How soon a deadline looks again when the run that began its step is not acked yet.
const LOOK_AGAIN_MS: i64 = 1_000;
/// Jobs in one broker message.
const JOBS_PER_MESSAGE: usize = 100;
/// Records and delivery events in one status message.
const RECORDS_PER_MESSAGE: usize = 1_000;

/// Why a round of timers could not be done; its timers fire again when their claim ends.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The broker failed.
    #[error("rabbitmq: {0}")]
    Amqp(#[from] AmqpError),
    /// A job or a status batch did not encode (defensive).
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A claimed timer.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// When it was due (Unix ms).
    pub due: i64,
    /// Its payload (a JSON list of users, or empty).
    pub payload: String,
}

/// What the timers and the watcher share.
pub struct Stepper {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Timers, chain state and endpoints.
    pub redis: RedisConnection,
    /// More connections to the same Redis, for the timer shards: each shard's rounds go over
    /// one of them, so one shard's large pipelines do not queue the others' behind them on a
    /// single connection.
    pub shard_connections: Vec<RedisConnection>,
    /// Jobs and feedback.
    pub publisher: Arc<Publisher>,
    /// Key names.
    pub keys: Keys,
    /// Plans known.
    pub plans: Arc<Plans>,
}

/// Runs `invocations` of `script` in one pipeline (one round trip). Every key of one round's
/// timers carries its shard's hash tag, so on a Redis Cluster the pipeline goes to one node,
/// the script loaded first on it.
async fn pipelined<T: redis::FromRedisValue>(
    redis: &mut RedisConnection,
    script: &redis::Script,
    invocations: &[redis::ScriptInvocation<'_>],
) -> redis::RedisResult<Vec<T>> {
    if invocations.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.load_script(script).ignore();
    for invocation in invocations {
        pipe.invoke_script(invocation);
    }
    pipe.query_async(redis).await
}

/// Records how long a stage of a round took (`sprayer_scheduler_stage_seconds`).
pub fn stage_took(stage: &'static str, started: std::time::Instant) {
    metrics::histogram!("sprayer_scheduler_stage_seconds", "stage" => stage)
        .record(started.elapsed().as_secs_f64());
}

/// A user's devices on each channel of a step.
type UserDevices = Vec<(Channel, Vec<DeviceId>)>;

/// A step to begin for some users.
struct Run {
    plan: Arc<Plan>,
    step: usize,
    batch: String,
    users: Vec<UserId>,
    timer: String,
}

/// What one round publishes, then acks.
#[derive(Default)]
pub struct Outbox {
    jobs: BTreeMap<Channel, Vec<Vec<u8>>>,
    /// Steps that did not run.
    pub records: Vec<StepRecord>,
    deliveries: Vec<DeliveryEvent>,
    acks: BTreeMap<MessageId, (Arc<Plan>, Vec<String>)>,
    orphans: Vec<(u16, String)>,
}

impl Outbox {
    fn ack(&mut self, plan: &Arc<Plan>, timer: String) {
        self.acks
            .entry(plan.id.clone())
            .or_insert_with(|| (plan.clone(), Vec::new()))
            .1
            .push(timer);
    }
}

fn channel_list(channels: &[Channel]) -> String {
    channels
        .iter()
        .map(|channel| channel.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Stepper {
    /// The connection of `shard`'s rounds.
    pub fn redis_for(&self, shard: u16) -> RedisConnection {
        match self.shard_connections.len() {
            0 => self.redis.clone(),
            count => self.shard_connections[usize::from(shard) % count].clone(),
        }
    }

    /// Does the work of timers claimed from `shard`.
    pub async fn fire(&self, shard: u16, claimed: Vec<Claimed>) -> Result<(), StepError> {
        let mut redis = self.redis_for(shard);
        let now = now_ms();
        let mut parsed = Vec::with_capacity(claimed.len());
        let mut outbox = Outbox::default();
        for timer in claimed {
            metrics::histogram!("sprayer_scheduler_timer_lag_seconds")
                .record((now - timer.due).max(0) as f64 / 1000.0);
            match Timer::parse(&timer.id) {
                Some(parsed_timer) => parsed.push((parsed_timer, timer)),
                None => {
                    tracing::warn!(timer = %timer.id, "dropping a timer that does not parse");
                    outbox.orphans.push((shard, timer.id));
                }
            }
        }
        let mut messages: Vec<MessageId> = parsed
            .iter()
            .map(|(timer, _)| timer.message().clone())
            .collect();
        messages.sort();
        messages.dedup();
        let started = std::time::Instant::now();
        let plans = self.plans.get(&mut redis, &self.keys, &messages).await?;
        stage_took("plans", started);
        let batch_users = self.settings.scheduler.batch_users;
        let mut runs = Vec::new();
        let mut deadlines = Vec::new();
        for (timer, claimed) in parsed {
            let Some(Some(plan)) = plans.get(timer.message()).cloned() else {
                tracing::debug!(timer = %claimed.id, "dropping a timer of an expired message");
                outbox.orphans.push((shard, claimed.id));
                continue;
            };
            let kind = match &timer {
                Timer::Start(_) => "start",
                Timer::Run { .. } => "run",
                Timer::Deadline { .. } => "deadline",
            };
            metrics::counter!("sprayer_scheduler_timers_fired_total", "kind" => kind).increment(1);
            match timer {
                Timer::Start(_) => {
                    let users = match &plan.target {
                        JobTarget::User(user) => vec![user.clone()],
                        JobTarget::Users(users) => users.clone(),
                        JobTarget::Group(group) => {
                            self.group_members(&mut redis, &plan, group).await?
                        }
                        _ => Vec::new(),
                    };
                    if users.len() <= batch_users {
                        runs.push(Run {
                            plan: plan.clone(),
                            step: 0,
                            batch: "a".into(),
                            users,
                            timer: claimed.id,
                        });
                    } else {
                        // Large targets go on as one timer per batch, each fired and acked
                        // on its own.
                        let batches: Vec<(String, Vec<UserId>)> = users
                            .chunks(batch_users)
                            .enumerate()
                            .map(|(index, chunk)| (format!("b{index}"), chunk.to_vec()))
                            .collect();
                        self.add_runs(&mut redis, &plan, 0, batches, now).await?;
                        outbox.ack(&plan, claimed.id);
                    }
                }
                Timer::Run { step, batch, .. } => runs.push(Run {
                    plan: plan.clone(),
                    step,
                    batch,
                    users: parse_users(&claimed.payload),
                    timer: claimed.id,
                }),
                Timer::Deadline { step, batch, .. } => {
                    deadlines.push((plan.clone(), step, batch, claimed.id));
                }
            }
        }
        self.deadlines(&mut redis, deadlines, &mut outbox).await?;
        self.begin(&mut redis, runs, &mut outbox).await?;
        self.publish_and_ack(&mut redis, outbox).await
    }

    /// Every member of a group, in a stable order (so a start fired again makes the same
    /// batches).
    async fn group_members(
        &self,
        redis: &mut RedisConnection,
        plan: &Plan,
        group: &sprayer_shared::model::GroupId,
    ) -> redis::RedisResult<Vec<UserId>> {
        let mut pipe = redis::pipe();
        for shard in 0..self.settings.redis.group_shards {
            pipe.smembers(group_members_key(&plan.app, group, shard));
        }
        let shards: Vec<Vec<String>> = pipe.query_async(redis).await?;
        let mut users: Vec<UserId> = shards
            .into_iter()
            .flatten()
            .filter_map(|user| UserId::parse(user).ok())
            .collect();
        users.sort();
        Ok(users)
    }

    /// Adds run timers of `step`, due `due`, one per batch.
    async fn add_runs(
        &self,
        redis: &mut RedisConnection,
        plan: &Plan,
        step: usize,
        batches: Vec<(String, Vec<UserId>)>,
        due: i64,
    ) -> Result<(), StepError> {
        let message = self.keys.message(&plan.id);
        let expire_at = schedule::keys_expire_at(plan);
        let mut invocations = Vec::with_capacity(batches.len());
        for (batch, users) in batches {
            let timer = Timer::Run {
                message: plan.id.clone(),
                step,
                batch,
            };
            let mut invocation = scripts::ADD.prepare_invoke();
            invocation
                .key(&message.timers)
                .key(&message.items)
                .key(&message.mine)
                .key(&message.fired)
                .arg(timer.to_string())
                .arg(due)
                .arg(serde_json::to_string(&users)?)
                .arg(expire_at);
            invocations.push(invocation);
        }
        pipelined::<i64>(redis, &scripts::ADD, &invocations).await?;
        Ok(())
    }

    /// Steps' waits that ended, each for a batch: the script moves on everyone still in the
    /// step and acks the deadline (one pipeline for them all).
    async fn deadlines(
        &self,
        redis: &mut RedisConnection,
        deadlines: Vec<(Arc<Plan>, usize, String, String)>,
        outbox: &mut Outbox,
    ) -> Result<(), StepError> {
        let now = now_ms();
        let invocations: Vec<_> = deadlines
            .iter()
            .map(|(plan, step, batch, timer)| {
                let message = self.keys.message(&plan.id);
                let next = Timer::Run {
                    message: plan.id.clone(),
                    step: step + 1,
                    batch: format!("{batch}d"),
                };
                let mut invocation = scripts::DEADLINE.prepare_invoke();
                invocation
                    .key(&message.state)
                    .key(&message.users)
                    .key(&message.cancelled)
                    .key(&message.timers)
                    .key(&message.items)
                    .key(&message.mine)
                    .key(&message.fired)
                    .arg(timer)
                    .arg(*step)
                    .arg(next.to_string())
                    .arg(now)
                    .arg(schedule::keys_expire_at(plan))
                    .arg(now + LOOK_AGAIN_MS);
                invocation
            })
            .collect();
        let results: Vec<(String, String)> =
            pipelined(redis, &scripts::DEADLINE, &invocations).await?;
        for ((plan, step, _, _), (moved, stopped)) in deadlines.iter().zip(results) {
            let moved = parse_users(&moved);
            metrics::counter!("sprayer_scheduler_escalations_total").increment(moved.len() as u64);
            let stopped = parse_users(&stopped);
            outbox.records.extend(step_records(
                plan,
                &stopped,
                step + 1..plan.steps.len(),
                StepState::Cancelled,
                "cancelled by the app",
            ));
        }
        Ok(())
    }

    /// Begins steps for batches of users.
    async fn begin(
        &self,
        redis: &mut RedisConnection,
        runs: Vec<Run>,
        outbox: &mut Outbox,
    ) -> Result<(), StepError> {
        let now = now_ms();
        let mut live = Vec::with_capacity(runs.len());
        for run in runs {
            if run.step >= run.plan.steps.len() {
                outbox.ack(&run.plan, run.timer);
            } else if now >= run.plan.expires_at {
                outbox.records.extend(step_records(
                    &run.plan,
                    &run.users,
                    run.step..run.plan.steps.len(),
                    StepState::Cancelled,
                    "expired",
                ));
                outbox.ack(&run.plan, run.timer);
            } else {
                live.push(run);
            }
        }
        if live.is_empty() {
            return Ok(());
        }
        // Stage 1: the users enter the step (or are found cancelled).
        let invocations: Vec<_> = live
            .iter()
            .map(|run| {
                let message = self.keys.message(&run.plan.id);
                let mut invocation = scripts::BEGIN.prepare_invoke();
                invocation
                    .key(&message.state)
                    .key(&message.users)
                    .key(&message.cancelled)
                    .arg(run.step)
                    .arg(schedule::keys_expire_at(&run.plan));
                for user in &run.users {
                    invocation.arg(user.as_str());
                }
                invocation
            })
            .collect();
        let started = std::time::Instant::now();
        let codes: Vec<Vec<String>> = pipelined(redis, &scripts::BEGIN, &invocations).await?;
        stage_took("begin", started);
        // Stage 2: their endpoints on the step's channels, for every batch in one round trip.
        let mut pipe = redis::pipe();
        let mut asked = Vec::new();
        for (index, (run, codes)) in live.iter().zip(&codes).enumerate() {
            for (user, code) in run.users.iter().zip(codes) {
                if code == "n" {
                    continue;
                }
                for channel in &run.plan.steps[run.step].channels {
                    pipe.hkeys(endpoints_key(&run.plan.app, user, *channel));
                    asked.push((index, user.clone(), *channel));
                }
            }
        }
        let started = std::time::Instant::now();
        let devices: Vec<Vec<String>> = if asked.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(redis).await?
        };
        stage_took("endpoints", started);
        let mut found: HashMap<(usize, UserId), UserDevices> = HashMap::new();
        for ((index, user, channel), devices) in asked.into_iter().zip(devices) {
            let devices: Vec<DeviceId> = devices
                .into_iter()
                .filter_map(|device| DeviceId::parse(device).ok())
                .collect();
            found
                .entry((index, user))
                .or_default()
                .push((channel, devices));
        }
        // Stage 3: what each user is sent, the deadline, the skipped moving on.
        let mut arms = Vec::new();
        for (index, (run, codes)) in live.into_iter().zip(codes).enumerate() {
            let plan = &run.plan;
            let step = &plan.steps[run.step];
            let has_next = run.step + 1 < plan.steps.len();
            let mut going: Vec<(UserId, usize)> = Vec::new();
            let mut skipped = Vec::new();
            let mut cancelled = Vec::new();
            let mut per_channel: BTreeMap<Channel, Vec<UserId>> = BTreeMap::new();
            for (user, code) in run.users.iter().zip(&codes) {
                let Some(devices) = found.remove(&(index, user.clone())) else {
                    continue;
                };
                // A user's ws deliveries are one, to the inbox, however many browsers.
                let count: usize = devices
                    .iter()
                    .map(|(channel, devices)| match channel {
                        Channel::Ws => devices.len().min(1),
                        _ => devices.len(),
                    })
                    .sum();
                if code == "c" {
                    for (channel, devices) in &devices {
                        let devices = match channel {
                            Channel::Ws if !devices.is_empty() => vec![DeviceId::inbox()],
                            _ => devices.clone(),
                        };
                        outbox
                            .deliveries
                            .extend(devices.into_iter().map(|device| DeliveryEvent {
                                app: plan.app.clone(),
                                message: plan.id.clone(),
                                channel: *channel,
                                user: user.clone(),
                                device,
                                status: DeliveryStatus::Cancelled,
                                attempt: 0,
                                error: Some("cancelled by the app".into()),
                                code: None,
                                at: now,
                            }));
                    }
                    cancelled.push(user.clone());
                } else if count == 0 {
                    skipped.push(user.clone());
                } else {
                    for (channel, devices) in &devices {
                        if !devices.is_empty() {
                            per_channel.entry(*channel).or_default().push(user.clone());
                        }
                    }
                    going.push((user.clone(), count));
                }
            }
            outbox.records.extend(step_records(
                plan,
                &cancelled,
                run.step..plan.steps.len(),
                StepState::Cancelled,
                "cancelled by the app",
            ));
            if !skipped.is_empty() {
                let reason = format!("no endpoint on {}", channel_list(&step.channels));
                outbox.records.extend(step_records(
                    plan,
                    &skipped,
                    run.step..run.step + 1,
                    StepState::Skipped,
                    &reason,
                ));
                if has_next {
                    metrics::counter!("sprayer_scheduler_skipped_total")
                        .increment(skipped.len() as u64);
                    self.add_runs(
                        redis,
                        plan,
                        run.step + 1,
                        vec![(format!("{}s", run.batch), skipped)],
                        now,
                    )
                    .await?;
                }
            }
            for (channel, users) in per_channel {
                let job = serde_json::to_vec(&plan.job(channel, users))?;
                outbox.jobs.entry(channel).or_default().push(job);
            }
            // The last step has no deadline, and nothing follows its deliveries' failure.
            if !going.is_empty() && has_next {
                arms.push((
                    run.plan.clone(),
                    run.step,
                    run.batch.clone(),
                    run.timer.clone(),
                    going,
                ));
            }
            outbox.ack(&run.plan, run.timer);
        }
        // Stage 4: the deliveries each user awaits, and the deadlines.
        let invocations: Vec<_> = arms
            .into_iter()
            .map(|(plan, step, batch, timer, going)| {
                let message = self.keys.message(&plan.id);
                let mut invocation = scripts::ARM.prepare_invoke();
                let wait = plan.steps[step]
                    .wait_ms
                    .filter(|_| step + 1 < plan.steps.len());
                let users: Vec<&str> = going.iter().map(|(user, _)| user.as_str()).collect();
                // The deadline waits for this run's timer to be acked: see `scripts::DEADLINE`.
                let payload = serde_json::json!({ "run": timer, "users": users }).to_string();
                invocation
                    .key(&message.remaining)
                    .key(&message.timers)
                    .key(&message.items)
                    .key(&message.mine)
                    .key(&message.fired)
                    .arg(step)
                    .arg(schedule::keys_expire_at(&plan));
                match wait {
                    Some(wait) => {
                        let deadline = Timer::Deadline {
                            message: plan.id.clone(),
                            step,
                            batch,
                        };
                        let due = now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX / 2));
                        invocation.arg(deadline.to_string()).arg(due).arg(payload);
                    }
                    None => {
                        invocation.arg("").arg(0).arg("");
                    }
                }
                for (user, count) in &going {
                    invocation.arg(user.as_str()).arg(*count);
                }
                invocation
            })
            .collect();
        let started = std::time::Instant::now();
        pipelined::<i64>(redis, &scripts::ARM, &invocations).await?;
        stage_took("arm", started);
        Ok(())
    }

    /// Publishes the round's jobs and feedback, waits for the broker's confirms, then acks
    /// its timers.
    pub async fn publish_and_ack(
        &self,
        redis: &mut RedisConnection,
        outbox: Outbox,
    ) -> Result<(), StepError> {
        let topology = self.publisher.topology();
        let mut messages: Vec<Outgoing> = Vec::new();
        for (channel, jobs) in &outbox.jobs {
            metrics::counter!("sprayer_scheduler_jobs_total", "channel" => channel.as_str())
                .increment(jobs.len() as u64);
            for chunk in jobs.chunks(JOBS_PER_MESSAGE) {
                messages.push(topology.job_batch_message(*channel, chunk));
            }
        }
        for chunk in outbox.records.chunks(RECORDS_PER_MESSAGE) {
            messages.push(topology.status_message(&StatusBatch {
                steps: chunk.to_vec(),
                ..StatusBatch::default()
            })?);
        }
        for chunk in outbox.deliveries.chunks(RECORDS_PER_MESSAGE) {
            messages.push(topology.status_message(&StatusBatch {
                deliveries: chunk.to_vec(),
                ..StatusBatch::default()
            })?);
        }
        if !messages.is_empty() {
            let started = std::time::Instant::now();
            self.publisher.publish_all(&messages).await?;
            stage_took("publish", started);
        }
        // One round's timers are of one shard: one pipeline. (The watcher acks none.)
        let invocations: Vec<_> = outbox
            .acks
            .into_values()
            .map(|(plan, timers)| {
                let message = self.keys.message(&plan.id);
                let mut invocation = scripts::ACK.prepare_invoke();
                invocation
                    .key(&message.timers)
                    .key(&message.items)
                    .key(&message.mine)
                    .key(&message.fired)
                    .arg(schedule::keys_expire_at(&plan));
                for timer in &timers {
                    invocation.arg(timer);
                }
                invocation
            })
            .collect();
        let started = std::time::Instant::now();
        pipelined::<i64>(redis, &scripts::ACK, &invocations).await?;
        stage_took("ack", started);
        for (shard, timer) in outbox.orphans {
            redis::pipe()
                .zrem(self.keys.timers(shard), &timer)
                .ignore()
                .hdel(self.keys.items(shard), &timer)
                .ignore()
                .query_async::<()>(redis)
                .await?;
        }
        Ok(())
    }
}
