//! The app event feed in MongoDB: `events` (one document per event, numbered in one total order
//! by the single feed writer), `event_heads` (the highest number readers may see, and the
//! highest removed by retention) and `event_endpoints` (each app's event webhooks with their
//! cursors); opaque cursors; reads in feed order.
//!
//! Readers never see past the head: the writer inserts a batch, then moves the head, so a
//! reader that follows cursors sees every event once, in order, with no gaps.

use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::TypeFilter;
use crate::mongo::Mongo;

/// `events`: one event of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDoc {
    /// The stable event id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Its place in the feed.
    pub seq: i64,
    /// The app.
    pub app: String,
    /// The type's name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The channel, for the events of a delivery (endpoints may filter on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When it happened.
    pub at: bson::DateTime,
    /// The event's data.
    pub data: Document,
}

impl EventDoc {
    /// The event as the API and event endpoints show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": self.kind,
            "timestamp": rfc3339(self.at),
            "cursor": encode_cursor(&self.app, self.seq),
            "data": bson::Bson::Document(self.data.clone()).into_relaxed_extjson(),
        })
    }
}

/// RFC 3339 with milliseconds.
pub fn rfc3339(at: bson::DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

/// RFC 3339 with milliseconds, of Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339(crate::mongo::date(ms))
}

/// `event_heads`: the feed's head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The highest event number readers may see.
    pub seq: i64,
    /// The highest event number retention removed (cursors below it have expired).
    pub trimmed: i64,
}

/// The id of the head document.
const HEAD_ID: &str = "feed";

/// An event endpoint's state as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDoc {
    /// `ep_` and 24 hex digits.
    #[serde(rename = "_id")]
    pub id: String,
    /// The app.
    pub app: String,
    /// Where batches are POSTed.
    pub url: String,
    /// The type patterns, as given.
    pub events: Vec<String>,
    /// The channels delivery events must be of (all when absent).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// A note for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether batches are sent.
    pub enabled: bool,
    /// The signing secret (`whsec_` and base64).
    pub secret: String,
    /// The secret before the last rotation, signing beside the new one until `previous_until`.
    #[serde(default)]
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs.
    #[serde(default)]
    pub previous_until: Option<bson::DateTime>,
    /// The number of the last event taken (or skipped by the filters).
    pub cursor: i64,
    /// When it was made.
    pub created: bson::DateTime,
    /// When it was last changed by the app.
    pub updated: bson::DateTime,
    /// Since when its batches have been failing.
    #[serde(default)]
    pub failing_since: Option<bson::DateTime>,
    /// The last failure.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When a batch was last taken.
    #[serde(default)]
    pub last_success: Option<bson::DateTime>,
    /// Why it was disabled, when Sprayer disabled it.
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

impl EndpointDoc {
    /// The keys that sign for it at `now_ms`: its secret, and the previous one during the
    /// rotation's overlap.
    pub fn signing_keys(&self, now_ms: i64) -> Vec<Vec<u8>> {
        let decode = |secret: &str| {
            crate::model::WebhookAddress {
                url: String::new(),
                secret: secret.to_owned(),
            }
            .signing_key()
            .ok()
        };
        let mut keys: Vec<Vec<u8>> = decode(&self.secret).into_iter().collect();
        let overlapping = self
            .previous_until
            .is_some_and(|until| until.timestamp_millis() > now_ms);
        if let Some(previous) = self.previous_secret.as_deref().filter(|_| overlapping) {
            keys.extend(decode(previous));
        }
        keys
    }
}

/// A cursor that this feed never issued, or one whose events retention removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// It does not decode, belongs to another app or lies ahead of the feed.
    #[error("is not a cursor this app's feed issued")]
    Unknown,
    /// Events after it were removed (`events.retention`).
    #[error(
        "has expired: events after it were removed after events.retention; start again without it"
    )]
    Expired,
}

fn cursor_tag(app: &str, seq: i64) -> [u8; 6] {
    let digest = Sha256::new()
        .chain_update(b"sprayer-cursor\0")
        .chain_update(app.as_bytes())
        .chain_update([0])
        .chain_update(seq.to_be_bytes())
        .finalize();
    let mut tag = [0; 6];
    tag.copy_from_slice(&digest[..6]);
    tag
}

/// The opaque cursor of event number `seq` in `app`'s feed.
pub fn encode_cursor(app: &str, seq: i64) -> String {
    use base64::Engine;
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend_from_slice(&cursor_tag(app, seq));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The event number a cursor of `app`'s feed stands for, checked against the feed's head.
pub fn decode_cursor(app: &str, cursor: &str, head: Head) -> Result<i64, CursorError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| CursorError::Unknown)?;
    let (number, tag) = bytes.split_at_checked(8).ok_or(CursorError::Unknown)?;
    let seq = i64::from_be_bytes(number.try_into().map_err(|_| CursorError::Unknown)?);
    if tag != cursor_tag(app, seq) || seq < 0 || seq > head.seq {
        return Err(CursorError::Unknown);
    }
    if seq < head.trimmed {
        return Err(CursorError::Expired);
    }
    Ok(seq)
}

/// The feed's collections.
#[derive(Clone, Debug)]
pub struct Feed {
    /// `events`.
    pub events: Collection<EventDoc>,
    /// `event_heads`.
    pub heads: Collection<Document>,
    /// `event_endpoints`.
    pub endpoints: Collection<EndpointDoc>,
}

impl Feed {
    /// The feed in `mongo`'s database.
    pub fn new(mongo: &Mongo) -> Feed {
        Feed {
            events: mongo.database.collection("events"),
            heads: mongo.database.collection("event_heads"),
            endpoints: mongo.database.collection("event_endpoints"),
        }
    }

    /// Creates the indexes readers and the writer rely on; safe to call at every start.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        self.events
            .create_index(named(doc! { "app": 1, "seq": 1 }, "app_seq"))
            .await?;
        self.events
            .create_index(named(doc! { "seq": 1 }, "seq"))
            .await?;
        self.events
            .create_index(named(doc! { "at": 1 }, "at"))
            .await?;
        self.endpoints
            .create_index(named(doc! { "app": 1 }, "app"))
            .await?;
        Ok(())
    }

    /// The head (zero before the first event).
    pub async fn head(&self) -> mongodb::error::Result<Head> {
        let found = self.heads.find_one(doc! { "_id": HEAD_ID }).await?;
        Ok(found
            .map(|head| Head {
                seq: head.get_i64("seq").unwrap_or(0),
                trimmed: head.get_i64("trimmed").unwrap_or(0),
            })
            .unwrap_or_default())
    }

    /// Moves the head to `seq` (never back).
    pub async fn advance_head(&self, seq: i64) -> mongodb::error::Result<()> {
        self.heads
            .update_one(
                doc! { "_id": HEAD_ID },
                doc! { "$max": { "seq": seq }, "$setOnInsert": { "trimmed": 0_i64 } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Records that retention removed every event up to `seq`.
    pub async fn set_trimmed(&self, seq: i64) -> mongodb::error::Result<()> {
        self.heads
            .update_one(
                doc! { "_id": HEAD_ID },
                doc! { "$max": { "trimmed": seq }, "$setOnInsert": { "seq": 0_i64 } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Up to `limit` events of `app` after `after` and up to the head `upto`, of the `types`
    /// (and, for delivery events, of the `channels` when given), in feed order, with how far
    /// the feed was read.
    ///
    /// The feed is read in windows of numbers (starting at twice `limit`, doubling while they
    /// come back short, at most 16 windows), filtered here: a range query over the whole rest
    /// of the feed, or one with the type in it, costs the server in proportion to the range
    /// (hundreds of milliseconds at 100,000 events), a window in proportion to the window.
    pub async fn read(
        &self,
        app: &str,
        after: i64,
        upto: i64,
        limit: usize,
        types: &TypeFilter,
        channels: Option<&[String]>,
    ) -> mongodb::error::Result<Page> {
        use futures::TryStreamExt;
        let takes = |event: &EventDoc| {
            let typed =
                crate::model::EventType::parse(&event.kind).is_some_and(|kind| types.matches(kind));
            // Events without a channel (presence, inbound SMS, endpoint state) pass.
            let channelled = match (channels, &event.channel) {
                (Some(channels), Some(channel)) => channels.contains(channel),
                _ => true,
            };
            typed && channelled
        };
        let mut events: Vec<EventDoc> = Vec::new();
        let mut from = after;
        let mut window = i64::try_from(limit)
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(2)
            .max(200);
        for _ in 0..16 {
            if from >= upto {
                break;
            }
            let to = from.saturating_add(window).min(upto);
            let mut found = self
                .events
                .find(doc! { "app": app, "seq": { "$gt": from, "$lte": to } })
                .sort(doc! { "seq": 1 })
                .await?;
            while let Some(event) = found.try_next().await? {
                if takes(&event) {
                    let seq = event.seq;
                    events.push(event);
                    if events.len() >= limit {
                        return Ok(Page {
                            events,
                            through: seq,
                        });
                    }
                }
            }
            from = to;
            window = window.saturating_mul(2).min(10_000);
        }
        Ok(Page {
            events,
            through: from,
        })
    }
}

/// What one read of the feed found.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, in feed order.
    pub events: Vec<EventDoc>,
    /// The number up to which the feed was read: nothing matching lies between the last event
    /// and it (the cursor moves there).
    pub through: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_within_their_app_and_the_head() {
        let head = Head {
            seq: 100,
            trimmed: 10,
        };
        let cursor = encode_cursor("app1", 42);
        assert_eq!(decode_cursor("app1", &cursor, head), Ok(42));
        assert_eq!(
            decode_cursor("app2", &cursor, head),
            Err(CursorError::Unknown)
        );
        assert_eq!(
            decode_cursor("app1", &encode_cursor("app1", 101), head),
            Err(CursorError::Unknown)
        );
        assert_eq!(
            decode_cursor("app1", &encode_cursor("app1", 9), head),
            Err(CursorError::Expired)
        );
        for junk in ["", "nope", "AAAAAAAAAAAAAAAAAAAA", "%%%"] {
            assert_eq!(
                decode_cursor("app1", junk, head),
                Err(CursorError::Unknown),
                "{junk}"
            );
        }
    }
}
