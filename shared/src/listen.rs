//! Every HTTP listener of Sprayer (the API, the admin API, the WebSocket deliverer and the
//! operations endpoints): plain TCP or TLS (rustls) from config, HTTP/1.1 and HTTP/2, WebSocket
//! upgrades, graceful shutdown, and limits that keep slow or oversized request heads out:
//! a client gets [`HEAD_TIMEOUT`] to send a request head and [`TLS_HANDSHAKE_TIMEOUT`] to finish
//! a TLS handshake, heads are capped at [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] fields.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::tls::{TlsFile, TlsFiles};
use crate::tls::{TlsError, TlsMaterial};

/// Time a client gets to send a whole request head (slow-header attacks end here).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to finish a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read: a larger one is answered 431 or the connection is closed.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one request head.
pub const MAX_HEADERS: usize = 100;
/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// A certificate or key file could not be read.
    #[error("tls: {0}")]
    TlsFile(#[from] TlsError),
    /// The certificate and key do not make a TLS configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// A bound listener, plain or TLS.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    address: SocketAddr,
}

impl Listener {
    /// Binds `address` (port 0 picks one), with TLS when `tls` is given.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<&TlsFiles>,
    ) -> Result<Listener, ListenError> {
        let tls = tls.map(acceptor).transpose()?;
        let bind_error = |error| ListenError::Bind { address, error };
        let tcp = TcpListener::bind(address).await.map_err(bind_error)?;
        let address = tcp.local_addr().map_err(bind_error)?;
        Ok(Listener { tcp, tls, address })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https` or `http`, for the URLs printed at start.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// Serves `router` until `shutdown`, then lets open requests finish (up to 30 s).
    pub async fn serve(self, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, _peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, address = %self.address, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                builder: builder.clone(),
                router: router.clone(),
                watcher: graceful.watcher(),
            };
            match self.tls.clone() {
                None => {
                    tokio::spawn(connection.serve(stream));
                }
                Some(tls) => {
                    tokio::spawn(async move {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                        {
                            Ok(Ok(stream)) => connection.serve(stream).await,
                            Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                            Err(_) => tracing::debug!("tls handshake timed out"),
                        }
                    });
                }
            }
        }
        drop(self.tcp);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(address = %self.address, "connections still open after the drain timeout");
        }
        Ok(())
    }
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(
            self.router
                .map_request(|request: hyper::Request<Incoming>| request.map(Body::new)),
        );
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = self.watcher.watch(connection).await {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ListenError> {
    let material = TlsMaterial::load(files)?;
    let Some(identity) = material.identity else {
        return Err(
            TlsError::Unpaired(files.setting(TlsFile::Cert), files.setting(TlsFile::Key)).into(),
        );
    };
    let (certs, key) = (identity.certs, identity.key);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
