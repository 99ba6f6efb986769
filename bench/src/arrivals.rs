//! What arrived at a benchmark's receiving end (the webhook sink, a WebSocket client), counted,
//! with a wait for a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// A counter that can be waited on.
#[derive(Default)]
pub struct Arrivals {
    count: AtomicU64,
    arrived: Notify,
}

impl Arrivals {
    /// Counts one arrival.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }

    /// Arrivals so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `count` have arrived in all, at most `longest`; returns whether they did.
    pub async fn wait_for(&self, count: u64, longest: Duration) -> bool {
        tokio::time::timeout(longest, async {
            loop {
                // Registered before the check, so an arrival in between is not missed.
                let arrived = self.arrived.notified();
                if self.count() >= count {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .is_ok()
    }
}

/// A WebSocket client of one user that acks every message as it arrives, as a browser
/// client does, and counts the messages.
pub struct WsUser {
    /// Messages received.
    pub messages: std::sync::Arc<Arrivals>,
    task: tokio::task::JoinHandle<()>,
}

impl WsUser {
    /// Connects to `{ws}/v1/ws` with `token` and waits for the server's hello.
    pub async fn connect(ws: &str, token: &str) -> anyhow::Result<WsUser> {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("{ws}/v1/ws?token={token}")).await?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"hello\"") => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the socket closed before hello"),
            }
        }
        let messages = std::sync::Arc::new(Arrivals::default());
        let counted = messages.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(frame) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if frame["type"] != "message" {
                    continue;
                }
                counted.add();
                let ack = serde_json::json!({"type": "ack", "ids": [frame["message"]["id"]]});
                if socket
                    .send(Message::Text(ack.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(WsUser { messages, task })
    }
}

impl Drop for WsUser {
    fn drop(&mut self) {
        self.task.abort();
    }
}
