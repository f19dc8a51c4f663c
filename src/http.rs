//! `/healthz` and `/readyz` (ready after the initial sync) over plain HTTP,
//! for the kubelet's probes; `/metrics` too, unauthenticated, only when
//! asked (`--metrics-secure=false`). The HTTPS `/metrics` is
//! [`crate::metrics::serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// State shared with the HTTP endpoints.
#[derive(Default)]
pub struct Health {
    /// True once the first full lists of Nodes and PrefixPools are in.
    pub ready: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "initial sync not complete")
    }
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address
/// with the server, which runs while its future is polled. `metrics`, when
/// given, are served at `/metrics` to anyone who asks.
pub async fn bind(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Option<Arc<Metrics>>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
)> {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if let Some(m) = metrics {
        app = app.route(
            "/metrics",
            get(move || async move { crate::metrics::serve::openmetrics(&m) }),
        );
    }
    let app = app.with_state(AppState { health });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        // A host with IPv6 disabled cannot bind [::]: serve on every IPv4 address.
        Err(_) if addr.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED) => {
            tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, addr.port())).await?
        }
        Err(e) => return Err(e),
    };
    let bound = listener.local_addr()?;
    Ok((bound, async move { axum::serve(listener, app).await }))
}
