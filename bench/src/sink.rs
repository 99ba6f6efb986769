//! A webhook sink for the benchmarks: answers 200 at once and counts what it received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;

/// A running sink.
pub struct Sink {
    /// `http://127.0.0.1:port/hook`.
    pub url: String,
    hits: Arc<AtomicU64>,
}

impl Sink {
    /// Starts the sink on a free loopback port.
    pub async fn start() -> anyhow::Result<Sink> {
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let router = Router::new().route(
            "/hook",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Sink { url, hits })
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// A Standard Webhooks secret.
pub fn webhook_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
