//! The operator's API client: kube's own client stack over a connector of
//! our own (TCP_NODELAY, optional HTTP/2, a requests-per-second limit), from
//! a kubeconfig or the in-cluster configuration.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// A client for `config` speaking HTTP/1.1, limited to `qps` requests per
/// second when non-zero.
pub fn build_client(config: kube::Config, qps: u32) -> Result<kube::Client> {
    client_stack(config, qps, false)
}

/// The same over HTTP/2 where the server offers it (ALPN offers both), so
/// that against an API server every request and watch shares one
/// multiplexed connection, as with client-go.
pub fn build_http2_client(config: kube::Config, qps: u32) -> Result<kube::Client> {
    client_stack(config, qps, true)
}

/// kube's own client stack (base URI, retry of server errors,
/// authentication, extra headers, connect/read/write timeouts) over a
/// connector of our own, for two things kube's builder does not offer:
/// TCP_NODELAY (client-go sets it; without it a request written in two
/// segments waits for the peer's delayed ACK, ~40 ms) and, with `http2`,
/// HTTP/2. Nothing here upgrades a connection (no exec or attach), which is
/// what HTTP/2 cannot carry.
fn client_stack(config: kube::Config, qps: u32, http2: bool) -> Result<kube::Client> {
    use kube::client::ConfigExt;
    let tls = config
        .rustls_client_config()
        .context("TLS settings of the kubeconfig")?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            name.clone()
                .try_into()
                .with_context(|| format!("tls-server-name {name:?}"))?,
        ));
    }
    let https = if http2 {
        https.enable_all_versions().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    };
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let mut hyper =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    if http2 {
        // One connection carries everything, so a dead one must be found
        // soon: a PING after 30 s without a frame, given up after 15 s, as
        // client-go's HTTP/2 health check does.
        hyper
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .http2_keep_alive_timeout(std::time::Duration::from_secs(15));
    }
    let hyper = hyper.build::<_, kube::client::Body>(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer().context("authentication settings")?)
        .layer(
            config
                .extra_headers_layer()
                .context("impersonation settings")?,
        )
        .service(tower::ServiceExt::map_err(hyper, tower::BoxError::from));
    let builder = kube::client::ClientBuilder::new(service, config.default_namespace.clone());
    Ok(if qps > 0 {
        builder.with_layer(&rate_limit(qps)).build()
    } else {
        builder.build()
    })
}

fn rate_limit(qps: u32) -> tower::limit::RateLimitLayer {
    tower::limit::RateLimitLayer::new(u64::from(qps), std::time::Duration::from_secs(1))
}

/// A client from `kubeconfig`, or the in-cluster configuration (or
/// `$KUBECONFIG`) without one.
pub async fn client_for(kubeconfig: Option<&PathBuf>) -> Result<kube::Client> {
    client_with_qps(kubeconfig, 0, false).await
}

pub async fn client_with_qps(
    kubeconfig: Option<&PathBuf>,
    qps: u32,
    http2: bool,
) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig given and no in-cluster config found")?,
    };
    if http2 {
        build_http2_client(config, qps)
    } else {
        build_client(config, qps)
    }
}
