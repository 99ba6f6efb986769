//! `ws-clients`: one process of WebSocket clients for the socket benchmarks. Opens `--count`
//! sockets (Sprayer's `/v1/ws` with one token per line of `--tokens`, or a socket.io 4 server),
//! prints `READY <n>` once every socket is open, then waits for one message on each and prints
//! `RESULT {"received": n, "at_us": [...]}` with the Unix time (µs) each socket received it.
//! Every loop is bounded by `--timeout`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// Opens sockets and waits for one message on each.
#[derive(Parser)]
struct Args {
    /// `sprayer` or `socketio`.
    #[arg(long)]
    protocol: String,
    /// Sprayer: the node's base (`ws://127.0.0.1:8081`); socket.io: the server's base.
    #[arg(long)]
    url: String,
    /// Sprayer: a file of tokens, one per line.
    #[arg(long)]
    tokens: Option<std::path::PathBuf>,
    /// Sockets to open.
    #[arg(long)]
    count: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    parallel: usize,
    /// Longest wait, in seconds, for the sockets to open and for the message.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Sprayer: ack the message once received (as a browser that showed it).
    #[arg(long)]
    ack: bool,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(protocol: &str, url: &str) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    match protocol {
        "sprayer" => {
            // Wait for hello.
            while let Some(frame) = socket.next().await {
                if let Message::Text(text) = frame?
                    && text.contains("\"hello\"")
                {
                    return Ok(socket);
                }
            }
            anyhow::bail!("closed before hello")
        }
        _ => {
            // Engine.IO open packet, then connect to the main namespace.
            while let Some(frame) = socket.next().await {
                if let Message::Text(text) = frame? {
                    if text.starts_with('0') {
                        socket.send(Message::Text("40".into())).await?;
                    } else if text.starts_with("40") {
                        return Ok(socket);
                    }
                }
            }
            anyhow::bail!("closed before the socket.io connect")
        }
    }
}

/// Waits for the first message, acking it when `ack`; answers Engine.IO pings on the way.
async fn first_message(protocol: &str, socket: &mut Socket, ack: bool) -> Option<u64> {
    while let Some(Ok(frame)) = socket.next().await {
        let Message::Text(text) = frame else { continue };
        match protocol {
            "sprayer" if text.contains("\"type\":\"message\"") => {
                let at = now_us();
                if ack {
                    let frame: serde_json::Value = serde_json::from_str(&text).ok()?;
                    let ack = serde_json::json!({"type": "ack", "ids": [frame["message"]["id"]]});
                    socket
                        .send(Message::Text(ack.to_string().into()))
                        .await
                        .ok()?;
                }
                return Some(at);
            }
            "socketio" if text.starts_with("42") => return Some(now_us()),
            "socketio" if text.as_str() == "2" => {
                let _ = socket.send(Message::Text("3".into())).await;
            }
            _ => {}
        }
    }
    None
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let urls: Vec<String> = match args.protocol.as_str() {
        "sprayer" => {
            let path = args
                .tokens
                .as_ref()
                .context("--tokens is needed for sprayer")?;
            std::fs::read_to_string(path)?
                .lines()
                .take(args.count)
                .map(|token| format!("{}/v1/ws?token={token}", args.url))
                .collect()
        }
        "socketio" => (0..args.count)
            .map(|_| format!("{}/socket.io/?EIO=4&transport=websocket", args.url))
            .collect(),
        other => anyhow::bail!("unknown protocol {other}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let gate = std::sync::Arc::new(Semaphore::new(args.parallel.max(1)));
    let ack = args.ack;
    let protocol: &'static str = if args.protocol == "sprayer" {
        "sprayer"
    } else {
        "socketio"
    };
    let opening: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                for _ in 0..3 {
                    match tokio::time::timeout_at(deadline, open(protocol, &url)).await {
                        Ok(Ok(socket)) => return Some(socket),
                        Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                        Err(_) => return None,
                    }
                }
                None
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(args.count);
    for task in opening {
        if let Ok(Some(socket)) = task.await {
            sockets.push(socket);
        }
    }
    println!("READY {}", sockets.len());
    let waiting: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let at =
                    tokio::time::timeout_at(deadline, first_message(protocol, &mut socket, ack))
                        .await
                        .ok()
                        .flatten();
                (at, socket)
            })
        })
        .collect();
    let mut at_us = Vec::with_capacity(waiting.len());
    let mut keep = Vec::with_capacity(waiting.len());
    for task in waiting {
        if let Ok((at, socket)) = task.await {
            at_us.extend(at);
            keep.push(socket);
        }
    }
    println!(
        "RESULT {}",
        serde_json::json!({"received": at_us.len(), "at_us": at_us})
    );
    drop(keep);
    Ok(())
}
