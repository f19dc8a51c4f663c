//! A PrefixPool fed by DHCPv6 prefix delegation from a real server: Kea's
//! kea-dhcp6 2.2 (Debian's package, unpacked by `e2e/debs/fetch.sh`) in a
//! network namespace of its own, linked by a veth pair to a namespace in
//! which the operator binary runs (it reaches the API server through a
//! forwarder on that namespace's loopback). Lifetimes are seconds, so the
//! transitions happen within the test. Every check reads the API server or
//! Kea's own lease file.

use prefix_operator_testsupport as support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{DelegationSpec, PrefixPool, PrefixPoolSpec};
use prefix_operator::dhcp::Identity;
use prefix_operator_testenv::Supervised;
use support::kea::{Kea, Lifetimes};
use support::netns::*;
use support::*;

const WAIT: Duration = Duration::from_secs(40);
/// Kea's delegated space: /56s out of this /48.
const PD_POOL: &str = "2001:db8:5000::/48";

struct Link {
    /// Deleted with the Link.
    _namespaces: Namespaces,
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
        _namespaces: namespaces,
        server_ns,
        client_ns,
        server_if,
        client_if,
    })
}

fn start_kea(link: &Link, dir: &Path, pd_pool: &str, name: &str) -> Kea {
    // T1 2 s, T2 4 s, preferred 6 s, valid 14 s: every transition within a
    // test, and 8 s between deprecation and expiry for the pool's
    // conditions to show each (status writes are 200 ms apart).
    support::kea::start(
        &link.server_ns,
        &link.server_if,
        dir,
        pd_pool,
        name,
        Lifetimes {
            t1: 2,
            t2: 4,
            preferred: 6,
            valid: 14,
        },
    )
}

/// The operator binary in the client namespace.
fn start_operator(cp: &ControlPlane, link: &Link, dir: &Path, name: &str) -> Supervised {
    start_operator_with(cp, link, dir, name, &[])
}

fn start_operator_with(
    cp: &ControlPlane,
    link: &Link,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> Supervised {
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    kubeconfig_in_netns(cp, &link.client_ns, &kubeconfig);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &link.client_ns])
        .arg(env!("CARGO_BIN_EXE_prefix-operator"))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-secure=false",
            "--status-interval",
            "200ms",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .args(["--identity", name])
        .args(extra)
        .env("RUST_LOG", "info,prefix_operator::dhcp=debug")
        .env_remove("KUBECONFIG");
    Supervised::start(cmd, &dir.join(format!("{name}.log"))).expect("start the operator")
}

/// Prints the operators' and Kea's logs if the test panics.
struct DumpLogs(PathBuf);

impl Drop for DumpLogs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in [
            "kea.log",
            "kea-b.log",
            "op-1.log",
            "op-2.log",
            "op-a.log",
            "op-b.log",
        ] {
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

/// The operator `name`'s /metrics, fetched inside the client namespace
/// (its HTTP address, on that namespace's loopback, is in its log).
fn metrics_of(case: &Case, name: &str) -> String {
    let log = std::fs::read_to_string(case.dir.join(format!("{name}.log"))).unwrap_or_default();
    let Some(addr) = log
        .lines()
        .find(|l| l.contains("serving /healthz"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        return String::new();
    };
    in_netns(&case.link.client_ns, move || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    })
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

/// One case's world: a control plane, the link, the logs dumped on panic
/// (fields drop in this order: the logs are read before the directory
/// goes with the control plane).
struct Case {
    _logs: DumpLogs,
    link: Link,
    client: Client,
    dir: PathBuf,
    cp: ControlPlane,
}

impl Case {
    /// `None` (after printing why) where network namespaces are forbidden.
    async fn new(tag: &str) -> Option<Case> {
        let (cp, client) = own_control_plane().await;
        let link = link(tag)?;
        let dir = cp.dir().to_path_buf();
        Some(Case {
            _logs: DumpLogs(dir.clone()),
            link,
            client,
            dir,
            cp,
        })
    }

    /// Kea with [`PD_POOL`], the operator, and pool `pd` once it holds a
    /// preferred delegated prefix.
    async fn delegated(
        &self,
    ) -> (
        Kea,
        Supervised,
        PrefixPool,
        prefix_operator::api::DelegationStatus,
    ) {
        let kea = start_kea(&self.link, &self.dir, PD_POOL, "kea");
        let op = start_operator(&self.cp, &self.link, &self.dir, "op-1");
        let pool = delegated_pool(&self.client, "pd", &self.link.client_if).await;
        let d = wait_delegated(&self.client, "pd", "a delegated prefix", |d| {
            !preferred(d).is_empty()
        })
        .await;
        (kea, op, pool, d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_is_served_from_a_kea_delegation_renewed_at_t1_and_resumed_after_a_restart() {
    let Some(case) = Case::new("pd").await else {
        return;
    };
    let _d = DumpOnPanic(&case.cp);
    let (cp, client, link, dir) = (&case.cp, &case.client, &case.link, &case.dir);
    // Acquire: a /56 of Kea's pool, recorded with the pool's DUID.
    let (kea, op, pool, d) = case.delegated().await;
    let duid = Identity::for_pool(pool.metadata.uid.as_deref().expect("uid")).duid_text();
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
    create_node(client, "node-1", labels(&[]), &[]).await;
    let cidrs = wait_pod_cidrs(client, "node-1").await;
    let net: ipnet::IpNet = cidrs[0].parse().expect("podCIDR");
    assert!(
        block.contains(&net) && net.prefix_len() == 64,
        "{cidrs:?} inside {block}"
    );

    // Renew at T1 (2 s): a later Reply for the same prefix, from the same
    // server, and Kea's lease file records the extension.
    let first_reply = d.last_reply.clone().expect("last reply");
    let renewed = wait_delegated(client, "pd", "a renewal", |x| {
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
    let _op2 = start_operator(cp, link, dir, "op-2");
    let resumed = wait_delegated(client, "pd", "renewed by the restarted operator", |x| {
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

    // Deleting the pool releases the binding: Kea says so and marks the
    // lease free (valid lifetime 0).
    let api: Api<PrefixPool> = Api::all(client.clone());
    api.delete("pd", &Default::default())
        .await
        .expect("delete the pool");
    wait_for("Kea releases the prefix", WAIT, || async {
        kea.log().contains("DHCP6_RELEASE_PD").then_some(())
    })
    .await;
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
/// on a timeout, says what the pool showed, each time it changed.
async fn wait_condition(
    client: &Client,
    pool: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> prefix_operator::api::PrefixPoolStatus {
    // Every distinct summary, with when it was first seen.
    let seen = std::sync::Mutex::new(Vec::<(k8s_openapi::jiff::Timestamp, String)>::new());
    let what = format!("pool {pool}: {type_}={status} ({reason})");
    let found = prefix_operator_testenv::poll(&what, WAIT, Duration::from_millis(50), || async {
        let st = pool_status(client, pool).await?;
        let now = summary(&st);
        let mut s = seen.lock().expect("lock");
        if s.last().map(|(_, l)| l) != Some(&now) {
            s.push((k8s_openapi::jiff::Timestamp::now(), now));
        }
        drop(s);
        cond(&st, type_).filter(|c| c.status == status && c.reason == reason)?;
        Some(st)
    })
    .await;
    found.unwrap_or_else(|e| {
        let seen: Vec<String> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, l)| format!("{t} {l}"))
            .collect();
        let seen = seen.join("\n");
        panic!("{e}; the pool showed, in turn:\n{seen}")
    })
}

/// A pool's client phase, delegated prefixes and conditions on one line.
fn summary(st: &prefix_operator::api::PrefixPoolStatus) -> String {
    let d = st.delegation.as_ref().map(|d| {
        let prefixes: Vec<String> = d
            .prefixes
            .iter()
            .map(|p| format!("{} {}", p.prefix, p.state))
            .collect();
        format!("{} [{}]", d.phase, prefixes.join(", "))
    });
    let conditions: Vec<String> = st
        .conditions
        .iter()
        .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
        .collect();
    format!("{} {}", d.unwrap_or_default(), conditions.join(" "))
}

/// The server goes away: the binding is rebound past T2, the prefix gives
/// no new node prefixes once its preferred lifetime ends and is expired
/// once its valid lifetime ends (conditions and an Event say so, the Node
/// keeps its podCIDRs); a server back with another pd-pool delegates a new
/// block, new Nodes are served from it, and the Node on the old block stays
/// listed for renumbering. Never an overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_past_the_valid_lifetime_and_back_with_another_block_renumbers_safely() {
    let Some(case) = Case::new("rn").await else {
        return;
    };
    let _d = DumpOnPanic(&case.cp);
    let (client, link, dir) = (&case.client, &case.link, &case.dir);
    let (kea, _op, _pool, d) = case.delegated().await;
    let old_block = preferred(&d)[0];
    wait_condition(client, "pd", "Delegated", "True", "Delegated").await;
    create_node(client, "node-1", labels(&[]), &[]).await;
    let old_cidr: ipnet::IpNet = wait_pod_cidrs(client, "node-1").await[0]
        .parse()
        .expect("net");
    assert!(old_block.contains(&old_cidr));

    // The server goes away.
    drop(kea);
    wait_delegated(client, "pd", "rebinding past T2", |d| {
        d.phase == "Rebinding"
    })
    .await;
    let st = wait_condition(client, "pd", "Delegated", "False", "Deprecated").await;
    assert!(
        cond(&st, "Delegated")
            .expect("c")
            .message
            .contains(&old_block.to_string())
    );
    let st = wait_condition(client, "pd", "Delegated", "False", "Expired").await;
    let renumbering = cond(&st, "Renumbering").expect("Renumbering");
    assert_eq!(renumbering.status, "True", "{renumbering:?}");
    assert!(renumbering.message.contains("node-1"), "{renumbering:?}");
    assert_eq!(st.renumbering_nodes, vec!["node-1".to_string()]);
    wait_event(client, "node-1", "DelegatedPrefixExpired").await;
    wait_for("the renumbering metric", WAIT, || async {
        let m = metrics_of(&case, "op-1");
        m.lines()
            .any(|l| l == r#"prefix_operator_pool_renumbering_nodes{pool="pd"} 1"#)
            .then_some(())
    })
    .await;
    assert_eq!(
        pod_cidrs(client, "node-1").await,
        vec![old_cidr.to_string()],
        "the Node keeps its podCIDRs"
    );
    // Nothing new is handed out from the expired block.
    create_node(client, "node-2", labels(&[]), &[]).await;
    wait_for("node-2 waits for a prefix", WAIT, || async {
        let st = pool_status(client, "pd").await?;
        st.waiting_nodes
            .contains(&"node-2".to_string())
            .then_some(())
    })
    .await;
    assert!(
        pod_cidrs(client, "node-2").await.is_empty(),
        "no prefix from an expired block"
    );

    // The server comes back with another pd-pool: a new block, new Nodes
    // from it, the old Node still listed.
    let _kea_b = start_kea(link, dir, "2001:db8:6000::/48", "kea-b");
    let d = wait_delegated(client, "pd", "a new delegated prefix", |d| {
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
    let new_cidr: ipnet::IpNet = wait_pod_cidrs(client, "node-2").await[0]
        .parse()
        .expect("net");
    assert!(
        new_block.contains(&new_cidr),
        "node-2 from the new block: {new_cidr}"
    );
    assert!(!old_cidr.contains(&new_cidr.addr()) && !new_cidr.contains(&old_cidr.addr()));
    let st = wait_condition(client, "pd", "Delegated", "True", "Delegated").await;
    let renumbering = cond(&st, "Renumbering").expect("Renumbering");
    assert_eq!(renumbering.status, "True");
    assert_eq!(
        st.renumbering_nodes,
        vec!["node-1".to_string()],
        "node-1 still to renumber, node-2 not"
    );
    // `routes` shows both blocks: each Node's prefix, old and new.
    for (i, name) in [(1, "node-1"), (2, "node-2")] {
        support::cni::set_lab_addresses(client, name, i).await;
    }
    let kubeconfig = case.dir.join("routes.kubeconfig");
    case.cp
        .write_kubeconfig(&support::Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let (text, lines) = support::cni::ip_routes(&kubeconfig);
    for (cidr, via) in [(old_cidr, "fd00:100:1::2"), (new_cidr, "fd00:100:2::2")] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("{cidr} via {via}"))),
            "a route to {cidr} via {via}:\n{text}"
        );
    }
}

/// Two replicas with leader election: only the leader talks DHCP; when it
/// dies, the other takes over and renews the same binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_leader_change_the_new_leader_renews_the_same_binding() {
    let Some(case) = Case::new("le").await else {
        return;
    };
    let _d = DumpOnPanic(&case.cp);
    let (cp, client, link, dir) = (&case.cp, &case.client, &case.link, &case.dir);
    let kea = start_kea(link, dir, PD_POOL, "kea");
    let election = [
        "--leader-elect=true",
        "--lease-namespace=default",
        "--lease-duration=3s",
        "--renew-deadline=2s",
        "--retry-period=250ms",
    ];
    let mut ops = vec![
        (
            "op-a",
            Some(start_operator_with(cp, link, dir, "op-a", &election)),
        ),
        (
            "op-b",
            Some(start_operator_with(cp, link, dir, "op-b", &election)),
        ),
    ];
    let pool = delegated_pool(client, "pd", &link.client_if).await;
    let duid = Identity::for_pool(pool.metadata.uid.as_deref().expect("uid")).duid_text();
    let d = wait_delegated(client, "pd", "a delegated prefix", |d| {
        !preferred(d).is_empty()
    })
    .await;
    let block = preferred(&d)[0];
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let holder = || async {
        leases
            .get_opt("prefix-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let leader = holder().await.expect("a leader");
    let follower = if leader == "op-a" { "op-b" } else { "op-a" };
    let log_of =
        |name: &str| std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    assert!(
        log_of(&leader).contains("leading the DHCPv6 clients"),
        "{}",
        log_of(&leader)
    );
    assert!(
        !log_of(follower).contains("leading the DHCPv6 clients"),
        "only the leader talks DHCP:\n{}",
        log_of(follower)
    );

    // The leader dies; the follower takes over and renews the same binding.
    for (name, proc) in &mut ops {
        if *name == leader {
            proc.take();
        }
    }
    wait_for("the follower leads", WAIT, || async {
        (holder().await.as_deref() == Some(follower)).then_some(())
    })
    .await;
    let last = d.last_reply.clone().expect("t");
    let renewed = wait_delegated(client, "pd", "renewed by the new leader", |x| {
        x.last_reply.as_ref().is_some_and(|t| t.0 > last.0)
            && log_of(follower).contains("resuming the DHCPv6 binding")
    })
    .await;
    assert_eq!(
        preferred(&renewed),
        vec![block],
        "the same prefix across the leader change"
    );
    let all = kea.leases_of(&duid);
    assert!(
        all.iter()
            .all(|l| l.starts_with(&format!("{},", block.addr()))),
        "one prefix for the pool's DUID: {all:?}"
    );
    drop(ops);
}

/// How a hand-made server answers a Solicit.
type Answer = Box<dyn Fn(&dhcproto::v6::Message) -> Vec<u8> + Send>;

/// A hand-made server on the link that answers each Solicit with the next
/// of `answers` (built from the Solicit), as Kea never would.
fn hostile_server(link: &Link, answers: Vec<Answer>) -> std::thread::JoinHandle<()> {
    let iface = link.server_if.clone();
    let socket = in_netns(&link.server_ns, move || {
        let name = std::ffi::CString::new(iface).expect("name");
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(index, 0, "server interface");
        let s = std::net::UdpSocket::bind("[::]:547").expect("bind 547");
        s.join_multicast_v6(&"ff02::1:2".parse().expect("group"), index)
            .expect("join All_DHCP_Relay_Agents_and_Servers");
        s
    });
    std::thread::spawn(move || {
        use dhcproto::Decodable;
        let mut buf = [0u8; 2048];
        let mut answers = answers.into_iter();
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(msg) = dhcproto::v6::Message::decode(&mut dhcproto::Decoder::new(&buf[..n]))
            else {
                continue;
            };
            if msg.msg_type() != dhcproto::v6::MessageType::Solicit {
                continue;
            }
            let Some(answer) = answers.next() else { return };
            let _ = socket.send_to(&answer(&msg), from);
        }
    })
}

/// An Advertise to `solicit` with one IA_PD (`iaid`, one prefix).
fn advertise(solicit: &dhcproto::v6::Message, iaid: u32, prefix: &str) -> Vec<u8> {
    use dhcproto::Encodable;
    use dhcproto::v6::{DhcpOption, DhcpOptions, IAPD, IAPrefix, Message, MessageType, OptionCode};
    let net: ipnet::Ipv6Net = prefix.parse().expect("prefix");
    let mut m = Message::new_with_id(MessageType::Advertise, solicit.xid());
    let o = m.opts_mut();
    if let Some(c) = solicit.opts().get(OptionCode::ClientId) {
        o.insert(c.clone());
    }
    o.insert(DhcpOption::ServerId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]));
    o.insert(DhcpOption::Preference(255));
    let mut ia = DhcpOptions::new();
    ia.insert(DhcpOption::IAPrefix(IAPrefix {
        preferred_lifetime: 60,
        valid_lifetime: 120,
        prefix_len: net.prefix_len(),
        prefix_ip: net.network(),
        opts: DhcpOptions::new(),
    }));
    o.insert(DhcpOption::IAPD(IAPD {
        id: iaid,
        t1: 0,
        t2: 0,
        opts: ia,
    }));
    m.to_vec().expect("encode")
}

/// Hostile server answers (truncated, another IAID, a prefix too long for
/// the pool's nodePrefixLength, one too short) each leave a clear message
/// in the pool's status and the operator running, with nothing delegated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_answers_are_reported_and_never_delegate() {
    let Some(case) = Case::new("hs").await else {
        return;
    };
    let _d = DumpOnPanic(&case.cp);
    let (cp, client, link, dir) = (&case.cp, &case.client, &case.link, &case.dir);
    let answers: Vec<Answer> = vec![
        Box::new(|s| {
            let mut b = advertise(s, 1, "2001:db8:7000::/56");
            b.truncate(b.len() - 9);
            b
        }),
        Box::new(|s| advertise(s, 42, "2001:db8:7000::/56")),
        Box::new(|s| advertise(s, 1, "2001:db8:7000::/72")),
        Box::new(|s| advertise(s, 1, "2000::/3")),
    ];
    let _server = hostile_server(link, answers);
    let mut op = start_operator(cp, link, dir, "op-1");
    delegated_pool(client, "pd", &link.client_if).await;
    for (what, phrase) in [
        ("a truncated Advertise", "malformed DHCPv6 message"),
        ("another IAID", "IAID 42"),
        (
            "a /72 for /64 node prefixes",
            "/72 is longer than the pool's nodePrefixLength /64",
        ),
        ("a /3", "/3 is shorter than /32"),
    ] {
        let d = wait_delegated(client, "pd", what, |d| {
            d.message.as_deref().is_some_and(|m| m.contains(phrase))
        })
        .await;
        assert!(preferred(&d).is_empty(), "{what}: nothing delegated: {d:?}");
        assert!(
            op.exited().is_none(),
            "{what}: the operator is still running"
        );
    }
    // The pool's condition says why (written after the binding, by the
    // status writer).
    wait_for("Delegated=False saying why", WAIT, || async {
        let st = pool_status(client, "pd").await?;
        let c = cond(&st, "Delegated")?;
        (c.status == "False"
            && c.reason == "WaitingForDelegation"
            && c.message.contains("is shorter than /32"))
        .then_some(())
    })
    .await;
}

/// The server is renumbered while the pool is bound: Kea restarted with
/// another pd-pool and the old lease gone. At the next exchange the
/// operator gets the new block (the old one withdrawn or left to expire),
/// new Nodes are served from it, the Node on the old block is listed, and
/// no prefix is ever handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_renumbered_under_a_bound_pool_moves_new_nodes_to_the_new_block() {
    let Some(case) = Case::new("rb").await else {
        return;
    };
    let _d = DumpOnPanic(&case.cp);
    let (client, link, dir) = (&case.client, &case.link, &case.dir);
    let (kea, _op, _pool, d) = case.delegated().await;
    let old_block = preferred(&d)[0];
    create_node(client, "node-1", labels(&[]), &[]).await;
    let old_cidr: ipnet::IpNet = wait_pod_cidrs(client, "node-1").await[0]
        .parse()
        .expect("net");

    drop(kea);
    let _kea_b = start_kea(link, dir, "2001:db8:6000::/48", "kea-b");
    let d = wait_delegated(client, "pd", "the new block", |d| {
        preferred(d).iter().any(|p| !old_block.contains(&p.addr()))
    })
    .await;
    let new_block = *preferred(&d)
        .iter()
        .find(|p| !old_block.contains(&p.addr()))
        .expect("new");
    eprintln!("after renumbering: {:?}", d.prefixes);
    assert!(
        "2001:db8:6000::/48"
            .parse::<ipnet::IpNet>()
            .expect("net")
            .contains(&new_block)
    );
    // Until the old block is no longer preferred, new Nodes may still come
    // from either; once only the new one is, they come from it.
    let d = wait_delegated(client, "pd", "only the new block preferred", |d| {
        preferred(d) == vec![new_block]
    })
    .await;
    create_node(client, "node-2", labels(&[]), &[]).await;
    let new_cidr: ipnet::IpNet = wait_pod_cidrs(client, "node-2").await[0]
        .parse()
        .expect("net");
    assert!(
        new_block.contains(&new_cidr),
        "node-2 from the new block: {new_cidr} ({d:?})"
    );
    let st = wait_condition(
        client,
        "pd",
        "Renumbering",
        "True",
        "NodesOnExpiredPrefixes",
    )
    .await;
    assert_eq!(st.renumbering_nodes, vec!["node-1".to_string()]);
    assert_eq!(
        pod_cidrs(client, "node-1").await,
        vec![old_cidr.to_string()]
    );
    assert!(!old_cidr.contains(&new_cidr.addr()));

    // A static pool over the delegated block is an overlap, reported on
    // the delegated pool like any other.
    create_pool(
        client,
        "static-overlap",
        PrefixPoolSpec {
            node_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("never".to_string(), "true".to_string())].into()),
                    ..Default::default()
                },
            ),
            ..pool_spec(&["2001:db8:6000::/48"])
        },
    )
    .await;
    let st = wait_condition(client, "pd", "Conflict", "True", "PoolsOverlap").await;
    assert!(
        cond(&st, "Conflict")
            .expect("c")
            .message
            .contains("static-overlap"),
        "{st:?}"
    );
}
