//! The WebSocket frame protocol: JSON text frames, one object per frame, told apart by `type`.
//!
//! From the server:
//! - `{"type":"hello","user":"u1","node":"node-1","heartbeat_ms":25000}` once authenticated;
//! - `{"type":"message","seq":1763790000000000,"message":{"id","title","body","data","created_at","expires_at"}}`,
//!   in inbox order: first the backlog, then live messages;
//! - `{"type":"acked","ids":[...]}`: these ids are out of the inbox for good;
//! - `{"type":"counts","unread":3,"unseen":1,"total":40}` after `hello` and after every change
//!   of the user's history, from any socket or over HTTP ([`crate::center`]);
//! - `{"type":"state","changes":[{"id","seen","read","archived"}, ...]}`: messages of the
//!   history whose state changed;
//! - `{"type":"pong"}` in answer to `ping`;
//! - `{"type":"error","code":"bad_frame","detail":"..."}`: a frame was refused; the socket stays open;
//! - `{"type":"reconnect","reason":"..."}` just before a close with code 1012.
//!
//! From the client:
//! - `{"type":"auth","token":"..."}` as the first frame when the URL carries no token;
//! - `{"type":"ack","ids":["<message id>", ...]}` (at most 1,000 ids): remove from the inbox;
//! - `{"type":"state","ids":[...] | "all":true | "before":"<seq>","read":true, ...}`: change
//!   the state of messages of the history (as `POST /v1/inbox/state`);
//! - `{"type":"counts"}`: ask for a `counts` frame;
//! - `{"type":"ping"}`.
//!
//! The server also sends WebSocket pings every `deliverer.heartbeat`; browsers answer them
//! on their own. Close codes are in [`close`].

use serde::Deserialize;

/// Close codes the deliverer uses.
pub mod close {
    /// The node is stopping: reconnect (to another node). The standard "service restart".
    pub const RESTART: u16 = 1012;
    /// No token, an unreadable or forged one, or no `auth` frame in time.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// The token has expired: mint a new one.
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// The token is for another app than the one the URL names (`?app=`).
    pub const WRONG_APP: u16 = 4003;
    /// The socket could not keep up; its messages stay in the inbox.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Nothing was received (not even a pong) for `deliverer.idle_timeout`.
    pub const IDLE: u16 = 4009;
    /// The client broke the protocol past repair (a binary frame, too many bad frames).
    pub const PROTOCOL: u16 = 4400;
}

/// Most ids in one `ack` frame.
pub const MAX_ACK_IDS: usize = 1_000;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticate (when the URL carried no token).
    Auth {
        /// The token from `POST /v1/users/{user}/ws-token`.
        token: String,
    },
    /// Remove these messages from the inbox: they were received.
    Ack {
        /// Message ids.
        ids: Vec<String>,
    },
    /// Ask for a `pong`.
    Ping,
    /// Change the state of messages of the history.
    State(crate::center::StateRequest),
    /// Ask for a `counts` frame.
    Counts,
}

/// Why a client frame was refused; the text is the `detail` of the `error` frame sent back.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// `type` names no frame a client sends.
    #[error("unknown type: expected auth, ack, state, counts or ping")]
    UnknownType,
    /// Not JSON, or not the fields its `type` has (serde's own words say which).
    #[error(transparent)]
    Malformed(serde_json::Error),
    /// An `ack` with more ids than [`MAX_ACK_IDS`].
    #[error("at most {MAX_ACK_IDS} ids per ack")]
    TooManyIds,
}

impl ClientFrame {
    /// Reads a text frame, or says why it is refused.
    pub fn read(text: &str) -> Result<ClientFrame, FrameError> {
        let frame: ClientFrame = serde_json::from_str(text).map_err(|error| {
            // serde names the variants it knows in its own words; the client is told ours.
            if error.to_string().contains("unknown variant") {
                FrameError::UnknownType
            } else {
                FrameError::Malformed(error)
            }
        })?;
        if let ClientFrame::Ack { ids } = &frame
            && ids.len() > MAX_ACK_IDS
        {
            return Err(FrameError::TooManyIds);
        }
        Ok(frame)
    }
}

/// `hello`.
pub fn hello(user: &str, node: &str, heartbeat_ms: u128) -> String {
    serde_json::json!({"type": "hello", "user": user, "node": node, "heartbeat_ms": heartbeat_ms})
        .to_string()
}

/// `message`: the stored JSON is embedded as is.
pub fn message(seq: i64, stored: &str) -> String {
    format!(r#"{{"type":"message","seq":{seq},"message":{stored}}}"#)
}

/// `acked`.
pub fn acked(ids: &[String]) -> String {
    serde_json::json!({"type": "acked", "ids": ids}).to_string()
}

/// `pong`.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// `error`.
pub fn error(code: &str, detail: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "detail": detail}).to_string()
}

/// `reconnect`.
pub fn reconnect(reason: &str) -> String {
    serde_json::json!({"type": "reconnect", "reason": reason}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_bad_ones_say_why() {
        assert!(matches!(
            ClientFrame::read(r#"{"type":"ack","ids":["a","b"]}"#),
            Ok(ClientFrame::Ack { ids }) if ids == ["a", "b"]
        ));
        assert!(matches!(
            ClientFrame::read(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        ));
        assert!(matches!(
            ClientFrame::read(r#"{"type":"state","all":true,"read":true}"#),
            Ok(ClientFrame::State(request)) if request.all == Some(true) && request.read == Some(true)
        ));
        assert!(matches!(
            ClientFrame::read(r#"{"type":"state","all":true,"loud":true}"#),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            ClientFrame::read(r#"{"type":"counts"}"#),
            Ok(ClientFrame::Counts)
        ));
        assert!(matches!(
            ClientFrame::read(r#"{"type":"shout"}"#),
            Err(FrameError::UnknownType)
        ));
        assert!(matches!(
            ClientFrame::read("not json"),
            Err(FrameError::Malformed(_))
        ));
        let many = serde_json::json!({"type": "ack", "ids": vec!["x"; 1001]}).to_string();
        assert!(matches!(
            ClientFrame::read(&many),
            Err(FrameError::TooManyIds)
        ));
        // The refusal's text is the `detail` of the `error` frame the client gets.
        let detail = |text: &str| ClientFrame::read(text).map_err(|refused| refused.to_string());
        assert_eq!(
            detail(r#"{"type":"shout"}"#),
            Err("unknown type: expected auth, ack, state, counts or ping".to_owned())
        );
        assert_eq!(detail(&many), Err("at most 1000 ids per ack".to_owned()));
    }

    #[test]
    fn a_message_frame_embeds_the_stored_json() {
        let frame = message(7, r#"{"id":"m1","body":"hi"}"#);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
        assert_eq!(value["seq"], 7);
        assert_eq!(value["message"]["body"], "hi");
    }
}
