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
    if args.renew_deadline >= args.lease_duration {
        anyhow::bail!(
            "--renew-deadline must be shorter than --lease-duration, so a leader stops writing before another can take over"
        );
    }
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
    let app = App::start(
        client,
        Config {
            settings,
            leadership,
            http: Some(args.http_addr),
        },
    )
    .await?;
    if let Some(addr) = app.http_addr {
        info!(%addr, %identity, "serving /healthz, /readyz and /metrics");
    }
    app.run(async {
        shutdown_signal().await;
        info!("signal received");
    })
    .await
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
