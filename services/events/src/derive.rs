//! What events a status message makes: `message.accepted` for each message record, a
//! `delivery.*` event for each status change (a first `queued` makes none), `endpoint.pruned`
//! beside each `delivery.unregistered`, and the app events as they came. Each event's id is
//! stable, so the same status message read twice makes the same events.

use mongodb::bson::{self, Document};
use serde::Serialize;
use sprayer_shared::feed::{EventDoc, rfc3339_ms};
use sprayer_shared::model::{
    AppEvent, DeliveryData, DeliveryEvent, DeliveryStatus, EndpointPrunedData, EventType,
    MessageAcceptedData, MessageRecord, StatusBatch, accepted_event_id, delivery_event_id,
    event_id,
};
use sprayer_shared::mongo::date;

/// The events of one status message, numbered 0 (the writer numbers them).
pub fn events_of(batch: &StatusBatch) -> Vec<EventDoc> {
    let mut events = Vec::with_capacity(batch.messages.len() + batch.deliveries.len());
    events.extend(batch.messages.iter().map(accepted));
    for delivery in &batch.deliveries {
        let Some(kind) = EventType::of_delivery(delivery) else {
            continue;
        };
        events.push(delivery_event(kind, delivery));
        if delivery.status == DeliveryStatus::Unregistered {
            events.push(pruned(delivery));
        }
    }
    events.extend(batch.app_events.iter().map(app_event));
    events
}

fn document(data: &impl Serialize) -> Document {
    bson::to_document(data).unwrap_or_default()
}

fn accepted(record: &MessageRecord) -> EventDoc {
    let data = MessageAcceptedData {
        message_id: record.id.as_str().to_owned(),
        to: record.to.clone(),
        channels: record
            .channels
            .iter()
            .map(|channel| channel.as_str().to_owned())
            .collect(),
        created_at: rfc3339_ms(record.created_at),
        expires_at: rfc3339_ms(record.expires_at),
    };
    EventDoc {
        id: accepted_event_id(record),
        seq: 0,
        app: record.app.as_str().to_owned(),
        kind: EventType::MessageAccepted.as_str().to_owned(),
        channel: None,
        at: date(record.created_at),
        data: document(&data),
    }
}

/// Whether nothing follows this status for the delivery (`delivered` may still become `read`
/// on a channel that reports reading, which says so with its own event).
fn is_final(status: DeliveryStatus) -> bool {
    !matches!(status, DeliveryStatus::Queued | DeliveryStatus::Sent)
}

fn delivery_event(kind: EventType, event: &DeliveryEvent) -> EventDoc {
    let data = DeliveryData {
        message_id: event.message.as_str().to_owned(),
        delivery_id: event.delivery_id(),
        channel: event.channel.as_str().to_owned(),
        user: event.user.as_str().to_owned(),
        device: event.device.as_str().to_owned(),
        status: event.status,
        attempt: event.attempt,
        is_final: is_final(event.status),
        error: event.error.clone(),
        code: event.code.clone(),
    };
    EventDoc {
        id: delivery_event_id(event),
        seq: 0,
        app: event.app.as_str().to_owned(),
        kind: kind.as_str().to_owned(),
        channel: Some(event.channel.as_str().to_owned()),
        at: date(event.at),
        data: document(&data),
    }
}

fn pruned(event: &DeliveryEvent) -> EventDoc {
    let data = EndpointPrunedData {
        channel: event.channel.as_str().to_owned(),
        user: event.user.as_str().to_owned(),
        device: event.device.as_str().to_owned(),
        reason: event
            .error
            .clone()
            .unwrap_or_else(|| "the provider called the address gone".to_owned()),
        message_id: event.message.as_str().to_owned(),
    };
    EventDoc {
        id: event_id(&["endpoint.pruned", &event.delivery_id()]),
        seq: 0,
        app: event.app.as_str().to_owned(),
        kind: EventType::EndpointPruned.as_str().to_owned(),
        channel: Some(event.channel.as_str().to_owned()),
        at: date(event.at),
        data: document(&data),
    }
}

fn app_event(event: &AppEvent) -> EventDoc {
    EventDoc {
        id: event.id.clone(),
        seq: 0,
        app: event.app.as_str().to_owned(),
        kind: event.kind.as_str().to_owned(),
        channel: event.data["channel"].as_str().map(str::to_owned),
        at: date(event.at),
        data: document(&event.data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprayer_shared::model::{AppId, Channel, DeviceId, MessageId, UserId};

    fn delivery(status: DeliveryStatus, attempt: u32, error: Option<&str>) -> DeliveryEvent {
        DeliveryEvent {
            app: AppId::parse("app").expect("id"),
            message: MessageId::parse("m1").expect("id"),
            channel: Channel::Http,
            user: UserId::parse("u1").expect("id"),
            device: DeviceId::parse("d1").expect("id"),
            status,
            attempt,
            error: error.map(str::to_owned),
            // The provider's code, as the dispatcher gives it beside a failure.
            code: error.map(|error| error.rsplit(' ').next().unwrap_or(error).to_owned()),
            at: 1_700_000_000_000,
        }
    }

    #[test]
    fn status_changes_make_delivery_events_and_first_queued_makes_none() {
        let batch = StatusBatch {
            deliveries: vec![
                delivery(DeliveryStatus::Queued, 1, None),
                delivery(DeliveryStatus::Queued, 2, Some("receiver answered 500")),
                delivery(DeliveryStatus::Delivered, 2, None),
                delivery(DeliveryStatus::Unregistered, 3, Some("410 Gone")),
            ],
            ..StatusBatch::default()
        };
        let events = events_of(&batch);
        let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "delivery.retrying",
                "delivery.delivered",
                "delivery.unregistered",
                "endpoint.pruned"
            ]
        );
        assert_eq!(events[0].data.get_str("error"), Ok("receiver answered 500"));
        assert_eq!(events[0].data.get_str("code"), Ok("500"));
        assert!(
            events[1].data.get_str("code").is_err(),
            "a delivery has no code"
        );
        assert_eq!(events[1].data.get_bool("final"), Ok(true));
        assert_eq!(events[0].data.get_bool("final"), Ok(false));
        assert_eq!(events[3].data.get_str("reason"), Ok("410 Gone"));
        // The same status message read again makes the same ids.
        let again: Vec<String> = events_of(&batch)
            .into_iter()
            .map(|event| event.id)
            .collect();
        let ids: Vec<String> = events.into_iter().map(|event| event.id).collect();
        assert_eq!(ids, again);
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
