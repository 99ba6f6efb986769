//! What one send attempt came to, and the one code path that turns outcomes into status events,
//! retries, dead letters and pruned endpoints, whatever the channel.

use std::collections::BTreeMap;
use std::time::Duration;

use sprayer_shared::model::{DeliveryEvent, DeliveryStatus, Job, PendingDelivery, now_ms};

use sprayer_shared::expand::Recipient;

/// The result of one attempt at one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to the provider; delivery is confirmed later, if at all.
    Sent,
    /// The provider or recipient confirmed it.
    Delivered,
    /// A passing failure (timeout, 429, 5xx): try again, not before `after` if given.
    Retry {
        /// What happened.
        error: String,
        /// The provider's `Retry-After`.
        after: Option<Duration>,
    },
    /// A permanent failure: do not try again.
    Failed {
        /// What happened.
        error: String,
    },
    /// The address is gone: report it and remove the endpoint.
    Unregistered {
        /// What the provider said.
        error: String,
    },
    /// The message expired before it could be sent.
    Expired,
    /// Not sent on the recipient's own choice: `preference` or `quiet_hours`.
    Skipped {
        /// Why.
        reason: &'static str,
    },
    /// What the provider answered, in its own code, beside what the attempt came to (see
    /// [`Outcome::with_code`]).
    Coded {
        /// The provider's code: an APNs `reason`, an FCM `errorCode`, an HTTP status, an SMTP
        /// reply code, an SMPP `command_status`.
        code: String,
        /// What the attempt came to.
        outcome: Box<Outcome>,
    },
}

impl Outcome {
    /// This outcome with the provider's own `code` beside it, for a failure or a retry (a
    /// success, or an expiry, carries none).
    pub fn with_code(self, code: impl Into<String>) -> Outcome {
        match self {
            Outcome::Retry { .. } | Outcome::Failed { .. } | Outcome::Unregistered { .. } => {
                Outcome::Coded {
                    code: code.into(),
                    outcome: Box::new(self),
                }
            }
            other => other,
        }
    }

    /// What the attempt came to, and the provider's code if it gave one.
    pub fn split(self) -> (Outcome, Option<String>) {
        match self {
            Outcome::Coded { code, outcome } => (outcome.split().0, Some(code)),
            other => (other, None),
        }
    }

    /// A permanent failure, reported with `error`'s text.
    pub fn failed(error: &impl std::fmt::Display) -> Outcome {
        Outcome::Failed {
            error: error.to_string(),
        }
    }
}

/// Everything one job's attempts lead to.
#[derive(Debug, Default)]
pub struct Report {
    /// Status events to publish.
    pub events: Vec<DeliveryEvent>,
    /// Deliveries to try again, by retry tier.
    pub retries: BTreeMap<usize, Vec<PendingDelivery>>,
    /// Deliveries given up on after the last attempt.
    pub dead: Vec<PendingDelivery>,
    /// Endpoints to remove.
    pub prune: Vec<Recipient>,
}

/// The retry tier for a delivery that has made `attempt` attempts and was told to wait
/// `after`: the attempt's own tier, or the first later one at least as long as `after`.
pub fn retry_tier(tiers: &[Duration], attempt: u32, after: Option<Duration>) -> Option<usize> {
    let own = usize::try_from(attempt.saturating_sub(1)).ok()?;
    if own >= tiers.len() {
        return None;
    }
    let Some(after) = after else {
        return Some(own);
    };
    Some(
        (own..tiers.len())
            .find(|&tier| tiers[tier] >= after)
            .unwrap_or(tiers.len() - 1),
    )
}

impl Report {
    /// Holds a delivery in the recipient's quiet hours until `until` (Unix ms): it waits in
    /// the longest retry tier that ends by then (the shortest when none does) and comes back
    /// to be decided again, with its attempts unchanged, so it arrives within the shortest
    /// tier of the end. Past the message's TTL it expires now.
    pub fn hold(&mut self, job: &Job, tiers: &[Duration], recipient: &Recipient, until: i64) {
        let now = now_ms();
        let left = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
        let tier = tiers.iter().rposition(|tier| *tier <= left).unwrap_or(0);
        let (status, error) = if tiers.is_empty() || job.expired_at(until) {
            (
                DeliveryStatus::Expired,
                Some("the recipient's quiet hours last past the message's TTL".to_owned()),
            )
        } else {
            self.retries.entry(tier).or_default().push(PendingDelivery {
                user: recipient.user.clone(),
                device: recipient.device.clone(),
                attempts: recipient.attempts,
            });
            (DeliveryStatus::Queued, None)
        };
        metrics::counter!("sprayer_deliveries_held_total", "channel" => job.channel.as_str())
            .increment(1);
        self.events.push(DeliveryEvent {
            app: job.app.clone(),
            message: job.message_id.clone(),
            channel: job.channel,
            user: recipient.user.clone(),
            device: recipient.device.clone(),
            status,
            attempt: recipient.attempts,
            error,
            code: None,
            at: now,
        });
    }

    /// Records the outcome of attempt number `attempt` at `recipient`.
    pub fn record(
        &mut self,
        job: &Job,
        tiers: &[Duration],
        recipient: &Recipient,
        attempt: u32,
        outcome: Outcome,
    ) {
        let (outcome, code) = outcome.split();
        let (status, error) = match outcome {
            // `split` takes every code off; an outcome coded twice is still a failure.
            Outcome::Coded { .. } => (
                DeliveryStatus::Failed,
                Some("an outcome coded twice".into()),
            ),
            Outcome::Sent => (DeliveryStatus::Sent, None),
            Outcome::Delivered => (DeliveryStatus::Delivered, None),
            Outcome::Failed { error } => (DeliveryStatus::Failed, Some(error)),
            Outcome::Expired => (DeliveryStatus::Expired, None),
            Outcome::Skipped { reason } => (DeliveryStatus::Skipped, Some(reason.to_owned())),
            Outcome::Unregistered { error } => {
                self.prune.push(recipient.clone());
                (DeliveryStatus::Unregistered, Some(error))
            }
            Outcome::Retry { error, after } => {
                let pending = PendingDelivery {
                    user: recipient.user.clone(),
                    device: recipient.device.clone(),
                    attempts: attempt,
                };
                match retry_tier(tiers, attempt, after) {
                    None => {
                        self.dead.push(pending);
                        (
                            DeliveryStatus::Failed,
                            Some(format!("gave up after {attempt} attempts: {error}")),
                        )
                    }
                    Some(tier) => {
                        let due = now_ms()
                            + i64::try_from(tiers[tier].as_millis()).unwrap_or(i64::MAX / 2);
                        if job.expired_at(due) {
                            (DeliveryStatus::Expired, Some(error))
                        } else {
                            self.retries.entry(tier).or_default().push(pending);
                            (DeliveryStatus::Queued, Some(error))
                        }
                    }
                }
            }
        };
        metrics::counter!("sprayer_deliveries_total", "channel" => job.channel.as_str(), "status" => status.as_str())
            .increment(1);
        self.events.push(DeliveryEvent {
            app: job.app.clone(),
            message: job.message_id.clone(),
            channel: job.channel,
            user: recipient.user.clone(),
            device: recipient.device.clone(),
            status,
            attempt,
            error,
            code,
            at: now_ms(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_tiers_follow_attempts_and_retry_after() {
        let tiers = [1, 10, 60].map(Duration::from_secs);
        assert_eq!(retry_tier(&tiers, 1, None), Some(0));
        assert_eq!(retry_tier(&tiers, 3, None), Some(2));
        assert_eq!(retry_tier(&tiers, 4, None), None);
        assert_eq!(retry_tier(&tiers, 1, Some(Duration::from_secs(5))), Some(1));
        assert_eq!(
            retry_tier(&tiers, 1, Some(Duration::from_secs(3600))),
            Some(2)
        );
        assert_eq!(retry_tier(&[], 1, None), None);
    }
}
