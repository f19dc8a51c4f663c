//! The conditions of a pool's status (pure): Ready, Exhausted, Conflict,
//! and for a delegated pool Delegated and Renumbering. A condition's
//! transition time moves only when its status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{DELEGATED_DEPRECATED, DELEGATED_EXPIRED, DELEGATED_PREFERRED};
use crate::ledger::{MAX_WAITING_NAMES, PoolView};

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

pub(crate) fn condition(
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

/// `Delegated` and `Renumbering`, for a pool fed by DHCPv6-PD.
pub(super) fn delegation_conditions(
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

pub(super) fn ready_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
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

pub(super) fn exhausted_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
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

pub(super) fn conflict_condition(view: &PoolView, prev: &[Condition], now: &Time) -> Condition {
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
