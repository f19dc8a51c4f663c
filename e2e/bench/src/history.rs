//! What every Node's `spec.podCIDRs` was, as a watch saw it, per UID — and
//! the two checks of issue 10 against what the API server holds:
//! - no two Nodes hold the same or overlapping prefix ([`duplicates`]), all
//!   of them listed, not only the first few;
//! - no Node was written twice: once a UID showed podCIDRs, every later
//!   version shows the same value. The API server makes the field
//!   write-once, so a change would be a server bug; what this really checks
//!   is that a Node's first seen podCIDRs is its final one — an operator
//!   that believed a Node empty again and wrote it a second time is refused,
//!   but its first write then also stands next to the same prefix given to
//!   another Node, which [`duplicates`] finds.
//!
//! Only crates the operator's own tests have, so that
//! `tests/kubelet_traffic.rs` includes this file with `#[path]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};

#[derive(Default)]
struct Seen {
    synced: bool,
    /// UID → (name, distinct non-empty podCIDRs values in the order seen,
    /// versions seen empty after a non-empty one).
    by_uid: HashMap<String, (String, Vec<Vec<String>>, u32)>,
}

/// Records every Node version the watch delivers.
pub struct CidrHistory {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// A Node whose podCIDRs were seen to change, or to go empty again.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub node: String,
    pub uid: String,
    pub values: Vec<Vec<String>>,
    pub emptied: u32,
}

impl std::fmt::Display for Rewritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Node {} (uid {}): podCIDRs seen as {:?}, empty again {} time(s)",
            self.node, self.uid, self.values, self.emptied
        )
    }
}

impl CidrHistory {
    /// Starts the watch; returns once its first list is in (or after 60 s).
    pub async fn start(client: &Client) -> CidrHistory {
        let api: Api<Node> = Api::all(client.clone());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let cfg = watcher::Config::default().page_size(500);
            let stream = watcher(api, cfg).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(n) | Event::InitApply(n)) => record(&s, &n),
                    Ok(Event::InitDone) => lock(&s).synced = true,
                    _ => {}
                }
            }
        });
        let h = CidrHistory { seen, task };
        for _ in 0..3000 {
            if lock(&h.seen).synced {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h
    }

    /// Node UIDs seen so far.
    pub fn uids(&self) -> usize {
        lock(&self.seen).by_uid.len()
    }

    /// Node UIDs seen with podCIDRs.
    pub fn with_cidrs(&self) -> usize {
        let s = lock(&self.seen);
        s.by_uid.values().filter(|v| !v.1.is_empty()).count()
    }

    /// Every UID whose podCIDRs took more than one value, or went empty
    /// after holding one.
    pub fn rewritten(&self) -> Vec<Rewritten> {
        let s = lock(&self.seen);
        let mut out: Vec<Rewritten> = s
            .by_uid
            .iter()
            .filter(|(_, (_, values, emptied))| values.len() > 1 || *emptied > 0)
            .map(|(uid, (node, values, emptied))| Rewritten {
                node: node.clone(),
                uid: uid.clone(),
                values: values.clone(),
                emptied: *emptied,
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

impl Drop for CidrHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(seen: &Mutex<Seen>, n: &Node) {
    let (Some(name), Some(uid)) = (n.metadata.name.clone(), n.metadata.uid.clone()) else {
        return;
    };
    let cidrs = n
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default();
    let mut s = lock(seen);
    let e = s.by_uid.entry(uid).or_insert_with(|| (name, vec![], 0));
    if cidrs.is_empty() {
        if !e.1.is_empty() {
            e.2 += 1;
        }
    } else if e.1.last() != Some(&cidrs) {
        e.1.push(cidrs);
    }
}

/// Nodes an operator log shows written more than once: a second
/// `allocated` line for the same Node and pool (the API server takes a
/// write of the value a Node already holds), or a write refused as a
/// write-once violation (`may not change podCIDR`). Either means the
/// operator believed a written Node empty again — unless the first write's
/// answer was lost, which only faults of the API server cause. Sorted, one
/// entry per second write.
pub fn second_writes(log: &str) -> Vec<String> {
    let field = |l: &str, k: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(|v| v.trim_matches('"').to_string())
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for l in log.lines() {
        let Some(node) = field(l, "node=") else {
            continue;
        };
        if l.contains("write refused") && l.contains("may not change podCIDR") {
            out.push(format!("{node} (refused)"));
        } else if l.contains(": allocated ") {
            let pool = field(l, "pool=").unwrap_or_default();
            if !seen.insert((node.clone(), pool)) {
                out.push(node);
            }
        }
    }
    out.sort();
    out
}

/// Two Nodes holding the same or overlapping prefixes.
#[derive(Clone, Debug)]
pub struct Duplicate {
    pub a: (String, IpNet),
    pub b: (String, IpNet),
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.a.1 == self.b.1 {
            write!(f, "{} on Nodes {} and {}", self.a.1, self.a.0, self.b.0)
        } else {
            write!(
                f,
                "{} of Node {} overlaps {} of Node {}",
                self.a.1, self.a.0, self.b.1, self.b.0
            )
        }
    }
}

/// Every pair of Nodes whose prefixes share an address, and how many pairs
/// were compared. Each prefix is compared with every prefix after it in
/// (first address, length) order until one starts past its last address, so
/// all overlapping pairs are found, not just neighbours.
pub fn duplicates(nodes: &[Node]) -> (Vec<Duplicate>, u64) {
    let mut held: Vec<(IpNet, String)> = vec![];
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let cidrs = n.spec.as_ref().and_then(|s| s.pod_cidrs.clone());
        for c in cidrs.unwrap_or_default() {
            if let Ok(net) = c.parse::<IpNet>() {
                held.push((net.trunc(), name.clone()));
            }
        }
    }
    held.sort_by_key(|a| (a.0.network(), a.0.prefix_len()));
    let mut out = vec![];
    let mut pairs = 0u64;
    for i in 0..held.len() {
        for j in i + 1..held.len() {
            pairs += 1;
            // Sorted by first address: once j starts beyond i's range, so do
            // all later ones.
            if !held[i].0.contains(&held[j].0.network()) {
                break;
            }
            out.push(Duplicate {
                a: (held[i].1.clone(), held[i].0),
                b: (held[j].1.clone(), held[j].0),
            });
        }
    }
    (out, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidrs: Some(vec![cidr.into()]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn second_writes_are_found_in_the_log() {
        let log = "\
2026-12-02T05:04:25Z  INFO prefix_operator::controller: allocated node=a pool=p prefix=2001:db8::/64 latency_ms=3
2026-12-02T05:04:25Z  INFO prefix_operator::controller: allocated node=b pool=p prefix=2001:db8:0:1::/64 latency_ms=3
2026-12-02T05:04:25Z  INFO prefix_operator::controller: allocated node=a pool=p prefix=2001:db8::/64 latency_ms=1
2026-12-02T05:04:25Z  INFO prefix_operator::controller: write refused (Node \"b\" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid); re-reading the Node to adopt it node=b
";
        assert_eq!(second_writes(log), vec!["a", "b (refused)"]);
    }

    #[test]
    fn finds_every_duplicate_and_nested_overlap() {
        let nodes = [
            node("a", "2001:db8::/64"),
            node("b", "2001:db8:0:1::/64"),
            node("c", "2001:db8::/64"),
            node("d", "2001:db8::/48"),
            node("e", "2001:db8:1::/64"),
        ];
        let (d, pairs) = duplicates(&nodes);
        // a=c, d⊇a, d⊇b, d⊇c; e is outside d.
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(pairs >= 4);
    }
}
