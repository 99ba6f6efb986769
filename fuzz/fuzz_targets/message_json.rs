//! A `POST /v1/messages` body, through what the accepter does with it before it touches a
//! store: the JSON decoder of its extractor, the route's checks, and the problem+json answer
//! to a refused body.

#![no_main]

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use sprayer_accepter::extract::decode;
use sprayer_accepter::routes::messages::{SendMessage, validate};
use sprayer_shared::config::AccepterSettings;
use sprayer_shared::model::Channel;

/// Every channel served, so that each channel's checks run (APNs has its own), and a small
/// `max_users`, so that a short input can go past it.
static SETTINGS: LazyLock<AccepterSettings> = LazyLock::new(|| AccepterSettings {
    channels: Channel::ALL.to_vec(),
    max_users: 8,
    ..AccepterSettings::default()
});

fuzz_target!(|data: &[u8]| {
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
});
