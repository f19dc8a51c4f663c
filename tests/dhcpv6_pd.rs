//! A PrefixPool fed by DHCPv6 prefix delegation from a real server: Kea's
//! kea-dhcp6 2.2 (Debian's package, unpacked by `e2e/debs/fetch.sh`) in a
//! network namespace of its own, linked by a veth pair to a namespace in
//! which the operator binary runs (it reaches the API server through a
//! forwarder on that namespace's loopback). Lifetimes are seconds, so the
//! transitions happen within the test. Every check reads the API server or
//! Kea's own lease file.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{DelegationSpec, PrefixPool, PrefixPoolSpec};
use prefix_operator::dhcp::Identity;
use prefix_operator_testenv::Supervised;
use support::netns::*;
use support::*;

const WAIT: Duration = Duration::from_secs(40);
/// Kea's delegated space: /56s out of this /48.
const PD_POOL: &str = "2001:db8:5000::/48";

struct Link {
    namespaces: Namespaces,
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
}

/// A server namespace and a client namespace joined by a veth pair, with
/// link-local addresses usable at once (no DAD).
fn link(tag: &str) -> Option<Link> {
    let tag = format!("{tag}{}", std::process::id() % 10_000);
    let (server_ns, client_ns) = (format!("ks{tag}"), format!("kc{tag}"));
    let (server_if, client_if) = (format!("s{tag}"), format!("c{tag}"));
    let mut namespaces = Namespaces(Vec::new());
    if let Err(e) = namespaces.add(&server_ns) {
        eprintln!("SKIPPED DHCPv6-PD case {tag}: this machine forbids network namespaces ({e})");
        return None;
    }
    namespaces.add(&client_ns).expect("client netns");
    for ns in [&server_ns, &client_ns] {
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            nssysctl(ns, key);
        }
    }
    ip(&[
        "link", "add", &server_if, "netns", &server_ns, "type", "veth", "peer", "name", &client_if,
        "netns", &client_ns,
    ])
    .expect("veth");
    nsip(
        &server_ns,
        &[
            "addr",
            "add",
            "2001:db8:ffff::1/64",
            "dev",
            &server_if,
            "nodad",
        ],
    );
    for (ns, dev) in [(&server_ns, &server_if), (&client_ns, &client_if)] {
        nsip(ns, &["link", "set", dev, "up"]);
        nsip(ns, &["link", "set", "lo", "up"]);
    }
    Some(Link {
        namespaces,
        server_ns,
        client_ns,
        server_if,
        client_if,
    })
}

/// kea-dhcp6 serving /56s of [`PD_POOL`] on the link, with lifetimes of
/// seconds; its lease file and log in `dir`.
struct Kea {
    _proc: Supervised,
    leases: PathBuf,
    log: PathBuf,
}

fn start_kea(link: &Link, dir: &Path, pd_pool: &str, name: &str) -> Kea {
    let root = support::debs::debs();
    let lib = support::debs::lib_dir(&root);
    let leases = dir.join(format!("{name}-leases6.csv"));
    let log = dir.join(format!("{name}.log"));
    let (prefix, len) = pd_pool.split_once('/').expect("prefix/len");
    let config = serde_json::json!({"Dhcp6": {
        "interfaces-config": {"interfaces": [link.server_if]},
        "lease-database": {"type": "memfile", "name": leases, "persist": true, "lfc-interval": 0},
        // The server's DUID, not written to /var/lib/kea.
        "server-id": {"type": "LLT", "persist": false},
        "preferred-lifetime": 6, "valid-lifetime": 10,
        "renew-timer": 2, "rebind-timer": 4,
        "subnet6": [{
            "id": 1, "subnet": "2001:db8:ffff::/64", "interface": link.server_if,
            "pd-pools": [{"prefix": prefix, "prefix-len": len.parse::<u8>().expect("len"), "delegated-len": 56}],
        }],
        "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}], "severity": "INFO"}],
    }});
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &link.server_ns])
        .arg(root.join("usr/sbin/kea-dhcp6"))
        .arg("-c")
        .arg(&conf)
        .env("LD_LIBRARY_PATH", &lib)
        .env("KEA_PIDFILE_DIR", dir)
        .env("KEA_LOCKFILE_DIR", dir);
    let proc = Supervised::start(cmd, &log).expect("start kea-dhcp6");
    Kea {
        _proc: proc,
        leases,
        log,
    }
}

impl Kea {
    /// Kea's lease lines (memfile CSV) for `duid`, as (prefix, valid lifetime).
    fn leases_of(&self, duid: &str) -> Vec<String> {
        std::fs::read_to_string(&self.leases)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(duid))
            .map(str::to_string)
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The operator binary in the client namespace.
fn start_operator(cp: &ControlPlane, link: &Link, dir: &Path, name: &str) -> Supervised {
    let api: std::net::SocketAddr = cp
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .expect("API server address");
    let port = forward_into(&link.client_ns, api);
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    cp.write_kubeconfig(&Identity_::Admin, &kubeconfig)
        .expect("kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig).expect("read kubeconfig");
    std::fs::write(
        &kubeconfig,
        text.replace(&cp.server_url(), &format!("https://127.0.0.1:{port}")),
    )
    .expect("point the kubeconfig at the forwarder");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &link.client_ns])
        .arg(env!("CARGO_BIN_EXE_prefix-operator"))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--status-interval",
            "200ms",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .args(["--identity", name])
        .env("RUST_LOG", "info,prefix_operator::dhcp=debug")
        .env_remove("KUBECONFIG");
    Supervised::start(cmd, &dir.join(format!("{name}.log"))).expect("start the operator")
}

use prefix_operator_testenv::Identity as Identity_;

/// Prints the operators' and Kea's logs if the test panics.
struct DumpLogs(PathBuf);

impl Drop for DumpLogs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["kea.log", "kea-b.log", "op-1.log", "op-2.log"] {
            let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {name} (last 60 lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

async fn delegated_pool(client: &Client, name: &str, interface: &str) -> PrefixPool {
    let api: Api<PrefixPool> = Api::all(client.clone());
    let pool = PrefixPool {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: PrefixPoolSpec {
            delegation: Some(DelegationSpec {
                interface: interface.into(),
                prefix_length: Some(56),
            }),
            ..pool_spec(&[])
        },
        status: None,
    };
    api.create(&PostParams::default(), &pool)
        .await
        .expect("create the delegated pool")
}

/// The pool's delegated prefixes in state `state`, once there is one.
async fn wait_delegated(
    client: &Client,
    pool: &str,
    what: &str,
    check: impl Fn(&prefix_operator::api::DelegationStatus) -> bool,
) -> prefix_operator::api::DelegationStatus {
    let api: Api<PrefixPool> = Api::all(client.clone());
    wait_for(&format!("pool {pool}: {what}"), WAIT, || async {
        let d = api.get_opt(pool).await.ok().flatten()?.status?.delegation?;
        check(&d).then_some(d)
    })
    .await
}

fn preferred(d: &prefix_operator::api::DelegationStatus) -> Vec<ipnet::IpNet> {
    d.prefixes
        .iter()
        .filter(|p| p.state == "Preferred")
        .filter_map(|p| p.prefix.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_served_from_a_kea_delegation_renewed_at_t1_and_resumed_after_a_restart() {
    let (cp, client) = own_control_plane().await;
    let Some(link) = link("pd") else { return };
    let _d = DumpOnPanic(&cp);
    let dir = cp.dir().to_path_buf();
    let _logs = DumpLogs(dir.clone());
    let kea = start_kea(&link, &dir, PD_POOL, "kea");
    let op = start_operator(&cp, &link, &dir, "op-1");
    let pool = delegated_pool(&client, "pd", &link.client_if).await;
    let duid = Identity::for_pool(pool.metadata.uid.as_deref().expect("uid")).duid_text();

    // Acquire: a /56 of Kea's pool, recorded with the pool's DUID.
    let d = wait_delegated(&client, "pd", "a delegated prefix", |d| {
        !preferred(d).is_empty()
    })
    .await;
    let block = preferred(&d)[0];
    let pd_pool: ipnet::IpNet = PD_POOL.parse().expect("net");
    assert!(
        pd_pool.contains(&block) && block.prefix_len() == 56,
        "{block}"
    );
    assert_eq!(d.duid, duid);
    assert_eq!(d.phase, "Bound", "{d:?}");
    let leases = kea.leases_of(&duid);
    assert!(
        leases
            .iter()
            .any(|l| l.starts_with(&format!("{},", block.addr()))),
        "Kea's lease file holds {block} for the pool's DUID {duid}:\n{leases:?}\n{}",
        kea.log()
    );

    // Nodes are served from the delegated block.
    create_node(&client, "node-1", labels(&[]), &[]).await;
    let cidrs = wait_pod_cidrs(&client, "node-1").await;
    let net: ipnet::IpNet = cidrs[0].parse().expect("podCIDR");
    assert!(
        block.contains(&net) && net.prefix_len() == 64,
        "{cidrs:?} inside {block}"
    );

    // Renew at T1 (2 s): a later Reply for the same prefix, from the same
    // server, and Kea's lease file records the extension.
    let first_reply = d.last_reply.clone().expect("last reply");
    let renewed = wait_delegated(&client, "pd", "a renewal", |x| {
        x.last_reply.as_ref().is_some_and(|t| t.0 > first_reply.0)
    })
    .await;
    assert_eq!(preferred(&renewed), vec![block], "renewed, same prefix");
    assert_eq!(renewed.server_id, d.server_id, "same server");
    wait_for("Kea records the renewal", WAIT, || async {
        (kea.leases_of(&duid).len() > leases.len()).then_some(())
    })
    .await;

    // The operator killed and started again: the same binding is renewed
    // (read back from the pool's status), not a new prefix asked for.
    drop(op);
    let before = kea.leases_of(&duid).len();
    let _op2 = start_operator(&cp, &link, &dir, "op-2");
    let resumed = wait_delegated(&client, "pd", "renewed by the restarted operator", |x| {
        x.last_reply
            .as_ref()
            .is_some_and(|t| t.0 > renewed.last_reply.as_ref().expect("t").0)
    })
    .await;
    assert_eq!(
        preferred(&resumed),
        vec![block],
        "the same prefix after a restart"
    );
    let after = kea.leases_of(&duid);
    assert!(after.len() > before, "Kea saw the renewal");
    assert!(
        after
            .iter()
            .all(|l| l.starts_with(&format!("{},", block.addr()))),
        "one prefix for the pool's DUID, ever: {after:?}"
    );
    let log = std::fs::read_to_string(dir.join("op-2.log")).unwrap_or_default();
    assert!(
        log.contains("resuming the DHCPv6 binding"),
        "the restarted operator resumed the recorded binding:\n{log}"
    );
    drop(link.namespaces);
}

async fn pool_status(
    client: &Client,
    pool: &str,
) -> Option<prefix_operator::api::PrefixPoolStatus> {
    let api: Api<PrefixPool> = Api::all(client.clone());
    api.get_opt(pool).await.ok().flatten()?.status
}

fn cond<'a>(
    st: &'a prefix_operator::api::PrefixPoolStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the pool's condition `type_` has `status` and `reason`;
/// on a timeout, says what the pool showed last.
async fn wait_condition(
    client: &Client,
    pool: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> prefix_operator::api::PrefixPoolStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(st) = pool_status(client, pool).await {
            if cond(&st, type_).is_some_and(|c| c.status == status && c.reason == reason) {
                return st;
            }
            // Shown with the test's output when it fails.
            let seen = (
                st.delegation.as_ref().map(|d| {
                    (
                        d.phase.clone(),
                        d.prefixes
                            .iter()
                            .map(|p| format!("{} {}", p.prefix, p.state))
                            .collect::<Vec<_>>(),
                    )
                }),
                st.conditions
                    .iter()
                    .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                    .collect::<Vec<_>>(),
            );
            if last
                .as_ref()
                .map(|l: &prefix_operator::api::PrefixPoolStatus| {
                    l.conditions
                        .iter()
                        .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                        .collect::<Vec<_>>()
                })
                != Some(seen.1.clone())
                || last
                    .as_ref()
                    .and_then(|l| l.delegation.as_ref())
                    .map(|d| d.phase.clone())
                    != seen.0.as_ref().map(|x| x.0.clone())
            {
                eprintln!("{} {seen:?}", k8s_openapi::jiff::Timestamp::now());
            }
            last = Some(st);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pool {pool}: no {type_}={status} ({reason}) within {WAIT:?}; last status: {last:#?}");
}

/// The server goes away: the binding is rebound past T2, the prefix gives
/// no new node prefixes once its preferred lifetime ends and is expired
/// once its valid lifetime ends (conditions and an Event say so, the Node
/// keeps its podCIDRs); a server back with another pd-pool delegates a new
/// block, new Nodes are served from it, and the Node on the old block stays
/// listed for renumbering. Never an overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_past_the_valid_lifetime_and_back_with_another_block_renumbers_safely() {
    let (cp, client) = own_control_plane().await;
    let Some(link) = link("rn") else { return };
    let _d = DumpOnPanic(&cp);
    let dir = cp.dir().to_path_buf();
    let _logs = DumpLogs(dir.clone());
    let kea = start_kea(&link, &dir, PD_POOL, "kea");
    let _op = start_operator(&cp, &link, &dir, "op-1");
    delegated_pool(&client, "pd", &link.client_if).await;
    let d = wait_delegated(&client, "pd", "a delegated prefix", |d| {
        !preferred(d).is_empty()
    })
    .await;
    let old_block = preferred(&d)[0];
    wait_condition(&client, "pd", "Delegated", "True", "Delegated").await;
    create_node(&client, "node-1", labels(&[]), &[]).await;
    let old_cidr: ipnet::IpNet = wait_pod_cidrs(&client, "node-1").await[0]
        .parse()
        .expect("net");
    assert!(old_block.contains(&old_cidr));

    // The server goes away.
    drop(kea);
    wait_delegated(&client, "pd", "rebinding past T2", |d| {
        d.phase == "Rebinding"
    })
    .await;
    let st = wait_condition(&client, "pd", "Delegated", "False", "Deprecated").await;
    assert!(
        cond(&st, "Delegated")
            .expect("c")
            .message
            .contains(&old_block.to_string())
    );
    let st = wait_condition(&client, "pd", "Delegated", "False", "Expired").await;
    let renumbering = cond(&st, "Renumbering").expect("Renumbering");
    assert_eq!(renumbering.status, "True", "{renumbering:?}");
    assert!(renumbering.message.contains("node-1"), "{renumbering:?}");
    assert_eq!(st.renumbering_nodes, vec!["node-1".to_string()]);
    wait_event(&client, "node-1", "DelegatedPrefixExpired").await;
    assert_eq!(
        pod_cidrs(&client, "node-1").await,
        vec![old_cidr.to_string()],
        "the Node keeps its podCIDRs"
    );
    // Nothing new is handed out from the expired block.
    create_node(&client, "node-2", labels(&[]), &[]).await;
    wait_for("node-2 waits for a prefix", WAIT, || async {
        let st = pool_status(&client, "pd").await?;
        st.waiting_nodes
            .contains(&"node-2".to_string())
            .then_some(())
    })
    .await;
    assert!(
        pod_cidrs(&client, "node-2").await.is_empty(),
        "no prefix from an expired block"
    );

    // The server comes back with another pd-pool: a new block, new Nodes
    // from it, the old Node still listed.
    let _kea_b = start_kea(&link, &dir, "2001:db8:6000::/48", "kea-b");
    let d = wait_delegated(&client, "pd", "a new delegated prefix", |d| {
        !preferred(d).is_empty()
    })
    .await;
    let new_block = preferred(&d)[0];
    assert!(
        "2001:db8:6000::/48"
            .parse::<ipnet::IpNet>()
            .expect("net")
            .contains(&new_block),
        "{new_block}"
    );
    assert!(
        d.prefixes
            .iter()
            .any(|p| p.prefix == old_block.to_string() && p.state == "Expired"),
        "{d:?}"
    );
    let new_cidr: ipnet::IpNet = wait_pod_cidrs(&client, "node-2").await[0]
        .parse()
        .expect("net");
    assert!(
        new_block.contains(&new_cidr),
        "node-2 from the new block: {new_cidr}"
    );
    assert!(!old_cidr.contains(&new_cidr.addr()) && !new_cidr.contains(&old_cidr.addr()));
    let st = wait_condition(&client, "pd", "Delegated", "True", "Delegated").await;
    let renumbering = cond(&st, "Renumbering").expect("Renumbering");
    assert_eq!(renumbering.status, "True");
    assert_eq!(
        st.renumbering_nodes,
        vec!["node-1".to_string()],
        "node-1 still to renumber, node-2 not"
    );
    drop(link.namespaces);
}
