//! The text `status` prints: the pools' table and what needs a word per
//! pool (waiting and conflicted Nodes, a pool not ready, a delegation),
//! then the claims' table, then the leader.

use std::fmt::Write as _;

use super::report::{ClaimReport, Condition, LeaderReport, PoolReport, StatusReport};

const POOL_HEADER: [&str; 10] = [
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
];

const CLAIM_HEADER: [&str; 7] = [
    "CLAIM", "POOL", "PREFIX", "PURPOSE", "READY", "REASON", "CONSUMER",
];

/// The whole text of `status`.
pub fn status_text(r: &StatusReport) -> String {
    let mut rows = vec![POOL_HEADER.map(String::from).to_vec()];
    let mut details = String::new();
    for p in &r.pools {
        rows.push(pool_row(p));
        pool_details(&mut details, p);
    }
    let mut out = columns(&rows);
    out.push_str(&details);
    let claims: Vec<&ClaimReport> = r
        .pools
        .iter()
        .flat_map(|p| &p.claims)
        .chain(&r.unbound_claims)
        .collect();
    if claims.is_empty() {
        out.push_str("\nNo PrefixClaims.\n");
    } else {
        let mut rows = vec![CLAIM_HEADER.map(String::from).to_vec()];
        rows.extend(claims.into_iter().map(claim_row));
        out.push('\n');
        out.push_str(&columns(&rows));
    }
    out.push('\n');
    out.push_str(&leader_line(&r.leader));
    out
}

fn or_dash(s: Option<String>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

fn pool_row(p: &PoolReport) -> Vec<String> {
    vec![
        p.name.clone(),
        or_dash(p.family.clone()),
        or_dash(Some(p.prefixes.join(","))),
        or_dash(p.capacity.clone()),
        or_dash(p.allocated.map(|a| a.to_string())),
        or_dash(p.available.clone()),
        or_dash(p.used.clone()),
        p.waiting.to_string(),
        p.conflicts.len().to_string(),
        or_dash(p.ready.as_ref().map(|c| c.status.clone())),
    ]
}

fn pool_details(out: &mut String, p: &PoolReport) {
    let name = &p.name;
    if let Some(d) = &p.delegation {
        let phase = d.phase.as_deref().unwrap_or("no binding reported yet");
        let _ = write!(
            out,
            "{name}: delegated by DHCPv6 on {}: {phase}",
            d.interface
        );
        if d.prefixes.is_empty() {
            out.push_str(", no prefix delegated yet");
        }
        for x in &d.prefixes {
            let _ = write!(out, "; {} {}", x.prefix, x.state);
            if let Some(t) = &x.valid_until {
                let _ = write!(out, " (valid until {})", t.0);
            }
        }
        if let Some(t) = &d.renew_at {
            let _ = write!(out, "; renews at {t}");
        }
        if let Some(m) = &d.message {
            let _ = write!(out, "; last problem: {m}");
        }
        out.push('\n');
    }
    if !p.waiting_nodes.is_empty() {
        let more = p.waiting - p.waiting_nodes.len() as i64;
        let _ = write!(
            out,
            "{name}: waiting for space: {}",
            p.waiting_nodes.join(", ")
        );
        if more > 0 {
            let _ = write!(out, " and {more} more");
        }
        out.push('\n');
    }
    for c in &p.conflicts {
        let holder = match &c.claim {
            Some(claim) => format!("PrefixClaim {claim}"),
            None => format!("Node {}", c.node),
        };
        let _ = writeln!(
            out,
            "{name}: conflict: {holder} holds {}: {}",
            c.prefix, c.reason
        );
    }
    if let Some(r) = p.ready.as_ref().filter(|r| r.status != "True") {
        let _ = writeln!(out, "{name}: not ready: {}", r.message);
    }
}

fn claim_row(c: &ClaimReport) -> Vec<String> {
    let consumer = match (&c.service_cidr, c.purpose.as_str()) {
        (Some(sc), _) => format!("ServiceCIDR/{sc}"),
        (None, "LoadBalancer") => "Services".into(),
        _ => "-".into(),
    };
    let ready = c.ready.clone().unwrap_or(Condition {
        status: "-".into(),
        ..Default::default()
    });
    let mut reason = or_dash(Some(ready.reason));
    if c.deleting {
        reason.push_str(",Deleting");
    }
    vec![
        c.name.clone(),
        or_dash(c.pool.clone()),
        or_dash(c.prefix.clone()),
        c.purpose.clone(),
        ready.status,
        reason,
        consumer,
    ]
}

fn leader_line(l: &LeaderReport) -> String {
    if !l.lease_found {
        return format!(
            "Leader: none known (no Lease {}: leader election is off, or no replica has started)\n",
            l.lease
        );
    }
    let Some(holder) = &l.holder else {
        return format!("Leader: none (Lease {} is not held)\n", l.lease);
    };
    let mut out = format!("Leader: {holder} (Lease {}", l.lease);
    if let Some(t) = &l.renew_time {
        let _ = write!(out, ", renewed at {t}");
    }
    if l.expired {
        let _ = write!(
            out,
            "; expired: not renewed within its {}s, another replica may take over",
            l.lease_duration_seconds.unwrap_or_default()
        );
    }
    out.push_str(")\n");
    out
}

/// Left-aligned columns, three spaces apart, as kubectl prints them.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
