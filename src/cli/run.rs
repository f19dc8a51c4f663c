//! `prefix-operator run`: the operator itself, from its flags, until a
//! signal stops it.

use anyhow::Result;
use tracing::info;

use super::{PrimaryFamily, RunArgs};
use crate::alloc::Family;
use crate::app::{App, Config, Leadership};
use crate::controller::Settings;
use crate::k8s::client::{client_for, client_with_qps};
use crate::leader::LeaseSettings;
use crate::telemetry;

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "prefix-operator".into());
    format!("{host}-{}", std::process::id())
}

pub async fn run(args: RunArgs) -> Result<()> {
    telemetry::init(args.log_format, &args.log_level);
    args.validate().map_err(anyhow::Error::msg)?;
    let client = client_with_qps(args.kubeconfig.as_ref(), args.qps, args.http2).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let leadership = if args.leader_elect {
        Leadership::Elect {
            // Its own client: Lease renewals must not queue behind a rate limit.
            client: client_for(args.kubeconfig.as_ref()).await?,
            lease: LeaseSettings {
                name: args.lease_name.clone(),
                namespace: args.lease_namespace.clone(),
                identity: identity.clone(),
                lease_duration: args.lease_duration.get(),
                renew_deadline: args.renew_deadline.get(),
                retry_period: args.retry_period.get(),
            },
        }
    } else {
        Leadership::Sole
    };
    let settings = Settings {
        primary_family: match args.primary_family {
            PrimaryFamily::Ipv6 => Family::V6,
            PrimaryFamily::Ipv4 => Family::V4,
        },
        max_concurrent_writes: args.max_concurrent_writes.max(1),
        status_interval: args.status_interval.get(),
        service_cidr_grace: args.service_cidr_grace.get(),
        allocation_events: args.allocation_events,
        instance: identity.clone(),
        lease_deadline: None,
        load_balancer: crate::k8s::services::Classes {
            class: args.load_balancer_class.clone(),
            classless: args.serve_classless_load_balancers,
        },
    };
    let secure_metrics = secure_metrics(&args).await?;
    let app = App::start(
        client,
        Config {
            settings,
            leadership,
            http: Some(args.http_addr),
            secure_metrics,
        },
    )
    .await?;
    log_serving(&app, &identity);
    app.run(async {
        shutdown_signal().await;
        info!("signal received");
    })
    .await
}

/// How /metrics is served over HTTPS, unless `--metrics-secure=false`.
async fn secure_metrics(args: &RunArgs) -> Result<Option<crate::metrics::serve::Secure>> {
    if !args.metrics_secure {
        return Ok(None);
    }
    // The host name (the Node's, on the host network) for a self-signed
    // certificate, when it is one a certificate can name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    Ok(Some(crate::metrics::serve::Secure {
        addr: args.metrics_addr,
        cert_files: args
            .metrics_cert_file
            .clone()
            .zip(args.metrics_key_file.clone()),
        names: valid.then_some(host).into_iter().collect(),
        // The reviews have a client of their own: a scrape must not queue
        // behind the reconciler's rate limit.
        client: client_for(args.kubeconfig.as_ref()).await?,
    }))
}

fn log_serving(app: &App, identity: &str) {
    match (app.http_addr, app.metrics_addr) {
        (Some(addr), Some(metrics)) => {
            info!(%addr, %identity, "serving /healthz and /readyz");
            info!(addr = %metrics, "serving /metrics over HTTPS to callers allowed to get /metrics");
        }
        (Some(addr), None) => info!(%addr, %identity, "serving /healthz, /readyz and /metrics"),
        _ => {}
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
