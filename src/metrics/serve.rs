//! `/metrics` over HTTPS, for callers the API server says may read it
//! ([`review`](super::review)): 401 without a valid bearer token, 403 for
//! an identity not allowed to `get` the non-resource URL `/metrics`. Each
//! refusal is counted (`prefix_operator_metrics_requests_refused_total`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use super::Metrics;
use super::review::{Reviewer, Verdict};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to serve `/metrics` over HTTPS.
pub struct Secure {
    pub addr: SocketAddr,
    /// Certificate chain and key (PEM); None: self-signed at start.
    pub cert_files: Option<(PathBuf, PathBuf)>,
    /// Names the self-signed certificate is for (besides `localhost`).
    pub names: Vec<String>,
    /// The client the reviews are sent with.
    pub client: kube::Client,
}

/// The OpenMetrics text of `metrics`, as a response.
pub fn openmetrics(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

struct Served {
    metrics: Arc<Metrics>,
    reviewer: Reviewer,
}

async fn metrics_handler(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (code, text) = match s.reviewer.review(authorization).await {
        Verdict::Allowed => return openmetrics(&s.metrics),
        Verdict::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthorized"),
        Verdict::Forbidden => (StatusCode::FORBIDDEN, "Forbidden: get /metrics"),
        Verdict::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "Authorization error"),
    };
    s.metrics.refused(code.as_u16());
    let mut response = (code, text).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Binds `secure.addr` (port 0 picks a free one) and returns the bound
/// address with the server, which runs while its future is polled.
pub async fn bind(
    secure: Secure,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
)> {
    let files = secure
        .cert_files
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let tls = super::tls::server_config(files, &secure.names)?;
    let tcp = match TcpListener::bind(secure.addr).await {
        Ok(l) => l,
        // A host with IPv6 disabled cannot bind [::]: serve on every IPv4 address.
        Err(_) if secure.addr.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) => {
            TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, secure.addr.port())).await?
        }
        Err(e) => return Err(e).with_context(|| format!("binding {}", secure.addr)),
    };
    let bound = tcp.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(Arc::new(Served {
            metrics,
            reviewer: Reviewer::new(secure.client),
        }));
    let listener = TlsListener::start(tcp, TlsAcceptor::from(tls), bound);
    Ok((bound, async move { axum::serve(listener, app).await }))
}

/// Connections whose TLS handshake is done, each handshake in a task of its
/// own so that a slow client holds up no other.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accepting: AbortOnDropHandle<()>,
}

impl TlsListener {
    fn start(tcp: TcpListener, acceptor: TlsAcceptor, local: SocketAddr) -> TlsListener {
        let (tx, ready) = mpsc::channel(64);
        let accepting: tokio::task::JoinHandle<()> = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: try again soon.
                        debug!(error = %e, "accepting a metrics connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            ready,
            local,
            _accepting: AbortOnDropHandle::new(accepting),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (it never ends by itself).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
