//! Group commit to the broker. Every accepted message is one job per channel and one message
//! record, and a broker message with a confirm for each would bound the accepter by the broker's
//! per-message cost (its publish, its confirm, its delivery to a consumer and that consumer's
//! ack). Instead, what concurrent requests publish to one place goes together: jobs for one
//! channel in one batch message (see
//! [`Topology::job_batch_message`](sprayer_shared::amqp::Topology::job_batch_message)), message records in one
//! status message. Items that arrive while the last batch is being confirmed go in the next one,
//! so a lone request is published at once and a busy accepter publishes fewer, larger messages.
//! Every request still waits for the confirm of the message that carries its items, so a 202
//! still means the broker holds them.

use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::amqp::committer::{Committer, Gathering};
use sprayer_shared::amqp::{AmqpError, Publisher};
use sprayer_shared::model::Channel;

/// How requests' items gather: whatever arrived while the last message was confirmed, up to
/// 256 items or 512 KiB (a larger item goes alone), with no lingering: a 202 waits for nothing
/// but its own confirm.
const GATHERING: Gathering = Gathering {
    most: 512 * 1024,
    linger: Duration::ZERO,
    flush_at: 256,
};

/// The accepter's publishing: one committer per job channel and one for message records.
#[derive(Clone)]
pub struct Commits {
    jobs: Vec<(Channel, Committer<Vec<u8>>)>,
    records: Committer<Vec<u8>>,
}

impl Commits {
    /// Starts a gathering task per destination.
    pub fn start(publisher: &Arc<Publisher>) -> Commits {
        let jobs = Channel::ALL
            .into_iter()
            .map(|channel| {
                let committer = Committer::start(
                    publisher.clone(),
                    channel.as_str(),
                    GATHERING,
                    Vec::len,
                    Box::new(move |topology, items| {
                        Ok(vec![topology.job_batch_message(channel, &items)])
                    }),
                );
                (channel, committer)
            })
            .collect();
        let records = Committer::start(
            publisher.clone(),
            "status",
            GATHERING,
            Vec::len,
            Box::new(|topology, items| Ok(vec![topology.records_message(&items)])),
        );
        Commits { jobs, records }
    }

    /// Publishes one job (its JSON) for `channel`; returns once the broker confirmed it.
    pub async fn job(&self, channel: Channel, job: Vec<u8>) -> Result<(), AmqpError> {
        match self.jobs.iter().find(|(each, _)| *each == channel) {
            Some((_, committer)) => committer.publish(job).await,
            None => Err(AmqpError::Unavailable(format!(
                "no publisher for {channel}"
            ))),
        }
    }

    /// Publishes one message record (its JSON); returns once the broker confirmed it.
    pub async fn record(&self, record: Vec<u8>) -> Result<(), AmqpError> {
        self.records.publish(record).await
    }
}
