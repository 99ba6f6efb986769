//! What goes into a broker message: [`Outgoing`] (exchange, routing key, JSON body) and the
//! [`Topology`] methods that address jobs, retries and status batches.

use super::topology::Topology;
use crate::model::{Channel, Job, StatusBatch};

/// The routing key of status batches.
pub const STATUS_ROUTING_KEY: &str = "status";

/// One message to publish: exchange, routing key and body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The exchange (empty for the default exchange).
    pub exchange: String,
    /// The routing key (a queue name on the default exchange).
    pub routing_key: String,
    /// The body, JSON.
    pub body: Vec<u8>,
    /// The AMQP `type` property: [`JOB_BATCH_KIND`] for a batch of jobs, none for one job or a
    /// status batch.
    pub kind: Option<&'static str>,
}

pub use crate::model::JOB_BATCH_KIND;

/// `{"<field>":[<item>,...]}` from items that are JSON already.
fn json_object_of_array(field: &str, items: &[Vec<u8>]) -> Vec<u8> {
    let size = items.iter().map(|item| item.len() + 1).sum::<usize>() + field.len() + 8;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(field.as_bytes());
    body.extend_from_slice(b"\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

impl Topology {
    /// A job for `channel`'s queue.
    pub fn job_message(&self, channel: Channel, job: &Job) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: self.jobs_exchange(),
            routing_key: channel.as_str().to_owned(),
            body: serde_json::to_vec(job)?,
            kind: None,
        })
    }

    /// Several jobs for `channel`'s queue in one broker message, from their JSON encodings:
    /// one publish, one confirm and one delivery instead of one each. One job goes as itself.
    pub fn job_batch_message(&self, channel: Channel, jobs: &[Vec<u8>]) -> Outgoing {
        let (body, kind) = match jobs {
            [one] => (one.clone(), None),
            _ => (json_object_of_array("jobs", jobs), Some(JOB_BATCH_KIND)),
        };
        Outgoing {
            exchange: self.jobs_exchange(),
            routing_key: channel.as_str().to_owned(),
            body,
            kind,
        }
    }

    /// A job straight into `queue` (a retry tier or the dead-letter queue).
    pub fn queued_job_message(
        &self,
        queue: String,
        job: &Job,
    ) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: String::new(),
            routing_key: queue,
            body: serde_json::to_vec(job)?,
            kind: None,
        })
    }

    /// A status batch for the feeder.
    pub fn status_message(&self, batch: &StatusBatch) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: self.status_exchange(),
            routing_key: STATUS_ROUTING_KEY.to_owned(),
            body: serde_json::to_vec(batch)?,
            kind: None,
        })
    }

    /// A status batch of message records, from their JSON encodings.
    pub fn records_message(&self, records: &[Vec<u8>]) -> Outgoing {
        Outgoing {
            exchange: self.status_exchange(),
            routing_key: STATUS_ROUTING_KEY.to_owned(),
            body: json_object_of_array("messages", records),
            kind: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AmqpSettings;
    use crate::model::{
        AppId, Content, JobTarget, MessageId, MessageRecord, Priority, UserId, decode_jobs,
    };

    fn job(user: &str) -> Job {
        Job {
            message_id: MessageId::generate(),
            app: AppId::parse("app").expect("an app id"),
            channel: Channel::Http,
            target: JobTarget::User(UserId::parse(user).expect("a user id")),
            content: Content {
                title: Some("t".into()),
                body: Some("b \"quoted\" ,]}".into()),
                data: None,
            },
            overrides: None,
            priority: Priority::High,
            created_at: 1,
            expires_at: 2,
            personal: None,
        }
    }
    #[test]
    fn a_job_batch_decodes_to_the_same_jobs_in_order() {
        let topology = Topology::new(&AmqpSettings::default());
        let jobs = vec![job("a"), job("b"), job("c")];
        let encoded: Vec<Vec<u8>> = jobs
            .iter()
            .map(|job| serde_json::to_vec(job).expect("json"))
            .collect();
        let message = topology.job_batch_message(Channel::Http, &encoded);
        assert_eq!(message.kind, Some(JOB_BATCH_KIND));
        assert_eq!(message.routing_key, "http");
        assert_eq!(
            decode_jobs(message.kind, &message.body).expect("a batch"),
            jobs
        );
        // One job goes as itself, readable by a consumer that knows no batches.
        let single = topology.job_batch_message(Channel::Http, &encoded[..1]);
        assert_eq!(single.kind, None);
        let plain: Job = serde_json::from_slice(&single.body).expect("a job");
        assert_eq!(plain, jobs[0]);
        assert_eq!(decode_jobs(None, &single.body).expect("a job"), jobs[..1]);
        // A batch read as one job, or one job read as a batch, is an error, not a guess.
        assert!(decode_jobs(None, &message.body).is_err());
        assert!(decode_jobs(Some(JOB_BATCH_KIND), &single.body).is_err());
    }

    #[test]
    fn records_gathered_from_their_encodings_are_a_status_batch() {
        let topology = Topology::new(&AmqpSettings::default());
        let records: Vec<MessageRecord> = ["a", "b"]
            .iter()
            .map(|user| MessageRecord {
                id: MessageId::generate(),
                app: AppId::parse("app").expect("an app id"),
                to: serde_json::json!({ "user": user }),
                channels: vec![Channel::Http, Channel::Ws],
                created_at: 1,
                expires_at: 2,
                send_at: None,
                steps: Vec::new(),
                cancel_key: None,
                template: None,
                category: None,
            })
            .collect();
        let encoded: Vec<Vec<u8>> = records
            .iter()
            .map(|record| serde_json::to_vec(record).expect("json"))
            .collect();
        let message = topology.records_message(&encoded);
        let batch: StatusBatch = serde_json::from_slice(&message.body).expect("a status batch");
        assert_eq!(batch.messages, records);
        assert!(batch.deliveries.is_empty());
    }
}
