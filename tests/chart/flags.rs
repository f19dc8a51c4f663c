//! The chart refuses every value the operator would refuse, for the same
//! reason (each case: helm's message, and the operator's for the arguments
//! the chart would have rendered), and what it accepts renders arguments
//! the operator's own parser and `RunArgs::validate` accept.

use clap::{CommandFactory, Parser};
use prefix_operator::cli::{Cli, Command as Cmd, RunArgs};
use serde_json::{Value as Json, json};

use super::*;

/// `--set-json KEY=JSON` for each value.
fn set_json(sets: &[(&str, Json)]) -> Vec<String> {
    sets.iter()
        .flat_map(|(k, v)| ["--set-json".to_string(), format!("{k}={v}")])
        .collect()
}

fn render(helm: &Helm, sets: &[(&str, Json)]) -> std::process::Output {
    let args = set_json(sets);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    helm.template(&args)
}

/// The operator's container: its arguments and $RUST_LOG.
fn container(helm: &Helm, sets: &[(&str, Json)]) -> (Vec<String>, String) {
    let d = docs(&ok(&format!("helm template {sets:?}"), render(helm, sets)));
    let c = &one(&d, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let rust_log = c["env"]
        .as_sequence()
        .and_then(|env| env.iter().find(|e| e["name"] == "RUST_LOG"))
        .and_then(|e| e["value"].as_str())
        .expect("RUST_LOG")
        .to_string();
    (strs(&c["args"]), rust_log)
}

/// `prefix-operator <args>` as the operator reads it: its flag parser,
/// then [`RunArgs::validate`].
fn operator(args: &[String]) -> Result<RunArgs, String> {
    let argv = std::iter::once("prefix-operator".to_string()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Cmd::Run(a) => a.validate().map(|()| *a),
        other => Err(format!("not `run`: {other:?}")),
    }
}

/// The arguments the operator gets from a render (the log level from
/// $RUST_LOG, given as the flag it stands for).
fn operator_of(helm: &Helm, sets: &[(&str, Json)]) -> Result<RunArgs, String> {
    let (mut args, rust_log) = container(helm, sets);
    args.push(format!("--log-level={rust_log}"));
    operator(&args)
}

/// What the operator is given in a refused case, had the chart rendered it.
enum Given {
    /// `run` and these flags.
    Flags(&'static [&'static str]),
    /// The default render's arguments and this one more.
    DefaultsAnd(&'static str),
    /// Nothing the operator refuses: the chart refuses a value it would
    /// silently override.
    Nothing,
}

/// Values set, what helm says, what the operator is given, what it says.
type Case = (Vec<(&'static str, Json)>, &'static str, Given, &'static str);

#[test]
fn the_chart_refuses_what_the_operator_refuses() {
    use Given::*;
    let helm = Helm::new();
    let defaults = container(&helm, &[]).0;
    let s = |v: &str| json!(v);
    let cases: Vec<Case> = vec![
        (
            vec![("leaderElection.leaseDuration", s("5s"))],
            "leaderElection.renewDeadline=10s must be shorter than leaderElection.leaseDuration=5s",
            Flags(&["--lease-duration=5s", "--renew-deadline=10s"]),
            "--renew-deadline must be shorter than --lease-duration",
        ),
        (
            vec![("leaderElection.renewDeadline", s("0.25m"))],
            "leaderElection.renewDeadline=0.25m must be shorter than leaderElection.leaseDuration=15s",
            Flags(&["--lease-duration=15s", "--renew-deadline=0.25m"]),
            "--renew-deadline must be shorter than --lease-duration",
        ),
        (
            vec![("leaderElection.retryPeriod", s("10s"))],
            "leaderElection.retryPeriod=10s must be shorter than leaderElection.renewDeadline=10s",
            Flags(&["--retry-period=10s", "--renew-deadline=10s"]),
            "--retry-period must be shorter than --renew-deadline",
        ),
        (
            vec![("leaderElection.retryPeriod", s("0"))],
            "leaderElection.retryPeriod must be longer than 0s",
            Flags(&["--retry-period=0"]),
            "--retry-period must be longer than 0s",
        ),
        (
            vec![("leaderElection.leaseDuration", s("15.5s"))],
            "leaderElection.leaseDuration=15.5s must be a whole number of seconds",
            Flags(&["--lease-duration=15.5s"]),
            "--lease-duration must be a whole number of seconds",
        ),
        (
            vec![
                ("leaderElection.leaseDuration", s("1500ms")),
                ("leaderElection.renewDeadline", s("1s")),
                ("leaderElection.retryPeriod", s("100ms")),
            ],
            "leaderElection.leaseDuration=1500ms must be a whole number of seconds",
            Flags(&[
                "--lease-duration=1500ms",
                "--renew-deadline=1s",
                "--retry-period=100ms",
            ]),
            "--lease-duration must be a whole number of seconds",
        ),
        (
            vec![("leaderElection.leaseDuration", s("87840h1ms"))],
            "leaderElection.leaseDuration=87840h1ms is longer than the operator's maximum duration",
            Flags(&["--lease-duration=87840h1ms"]),
            "longer than the maximum",
        ),
        (
            vec![("operator.statusInterval", s("100000000000000h"))],
            "operator.statusInterval=100000000000000h is longer than the operator's maximum duration",
            Flags(&["--status-interval=100000000000000h"]),
            "longer than the maximum",
        ),
        (
            vec![("operator.statusInterval", s("1.5"))],
            "at '/operator/statusInterval'",
            Flags(&["--status-interval=1.5"]),
            "is not a duration",
        ),
        (
            vec![("leaderElection.leaseDuration", s("15"))],
            "at '/leaderElection/leaseDuration'",
            Flags(&["--lease-duration=15"]),
            "is not a duration",
        ),
        (
            vec![("operator.logLevel", s("loud"))],
            "at '/operator/logLevel'",
            Flags(&["--log-level=loud"]),
            "is not a log level or filter",
        ),
        (
            vec![("operator.logLevel", s("info,prefix_operator=loud"))],
            "at '/operator/logLevel'",
            Flags(&["--log-level=info,prefix_operator=loud"]),
            "is not a log level or filter",
        ),
        (
            vec![("http.bindAddress", s("localhost"))],
            "at '/http/bindAddress'",
            Flags(&["--http-addr=localhost:10262"]),
            "is not a listen address",
        ),
        (
            vec![("http.bindAddress", s("[::]"))],
            "at '/http/bindAddress'",
            Flags(&["--http-addr=[[::]]:10262"]),
            "is not a listen address",
        ),
        (
            vec![("operator.extraArgs", json!(["--lease-duration=30s"]))],
            "--lease-duration is set by the chart from leaderElection.leaseDuration",
            DefaultsAnd("--lease-duration=30s"),
            "cannot be used multiple times",
        ),
        (
            vec![
                ("operator.serveClasslessLoadBalancers", json!(true)),
                (
                    "operator.extraArgs",
                    json!(["--serve-classless-load-balancers=false"]),
                ),
            ],
            "--serve-classless-load-balancers is set by the chart from operator.serveClasslessLoadBalancers",
            Flags(&[
                "--serve-classless-load-balancers",
                "--serve-classless-load-balancers=false",
            ]),
            "cannot be used multiple times",
        ),
        (
            vec![("operator.extraArgs", json!(["--log-level=debug"]))],
            "--log-level is set by the chart from operator.logLevel",
            Nothing,
            "",
        ),
        (
            vec![("operator.extraArgs", json!(["--qps=1", "--qps=2"]))],
            "--qps is given twice",
            Flags(&["--qps=1", "--qps=2"]),
            "cannot be used multiple times",
        ),
        (
            vec![("operator.extraArgs", json!(["--frobnicate=1"]))],
            "--frobnicate is not a flag of prefix-operator run",
            DefaultsAnd("--frobnicate=1"),
            "unexpected argument '--frobnicate'",
        ),
        (
            vec![("operator.extraArgs", json!(["--qps=-1"]))],
            "--qps=-1 is not a whole number from 0 to 4294967295",
            Flags(&["--qps=-1"]),
            "invalid value '-1' for '--qps",
        ),
        (
            vec![("operator.extraArgs", json!(["--qps=4294967296"]))],
            "--qps=4294967296 is not a whole number from 0 to 4294967295",
            Flags(&["--qps=4294967296"]),
            "invalid value '4294967296' for '--qps",
        ),
        (
            vec![("operator.extraArgs", json!(["--http2=yes"]))],
            "--http2 takes true or false",
            Flags(&["--http2=yes"]),
            "invalid value 'yes' for '--http2",
        ),
        (
            vec![("operator.extraArgs", json!(["--service-cidr-grace=5d"]))],
            "--service-cidr-grace=5d is not a duration",
            Flags(&["--service-cidr-grace=5d"]),
            "is not a duration",
        ),
        (
            vec![("operator.extraArgs", json!(["--service-cidr-grace=87841h"]))],
            "operator.extraArgs --service-cidr-grace=87841h is longer than the operator's maximum duration",
            Flags(&["--service-cidr-grace=87841h"]),
            "longer than the maximum",
        ),
        (
            vec![("operator.extraArgs", json!(["--identity"]))],
            "--identity needs a value",
            Flags(&["--identity"]),
            "a value is required for '--identity",
        ),
        (
            vec![("operator.extraArgs", json!(["--identity", "one"]))],
            "at '/operator/extraArgs/1'",
            Flags(&["--identity", "one"]),
            "",
        ),
        (
            vec![("operator.extraArgs", json!(["run"]))],
            "at '/operator/extraArgs/0'",
            Flags(&["run"]),
            "unexpected argument 'run'",
        ),
    ];
    for (sets, chart, given, says) in cases {
        let out = render(&helm, &sets);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{sets:?} rendered");
        assert!(
            err.contains(chart),
            "{sets:?}: not refused for {chart:?}:\n{err}"
        );
        let args: Vec<String> = match given {
            Flags(flags) => std::iter::once("run")
                .chain(flags.iter().copied())
                .map(String::from)
                .collect(),
            DefaultsAnd(flag) => defaults.iter().cloned().chain([flag.to_string()]).collect(),
            Nothing => continue,
        };
        match operator(&args) {
            // `--identity one` is one flag and its value to the operator:
            // the chart asks for `--identity=one`, one entry per flag.
            Ok(_) if says.is_empty() => {}
            Ok(_) => panic!("{args:?}: the operator accepts what the chart refuses ({chart})"),
            Err(e) => assert!(e.contains(says), "{args:?}: not refused for {says:?}: {e}"),
        }
    }
}

/// Defaults, every optional part on, and the edges of each checked value:
/// the operator parses and validates what the chart renders.
#[test]
fn what_the_chart_accepts_the_operator_runs() {
    let helm = Helm::new();
    let d = operator_of(&helm, &[]).expect("defaults");
    assert!(d.leader_elect && d.allocation_events && !d.serve_classless_load_balancers);
    assert_eq!(d.lease_namespace, "kube-system");
    let on = operator_of(&helm, &everything_on()).expect("everything on");
    assert!(on.http2 && on.serve_classless_load_balancers && !on.allocation_events);
    assert_eq!(on.qps, 50);
    assert_eq!(on.service_cidr_grace.to_string(), "30s");
    assert_eq!(on.identity.as_deref(), Some("one"));
    assert_eq!(on.load_balancer_class, "example.com/lb");
    assert_eq!(on.http_addr.to_string(), "0.0.0.0:9090");
    assert_eq!(on.log_level, "info,prefix_operator=debug");
    let s = |v: &str| json!(v);
    for sets in [
        vec![
            ("leaderElection.leaseDuration", s("1s")),
            ("leaderElection.renewDeadline", s("999ms")),
            ("leaderElection.retryPeriod", s("0.000001ms")),
        ],
        vec![
            ("leaderElection.leaseDuration", s("87840h")),
            ("leaderElection.renewDeadline", s("87839h59m59.999999999s")),
            ("leaderElection.retryPeriod", s("87839h")),
            ("operator.statusInterval", s("87840h")),
        ],
        vec![("leaderElection.renewDeadline", s("0.2499999999999m"))],
        vec![
            ("leaderElection.leaseDuration", s("0.25h")),
            ("operator.statusInterval", s("0")),
        ],
        vec![("operator.statusInterval", s("0.0ms"))],
        vec![
            ("replicas", json!(1)),
            ("leaderElection.enabled", json!(false)),
            // Not rendered without leader election: not the operator's.
            ("leaderElection.renewDeadline", s("1m")),
        ],
        vec![(
            "operator.extraArgs",
            json!([
                "--http2=false",
                "--qps=4294967295",
                "--service-cidr-grace=87840h"
            ]),
        )],
        vec![(
            "operator.extraArgs",
            json!(["--qps=0", "--http2=true", "--service-cidr-grace=0"]),
        )],
        vec![("http.bindAddress", s("::1"))],
        vec![("http.bindAddress", s("127.0.0.1"))],
        vec![("http.bindAddress", s("::ffff:10.0.0.1"))],
        vec![("operator.maxConcurrentWrites", json!(100000))],
        vec![(
            "operator.logLevel",
            s("WARN,prefix_operator::controller=trace,[reconcile]=5"),
        )],
    ] {
        if let Err(e) = operator_of(&helm, &sets) {
            panic!("{sets:?}: the chart renders what the operator refuses: {e}");
        }
    }
    let edge = operator_of(
        &helm,
        &[("leaderElection.renewDeadline", s("0.2499999999999m"))],
    )
    .expect("edge");
    assert_eq!(edge.renew_deadline.get().as_nanos(), 14_999_999_999);
}

fn everything_on() -> Vec<(&'static str, Json)> {
    vec![
        ("serviceMonitor.enabled", json!(true)),
        ("prometheusRule.enabled", json!(true)),
        ("dashboard.enabled", json!(true)),
        ("dhcpv6.enabled", json!(true)),
        ("dhcpv6.pool.create", json!(true)),
        ("dhcpv6.pool.interface", json!("eth1")),
        ("ulaPool.create", json!(true)),
        ("ulaPool.prefix", json!("fd12:3456:789a::/48")),
        (
            "prefixClaims",
            json!([{"name": "svc", "pool": "ula", "prefixLength": 112}]),
        ),
        ("crds.keep", json!(false)),
        ("operator.serveClasslessLoadBalancers", json!(true)),
        ("operator.allocationEvents", json!(false)),
        ("operator.logFormat", json!("text")),
        ("operator.logLevel", json!("info,prefix_operator=debug")),
        ("operator.primaryFamily", json!("ipv4")),
        ("operator.loadBalancerClass", json!("example.com/lb")),
        ("http.bindAddress", json!("0.0.0.0")),
        ("http.port", json!(9090)),
        (
            "operator.extraArgs",
            json!([
                "--qps=50",
                "--http2",
                "--service-cidr-grace=30s",
                "--identity=one",
                "--kubeconfig=/etc/prefix-operator/kubeconfig"
            ]),
        ),
    ]
}

/// The chart knows every flag of `prefix-operator run`: the ones it sets
/// from values (refused in extraArgs) are exactly the ones it renders, and
/// the others are left to extraArgs.
#[test]
fn extra_args_know_every_flag_of_run() {
    let helm = Helm::new();
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run");
    let flags: Vec<String> = run
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "help")
        .map(String::from)
        .collect();
    assert!(flags.len() > 15, "{flags:?}");
    let mut set_by_chart = BTreeSet::new();
    for flag in &flags {
        let out = render(
            &helm,
            &[("operator.extraArgs", json!([format!("--{flag}=x")]))],
        );
        let err = text(&out.stderr);
        assert!(
            !err.contains("is not a flag of prefix-operator run"),
            "--{flag} of prefix-operator run is unknown to the chart:\n{err}"
        );
        if err.contains(&format!("--{flag} is set by the chart from")) {
            set_by_chart.insert(flag.clone());
        }
    }
    let on: Vec<_> = everything_on()
        .into_iter()
        .filter(|(k, _)| *k != "operator.extraArgs")
        .collect();
    // Every optional feature on, and the metrics choices that render other
    // flags (plain /metrics; a certificate of one's own).
    let plain = [("http.metrics.secure", json!(false))];
    let own_cert = [("http.metrics.certSecret", json!("metrics-tls"))];
    let mut rendered = BTreeSet::new();
    for values in [&on[..], &plain[..], &own_cert[..]] {
        let (args, _) = container(&helm, values);
        rendered.extend(args[1..].iter().map(|a| {
            a.trim_start_matches("--")
                .split('=')
                .next()
                .unwrap_or_default()
                .to_string()
        }));
    }
    // From $RUST_LOG.
    rendered.insert("log-level".into());
    assert_eq!(
        set_by_chart, rendered,
        "flags the chart sets and refuses in extraArgs"
    );
}

/// The schema's logLevel pattern is the operator's, and helm gives the
/// operator's verdict on each sample.
#[test]
fn log_levels_are_checked_by_the_operators_grammar() {
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(chart_dir().join("values.schema.json")).expect("values.schema.json"),
    )
    .expect("JSON");
    assert_eq!(
        schema["properties"]["operator"]["properties"]["logLevel"]["pattern"],
        prefix_operator::telemetry::FILTER_PATTERN,
        "values.schema.json's logLevel pattern differs from src/telemetry.rs"
    );
    let helm = Helm::new();
    for sample in [
        "info",
        "TRACE",
        "off",
        "3",
        "info,prefix_operator=debug",
        "prefix_operator::dhcp=trace,kube-client=warn",
        "x[span]=debug",
        "[span]=error",
        "loud",
        "prefix_operator",
        "info,",
        "info, debug",
        "=info",
        "x=",
        "x=y=info",
        "x[span{a=1}]=info",
        "9",
        "info;debug",
    ] {
        let helm_ok = render(&helm, &[("operator.logLevel", json!(sample))])
            .status
            .success();
        let operator_ok = prefix_operator::telemetry::parse_filter(sample).is_ok();
        assert_eq!(
            helm_ok, operator_ok,
            "{sample:?}: helm and the operator disagree"
        );
    }
}
