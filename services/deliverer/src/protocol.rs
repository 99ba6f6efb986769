//! The WebSocket frame protocol: JSON text frames, one object per frame, told apart by `type`.
//!
//! From the server:
//! - `{"type":"hello","user":"u1","node":"node-1","heartbeat_ms":25000}` once authenticated;
//! - `{"type":"message","seq":1763790000000000,"message":{"id","title","body","data","created_at","expires_at"}}`,
//!   in inbox order: first the backlog, then live messages;
//! - `{"type":"acked","ids":[...]}`: these ids are out of the inbox for good;
//! - `{"type":"pong"}` in answer to `ping`;
//! - `{"type":"error","code":"bad_frame","detail":"..."}`: a frame was refused; the socket stays open;
//! - `{"type":"reconnect","reason":"..."}` just before a close with code 1012.
//!
//! From the client:
//! - `{"type":"auth","token":"..."}` as the first frame when the URL carries no token;
//! - `{"type":"ack","ids":["<message id>", ...]}` (at most 1,000 ids): remove from the inbox;
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
}

impl ClientFrame {
    /// Reads a text frame, with a short reason when it is refused.
    pub fn parse(text: &str) -> Result<ClientFrame, String> {
        let frame: ClientFrame = serde_json::from_str(text).map_err(|error| {
            let reason = error.to_string();
            if reason.contains("unknown variant") {
                "unknown type: expected auth, ack or ping".to_owned()
            } else {
                reason
            }
        })?;
        if let ClientFrame::Ack { ids } = &frame
            && ids.len() > MAX_ACK_IDS
        {
            return Err(format!("at most {MAX_ACK_IDS} ids per ack"));
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
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ack","ids":["a","b"]}"#),
            Ok(ClientFrame::Ack {
                ids: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert!(
            ClientFrame::parse(r#"{"type":"shout"}"#)
                .is_err_and(|reason| reason.contains("unknown type"))
        );
        assert!(ClientFrame::parse("not json").is_err());
        let many = serde_json::json!({"type": "ack", "ids": vec!["x"; 1001]}).to_string();
        assert!(ClientFrame::parse(&many).is_err_and(|reason| reason.contains("at most")));
    }

    #[test]
    fn a_message_frame_embeds_the_stored_json() {
        let frame = message(7, r#"{"id":"m1","body":"hi"}"#);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
        assert_eq!(value["seq"], 7);
        assert_eq!(value["message"]["body"], "hi");
    }
}
