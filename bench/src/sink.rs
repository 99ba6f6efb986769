//! A webhook sink for the benchmarks: answers 200 at once and counts what it received.

use std::sync::Arc;

use crate::arrivals::Arrivals;

use axum::Router;
use axum::routing::post;

/// A running sink.
pub struct Sink {
    /// `http://127.0.0.1:port/hook`.
    pub url: String,
    hits: Arc<Arrivals>,
}

impl Sink {
    /// Starts the sink on a free loopback port.
    pub async fn start() -> anyhow::Result<Sink> {
        let hits = Arc::new(Arrivals::default());
        let counter = hits.clone();
        let router = Router::new().route(
            "/hook",
            post(move || {
                let counter = counter.clone();
                async move {
                    counter.add();
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Sink { url, hits })
    }

    /// Waits until `count` requests have arrived in all, at most `longest`; returns whether
    /// they did.
    pub async fn wait_for(&self, count: u64, longest: std::time::Duration) -> bool {
        self.hits.wait_for(count, longest).await
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.count()
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
