//! The body of the fuzz target `message_json` (fuzz/fuzz_targets/message_json.rs), here so that a
//! normal test (tests/fuzz.rs) replays its seeds and past crashes at no build cost (`make fuzz`
//! fuzzes it).
//!
//! A `POST /v1/messages` body, through what the accepter does with it before it touches a
//! store: the JSON decoder of its extractor, the route's checks, and the problem+json answer
//! to a refused body.

use std::sync::LazyLock;

use crate::extract::decode;
use crate::routes::messages::{SendMessage, validate};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use sprayer_shared::config::AccepterSettings;
use sprayer_shared::model::Channel;

/// Every channel served, so that each channel's checks run (APNs has its own), and a small
/// `max_users`, so that a short input can go past it.
static SETTINGS: LazyLock<AccepterSettings> = LazyLock::new(|| AccepterSettings {
    channels: Channel::ALL.to_vec(),
    max_users: 8,
    ..AccepterSettings::default()
});

/// The fuzz target `message_json`: panics when `data` breaks a rule the code must keep.
pub fn message_json(data: &[u8]) {
    if data.len() > SETTINGS.max_body_bytes {
        // Refused with 413 before it is read.
        return;
    }
    let checked = decode::<SendMessage>(data).and_then(|request| validate(request, &SETTINGS));
    if let Err(error) = checked {
        let status = error.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "a bad body answered {status}"
        );
        let response = error.into_response();
        assert_eq!(response.status(), status);
    }
}
