//! The jobs of one broker message from start to end: expand each, send to every recipient
//! within the concurrency limits, then publish the retries, dead letters and status events of
//! them all together, with confirms. The caller acks the message only for the jobs that
//! finished.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use sprayer_shared::Settings;
use sprayer_shared::amqp::committer::EventCommitter;
use sprayer_shared::amqp::{AmqpError, Publisher};
use sprayer_shared::model::{Channel, Job, JobTarget, Providers, UserId, now_ms};
use sprayer_shared::personal::{Decision, Personalizer};
use sprayer_shared::redis::RedisConnection;
use tokio::sync::Semaphore;

use crate::channels::Sender;
use crate::outcome::{Outcome, Report};
use crate::provider_cache::ProviderCache;
use crate::throttle::AppThrottle;
use sprayer_shared::expand::{Expansion, Recipient, expand};

/// Why a job could not be finished; it goes back to its queue.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// RabbitMQ failed.
    #[error("{0}")]
    Amqp(#[from] AmqpError),
    /// MongoDB failed (reading the app's provider settings).
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A message could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a dispatcher needs for every job.
pub struct Dispatch {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The channel served.
    pub channel: Channel,
    /// Endpoints and groups.
    pub redis: RedisConnection,
    /// Publishes retries, split jobs and dead letters.
    pub publisher: Arc<Publisher>,
    /// Publishes status events, gathered with other jobs'.
    pub events: EventCommitter,
    /// The channel's protocol.
    pub sender: Arc<dyn Sender>,
    /// Sends in flight across all jobs.
    pub permits: Arc<Semaphore>,
    /// The apps' provider settings.
    pub provider_cache: Arc<ProviderCache>,
    /// Per-app concurrency and pace.
    pub app_throttle: AppThrottle,
}

impl Dispatch {
    /// Handles the jobs of one broker message (one, or a batch the accepter gathered): each is
    /// expanded and sent on its own, and what they publish afterwards goes out together.
    /// Returns the jobs that could not be finished, with why (one failure to publish is shared
    /// by every job it held up); they go back to the queue.
    pub async fn run_all<'a>(&self, jobs: &'a [Job]) -> Vec<(&'a Job, Arc<DispatchError>)> {
        let sent = futures::future::join_all(jobs.iter().map(|job| self.send(job))).await;
        let mut failed = Vec::new();
        let mut reports = Vec::with_capacity(jobs.len());
        for (job, sent) in jobs.iter().zip(sent) {
            match sent {
                Ok(Some(report)) => reports.push((job, report)),
                Ok(None) => {}
                Err(error) => failed.push((job, Arc::new(error))),
            }
        }
        let reported: Vec<&Job> = reports.iter().map(|(job, _)| *job).collect();
        if let Err(error) = self.finish(reports).await {
            let error = Arc::new(error);
            failed.extend(reported.into_iter().map(|job| (job, error.clone())));
        }
        failed
    }

    /// Expands `job` and sends to its recipients; a job split into shard jobs is done once
    /// those are published (`None`).
    async fn send(&self, job: &Job) -> Result<Option<Report>, DispatchError> {
        let settings = &self.settings.dispatcher;
        let mut redis = self.redis.clone();
        let expansion = expand(
            &mut redis,
            job,
            self.settings.redis.group_shards,
            settings.inline_threshold,
            settings.lookup_batch,
        )
        .await?;
        let recipients = match expansion {
            Expansion::Split(jobs) => return self.publish_jobs(&jobs).await.map(|()| None),
            Expansion::Recipients(recipients) => recipients,
        };
        let providers = if self.sender.needs_providers() && !recipients.is_empty() {
            self.provider_cache.get(&job.app).await?
        } else {
            Arc::default()
        };
        let decisions = self.decide(&mut redis, job, &recipients).await?;
        Ok(Some(
            self.attempt_all(job, &providers, recipients, decisions)
                .await,
        ))
    }

    /// What happens to each recipient of a personal job (none for a job that is not): one
    /// decision per user, shared by their devices.
    async fn decide(
        &self,
        redis: &mut RedisConnection,
        job: &Job,
        recipients: &[Recipient],
    ) -> Result<HashMap<UserId, Decision>, DispatchError> {
        if job.personal.is_none() || recipients.is_empty() {
            return Ok(HashMap::new());
        }
        let users: Vec<UserId> = recipients
            .iter()
            .map(|recipient| recipient.user.clone())
            .collect();
        let mut personalizer =
            Personalizer::load(redis, job, &users, self.settings.dispatcher.lookup_batch).await?;
        let now = now_ms();
        let mut decisions = HashMap::with_capacity(users.len());
        for user in users {
            if let std::collections::hash_map::Entry::Vacant(entry) = decisions.entry(user) {
                let decision = personalizer.decide(entry.key(), now);
                entry.insert(decision);
            }
        }
        Ok(decisions)
    }

    async fn attempt_all(
        &self,
        job: &Job,
        providers: &Providers,
        recipients: Vec<Recipient>,
        decisions: HashMap<UserId, Decision>,
    ) -> Report {
        let tiers = self.settings.amqp.retry_tiers.clone();
        let width = self.settings.dispatcher.concurrency.max(1);
        let mut report = Report::default();
        let mut to_send = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            match decisions.get(&recipient.user) {
                None => to_send.push((recipient, None)),
                Some(Decision::Send(rendered)) => {
                    let rendered = rendered.clone();
                    to_send.push((recipient, Some(rendered)));
                }
                Some(Decision::Skip(reason)) => {
                    let attempt = recipient.attempts + 1;
                    report.record(
                        job,
                        &tiers,
                        &recipient,
                        attempt,
                        Outcome::Skipped { reason },
                    );
                }
                Some(Decision::Hold(until)) => report.hold(job, &tiers, &recipient, *until),
                Some(Decision::Fail(error)) => {
                    let attempt = recipient.attempts + 1;
                    let outcome = Outcome::Failed {
                        error: error.clone(),
                    };
                    report.record(job, &tiers, &recipient, attempt, outcome);
                }
            }
        }
        let mut attempts = futures::stream::iter(to_send)
            .map(|(recipient, rendered)| async move {
                let attempt = recipient.attempts + 1;
                let sent = rendered.as_deref().unwrap_or(job);
                let outcome = self.attempt(sent, providers, &recipient).await;
                (recipient, attempt, outcome)
            })
            .buffer_unordered(width);
        while let Some((recipient, attempt, outcome)) = attempts.next().await {
            report.record(job, &tiers, &recipient, attempt, outcome);
        }
        report
    }

    async fn attempt(&self, job: &Job, providers: &Providers, recipient: &Recipient) -> Outcome {
        let Some(address) = &recipient.address else {
            return Outcome::Unregistered {
                error: "the endpoint was removed".into(),
            };
        };
        let stopping = || Outcome::Retry {
            error: "dispatcher stopping".into(),
            after: None,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return stopping();
        };
        let Some(_app_permit) = self.app_throttle.acquire(&job.app).await else {
            return stopping();
        };
        // Checked after the waits: a send never starts past the message's TTL.
        if job.expired_at(now_ms()) {
            return Outcome::Expired;
        }
        self.sender.send(job, providers, recipient, address).await
    }

    /// Publishes the retries, dead letters and status events of `reports`, then removes the
    /// endpoints their providers called gone.
    async fn finish(&self, reports: Vec<(&Job, Report)>) -> Result<(), DispatchError> {
        let topology = self.publisher.topology();
        let mut messages = Vec::new();
        let mut events = Vec::new();
        for (job, report) in &reports {
            for (tier, pending) in &report.retries {
                if let Some(queue) = topology.retry_queue(self.channel, *tier) {
                    metrics::counter!("sprayer_retries_total", "channel" => self.channel.as_str(), "tier" => tier.to_string())
                        .increment(pending.len() as u64);
                    let retry = job.with_target(JobTarget::Retry(pending.clone()));
                    messages.push(topology.queued_job_message(queue, &retry)?);
                }
            }
            if !report.dead.is_empty() {
                metrics::counter!("sprayer_dead_letters_total", "channel" => self.channel.as_str())
                    .increment(report.dead.len() as u64);
                let dead = job.with_target(JobTarget::Retry(report.dead.clone()));
                messages
                    .push(topology.queued_job_message(topology.dead_queue(self.channel), &dead)?);
            }
            events.extend_from_slice(&report.events);
        }
        // Retries and dead letters go at once; status events with other jobs' (see
        // `dispatcher.status_linger`). The job is acked once both are confirmed.
        let others = async {
            if messages.is_empty() {
                Ok(())
            } else {
                self.publisher.publish_all(&messages).await
            }
        };
        let statuses = async {
            if events.is_empty() {
                Ok(())
            } else {
                self.events.publish(events).await
            }
        };
        tokio::try_join!(others, statuses)?;
        for (job, report) in &reports {
            self.prune(job, &report.prune).await;
        }
        Ok(())
    }

    /// Removes endpoints the provider called gone. A failure only leaves them for next time.
    async fn prune(&self, job: &Job, gone: &[Recipient]) {
        let mut redis = self.redis.clone();
        for recipient in gone.iter().filter(|recipient| recipient.address.is_some()) {
            let removed = sprayer_shared::redis::remove_endpoint(
                &mut redis,
                &job.app,
                &recipient.user,
                self.channel,
                &recipient.device,
                self.settings.redis.group_shards,
            )
            .await;
            if let Err(error) = removed {
                tracing::warn!(%error, "cannot remove an unregistered endpoint");
            }
        }
    }

    async fn publish_jobs(&self, jobs: &[Job]) -> Result<(), DispatchError> {
        let topology = self.publisher.topology();
        let messages = jobs
            .iter()
            .map(|job| topology.job_message(self.channel, job))
            .collect::<Result<Vec<_>, _>>()?;
        metrics::counter!("sprayer_split_jobs_total", "channel" => self.channel.as_str())
            .increment(jobs.len() as u64);
        self.publisher.publish_all(&messages).await?;
        Ok(())
    }
}
