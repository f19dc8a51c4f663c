//! Turns a ledger [`PoolView`] into a bounded `PrefixPoolStatus` (pure):
//! the counts, the listed allocations, conflicts, claims and hold-backs,
//! and the conditions from [`super::conditions`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::conditions::{
    condition, conflict_condition, delegation_conditions, exhausted_condition, ready_condition,
};
use crate::api::{
    Allocation, ClaimedPrefix, ConflictEntry, HeldBack, MAX_LISTED_ALLOCATIONS, MAX_LISTED_CLAIMS,
    MAX_LISTED_CONFLICTS, MAX_LISTED_HELD_BACK, PrefixPoolStatus, PrefixUsage,
};

use crate::ledger::{MAX_WAITING_NAMES, PoolView};

/// A wall-clock time as an API time stamp, to the second (status must not
/// change on every write just because of sub-second digits), rounded up.
fn to_time(t: std::time::SystemTime) -> Option<Time> {
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    // Rounded up: a restored hold-back must never end earlier than recorded.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).ok()?)
        .ok()
        .map(Time)
}

/// A count as the API's integer.
/// The share of `capacity` that is not `available`, as the status shows it:
/// whole or one decimal, never rounded to 0% or 100% when it is not.
fn used_share(capacity: u128, available: u128) -> String {
    if capacity == 0 {
        return "0%".into();
    }
    let used = capacity.saturating_sub(available);
    if used == 0 {
        return "0%".into();
    }
    if used == capacity {
        return "100%".into();
    }
    // u128 to f64 loses only digits far below the one shown.
    let pct = used as f64 * 100.0 / capacity as f64;
    if pct < 0.1 {
        return "<0.1%".into();
    }
    let text = format!("{:.1}", pct.min(99.9));
    format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
}

fn count<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The status of a pool as the ledger sees it. `prev` holds the conditions
/// last written, so that transition times survive.
pub fn build_status(view: &PoolView, prev: &[Condition], now: &Time) -> PrefixPoolStatus {
    if let Some(err) = &view.error {
        return invalid_status(view.generation, err, prev, now);
    }
    let allocated = view.allocations.len();
    let (listed, conflicts) = (listed_allocations(view), listed_conflicts(view));
    let omitted = allocated.saturating_sub(listed.len());
    let renumbering = &view.on_expired;
    let mut conditions = vec![
        ready_condition(view, prev, now),
        exhausted_condition(view, prev, now),
        conflict_condition(view, prev, now),
    ];
    if let Some(iface) = &view.delegated_on {
        conditions.extend(delegation_conditions(view, iface, renumbering, prev, now));
    }
    PrefixPoolStatus {
        observed_generation: Some(view.generation),
        family: view.family.map(|f| f.to_string()),
        scope: view.scope.clone(),
        node_prefix_length: view.node_prefix_length.map(i32::from),
        capacity: Some(view.capacity.to_string()),
        allocated: Some(count(allocated)),
        available: Some(view.available.to_string()),
        used: Some(used_share(view.capacity, view.available)),
        prefixes: prefix_usage(view),
        allocations: listed,
        allocations_omitted: (omitted > 0).then(|| count(omitted)),
        conflicts,
        held_back: held_back_list(view, now),
        retained: (view.retained > 0).then(|| count(view.retained)),
        cooling_down: (!view.held_back.is_empty()).then(|| count(view.held_back.len())),
        cooling_until: view
            .held_back
            .iter()
            .map(|(_, hb)| hb.reusable_at)
            .max()
            .and_then(to_time),
        unroutable: (view.unroutable > 0).then(|| count(view.unroutable)),
        claimed: (!view.claims.is_empty()).then(|| count(view.claims.len())),
        claims: listed_claims(view),
        claims_omitted: (view.claims.len() > MAX_LISTED_CLAIMS)
            .then(|| count(view.claims.len() - MAX_LISTED_CLAIMS)),
        waiting: (view.waiting > 0).then(|| count(view.waiting)),
        waiting_nodes: view.waiting_nodes.clone(),
        renumbering: (!renumbering.is_empty()).then(|| count(renumbering.len())),
        renumbering_nodes: renumbering
            .iter()
            .map(|r| r.node.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .take(MAX_WAITING_NAMES)
            .collect(),
        // Written by the DHCPv6 client under its own field manager; left
        // out here so this writer never owns (or clears) it.
        delegation: None,
        conditions,
    }
}

/// The first allocations, for the status's list.
fn listed_allocations(view: &PoolView) -> Vec<Allocation> {
    view.allocations
        .iter()
        .take(MAX_LISTED_ALLOCATIONS)
        .map(|(p, n)| Allocation {
            prefix: p.to_string(),
            node: n.clone(),
        })
        .collect()
}

/// The first conflicts, for the status's list.
fn listed_conflicts(view: &PoolView) -> Vec<ConflictEntry> {
    view.conflicts
        .iter()
        .take(MAX_LISTED_CONFLICTS)
        .map(|c| ConflictEntry {
            prefix: c.prefix.clone(),
            node: c.node.clone(),
            claim: c.claim.clone(),
            reason: c.reason.clone(),
        })
        .collect()
}

/// The first claims, for the status's list.
fn listed_claims(view: &PoolView) -> Vec<ClaimedPrefix> {
    view.claims
        .iter()
        .take(MAX_LISTED_CLAIMS)
        .map(|c| ClaimedPrefix {
            prefix: c.prefix.to_string(),
            claim: c.claim.clone(),
            purpose: c.purpose.clone(),
        })
        .collect()
}

/// Per prefix of the pool: capacity, allocated, retired.
fn prefix_usage(view: &PoolView) -> Vec<PrefixUsage> {
    view.prefixes
        .iter()
        .map(|p| PrefixUsage {
            prefix: p.prefix.to_string(),
            capacity: p.capacity.to_string(),
            allocated: count(p.allocated),
            retired: p.retired,
        })
        .collect()
}

/// A pool whose spec cannot be served: the conditions say why, nothing else
/// is shown.
fn invalid_status(g: i64, err: &str, prev: &[Condition], now: &Time) -> PrefixPoolStatus {
    let c = |type_: &str, message: String| {
        condition(prev, type_, false, "InvalidSpec", message, g, now)
    };
    PrefixPoolStatus {
        observed_generation: Some(g),
        conditions: vec![
            c("Ready", err.to_string()),
            c(
                "Exhausted",
                "the spec is invalid; nothing is allocated from this pool".into(),
            ),
            c("Conflict", "the spec is invalid".into()),
        ],
        ..Default::default()
    }
}

fn held_back_list(view: &PoolView, now: &Time) -> Vec<HeldBack> {
    view.held_back
        .iter()
        .take(MAX_LISTED_HELD_BACK)
        .map(|(p, hb)| HeldBack {
            prefix: p.to_string(),
            node: hb.node.clone(),
            pending_write: hb.pending_write,
            retained_until: hb.retained_until.and_then(to_time),
            reusable_at: to_time(hb.reusable_at).unwrap_or_else(|| now.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Family;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).expect("valid"))
    }

    fn view() -> PoolView {
        PoolView {
            generation: 3,
            family: Some(Family::V6),
            scope: Some("GlobalUnicast".into()),
            node_prefix_length: Some(64),
            capacity: 65536,
            available: 65534,
            allocations: vec![
                ("2001:db8::/64".parse().expect("cidr"), "a".into()),
                ("2001:db8:0:1::/64".parse().expect("cidr"), "b".into()),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn used_share_is_never_rounded_to_empty_or_full() {
        assert_eq!(used_share(0, 0), "0%");
        assert_eq!(used_share(65536, 65536), "0%");
        assert_eq!(used_share(65536, 65534), "<0.1%");
        assert_eq!(used_share(8, 5), "37.5%");
        assert_eq!(used_share(4, 2), "50%");
        assert_eq!(used_share(100_000, 1), "99.9%");
        assert_eq!(used_share(1 << 44, 0), "100%");
        assert_eq!(
            used_share(10, 20),
            "0%",
            "more free than capacity is not negative"
        );
    }

    #[test]
    fn counts_and_conditions() {
        let s = build_status(&view(), &[], &now());
        assert_eq!(s.allocated, Some(2));
        assert_eq!(s.available.as_deref(), Some("65534"));
        assert_eq!(s.observed_generation, Some(3));
        let ready = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "True");
        let ex = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Exhausted")
            .expect("Exhausted");
        assert_eq!(ex.status, "False");
    }

    #[test]
    fn allocations_are_bounded() {
        let mut v = view();
        v.allocations = (0..(MAX_LISTED_ALLOCATIONS as u32 + 10))
            .map(|i| {
                let net: ipnet::IpNet = format!("2001:db8:0:{i:x}::/64").parse().expect("cidr");
                (net, format!("node-{i}"))
            })
            .collect();
        let s = build_status(&v, &[], &now());
        assert_eq!(s.allocations.len(), MAX_LISTED_ALLOCATIONS);
        assert_eq!(s.allocations_omitted, Some(10));
        assert_eq!(s.allocated, Some(MAX_LISTED_ALLOCATIONS as i64 + 10));
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = build_status(&view(), &[], &now());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(9_000).expect("valid"));
        let second = build_status(&view(), &first.conditions, &later);
        assert_eq!(first.conditions, second.conditions);
        let mut v = view();
        v.available = 0;
        let third = build_status(&v, &second.conditions, &later);
        let ex = third
            .conditions
            .iter()
            .find(|c| c.type_ == "Exhausted")
            .expect("Exhausted");
        assert_eq!(ex.status, "True");
        assert_eq!(ex.last_transition_time, later);
    }

    #[test]
    fn invalid_spec_shows_reason() {
        let v = PoolView {
            generation: 1,
            error: Some("spec.prefixes: bad".into()),
            ..Default::default()
        };
        let s = build_status(&v, &[], &now());
        let ready = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "InvalidSpec");
        assert!(ready.message.contains("bad"));
    }
}
