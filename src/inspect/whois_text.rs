//! The text `whois` prints: one line per holder, or one line saying nothing
//! holds the query and which pool's space it lies in.

use std::fmt::Write as _;

use super::cluster::spaces_text;
use super::report::{ClaimHold, Holder, NodeHold, ServiceCidrHold, ServiceHold, WhoisReport};
use crate::k8s::nodes::POOLS_ANNOTATION;

/// One line per holder, or the line of a free address.
pub fn whois_text(r: &WhoisReport) -> String {
    let mut out = String::new();
    for h in &r.holders {
        match h {
            Holder::Node(n) => node_line(&mut out, n),
            Holder::PrefixClaim(c) => claim_line(&mut out, c),
            Holder::ServiceCIDR(s) => service_cidr_line(&mut out, s),
            Holder::Service(s) => service_line(&mut out, s),
        }
        out.push('\n');
    }
    if !r.found {
        let _ = write!(
            out,
            "{}: held by nobody (no Node, PrefixClaim, ServiceCIDR or Service)",
            r.query
        );
        if r.pools.is_empty() {
            out.push_str(", in no PrefixPool's prefixes");
        } else {
            let _ = write!(out, "; in PrefixPool {}", spaces_text(&r.pools));
            if r.reserved {
                out.push_str(" (a reserved range)");
            }
        }
        out.push('\n');
    }
    out
}

fn node_line(out: &mut String, n: &NodeHold) {
    let _ = write!(out, "{}: Node {}", n.prefix, n.node);
    if let Some(uid) = &n.uid {
        let _ = write!(out, " (uid {uid})");
    }
    match &n.allocated_at {
        Some(t) => {
            let _ = write!(out, ", allocated at {t}");
        }
        None => out.push_str(
            ", allocation time unknown (no ipam.prefix-operator.io/allocated-at annotation and no PrefixAllocated Event: written by someone else, or by an older operator with --allocation-events=false or longer ago than the Event TTL)",
        ),
    }
    pools_part(out, &n.pools);
    if let Some(v) = &n.pools_annotation {
        let _ = write!(out, " (the Node's {POOLS_ANNOTATION}: {v})");
    }
}

fn pools_part(out: &mut String, pools: &[super::report::PoolSpace]) {
    if pools.is_empty() {
        out.push_str(", in no PrefixPool's prefixes");
    } else {
        let _ = write!(out, ", PrefixPool {}", spaces_text(pools));
    }
}

fn claim_line(out: &mut String, c: &ClaimHold) {
    let _ = write!(out, "{}: PrefixClaim {} ({}", c.prefix, c.claim, c.purpose);
    match &c.ready {
        Some(r) if r.reason.is_empty() => {
            let _ = write!(out, ", Ready {}", r.status);
        }
        Some(r) => {
            let _ = write!(out, ", Ready {} {}", r.status, r.reason);
        }
        None => out.push_str(", not reported ready yet"),
    }
    out.push(')');
    pools_part(out, &c.pools);
    if let Some(sc) = &c.service_cidr {
        let _ = write!(out, ", ServiceCIDR {sc}");
    }
}

fn service_cidr_line(out: &mut String, s: &ServiceCidrHold) {
    let _ = write!(
        out,
        "{}: ServiceCIDR {} (made by no PrefixClaim)",
        s.prefix, s.service_cidr
    );
}

fn service_line(out: &mut String, s: &ServiceHold) {
    let _ = write!(out, "{}: Service {}, {}", s.address, s.service, s.role);
    if s.role == "LoadBalancer" {
        out.push_str(" address");
        match &s.load_balancer_class {
            Some(class) => {
                let _ = write!(out, " (class {class})");
            }
            None => out.push_str(" (no class)"),
        }
    }
    match (&s.claim, &s.claim_prefix) {
        (Some(c), Some(p)) => {
            let _ = write!(out, ", from PrefixClaim {c} ({p})");
        }
        _ => out.push_str(", in no PrefixClaim's prefix"),
    }
    if let Some(sc) = &s.service_cidr {
        let _ = write!(out, ", ServiceCIDR {sc}");
    }
}
