//! Command-line interface.
//!
//! Here the commands and their flags; [`run`](mod@run) starts the operator,
//! [`route_hints`] prints `prefix-operator routes`, and [`crd`] makes,
//! prints and applies the CustomResourceDefinitions.

mod crd;
mod route_hints;
mod run;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::{self, Duration};
use crate::telemetry::{self, LogFormat};

pub use crd::{CrdKind, apply_crd, crd_chart_template, crd_yaml};
pub use route_hints::print_routes;
pub use run::run;

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
        /// Print the Helm chart's template of it instead (the file of that
        /// name in charts/prefix-operator/templates/crds/).
        #[arg(long)]
        chart: bool,
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
    /// Print every PrefixPool's usage (a delegated pool's delegated
    /// prefixes too), waiting Nodes and conflicts, every PrefixClaim by
    /// pool, and which replica leads. Exit status 0, or 2 on an error.
    Status {
        #[command(flatten)]
        target: crate::inspect::Target,
        /// Name of the leader election Lease (the operator's --lease-name).
        #[arg(long, default_value = "prefix-operator")]
        lease_name: String,
        /// Namespace of the Lease (the operator's --lease-namespace: the
        /// release namespace).
        #[arg(long, default_value = "kube-system")]
        lease_namespace: String,
    },
    /// Print who holds an address or prefix: the Node whose podCIDR it is
    /// (since when, from which PrefixPool), the PrefixClaim and its
    /// ServiceCIDR, the Service whose ClusterIP or LoadBalancer address it
    /// is. Exit status 0 when something holds it, 1 when nothing does, 2 on
    /// an error.
    Whois {
        /// An address (2001:db8:42:1::5) or a prefix (2001:db8:42::/56).
        query: crate::inspect::Query,
        #[command(flatten)]
        target: crate::inspect::Target,
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

// Boolean flags all take a bare `--flag` (true), `--flag=true` and
// `--flag=false` (`require_equals`: `--flag false` is refused, never read
// as the flag and a stray argument).
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
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
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
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allocation_events: bool,
    /// Address of the plain-HTTP /healthz and /readyz, for the kubelet's
    /// probes — and of /metrics, unauthenticated, with `--metrics-secure=false`
    /// (`:10262` means every address). 10262 rather than 8080: the pod uses
    /// the host network, where 8080 is the port most often already taken,
    /// and the Prometheus exporter range 9100–9999 is fully allocated.
    #[arg(long, default_value = "[::]:10262", value_parser = parse_listen_addr)]
    pub http_addr: SocketAddr,
    /// Address of /metrics over HTTPS: a caller's bearer token must pass a
    /// TokenReview, and its identity a SubjectAccessReview for `get` on the
    /// non-resource URL /metrics, as kube-controller-manager's metrics ask.
    #[arg(long, default_value = "[::]:10263", value_parser = parse_listen_addr)]
    pub metrics_addr: SocketAddr,
    /// Serve /metrics over HTTPS with authentication and authorization on
    /// `--metrics-addr`. false: plain HTTP, open to anyone, on `--http-addr`
    /// (local benchmarks and tests only).
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub metrics_secure: bool,
    /// Certificate (PEM, leaf first) of the HTTPS /metrics; without it and
    /// `--metrics-key-file`, a self-signed one is made at start. Read once,
    /// at start.
    #[arg(long, requires = "metrics_key_file")]
    pub metrics_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `--metrics-cert-file`.
    #[arg(long, requires = "metrics_cert_file")]
    pub metrics_key_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// a tracing filter such as `info,prefix_operator=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = telemetry::parse_filter)]
    pub log_level: String,
    /// Elect a leader with a Lease; only the leader writes.
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
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
    #[arg(long, default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http2: bool,
    /// Identity in the Lease and in Events (defaults to $POD_NAME, else the host name and pid).
    /// Under the chart's fence it must be the name of the Pod whose token the operator uses.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
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
    fn metrics_are_secure_unless_told_otherwise() {
        let run = |extra: &[&str]| {
            let mut argv = vec!["prefix-operator", "run"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Run(a) => a,
                _ => unreachable!("run"),
            })
        };
        let a = run(&[]).expect("defaults");
        assert!(a.metrics_secure);
        assert_eq!(a.metrics_addr.to_string(), "[::]:10263");
        assert_eq!(a.http_addr.to_string(), "[::]:10262");
        assert!(
            !run(&["--metrics-secure=false"])
                .expect("off")
                .metrics_secure
        );
        assert!(run(&["--metrics-secure"]).expect("bare").metrics_secure);
        // A certificate needs its key, and the other way round.
        assert!(run(&["--metrics-cert-file", "/c.pem"]).is_err());
        assert!(run(&["--metrics-key-file", "/k.pem"]).is_err());
        let both = run(&["--metrics-cert-file", "/c", "--metrics-key-file", "/k"]).expect("both");
        assert!(both.metrics_cert_file.is_some() && both.metrics_key_file.is_some());
    }

    #[test]
    fn boolean_flags_take_a_bare_flag_or_a_value() {
        let get = |argv: &[&str]| {
            let a =
                match Cli::try_parse_from(["prefix-operator", "run"].iter().chain(argv))?.command {
                    Command::Run(a) => a,
                    _ => unreachable!("run"),
                };
            Ok::<_, clap::Error>([
                a.leader_elect,
                a.http2,
                a.allocation_events,
                a.serve_classless_load_balancers,
            ])
        };
        let flags = [
            "leader-elect",
            "http2",
            "allocation-events",
            "serve-classless-load-balancers",
        ];
        let defaults = [false, false, true, false];
        assert_eq!(get(&[]).expect("defaults"), defaults);
        for (i, flag) in flags.iter().enumerate() {
            for (spelling, want) in [
                (format!("--{flag}"), true),
                (format!("--{flag}=true"), true),
                (format!("--{flag}=false"), false),
            ] {
                let mut expected = defaults;
                expected[i] = want;
                assert_eq!(
                    get(&[spelling.as_str()]).expect(&spelling),
                    expected,
                    "{spelling}"
                );
            }
            for bad in [format!("--{flag}=yes"), format!("--{flag}=")] {
                assert!(get(&[bad.as_str()]).is_err(), "{bad} accepted");
            }
            // `--flag false` is the bare flag and a stray argument: refused.
            let split = format!("--{flag}");
            assert!(
                get(&[split.as_str(), "false"]).is_err(),
                "{split} false accepted"
            );
        }
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
