//! Invariant (i), checked once the run is quiet: every conflict is
//! reported on the claim. A bound claim (not being deleted) whose prefix
//! overlaps a Node's podCIDRs (whoever wrote them), another claim's prefix
//! or a reserved range of any pool shows `Ready=False`, reason `Conflict`.

use super::check::{Snapshot, view};
use super::check_svc::bound;
use super::model::{nets, overlap};

pub fn conflicts_reported(s: &Snapshot) -> Vec<String> {
    let claims = bound(s);
    let mut out = vec![];
    for c in claims.iter().filter(|c| !c.deleting) {
        let mut with: Vec<String> = vec![];
        for n in s.nodes.iter().map(view) {
            for x in nets(&n.cidrs).iter().filter(|x| overlap(x, &c.prefix)) {
                with.push(format!("Node {} {x}", n.name));
            }
        }
        for o in claims.iter().filter(|o| o.uid != c.uid) {
            if overlap(&o.prefix, &c.prefix) {
                with.push(format!("claim {} {}", o.name, o.prefix));
            }
        }
        for p in &s.pools {
            for r in nets(&p.spec.reserved)
                .iter()
                .filter(|r| overlap(r, &c.prefix))
            {
                let name = p.metadata.name.as_deref().unwrap_or("");
                with.push(format!("reserved {r} of pool {name}"));
            }
        }
        if with.is_empty() {
            continue;
        }
        let ready = c
            .claim
            .status
            .as_ref()
            .and_then(|st| st.conditions.iter().find(|x| x.type_ == "Ready"))
            .map(|r| (r.status.as_str(), r.reason.as_str()));
        if ready != Some(("False", "Conflict")) {
            out.push(format!(
                "(i) claim {} {} overlaps {} but shows Ready {:?}, not False/Conflict",
                c.name,
                c.prefix,
                with.join(", "),
                ready
            ));
        }
    }
    out
}
