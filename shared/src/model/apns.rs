//! The APNs payload, built from a message's content and its `apns` override. It lives here so
//! that the accepter refuses a message whose payload would exceed APNs' limit before accepting it.

use serde_json::{Map, Value, json};

use super::Content;

/// The largest payload APNs takes for a notification, in bytes.
pub const APNS_MAX_PAYLOAD: usize = 4096;

/// Keys of the `apns` override that set headers rather than payload fields.
pub const APNS_HEADER_KEYS: [&str; 2] = ["collapse_id", "push_type"];

/// The notification payload: `aps.alert` from the title and body (or `content-available` when
/// neither is given), `data` entries at the top level, then the override: its `aps` merged
/// over the built one, its other keys (but [`APNS_HEADER_KEYS`]) at the top level.
pub fn apns_payload(content: &Content, overrides: Option<&Value>) -> Value {
    let mut aps = Map::new();
    let mut alert = Map::new();
    if let Some(title) = &content.title {
        alert.insert("title".into(), json!(title));
    }
    if let Some(body) = &content.body {
        alert.insert("body".into(), json!(body));
    }
    if alert.is_empty() {
        aps.insert("content-available".into(), json!(1));
    } else {
        aps.insert("alert".into(), Value::Object(alert));
    }
    let mut payload = Map::new();
    if let Some(data) = &content.data {
        for (key, value) in data {
            if key != "aps" {
                payload.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(Value::Object(overrides)) = overrides {
        for (key, value) in overrides {
            match (key.as_str(), value) {
                ("aps", Value::Object(extra)) => {
                    for (field, value) in extra {
                        aps.insert(field.clone(), value.clone());
                    }
                }
                (key, _) if APNS_HEADER_KEYS.contains(&key) => {}
                (key, value) => {
                    payload.insert(key.to_owned(), value.clone());
                }
            }
        }
    }
    payload.insert("aps".into(), Value::Object(aps));
    Value::Object(payload)
}

/// Whether the payload carries something to show (an alert, a sound or a badge) rather than a
/// silent background update.
pub fn apns_is_alert(payload: &Value) -> bool {
    let aps = &payload["aps"];
    !aps["alert"].is_null() || !aps["sound"].is_null() || !aps["badge"].is_null()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_merge_content_data_and_raw_aps() {
        let content = Content {
            title: Some("Hi".into()),
            body: Some("there".into()),
            data: serde_json::from_value(json!({ "order": 7 })).ok(),
        };
        let overrides = json!({ "aps": { "sound": "default", "badge": 3 }, "collapse_id": "c1", "extra": true });
        let payload = apns_payload(&content, Some(&overrides));
        assert_eq!(
            payload,
            json!({ "order": 7, "extra": true, "aps": { "alert": { "title": "Hi", "body": "there" }, "sound": "default", "badge": 3 } })
        );
        assert!(apns_is_alert(&payload));
        let silent = apns_payload(
            &Content {
                data: serde_json::from_value(json!({ "k": 1 })).ok(),
                ..Content::default()
            },
            None,
        );
        assert_eq!(silent["aps"], json!({ "content-available": 1 }));
        assert!(!apns_is_alert(&silent));
    }
}
