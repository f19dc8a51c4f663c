//! What `prefix-operator whois` prints: which Node holds an address or a
//! prefix, since when and from which pool; else which pool's space it lies
//! in.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;

use crate::api::PrefixPool;
use crate::k8s::nodes::{ALLOCATED_AT_ANNOTATION, POOLS_ANNOTATION};

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
