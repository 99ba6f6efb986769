//! `[deliverer]`: the WebSocket deliverer, its tokens, inboxes and sockets.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::TlsSettings;

/// The WebSocket deliverer: its listener, the tokens browsers connect with, the inboxes and the
/// sockets' limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelivererSettings {
    /// Where `/v1/ws`, the demo page, `/healthz`, `/readyz` and `/metrics` listen.
    pub listen: SocketAddr,
    /// TLS for the deliverer's listener (`wss://`; plain `ws://` without it).
    pub tls: Option<TlsSettings>,
    /// This node's id in `conn:` and `node:`; a random one per start when left out. Give each
    /// node its own.
    pub node_id: Option<String>,
    /// The secret WebSocket tokens are signed with (32 bytes or more), shared by the accepter
    /// that mints them and every deliverer; required when `ws` is served.
    #[serde(serialize_with = "super::redacted")]
    pub token_secret: Option<SecretString>,
    /// How long a minted token can be used to connect, unless the request asks for less.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The deliverer's public base URL (`wss://push.example.com`), returned with minted tokens.
    pub public_url: Option<String>,
    /// Most messages kept in one user's inbox; the oldest are dropped (reported `failed`).
    pub inbox_max: usize,
    /// Most messages kept in one user's history (the notification centre: delivered or not,
    /// with their seen, read and archived state); the oldest leave it first. 0 keeps none.
    pub history_max: usize,
    /// How long a user's history is kept after its latest message.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// How long `GET /v1/poll` waits for a message before answering with none.
    #[serde(with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// How often a socket is pinged.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A socket opened without a token must send its `auth` frame within this time.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Messages waiting to be written to one socket; a socket whose buffer fills is closed as a
    /// slow consumer (its messages stay in the inbox).
    pub send_buffer: usize,
    /// Longest time one write to a socket may take before it is closed as a slow consumer.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Largest frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Each socket's read buffer, in bytes (grows for larger frames).
    pub read_buffer_bytes: usize,
    /// How long a node's entry in `conn:` lives without being refreshed: after a crash, its
    /// users are not woken on it for longer than this.
    #[serde(with = "humantime_serde")]
    pub conn_ttl: Duration,
    /// How often expired inbox messages are looked for.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Messages read from an inbox per round trip when a socket catches up.
    pub read_batch: usize,
    /// How long after a user's last socket closes `user.offline` waits: a socket that opens
    /// again before then (a reconnect) makes no event.
    #[serde(with = "humantime_serde")]
    pub presence_debounce: Duration,
}

impl Default for DelivererSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            tls: None,
            node_id: None,
            token_secret: None,
            token_ttl: Duration::from_secs(600),
            public_url: None,
            inbox_max: 10_000,
            history_max: 200,
            history_ttl: Duration::from_secs(90 * 24 * 3600),
            poll_timeout: Duration::from_secs(25),
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            send_buffer: 256,
            write_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            read_buffer_bytes: 1024,
            conn_ttl: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            read_batch: 200,
            presence_debounce: Duration::from_secs(5),
        }
    }
}
