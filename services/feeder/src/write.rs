//! Bulk writes of feedback: message records and delivery events become bulk commands: an
//! unordered `insert_many` of the records (one written already is left alone), an unordered
//! `insert_many` of every event's delivery, then, for deliveries that exist already, a
//! multi-statement `update` with upserts.
//!
//! A delivery event is applied only if its rank is at least the stored one (the filter holds
//! `rank <= event rank`); when the stored rank is higher, the upsert tries to insert a second
//! document with the same `_id` and fails with E11000: the event is stale and is dropped. So a
//! delivery never moves backwards, and duplicate events change nothing.

use std::collections::HashMap;

use mongodb::bson::{Bson, Document, doc};
use sprayer_shared::model::{DeliveryEvent, MessageRecord, StepRecord};
pub use sprayer_shared::mongo::WriteError;
use sprayer_shared::mongo::{Mongo, date};

/// Statements per `update` command.
const STATEMENTS_PER_COMMAND: usize = 10_000;
const DUPLICATE_KEY: i32 = 11_000;

/// What a bulk write achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Delivery events applied.
    pub applied: usize,
    /// Delivery events dropped because a later status was already stored.
    pub stale: usize,
}

/// Keeps, for each delivery, only its highest-ranked event (the latest of equal ones).
pub fn latest_per_delivery(events: Vec<DeliveryEvent>) -> Vec<DeliveryEvent> {
    let mut best: HashMap<String, DeliveryEvent> = HashMap::with_capacity(events.len());
    for event in events {
        let id = event.delivery_id();
        let keep = best.get(&id).is_none_or(|current| {
            event.status.rank(event.attempt) >= current.status.rank(current.attempt)
        });
        if keep {
            best.insert(id, event);
        }
    }
    best.into_values().collect()
}

fn delivery_statement(event: &DeliveryEvent) -> Document {
    let rank = event.status.rank(event.attempt);
    let at = date(event.at);
    let mut set = doc! {
        "status": event.status.as_str(),
        "rank": rank,
        "updated": at,
        format!("times.{}", event.status.as_str()): at,
    };
    if let Some(error) = &event.error {
        set.insert("error", error.as_str());
    }
    if let Some(code) = &event.code {
        set.insert("code", code.as_str());
    }
    doc! {
        "q": { "_id": event.delivery_id(), "rank": { "$lte": rank } },
        "u": {
            "$set": set,
            "$max": { "attempts": i64::from(event.attempt) },
            "$setOnInsert": identity(event),
        },
        "upsert": true,
    }
}

/// What a delivery is and when it was first seen: set once, when its document is created.
fn identity(event: &DeliveryEvent) -> Document {
    doc! {
        "app": event.app.as_str(),
        "message": event.message.as_str(),
        "channel": event.channel.as_str(),
        "user": event.user.as_str(),
        "device": event.device.as_str(),
        "created": date(event.at),
    }
}

/// The document a delivery's first event creates: what the guarded upsert would insert.
pub fn delivery_document(event: &DeliveryEvent) -> Document {
    let at = date(event.at);
    let mut document = doc! {
        "_id": event.delivery_id(),
        "status": event.status.as_str(),
        "rank": event.status.rank(event.attempt),
        "updated": at,
        "times": { event.status.as_str(): at },
        "attempts": i64::from(event.attempt),
    };
    document.extend(identity(event));
    if let Some(error) = &event.error {
        document.insert("error", error.as_str());
    }
    if let Some(code) = &event.code {
        document.insert("code", code.as_str());
    }
    document
}

/// The document of a message record.
fn message_document(record: &MessageRecord) -> Document {
    let to = mongodb::bson::to_bson(&record.to).unwrap_or(Bson::Null);
    let channels: Vec<&str> = record
        .channels
        .iter()
        .map(|channel| channel.as_str())
        .collect();
    let mut document = doc! {
        "_id": record.id.as_str(),
        "app": record.app.as_str(),
        "to": to,
        "channels": channels,
        "created": date(record.created_at),
        "expires": date(record.expires_at),
    };
    if let Some(send_at) = record.send_at {
        document.insert("send_at", date(send_at));
    }
    if !record.steps.is_empty() {
        document.insert(
            "steps",
            mongodb::bson::to_bson(&record.steps).unwrap_or(Bson::Null),
        );
    }
    if let Some(cancel_key) = &record.cancel_key {
        document.insert("cancel_key", cancel_key.as_str());
    }
    if let Some(template) = &record.template {
        document.insert(
            "template",
            doc! { "name": template.name.as_str(), "version": i64::try_from(template.version).unwrap_or(i64::MAX) },
        );
    }
    if let Some(category) = &record.category {
        document.insert("category", category.as_str());
    }
    document
}

/// The document of a step that did not run for a user.
fn step_document(record: &StepRecord) -> Document {
    doc! {
        "_id": format!("{}:{}:{}", record.message, record.user, record.step),
        "app": record.app.as_str(),
        "message": record.message.as_str(),
        "user": record.user.as_str(),
        "step": i32::from(record.step),
        "state": record.state.as_str(),
        "reason": record.reason.as_str(),
        "created": date(record.at),
    }
}

/// Runs `statements` as one `update` command per chunk against `collection`; returns the
/// indexes that failed with E11000.
async fn update(
    mongo: &Mongo,
    collection: &str,
    statements: &[Document],
) -> Result<Vec<usize>, WriteError> {
    let mut duplicates = Vec::new();
    for (chunk_index, chunk) in statements.chunks(STATEMENTS_PER_COMMAND).enumerate() {
        metrics::counter!("sprayer_feeder_commands_total", "command" => "update").increment(1);
        let reply = mongo
            .database
            .run_command(doc! { "update": collection, "updates": chunk.to_vec(), "ordered": false })
            .await?;
        if let Ok(concern) = reply.get_document("writeConcernError") {
            return Err(WriteError::Statement {
                code: concern.get_i32("code").unwrap_or(0),
                message: concern
                    .get_str("errmsg")
                    .unwrap_or("write concern error")
                    .to_owned(),
            });
        }
        for error in reply
            .get_array("writeErrors")
            .into_iter()
            .flatten()
            .filter_map(Bson::as_document)
        {
            let code = error.get_i32("code").unwrap_or(0);
            let index = error
                .get_i32("index")
                .ok()
                .and_then(|index| usize::try_from(index).ok());
            match (code, index) {
                (DUPLICATE_KEY, Some(index)) => {
                    duplicates.push(chunk_index * STATEMENTS_PER_COMMAND + index);
                }
                _ => {
                    return Err(WriteError::Statement {
                        code,
                        message: error.get_str("errmsg").unwrap_or("").to_owned(),
                    });
                }
            }
        }
    }
    Ok(duplicates)
}

/// Inserts `documents` into `collection` (see [`sprayer_shared::mongo::insert_new`]), counting
/// the commands; returns the indexes of those that exist already.
async fn insert_new(
    mongo: &Mongo,
    collection: &str,
    documents: Vec<Document>,
) -> Result<Vec<usize>, WriteError> {
    let collection = mongo.database.collection::<Document>(collection);
    let inserted = sprayer_shared::mongo::insert_new(&collection, documents).await?;
    metrics::counter!("sprayer_feeder_commands_total", "command" => "insert")
        .increment(inserted.commands as u64);
    Ok(inserted.existing)
}

/// Writes message records and delivery events. Each E11000 is tried once more, since two
/// writers may have raced to insert the same new delivery; a second E11000 means stale.
pub async fn write(
    mongo: &Mongo,
    messages: &[MessageRecord],
    events: &[DeliveryEvent],
    steps: &[StepRecord],
) -> Result<Written, WriteError> {
    if !messages.is_empty() {
        // A record never changes: an E11000 is one written already (a redelivered status
        // message), with nothing to do. Inserts cost the server a fraction of upserts.
        let documents: Vec<Document> = messages.iter().map(message_document).collect();
        insert_new(mongo, "messages", documents).await?;
    }
    if !steps.is_empty() {
        // A step that did not run for a user is recorded once: the first reason stands.
        let documents: Vec<Document> = steps.iter().map(step_document).collect();
        insert_new(mongo, "steps", documents).await?;
    }
    if events.is_empty() {
        return Ok(Written::default());
    }
    // Most events are a delivery's first: insert them all, and take the guarded update path
    // only for the deliveries that exist already (E11000). Inserts cost the server a fraction
    // of upserts.
    let documents: Vec<Document> = events.iter().map(delivery_document).collect();
    let existing = insert_new(mongo, "deliveries", documents).await?;
    let statements: Vec<Document> = existing
        .iter()
        .map(|&index| delivery_statement(&events[index]))
        .collect();
    // An update that fails with E11000 is tried once more (two writers may have raced to
    // insert the same delivery); failing again means the event is stale.
    let mut stale = 0;
    if !statements.is_empty() {
        let first = update(mongo, "deliveries", &statements).await?;
        if !first.is_empty() {
            let again: Vec<Document> = first
                .iter()
                .map(|&index| statements[index].clone())
                .collect();
            stale = update(mongo, "deliveries", &again).await?.len();
        }
    }
    Ok(Written {
        applied: events.len() - stale,
        stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprayer_shared::model::{AppId, Channel, DeliveryStatus, DeviceId, MessageId, UserId};

    fn event(user: &str, status: DeliveryStatus, attempt: u32) -> DeliveryEvent {
        DeliveryEvent {
            app: AppId::parse("a").expect("valid"),
            message: MessageId::parse("m").expect("valid"),
            channel: Channel::Http,
            user: UserId::parse(user).expect("valid"),
            device: DeviceId::parse("d").expect("valid"),
            status,
            attempt,
            error: None,
            code: None,
            at: 0,
        }
    }

    #[test]
    fn only_the_highest_event_per_delivery_is_written() {
        let events = vec![
            event("u1", DeliveryStatus::Delivered, 3),
            event("u1", DeliveryStatus::Queued, 2),
            event("u2", DeliveryStatus::Queued, 1),
            event("u1", DeliveryStatus::Queued, 1),
        ];
        let mut kept = latest_per_delivery(events);
        kept.sort_by(|a, b| a.user.cmp(&b.user));
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].status, kept[0].attempt),
            (DeliveryStatus::Delivered, 3)
        );
        assert_eq!(kept[1].status, DeliveryStatus::Queued);
    }
}
