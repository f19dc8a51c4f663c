//! `prefix-operator status` and `prefix-operator whois`: what the pools and
//! Nodes hold, read from the API server (the statuses the operator wrote,
//! the podCIDRs on the Nodes), for a human at a terminal.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;

use crate::api::PrefixPool;
use crate::k8s::nodes::{ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION};

/// `prefix-operator status`.
pub async fn print_status(kubeconfig: Option<&PathBuf>) -> Result<()> {
    let client = crate::k8s::client::client_for(kubeconfig).await?;
    let pools: kube::Api<PrefixPool> = kube::Api::all(client);
    let list = pools
        .list(&Default::default())
        .await
        .context("listing PrefixPools")?;
    print!("{}", status_table(&list.items));
    Ok(())
}

/// `prefix-operator whois`: true when a Node holds the query.
pub async fn print_whois(kubeconfig: Option<&PathBuf>, q: &Query) -> Result<bool> {
    let client = crate::k8s::client::client_for(kubeconfig).await?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), "default");
    let pools: kube::Api<PrefixPool> = kube::Api::all(client);
    let nodes = nodes
        .list(&Default::default())
        .await
        .context("listing Nodes")?;
    let pools = pools
        .list(&Default::default())
        .await
        .context("listing PrefixPools")?;
    // Allocation Events of Nodes land in "default" (Nodes are
    // cluster-scoped); a missing Event only leaves the time out.
    let events = events
        .list(&kube::api::ListParams::default().fields("reason=PrefixAllocated"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let (text, found) = whois(q, &nodes.items, &pools.items, &events);
    print!("{text}");
    Ok(found)
}

/// One table of every pool: usage, waiting Nodes and conflicts, like
/// `calicoctl ipam show`; then the waiting and conflicted Nodes by pool.
pub fn status_table(pools: &[PrefixPool]) -> String {
    let mut rows = vec![
        [
            "POOL",
            "FAMILY",
            "PREFIXES",
            "CAPACITY",
            "ALLOCATED",
            "AVAILABLE",
            "USED",
            "WAITING",
            "CONFLICTS",
            "READY",
        ]
        .map(String::from),
    ];
    let mut details = String::new();
    for p in pools {
        let name = p.metadata.name.clone().unwrap_or_default();
        let st = p.status.clone().unwrap_or_default();
        let ready = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "-".into());
        let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
        rows.push([
            name.clone(),
            or_dash(st.family.clone()),
            p.spec.prefixes.join(","),
            or_dash(st.capacity.clone()),
            or_dash(st.allocated.map(|a| a.to_string())),
            or_dash(st.available.clone()),
            or_dash(st.used.clone()),
            st.waiting.unwrap_or(0).to_string(),
            st.conflicts.len().to_string(),
            ready,
        ]);
        if !st.waiting_nodes.is_empty() {
            let more = st.waiting.unwrap_or(0) - st.waiting_nodes.len() as i64;
            let _ = write!(
                details,
                "\n{name}: waiting for space: {}",
                st.waiting_nodes.join(", ")
            );
            if more > 0 {
                let _ = write!(details, " and {more} more");
            }
        }
        for c in &st.conflicts {
            let _ = write!(
                details,
                "\n{name}: conflict: Node {} holds {}: {}",
                c.node, c.prefix, c.reason
            );
        }
        if let Some(r) = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status != "True")
        {
            let _ = write!(details, "\n{name}: not ready: {}", r.message);
        }
    }
    let mut out = columns(&rows);
    if !details.is_empty() {
        out.push_str(&details[1..]);
        out.push('\n');
    }
    out
}

/// Left-aligned columns, three spaces apart, as kubectl prints them.
fn columns(rows: &[[String; 10]]) -> String {
    let mut widths = [0usize; 10];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// What `whois` looks up: an address, or a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Address(IpAddr),
    Prefix(IpNet),
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Query::Address(a));
        }
        s.parse::<IpNet>()
            .map(|n| Query::Prefix(n.trunc()))
            .map_err(|_| {
                format!("{s:?} is neither an address (2001:db8::1) nor a prefix (2001:db8::/64)")
            })
    }
}

impl Query {
    fn hits(&self, held: &IpNet) -> bool {
        match self {
            Query::Address(a) => held.contains(a),
            Query::Prefix(p) => held.contains(p) || p.contains(held),
        }
    }
}

/// Which Node holds `q` (or a prefix overlapping it), since when (the
/// Node's allocated-at annotation, else its `PrefixAllocated` Event) and from
/// which pool; else which pool's space
/// it lies in. Returns the text and whether any Node holds it.
pub fn whois(q: &Query, nodes: &[Node], pools: &[PrefixPool], events: &[Event]) -> (String, bool) {
    let mut out = String::new();
    let mut found = false;
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        for held in crate::k8s::nodes::pod_cidr_nets(n) {
            if !q.hits(&held) {
                continue;
            }
            found = true;
            let _ = write!(out, "{held}: Node {name}");
            if let Some(uid) = &n.metadata.uid {
                let _ = write!(out, " (uid {uid})");
            }
            match allocated_at(n, events) {
                Some(t) => {
                    let _ = write!(out, ", allocated at {t}");
                }
                None => out.push_str(
                    ", allocation time unknown (no ipam.prefix-operator.io/allocated-at annotation and no PrefixAllocated Event: written by someone else, or by an older operator with --allocation-events=false or longer ago than the Event TTL)",
                ),
            }
            let owners = pools_containing(&held, pools);
            if owners.is_empty() {
                out.push_str(", in no PrefixPool's prefixes");
            } else {
                let _ = write!(out, ", PrefixPool {}", owners.join(", "));
            }
            if let Some(v) = annotation(n, POOLS_ANNOTATION) {
                let _ = write!(out, " (the Node's {POOLS_ANNOTATION}: {v})");
            }
            out.push('\n');
        }
    }
    if !found {
        let net = match q {
            Query::Address(a) => IpNet::from(*a),
            Query::Prefix(p) => *p,
        };
        let owners = pools_containing(&net, pools);
        if owners.is_empty() {
            let _ = writeln!(out, "{net}: held by no Node, in no PrefixPool's prefixes");
        } else {
            let _ = writeln!(
                out,
                "{net}: held by no Node; in PrefixPool {}{}",
                owners.join(", "),
                if reserved_in(&net, pools) {
                    " (a reserved range)"
                } else {
                    ""
                }
            );
        }
    }
    (out, found)
}

/// When the operator allocated the Node's prefixes: the time annotation the
/// write left on the Node, or else (Nodes written before it existed) the time
/// of its `PrefixAllocated` Event about this very object.
fn allocated_at(n: &Node, events: &[Event]) -> Option<String> {
    if let Some(t) = annotation(n, ALLOCATED_AT_ANNOTATION) {
        return Some(t.to_string());
    }
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PrefixAllocated"))
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Node")
                    && r.name == n.metadata.name
                    && (r.uid.is_none() || r.uid == n.metadata.uid)
            })
        })
        .filter_map(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| {
                    e.deprecated_first_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
        })
        .min()
}

fn annotation<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// `pool (prefix)` for every pool with a prefix containing `net`.
fn pools_containing(net: &IpNet, pools: &[PrefixPool]) -> Vec<String> {
    let mut out = vec![];
    for p in pools {
        for px in &p.spec.prefixes {
            if px.parse::<IpNet>().is_ok_and(|x| x.contains(net)) {
                out.push(format!(
                    "{} ({px})",
                    p.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn reserved_in(net: &IpNet, pools: &[PrefixPool]) -> bool {
    pools.iter().any(|p| {
        p.spec.reserved.iter().any(|r| {
            r.parse::<IpNet>()
                .is_ok_and(|x| x.contains(net) || net.contains(&x))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PrefixPoolSpec, PrefixPoolStatus};
    use k8s_openapi::api::core::v1::{NodeSpec, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn pool(name: &str, prefixes: &[&str], reserved: &[&str]) -> PrefixPool {
        let mut p = PrefixPool::new(
            name,
            PrefixPoolSpec {
                prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
                reserved: reserved.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        );
        p.status = Some(PrefixPoolStatus {
            family: Some("IPv6".into()),
            capacity: Some("65536".into()),
            allocated: Some(1),
            available: Some("65534".into()),
            used: Some("<0.1%".into()),
            waiting: Some(3),
            waiting_nodes: vec!["w1".into(), "w2".into()],
            ..Default::default()
        });
        p
    }

    fn node(name: &str, cidr: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.uid = Some(format!("uid-{name}"));
        n.spec = Some(NodeSpec {
            pod_cidrs: Some(vec![cidr.into()]),
            ..Default::default()
        });
        n
    }

    fn allocated(node: &str, uid: &str, second: i64) -> Event {
        Event {
            reason: Some("PrefixAllocated".into()),
            regarding: Some(ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            event_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(second).expect("time"),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_usage_and_names_the_waiting_nodes() {
        let t = status_table(&[pool("gua", &["2001:db8:42::/48"], &[])]);
        let mut lines = t.lines();
        let header = lines.next().expect("header");
        assert!(header.starts_with("POOL") && header.contains("USED"), "{t}");
        let row = lines.next().expect("row");
        for cell in [
            "gua",
            "IPv6",
            "2001:db8:42::/48",
            "65536",
            "65534",
            "<0.1%",
            "3",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(
            t.contains("gua: waiting for space: w1, w2 and 1 more"),
            "{t}"
        );
    }

    #[test]
    fn whois_finds_the_node_the_time_and_the_pool() {
        let pools = [pool("gua", &["2001:db8:42::/48"], &["2001:db8:42::/64"])];
        let nodes = [
            node("worker-1", "2001:db8:42:1::/64"),
            node("hand", "2001:db8:42:2::/64"),
        ];
        let events = [
            allocated("worker-1", "uid-worker-1", 1_800_000_000),
            // An earlier object of the same name: not this Node's.
            allocated("hand", "uid-old", 1_700_000_000),
        ];
        let q: Query = "2001:db8:42:1::5".parse().expect("query");
        let (t, found) = whois(&q, &nodes, &pools, &events);
        assert!(found);
        assert!(
            t.contains("2001:db8:42:1::/64: Node worker-1 (uid uid-worker-1), allocated at 2027-01-15T08:00:00Z, PrefixPool gua (2001:db8:42::/48)"),
            "{t}"
        );
        let (t, _) = whois(
            &"2001:db8:42::/56".parse().expect("q"),
            &nodes,
            &pools,
            &events,
        );
        assert!(
            t.contains("Node worker-1") && t.contains("Node hand"),
            "a prefix finds every Node inside it: {t}"
        );
        assert!(t.contains("allocation time unknown"), "{t}");
        let (t, found) = whois(
            &"2001:db8:42::1".parse().expect("q"),
            &nodes,
            &pools,
            &events,
        );
        assert!(!found);
        assert!(
            t.contains("held by no Node; in PrefixPool gua (2001:db8:42::/48) (a reserved range)"),
            "{t}"
        );
        let (t, _) = whois(
            &"2001:db8:99::1".parse().expect("q"),
            &nodes,
            &pools,
            &events,
        );
        assert!(t.contains("in no PrefixPool"), "{t}");
        assert!("nonsense".parse::<Query>().is_err());

        // The annotations the write leaves on the Node outlive the Event.
        let mut annotated = node("worker-3", "2001:db8:42:3::/64");
        annotated.metadata.annotations = Some(
            [
                (POOLS_ANNOTATION.to_string(), "gua".to_string()),
                (
                    ALLOCATED_AT_ANNOTATION.to_string(),
                    "2026-12-03T07:00:00Z".to_string(),
                ),
            ]
            .into(),
        );
        let (t, found) = whois(
            &"2001:db8:42:3::/64".parse().expect("q"),
            &[annotated],
            &pools,
            &[],
        );
        assert!(found);
        assert!(
            t.contains("Node worker-3 (uid uid-worker-3), allocated at 2026-12-03T07:00:00Z, PrefixPool gua (2001:db8:42::/48) (the Node's ipam.prefix-operator.io/pools: gua)"),
            "{t}"
        );
    }
}
