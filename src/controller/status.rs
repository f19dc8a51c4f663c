//! Turns a ledger [`PoolView`] into a bounded `PrefixPoolStatus` with
//! conditions (pure), and writes it by server-side apply to `/status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::api::{
    Allocation, ClaimedPrefix, ConflictEntry, DELEGATED_DEPRECATED, DELEGATED_EXPIRED,
    DELEGATED_PREFERRED, HeldBack, MAX_LISTED_ALLOCATIONS, MAX_LISTED_CLAIMS, MAX_LISTED_CONFLICTS,
    MAX_LISTED_HELD_BACK, PrefixPool, PrefixPoolStatus, PrefixUsage,
};

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
use crate::ledger::{MAX_WAITING_NAMES, PoolView};

/// Field manager of the status writer.
pub const STATUS_MANAGER: &str = "prefix-operator-status";

/// Condition messages are cut to this many bytes (the API allows 32 KiB).
const MAX_MESSAGE: usize = 1024;

fn cut(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

pub(super) fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status flips.
    let since = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: cut(message),
        observed_generation: Some(generation),
        last_transition_time: since,
    }
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

/// `Delegated` and `Renumbering`, for a pool fed by DHCPv6-PD.
fn delegation_conditions(
    view: &PoolView,
    iface: &str,
    on_expired: &[crate::ledger::OnExpired],
    prev: &[Condition],
    now: &Time,
) -> [Condition; 2] {
    let g = view.generation;
    let (ok, reason, message) = delegated_state(view, iface);
    let delegated = condition(prev, "Delegated", ok, reason, message, g, now);
    let (on, reason, message) = renumbering_state(on_expired);
    let renumbering = condition(prev, "Renumbering", on, reason, message, g, now);
    [delegated, renumbering]
}

/// The `Delegated` condition's status, reason and message: the delegated
/// prefixes by state, the best one first.
fn delegated_state(view: &PoolView, iface: &str) -> (bool, &'static str, String) {
    let d = view.delegation.clone().unwrap_or_default();
    let with = |p: &str| -> Vec<String> {
        d.prefixes
            .iter()
            .filter(|x| x.state == p)
            .map(|x| x.prefix.clone())
            .collect()
    };
    let (preferred, deprecated, expired) = (
        with(DELEGATED_PREFERRED),
        with(DELEGATED_DEPRECATED),
        with(DELEGATED_EXPIRED),
    );
    let problem = d
        .message
        .as_deref()
        .map(|m| format!("; last problem: {m}"))
        .unwrap_or_default();
    let server = d
        .server_id
        .as_deref()
        .map(|s| format!(" by server {s}"))
        .unwrap_or_default();
    if !preferred.is_empty() {
        (
            true,
            "Delegated",
            format!("{} delegated{server} on {iface}", preferred.join(", ")),
        )
    } else if !deprecated.is_empty() {
        (
            false,
            "Deprecated",
            format!(
                "{} past the preferred lifetime with no renewal on {iface}: Nodes keep their prefixes, new Nodes wait{problem}",
                deprecated.join(", ")
            ),
        )
    } else if !expired.is_empty() {
        (
            false,
            "Expired",
            format!(
                "the valid lifetime of {} ended with no Reply from a DHCPv6 server on {iface}: nothing is handed out from it, Nodes keep their podCIDRs{problem}",
                expired.join(", ")
            ),
        )
    } else {
        let phase = if d.phase.is_empty() {
            "not started"
        } else {
            d.phase.as_str()
        };
        (
            false,
            "WaitingForDelegation",
            format!(
                "no DHCPv6 server has delegated a prefix on {iface} yet (client {phase}){problem}"
            ),
        )
    }
}

/// The `Renumbering` condition's status, reason and message: the Nodes
/// still on expired delegated prefixes.
fn renumbering_state(on_expired: &[crate::ledger::OnExpired]) -> (bool, &'static str, String) {
    if on_expired.is_empty() {
        return (
            false,
            "NoNodesOnExpiredPrefixes",
            "no Node holds a prefix of an expired delegated prefix".into(),
        );
    }
    let blocks: std::collections::BTreeSet<String> =
        on_expired.iter().map(|r| r.block.to_string()).collect();
    let nodes: std::collections::BTreeSet<&str> =
        on_expired.iter().map(|r| r.node.as_str()).collect();
    let listed: Vec<&str> = nodes.iter().copied().take(MAX_WAITING_NAMES).collect();
    let more = if nodes.len() > listed.len() {
        ", ..."
    } else {
        ""
    };
    (
        true,
        "NodesOnExpiredPrefixes",
        format!(
            "{} Node(s) hold prefixes of expired delegated prefix(es) {}, which no longer route to the cluster: {}{more}; drain and re-create each (podCIDRs are write-once) to give it a prefix of the current delegation",
            nodes.len(),
            blocks.into_iter().collect::<Vec<_>>().join(", "),
            listed.join(", "),
        ),
    )
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

fn ready_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
    let allocated = view.allocations.len();
    let retired: Vec<String> = view
        .prefixes
        .iter()
        .filter(|p| p.retired)
        .map(|p| p.prefix.to_string())
        .collect();
    let claimed = if view.claims.is_empty() {
        String::new()
    } else {
        format!(", {} prefix(es) claimed", view.claims.len())
    };
    let (reason, message) = if retired.is_empty() {
        (
            "Serving",
            format!("{allocated} node prefix(es) allocated{claimed}"),
        )
    } else {
        (
            "ServingWithRetiredPrefixes",
            format!(
                "{allocated} node prefix(es) allocated; prefix(es) {} were removed from spec: their allocations stay (podCIDRs are immutable) but give no new ones",
                retired.join(", ")
            ),
        )
    };
    condition(prev, "Ready", true, reason, message, view.generation, now)
}

fn exhausted_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
    let exhausted = view.available == 0 || view.waiting > 0;
    let (reason, message) = if exhausted {
        (
            "NoFreePrefix",
            format!(
                "{} of {} node prefixes free; {} Node(s) wait for a prefix. Add a prefix to spec.prefixes (or free reserved ranges) to serve them",
                view.available, view.capacity, view.waiting
            ),
        )
    } else {
        (
            "HasFreePrefixes",
            format!("{} of {} node prefixes free", view.available, view.capacity),
        )
    };
    condition(
        prev,
        "Exhausted",
        exhausted,
        reason,
        message,
        view.generation,
        now,
    )
}

fn conflict_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
    let mut msgs = vec![];
    if !view.overlapping_pools.is_empty() {
        msgs.push(format!(
            "prefixes overlap PrefixPool(s) {}; space held in one is never handed out by the other, but give each pool its own blocks",
            view.overlapping_pools.join(", ")
        ));
    }
    let nodes: std::collections::BTreeSet<&str> = view
        .conflicts
        .iter()
        .filter(|c| c.claim.is_none())
        .map(|c| c.node.as_str())
        .collect();
    let claims: std::collections::BTreeSet<&str> = view
        .conflicts
        .iter()
        .filter_map(|c| c.claim.as_deref())
        .collect();
    if !nodes.is_empty() {
        msgs.push(format!(
            "{} Node(s) hold colliding podCIDRs (see status.conflicts); they are left as they are and their space is never handed out. Fix by deleting and re-registering the Node",
            nodes.len()
        ));
    }
    if !claims.is_empty() {
        msgs.push(format!(
            "{} PrefixClaim(s) hold colliding prefixes (see status.conflicts); they keep them (nothing is taken away) and are shown Ready=False. Fix by removing what covers them, or deleting and re-creating the claim",
            claims.len()
        ));
    }
    let reason = match (
        view.overlapping_pools.is_empty(),
        nodes.is_empty(),
        claims.is_empty(),
    ) {
        (true, true, true) => "NoConflict",
        (false, true, true) => "PoolsOverlap",
        (true, false, _) => "NodesCollide",
        (true, true, false) => "ClaimsCollide",
        (false, false, _) => "PoolsOverlapAndNodesCollide",
        (false, true, false) => "PoolsOverlapAndClaimsCollide",
    };
    let message = if msgs.is_empty() {
        "no overlapping pools, colliding Nodes or colliding claims".into()
    } else {
        msgs.join("; ")
    };
    condition(
        prev,
        "Conflict",
        !msgs.is_empty(),
        reason,
        message,
        view.generation,
        now,
    )
}

/// A status to write: to the pool object `uid` named `pool`.
#[derive(Debug, Clone)]
pub struct Due {
    pub pool: String,
    pub uid: String,
    pub status: PrefixPoolStatus,
}

/// Writes a due status to its pool by server-side apply.
///
/// There is no precondition on the UID: the API server ignores
/// `metadata.uid` in an apply to the status subresource (seen with
/// kube-apiserver 1.36). A status computed for a pool deleted and re-created
/// under its name in between lands on the new object; the writer then still
/// finds the new object's status due (it keys what pools hold by UID) and
/// corrects it at the next flush.
pub async fn apply_status(api: &Api<PrefixPool>, due: &Due) -> Result<PrefixPool, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "ipam.prefix-operator.io/v1alpha1",
        "kind": "PrefixPool",
        "metadata": { "name": due.pool },
        "status": due.status,
    });
    api.patch_status(
        &due.pool,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Family;

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
