//! `prefix-operator whois` and `status`, the binary, against a real API
//! server the operator works on: who holds a Node's address, a ClusterIP
//! of a ServiceCIDR claim, a LoadBalancer address, a free address; JSON and
//! YAML output; `--context`; exit statuses 0, 1 and 2.

use std::path::Path;

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{DelegationSpec, PrefixClaim, PrefixPool, PrefixPoolSpec};
use prefix_operator::inspect::{StatusReport, WhoisReport};
use serde_json::Value;
use support::claims::{DUAL_STACK_SERVICES, WAIT, service_and_lb_claims, web_and_edge_services};
use support::*;

use super::{dead_kubeconfig, po, support};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn inspect(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = po()
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("run prefix-operator");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs it and expects exit status `code`.
fn expect(kubeconfig: &Path, args: &[&str], code: i32) -> String {
    let r = inspect(kubeconfig, args);
    assert_eq!(
        r.code,
        Some(code),
        "{args:?}: stdout {} stderr {}",
        r.stdout,
        r.stderr
    );
    r.stdout
}

fn json(kubeconfig: &Path, args: &[&str], code: i32) -> Value {
    let out = expect(kubeconfig, args, code);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn kinds(v: &Value) -> Vec<String> {
    v["holders"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h["kind"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The Lease a leader would hold, in kube-system (created as soon as the
/// API server has made the namespace).
async fn lease(client: &Client, holder: &str) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut l = Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            lease_duration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    l.metadata.name = Some("prefix-operator".into());
    wait_for("the Lease created", WAIT, || async {
        api.create(&PostParams::default(), &l).await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whois_and_status_answer_for_nodes_claims_and_load_balancers() {
    let (cp, client) = control_plane_with_services(DUAL_STACK_SERVICES).await;
    let _d = DumpOnPanic(&cp);
    let kc = cp.dir().join("inspect.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kc)
        .expect("kubeconfig");
    create_pool(&client, "gua", pool_spec(&["2001:db8:c1::/48"])).await;
    let op = Operator::default(&client).await;
    create_node(&client, "cli-0", labels(&[]), &[]).await;
    let node_prefix: IpNet = wait_pod_cidrs(&client, "cli-0").await[0]
        .parse()
        .expect("podCIDR");
    let (svc_range, lb_range) = service_and_lb_claims(&client, "gua", WAIT).await;
    let cluster_ip = nth_address(&svc_range, 10);
    let lb_ip = web_and_edge_services(&client, "default", &cluster_ip, WAIT)
        .await
        .to_string();
    lease(&client, "prefix-operator-cli-test").await;

    // A Node's address.
    let out = expect(&kc, &["whois", &nth_address(&node_prefix, 5)], 0);
    assert!(
        out.starts_with(&format!("{node_prefix}: Node cli-0 (uid "))
            && out.contains(", allocated at ")
            && out.contains("PrefixPool gua (2001:db8:c1::/48)"),
        "{out}"
    );
    let v = json(&kc, &["whois", &node_prefix.to_string(), "-o", "json"], 0);
    assert_eq!(kinds(&v), ["Node"], "{v}");
    assert_eq!(v["holders"][0]["node"], "cli-0");
    assert_eq!(v["holders"][0]["prefix"], node_prefix.to_string());

    // A ClusterIP of the ServiceCIDR claim: the claim, its ServiceCIDR, the Service.
    let out = expect(&kc, &["whois", &cluster_ip], 0);
    assert!(
        out.contains(&format!("{svc_range}: PrefixClaim services (ServiceCIDR, Ready True"))
            && out.contains("PrefixPool gua (2001:db8:c1::/48), ServiceCIDR services\n")
            && out.contains(&format!("{cluster_ip}: Service default/web, ClusterIP, from PrefixClaim services ({svc_range})")),
        "{out}"
    );
    let v = json(&kc, &["whois", &cluster_ip, "-o", "json"], 0);
    assert_eq!(kinds(&v), ["PrefixClaim", "Service"], "{v}");
    assert_eq!(v["holders"][0]["claim"], "services");
    assert_eq!(v["holders"][0]["serviceCidr"], "services");
    assert_eq!(v["holders"][0]["pool"], "gua");
    assert_eq!(v["holders"][1]["role"], "ClusterIP");
    assert_eq!(v["holders"][1]["serviceCidr"], "services");

    // A LoadBalancer address: the Service and the claim it came from.
    let out = expect(&kc, &["whois", &lb_ip, "-o", "yaml"], 0);
    let r: WhoisReport = serde_yaml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let v = serde_json::to_value(&r).expect("json");
    assert_eq!(kinds(&v), ["PrefixClaim", "Service"], "{out}");
    assert_eq!(v["holders"][0]["claim"], "lb");
    assert_eq!(v["holders"][0]["purpose"], "LoadBalancer");
    assert_eq!(v["holders"][1]["service"], "default/edge");
    assert_eq!(v["holders"][1]["role"], "LoadBalancer");
    assert_eq!(v["holders"][1]["claim"], "lb");
    assert_eq!(v["holders"][1]["claimPrefix"], lb_range.to_string());
    let out = expect(&kc, &["whois", &lb_ip], 0);
    assert!(
        out.contains(&format!(
            "{lb_ip}: Service default/edge, LoadBalancer address (class {}), from PrefixClaim lb ({lb_range})",
            prefix_operator::controller::LOAD_BALANCER_CLASS
        )),
        "{out}"
    );

    // What `status` reads of the pool is the operator's status of it.
    wait_pool(&client, "gua", "one Node, Ready", |p| {
        let st = p.status.clone().unwrap_or_default();
        st.allocated == Some(1) && condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    free_address(&client, &kc).await;
    status_reports(&kc, &svc_range, &lb_range);
    op.stop().await;
    delegated_pool_in_status(&client, &kc).await;
    errors_exit_2(&kc);
}

/// An address of the pool nothing the API server holds covers: exit 1.
async fn free_address(client: &Client, kc: &Path) {
    let free = "2001:db8:c1:ffff::1";
    let ip: std::net::IpAddr = free.parse().expect("ip");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for n in nodes.list(&Default::default()).await.expect("Nodes").items {
        for c in node_cidrs(&n) {
            assert!(!c.parse::<IpNet>().expect("cidr").contains(&ip), "{c}");
        }
    }
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    for c in claims
        .list(&Default::default())
        .await
        .expect("claims")
        .items
    {
        let p = c.status.and_then(|s| s.prefix).unwrap_or_default();
        assert!(!p.parse::<IpNet>().is_ok_and(|n| n.contains(&ip)), "{p}");
    }
    let out = expect(kc, &["whois", free], 1);
    assert_eq!(
        out,
        format!(
            "{free}: held by nobody (no Node, PrefixClaim, ServiceCIDR or Service); in PrefixPool gua (2001:db8:c1::/48)\n"
        )
    );
    let v = json(kc, &["whois", free, "-o", "json"], 1);
    assert_eq!(
        (v["found"].as_bool(), kinds(&v).len()),
        (Some(false), 0),
        "{v}"
    );
    assert_eq!(v["pools"][0]["pool"], "gua");
}

fn status_reports(kc: &Path, svc_range: &IpNet, lb_range: &IpNet) {
    let (svc, lb) = (svc_range.to_string(), lb_range.to_string());
    let out = expect(kc, &["status"], 0);
    let row = |first: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{first} ")))
            .unwrap_or_else(|| panic!("no {first} row: {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        &row("gua")[..3],
        ["gua", "IPv6", "2001:db8:c1::/48"],
        "{out}"
    );
    assert_eq!(row("gua")[9], "True", "{out}");
    assert_eq!(
        row("services"),
        [
            "services",
            "gua",
            svc.as_str(),
            "ServiceCIDR",
            "True",
            "Serving",
            "ServiceCIDR/services"
        ],
        "{out}"
    );
    assert_eq!(
        &row("lb")[..5],
        ["lb", "gua", lb.as_str(), "LoadBalancer", "True"],
        "{out}"
    );
    assert!(
        out.ends_with("\n")
            && out.contains(
                "Leader: prefix-operator-cli-test (Lease kube-system/prefix-operator, renewed at "
            ),
        "{out}"
    );
    let v = json(kc, &["status", "-o", "json"], 0);
    let r: StatusReport = serde_json::from_value(v.clone()).expect("the documented structure");
    assert_eq!(r.pools.len(), 1, "{v}");
    assert_eq!(r.pools[0].allocated, Some(1), "{v}");
    let claims: Vec<(&str, Option<&str>)> = r.pools[0]
        .claims
        .iter()
        .map(|c| (c.name.as_str(), c.prefix.as_deref()))
        .collect();
    assert_eq!(
        claims,
        [("lb", Some(lb.as_str())), ("services", Some(svc.as_str()))]
    );
    assert_eq!(
        r.pools[0].claims[1].service_cidr.as_deref(),
        Some("services")
    );
    assert_eq!(r.leader.holder.as_deref(), Some("prefix-operator-cli-test"));
    let v = json(kc, &["status", "-o", "json", "--lease-name", "nobody"], 0);
    assert_eq!(v["leader"]["leaseFound"], false, "{v}");
    assert_eq!(v["leader"]["lease"], "kube-system/nobody", "{v}");
}

/// A pool fed by DHCPv6-PD shows the prefix delegated to it (written here
/// as the operator's DHCPv6 client writes it; the operator is stopped).
async fn delegated_pool_in_status(client: &Client, kc: &Path) {
    let api: Api<PrefixPool> = Api::all(client.clone());
    let spec = PrefixPoolSpec {
        delegation: Some(DelegationSpec {
            interface: "eth9".into(),
            prefix_length: Some(56),
        }),
        ..Default::default()
    };
    api.create(&PostParams::default(), &PrefixPool::new("pd", spec))
        .await
        .expect("create the delegated pool");
    let status = serde_json::json!({"status": {"delegation": {
        "duid": "0004aa", "iaid": 1, "phase": "Bound",
        "prefixes": [{"prefix": "2001:db8:d0::/56", "state": "Preferred"}],
    }}});
    api.patch_status("pd", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write status.delegation");
    let r: StatusReport =
        serde_json::from_value(json(kc, &["status", "-o", "json"], 0)).expect("a status report");
    let pd = r.pools.iter().find(|p| p.name == "pd").expect("pool pd");
    assert_eq!(pd.prefixes, ["2001:db8:d0::/56"]);
    let d = pd.delegation.as_ref().expect("delegation");
    assert_eq!(
        (d.interface.as_str(), d.phase.as_deref()),
        ("eth9", Some("Bound"))
    );
    let out = expect(kc, &["status"], 0);
    let row = out.lines().find(|l| l.starts_with("pd ")).expect("pd row");
    assert!(row.contains("2001:db8:d0::/56"), "{out}");
    assert!(
        out.contains("pd: delegated by DHCPv6 on eth9: Bound; 2001:db8:d0::/56 Preferred"),
        "{out}"
    );
    // whois finds the delegated space.
    let out = expect(kc, &["whois", "2001:db8:d0::1"], 1);
    assert!(out.contains("in PrefixPool pd (2001:db8:d0::/56)"), "{out}");
}

/// Bad input, a context the kubeconfig lacks, an API server nobody
/// answers: exit status 2, a message on stderr, nothing on stdout.
fn errors_exit_2(kc: &Path) {
    let current = kube::config::Kubeconfig::read_from(kc)
        .expect("kubeconfig")
        .current_context
        .expect("a current context");
    let v = json(
        kc,
        &[
            "whois",
            "2001:db8:c1:ffff::1",
            "--context",
            &current,
            "-o",
            "json",
        ],
        1,
    );
    assert_eq!(v["found"], false);
    let dir = tempfile::tempdir().expect("tmp");
    let dead = dead_kubeconfig(dir.path());
    for (args, kubeconfig, says) in [
        (
            vec!["whois", "2001:db8::1", "--context", "no-such-context"],
            kc,
            "no-such-context",
        ),
        (
            vec!["status", "--context", "no-such-context"],
            kc,
            "no-such-context",
        ),
        (vec!["whois", "nonsense"], kc, "neither an address"),
        (vec!["whois", "2001:db8::1", "-o", "xml"], kc, "xml"),
        (
            vec!["whois", "2001:db8::1"],
            dead.as_path(),
            "cannot reach the Kubernetes API server",
        ),
        (
            vec!["status"],
            dead.as_path(),
            "cannot reach the Kubernetes API server",
        ),
    ] {
        let r = inspect(kubeconfig, &args);
        assert_eq!(r.code, Some(2), "{args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}
