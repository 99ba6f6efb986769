//! The body of the fuzz target `ws_frame` (fuzz/fuzz_targets/ws_frame.rs), here so that a
//! normal test (tests/fuzz.rs) replays its seeds and past crashes at no build cost (`make fuzz`
//! fuzzes it).
//!
//! A text frame from a browser, through what the deliverer's socket does with it: the frame
//! parser, the ack ids check, the token of an `auth` frame and the frame sent back.
//!
//! The WebSocket layer hands the socket only UTF-8 text (it refuses other text frames, and a
//! binary frame closes the socket before any parsing), so bytes that are not UTF-8 are read
//! with their bad sequences replaced.

use crate::protocol::{self, ClientFrame, MAX_ACK_IDS};
use sprayer_shared::model::MessageId;
use sprayer_shared::wstoken;

const TOKEN_SECRET: &[u8] = b"fuzz-token-secret-of-32-bytes-ok";

fn assert_json(frame: &str) {
    assert!(
        serde_json::from_str::<serde_json::Value>(frame).is_ok(),
        "a frame sent back is not JSON: {frame:?}"
    );
}

/// The fuzz target `ws_frame`: panics when `data` breaks a rule the code must keep.
pub fn ws_frame(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ClientFrame::read(&text) {
        Ok(ClientFrame::Ack { ids }) => {
            assert!(ids.len() <= MAX_ACK_IDS);
            match ids.iter().find(|id| MessageId::parse(id.as_str()).is_err()) {
                Some(bad) => assert_json(&protocol::error(
                    "bad_frame",
                    &format!("not a message id: {bad:?}"),
                )),
                None => assert_json(&protocol::acked(&ids)),
            }
        }
        Ok(ClientFrame::Auth { token }) => {
            if let Ok(claims) = wstoken::verify(TOKEN_SECRET, &token) {
                panic!("a token nobody minted was accepted: {claims:?}");
            }
        }
        Ok(ClientFrame::Ping) => assert_json(protocol::PONG),
        Ok(ClientFrame::Counts) => {}
        Ok(ClientFrame::State(request)) => {
            // A request is checked or refused with a field and a reason, never a panic.
            if let Err(bad) = request.checked() {
                assert!(bad.field.starts_with('/'), "{bad:?}");
                assert_json(&protocol::error("bad_frame", &bad.detail));
            }
        }
        Err(refused) => assert_json(&protocol::error("bad_frame", &refused.to_string())),
    }
}
