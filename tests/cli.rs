//! The command line: help, `crd`, `ula`, clear start-up failures, and
//! the inspection commands (`whois`, `status`: [`inspect`]).

use prefix_operator_testsupport as support;

#[path = "cli/inspect.rs"]
mod inspect;

use std::process::Command;

use ipnet::Ipv6Net;
use support::*;

fn po() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
}

#[test]
fn help_on_every_command() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["crd", "--help"],
        &["ula", "--help"],
        &["routes", "--help"],
        &["status", "--help"],
        &["whois", "--help"],
    ] {
        let out = po().args(args).output().expect("run");
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    let out = po().arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("prefix-operator "));
}

#[test]
fn ula_prints_a_fresh_rfc4193_48() {
    let run = || {
        let out = po().arg("ula").output().expect("run");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<Ipv6Net>()
            .expect("a CIDR")
    };
    let (a, b) = (run(), run());
    for p in [a, b] {
        assert_eq!(p.prefix_len(), 48);
        assert!(
            "fd00::/8".parse::<Ipv6Net>().expect("net").contains(&p),
            "{p}"
        );
    }
    assert_ne!(a, b, "two runs gave the same prefix");
    let out = po()
        .args(["ula", "--pool", "site-ula"])
        .output()
        .expect("run");
    let pool: prefix_operator::api::PrefixPool =
        serde_yaml::from_slice(&out.stdout).expect("a PrefixPool manifest");
    assert_eq!(pool.metadata.name.as_deref(), Some("site-ula"));
}

/// A kubeconfig at `dir/kubeconfig` for an API server nobody answers: a
/// loopback port nobody listens on.
fn dead_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let kc = dir.join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::write(
        &kc,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: x}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"),
    )
    .expect("write");
    kc
}

#[test]
fn unreachable_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dead_kubeconfig(dir.path());
    let out = po()
        .args(["run", "--http-addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API server"),
        "{err}"
    );
}

#[test]
fn missing_crd_is_a_clear_error() {
    // This test binary never installs the CRD in its control plane.
    let cp = shared();
    let kc = cp.dir().join("cli.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kc)
        .expect("kubeconfig");
    let out = po()
        .args(["run", "--http-addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CRD is not installed") && err.contains("prefix-operator crd"),
        "{err}"
    );
    // The inspection commands say the same, with exit status 2.
    for args in [&["whois", "2001:db8::1"][..], &["status"]] {
        let out = po()
            .args(args)
            .arg("--kubeconfig")
            .arg(&kc)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("prefix-operator crd"), "{args:?}: {err}");
    }
}
