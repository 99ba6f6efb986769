//! A WebSocket client for the tests (tokio-tungstenite): reads frames with deadlines, acks, and
//! reports how the server closed the socket.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A JSON text frame.
    Json(Value),
    /// A close frame with its code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

/// One test socket.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens `url`; panics when the upgrade fails.
    pub async fn connect(url: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
        WsClient { stream }
    }

    /// A client on a socket opened elsewhere.
    pub fn from_stream(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient { stream }
    }

    /// Opens `url` and waits for `hello` and the `counts` that follow it.
    pub async fn open(url: &str) -> WsClient {
        let mut client = Self::connect(url).await;
        match client.next(Duration::from_secs(10)).await {
            Some(Frame::Json(hello)) if hello["type"] == "hello" => {}
            other => panic!("expected hello, got {other:?}"),
        }
        // The user's counts follow at once.
        match client.next(Duration::from_secs(10)).await {
            Some(Frame::Json(counts)) if counts["type"] == "counts" => client,
            other => panic!("expected counts after hello, got {other:?}"),
        }
    }

    /// The next frame within `within` (pings and pongs are skipped); `None` when nothing came.
    pub async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            return Some(match next {
                None | Some(Err(_)) => Frame::Ended,
                Some(Ok(Message::Text(text))) => {
                    Frame::Json(serde_json::from_str(&text).expect("JSON frame"))
                }
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(frame) => Frame::Closed(u16::from(frame.code), frame.reason.to_string()),
                    None => Frame::Closed(u16::from(CloseCode::Status), String::new()),
                },
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next `message` frame's message (other frames are skipped); `None` within `within`.
    pub async fn next_message(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Frame::Json(frame) if frame["type"] == "message" => {
                    let mut message = frame["message"].clone();
                    message["seq"] = frame["seq"].clone();
                    return Some(message);
                }
                Frame::Json(_) => {}
                other => panic!("the socket closed while waiting for a message: {other:?}"),
            }
        }
    }

    /// The close code the server ends with, reading past other frames.
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Frame::Closed(code, _) => return Some(code),
                Frame::Ended => return None,
                Frame::Json(_) => {}
            }
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: &Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("frame sent");
    }

    /// Acks `ids` and waits for the server's `acked`.
    pub async fn ack(&mut self, ids: &[String]) {
        self.send(&json!({"type": "ack", "ids": ids})).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Frame::Json(frame)) if frame["type"] == "acked" => return,
                Some(Frame::Json(_)) => {}
                other => panic!("no acked frame: {other:?}"),
            }
        }
    }

    /// Acks without waiting; `false` when the connection is gone.
    pub async fn ack_later(&mut self, ids: &[String]) -> bool {
        let frame = json!({"type": "ack", "ids": ids}).to_string();
        self.stream.send(Message::Text(frame.into())).await.is_ok()
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
