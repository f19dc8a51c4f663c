//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::alloc::Family;
use crate::api::PrefixPool;
use crate::app::{App, Config, Leadership};
use crate::controller::Settings;
use crate::duration::{self, Duration};
use crate::k8s::client::{client_for, client_with_qps};
use crate::leader::LeaseSettings;
use crate::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "prefix-operator",
    version,
    about = "Gives every Kubernetes node a routable pod prefix carved from PrefixPools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (in-cluster config, or a kubeconfig).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (both, or the one named).
    Crd {
        /// Only this CRD (the file of that name in crds/).
        kind: Option<CrdKind>,
    },
    /// Print a fresh Unique Local IPv6 /48 (RFC 4193 section 3.2.2).
    Ula {
        /// Print a ready PrefixPool manifest with this name instead.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Print, for every Node with podCIDRs, the route an upstream router needs.
    Routes {
        /// Kubeconfig to use instead of the in-cluster config ($KUBECONFIG).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "ip")]
        format: crate::routes::Format,
    },
    /// Print every PrefixPool's usage, waiting Nodes and conflicts.
    Status {
        /// Kubeconfig to use instead of the in-cluster config ($KUBECONFIG).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
    /// Print which Node holds an address or prefix, since when and from
    /// which PrefixPool (exit status 1 when no Node holds it).
    Whois {
        /// An address (2001:db8:42:1::5) or a prefix (2001:db8:42::/56).
        query: crate::inspect::Query,
        /// Kubeconfig to use instead of the in-cluster config ($KUBECONFIG).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PrimaryFamily {
    Ipv6,
    Ipv4,
}

/// A listen address: `HOST:PORT`, `[V6]:PORT`, or `:PORT` for every address.
fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{s:?}: bad port"))?;
        return Ok(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not a listen address such as :10262, 0.0.0.0:10262 or [::]:10262")
    })
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Kubeconfig to use instead of the in-cluster config ($KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Family listed first in a dual-stack Node's podCIDRs.
    #[arg(long, value_enum, default_value = "ipv6")]
    pub primary_family: PrimaryFamily,

    /// `spec.loadBalancerClass` of the Services that get addresses from
    /// LoadBalancer PrefixClaims.
    #[arg(long, default_value = crate::controller::LOAD_BALANCER_CLASS)]
    pub load_balancer_class: String,

    /// Also give addresses to LoadBalancer Services with no class (only
    /// where no cloud provider or other load balancer serves them).
    #[arg(long, default_value_t = false)]
    pub serve_classless_load_balancers: bool,
    /// Node writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub max_concurrent_writes: usize,
    /// At most one status write per pool per this interval.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    pub status_interval: Duration,
    /// How long a deleted ServiceCIDR claim's prefix must hold no ClusterIP
    /// before its ServiceCIDR, then the claim, let it go: time for every
    /// API server's allocator to see the ServiceCIDR's deletion.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub service_cidr_grace: Duration,
    /// Publish a Normal Event on each Node when it gets a prefix (sent when no
    /// Node write is pending, so they never slow allocation down).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub allocation_events: bool,
    /// Address for /healthz, /readyz and /metrics (`:10262` means every address).
    /// 10262 rather than 8080: the pod uses the host network, where 8080 is
    /// the port most often already taken, and the Prometheus exporter range
    /// 9100–9999 is fully allocated.
    #[arg(long, default_value = "[::]:10262", value_parser = parse_listen_addr)]
    pub http_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// a tracing filter such as `info,prefix_operator=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = telemetry::parse_filter)]
    pub log_level: String,
    /// Elect a leader with a Lease; only the leader writes.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "prefix-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the release namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    pub lease_namespace: String,
    /// How long a Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops writing.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    pub retry_period: Duration,
    /// Client-side limit on API requests per second (0: none). Requests
    /// over the limit wait; nothing is dropped.
    #[arg(long, default_value_t = 0)]
    pub qps: u32,
    /// Speak HTTP/2 to the API server (offered by ALPN beside HTTP/1.1):
    /// every request and watch multiplexed on one connection, as client-go
    /// does, instead of a pool of HTTP/1.1 connections.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub http2: bool,
    /// Identity in the Lease and in Events (defaults to $POD_NAME, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

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

/// `prefix-operator routes`.
pub async fn print_routes(
    kubeconfig: Option<&PathBuf>,
    format: crate::routes::Format,
) -> Result<()> {
    let client = client_for(kubeconfig).await?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = nodes
        .list(&Default::default())
        .await
        .context("listing Nodes")?;
    let routes = crate::routes::routes(&list.items);
    let claims: kube::Api<crate::api::PrefixClaim> = kube::Api::all(client.clone());
    let claimed: Vec<(String, String, ipnet::IpNet)> = match claims.list(&Default::default()).await
    {
        Ok(l) => l
            .items
            .iter()
            .filter_map(|c| {
                let p = c.status.as_ref()?.prefix.as_deref()?.parse().ok()?;
                Some((
                    kube::ResourceExt::name_any(c),
                    c.spec.purpose.as_str().to_string(),
                    p,
                ))
            })
            .collect(),
        // An older install without the PrefixClaim CRD: node routes only.
        Err(kube::Error::Api(s)) if s.code == 404 => vec![],
        Err(e) => return Err(e).context("listing PrefixClaims"),
    };
    let mut claim_routes = crate::routes::claim_routes(&claimed, &list.items);
    if claimed
        .iter()
        .any(|(_, purpose, _)| purpose == "LoadBalancer")
    {
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::all(client.clone());
        let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
            kube::Api::all(client);
        let services = services
            .list(&Default::default())
            .await
            .context("listing Services")?;
        let slices = slices
            .list(&Default::default())
            .await
            .context("listing EndpointSlices")?;
        claim_routes.extend(crate::routes::local_routes(
            &claimed,
            &services.items,
            &slices.items,
            &list.items,
        ));
    }
    let conflicted = routes
        .iter()
        .filter(|r| !r.conflicts_with.is_empty())
        .count();
    let missing = routes
        .iter()
        .filter(|r| r.conflicts_with.is_empty() && r.next_hop.is_none())
        .count();
    print!("{}", crate::routes::render(&routes, &claim_routes, format));
    if conflicted > 0 {
        eprintln!(
            "{conflicted} node prefix(es) overlap another Node's and are not routed (see the PrefixPool's Conflicts condition)"
        );
    }
    if missing > 0 {
        eprintln!("{missing} node prefix(es) have no InternalIP of their family to route to");
    }
    Ok(())
}

/// Applies the CRDs (server-side apply as `field_manager`) and waits until
/// they are served. Used by the tests and benchmarks.
pub async fn apply_crd(client: &kube::Client, field_manager: &str) -> Result<()> {
    for kind in CrdKind::ALL {
        apply_one_crd(client, field_manager, kind).await?;
    }
    Ok(())
}

async fn apply_one_crd(client: &kube::Client, field_manager: &str, kind: CrdKind) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let crd = kind.crd();
    let name = crd.metadata.name.clone().context("CRD name")?;
    crds.patch(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the CRD")?;
    let served = || async {
        match kind {
            CrdKind::Prefixpools => {
                let api: kube::Api<PrefixPool> = kube::Api::all(client.clone());
                api.list(&Default::default()).await.is_ok()
            }
            CrdKind::Prefixclaims => {
                let api: kube::Api<crate::api::PrefixClaim> = kube::Api::all(client.clone());
                api.list(&Default::default()).await.is_ok()
            }
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let established = crds
            .get(&name)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        // Established can precede discovery: make sure the resource answers.
        if established && served().await {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the CRD {name} was not served within 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The project's CustomResourceDefinitions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    Prefixpools,
    Prefixclaims,
}

impl CrdKind {
    pub const ALL: [CrdKind; 2] = [CrdKind::Prefixpools, CrdKind::Prefixclaims];

    pub fn crd(
        self,
    ) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
    {
        use kube::CustomResourceExt;
        match self {
            CrdKind::Prefixpools => PrefixPool::crd(),
            CrdKind::Prefixclaims => crate::api::PrefixClaim::crd(),
        }
    }

    /// The file in `crds/` (and the chart's `crds/`) that holds it.
    pub fn file_name(self) -> String {
        format!("{}.yaml", self.crd().metadata.name.unwrap_or_default())
    }
}

/// One CRD as YAML, exactly as committed in `crds/`; with `None`, every
/// CRD as one multi-document stream (for `kubectl apply -f -`).
pub fn crd_yaml(kind: Option<CrdKind>) -> Result<String> {
    let one = |k: CrdKind| -> Result<String> { Ok(serde_yaml::to_string(&k.crd())?) };
    let body = match kind {
        Some(k) => one(k)?,
        None => CrdKind::ALL
            .iter()
            .map(|k| one(*k))
            .collect::<Result<Vec<_>>>()?
            .join("---\n"),
    };
    Ok(format!(
        "# Generated by `prefix-operator crd`; do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_addr(":8080").expect("ok").port(), 8080);
        assert!(
            parse_listen_addr(":8080")
                .expect("ok")
                .ip()
                .is_unspecified()
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0").expect("ok").to_string(),
            "127.0.0.1:0"
        );
        assert!(parse_listen_addr("8080").is_err());
    }

    #[test]
    fn duration_flags_use_the_go_grammar() {
        let parse = |flag: &str, value: &str| {
            Cli::try_parse_from(["prefix-operator", "run", &format!("--{flag}={value}")]).map(
                |cli| match cli.command {
                    Command::Run(a) => [
                        a.status_interval,
                        a.lease_duration,
                        a.renew_deadline,
                        a.retry_period,
                    ]
                    .map(Duration::get),
                    _ => unreachable!("run"),
                },
            )
        };
        let secs = std::time::Duration::from_secs;
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            parse("status-interval", "1s").expect("ok"),
            [secs(1), secs(15), secs(10), secs(2)],
            "defaults"
        );
        assert_eq!(parse("status-interval", "500ms").expect("ok")[0], ms(500));
        assert_eq!(parse("lease-duration", "1m30s").expect("ok")[1], secs(90));
        assert_eq!(parse("lease-duration", "1h").expect("ok")[1], secs(3600));
        assert_eq!(parse("renew-deadline", "1.5s").expect("ok")[2], ms(1500));
        assert_eq!(parse("retry-period", "2m").expect("ok")[3], secs(120));
        for bad in ["soon", "3", "-1s", "5d", "1.5", ""] {
            let e = parse("retry-period", bad).expect_err(bad).to_string();
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
        }
    }
}
