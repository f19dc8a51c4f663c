//! Invariant (h): no Node is written with one family while a pool of the
//! other family selected it. From the history: each Node UID's first
//! podCIDRs write (its resourceVersion and the labels it carried); if it
//! holds one family, no pool of the other family whose selector matched
//! those labels may have been in effect at that revision, nor have stopped
//! selecting them (deleted, or edited away) less than [`GRACE`] before it.
//! Pool versions are ordered by revision (the run writes every pool, and
//! its answers carry the revision), the grace by the instants the history
//! recorded.

use std::time::{Duration, Instant};

use super::history::{PoolRec, Record};
use super::model::{Labels, family, nets, selects};

/// The operator holds a Node for about 10 s after the last pool of a family
/// stopped selecting it; a second of it is left for the two sightings
/// (the pool's end, the Node's write) to lag differently.
pub const GRACE: Duration = Duration::from_secs(9);

/// (h) for every Node UID the operator wrote.
pub fn first_writes(rec: &Record) -> Vec<String> {
    let mut out = vec![];
    for (uid, n) in &rec.nodes {
        if n.is_hand() {
            continue;
        }
        let (Some((cidrs, seen)), Some((rv, labels))) = (&n.cidrs, &n.write) else {
            continue;
        };
        let fams: Vec<u8> = nets(cidrs).iter().map(family).collect();
        if fams.len() != 1 {
            continue;
        }
        // In the order the pools were made, so a Node reports the same pool
        // at every check.
        let mut pools: Vec<&PoolRec> = rec.pools.values().collect();
        pools.sort_by_key(|p| p.versions.first().map(|v| v.from));
        for p in pools {
            let fam = p
                .versions
                .iter()
                .find_map(|v| nets(&v.spec.prefixes).first().map(family));
            if fam.is_none_or(|f| f == fams[0]) {
                continue;
            }
            if let Some(why) = selected_near(p, labels, *rv, *seen) {
                out.push(format!(
                    "(h) Node {} uid {uid}: first written {cidrs:?} (one family) at rv {rv}, but pool {} of the other family {why}",
                    n.name, p.name
                ));
                // One finding per Node (a pool re-created has two records).
                break;
            }
        }
    }
    out
}

/// When version `i` of `p` stopped being in effect: (revision if known,
/// instant), None while it still is.
fn end_of(p: &PoolRec, i: usize) -> Option<(Option<u64>, Instant)> {
    match p.versions.get(i + 1) {
        Some(v) => Some(((v.rv != 0).then_some(v.rv), v.from)),
        None => p.gone.map(|g| (p.gone_rv, g)),
    }
}

/// Why `p` counts against a one-family write at revision `rv` (first seen
/// at `seen`) of a Node with `labels`; None when it does not.
fn selected_near(p: &PoolRec, labels: &Labels, rv: u64, seen: Instant) -> Option<String> {
    for (i, v) in p.versions.iter().enumerate() {
        if v.rv == 0 || v.rv > rv || !selects(v.spec.node_selector.as_ref(), labels) {
            continue;
        }
        // A later version that still selects the Node is judged on its own.
        let next_selects = p
            .versions
            .get(i + 1)
            .is_some_and(|n| selects(n.spec.node_selector.as_ref(), labels));
        match end_of(p, i) {
            None => return Some(format!("selected it from rv {} on", v.rv)),
            Some((Some(end), _)) if end > rv => {
                return Some(format!("selected it from rv {} to rv {end}", v.rv));
            }
            Some((None, end)) if end >= seen => {
                return Some("selected it until after the write was seen".to_string());
            }
            Some((_, end)) if !next_selects && seen.saturating_duration_since(end) < GRACE => {
                return Some(format!(
                    "stopped selecting it only {:.1} s before the write was seen",
                    seen.saturating_duration_since(end).as_secs_f64()
                ));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prefix_operator::api::{PrefixPool, PrefixPoolSpec};

    fn pool(rv: u64, sel: Option<(&str, &str)>) -> PrefixPool {
        let mut p = PrefixPool::new(
            "q0",
            PrefixPoolSpec {
                prefixes: vec!["10.16.0.0/22".into()],
                node_prefix_length: Some(24),
                node_selector: sel.map(|(k, v)| super::super::mix::sel_labels(k, v)),
                ..Default::default()
            },
        );
        p.metadata.uid = Some("u1".into());
        p.metadata.resource_version = Some(rv.to_string());
        p
    }

    fn dual() -> Labels {
        [("stack".to_string(), "dual".to_string())].into()
    }

    #[test]
    fn a_pool_in_effect_at_the_write_counts_by_revision() {
        let t0 = Instant::now();
        let mut r = Record::default();
        r.observe_pool(&pool(10, Some(("stack", "dual"))), t0);
        let p = &r.pools["u1"];
        assert!(selected_near(p, &dual(), 20, t0).is_some());
        assert!(selected_near(p, &dual(), 9, t0).is_none());
        assert!(selected_near(p, &Labels::new(), 20, t0).is_none());
    }

    #[test]
    fn a_deleted_or_reselected_pool_counts_for_the_grace() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut r = Record::default();
        r.observe_pool(&pool(10, Some(("stack", "dual"))), t0);
        r.pool_gone("u1", 15, s(1));
        let p = &r.pools["u1"];
        assert!(selected_near(p, &dual(), 14, s(1)).is_some());
        assert!(selected_near(p, &dual(), 20, s(4)).is_some());
        assert!(selected_near(p, &dual(), 20, s(12)).is_none());
        let mut r = Record::default();
        r.observe_pool(&pool(10, Some(("stack", "dual"))), t0);
        r.observe_pool(&pool(15, Some(("zone", "x"))), s(1));
        let p = &r.pools["u1"];
        assert!(selected_near(p, &dual(), 20, s(3)).is_some());
        assert!(selected_near(p, &dual(), 20, s(11)).is_none());
    }
}
