//! The table of `prefix-operator status`: every pool's usage, then the
//! waiting and conflicted Nodes by pool.

use std::fmt::Write as _;

use crate::api::PrefixPool;

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
