//! What a PrefixClaim state does to the picture: watch events, lists and a
//! new leader's re-list applied to the ledger, the objects cached for
//! writes, and which claims are queued (space freed, conflicts changed).

use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::{ClaimLane, ClaimList};
use crate::controller::core::Core;
use crate::controller::events::Note;
use crate::k8s::claims::{self as edge, WatchedClaim};
use crate::k8s::errors::{bounded_request as bounded, error_message};
use crate::k8s::list_watch::{self, Watched};

impl ClaimLane {
    pub(crate) fn on_claim_event(&mut self, core: &mut Core, ev: Watched<WatchedClaim>) {
        match ev {
            Watched::Failed(e) => {
                core.metrics.error("WatchPrefixClaims");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(claims = items.len(), "PrefixClaim list complete");
                self.merge_claim_list(core, &items, resource_version);
                core.synced.claims = true;
                core.after_sync();
            }
            Watched::Apply(c) => self.apply_claim(core, &c),
            Watched::Delete(c) => {
                let name = c.name_any();
                let uid = c.meta().uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(c.meta().resource_version.as_deref());
                self.forget_claim(core, &name, &uid, rv);
            }
        }
    }

    pub(super) fn forget_claim(&mut self, core: &mut Core, name: &str, uid: &str, rv: Option<u64>) {
        let held_uid = core.ledger.claim_state(name).map(|s| s.uid);
        if core.ledger.remove_claim(name, uid, rv) {
            info!(claim = name, "PrefixClaim gone; its prefix is free");
            self.after_space_freed(core);
        }
        if held_uid.is_none_or(|u| u == uid) && core.ledger.claim_state(name).is_none() {
            self.objects.remove(name);
            self.waits.remove(name);
            self.gated.remove(name);
            self.warned.remove(name);
            self.lane.forget(name);
            self.quiet_since.remove(name);
        }
    }

    pub(super) fn merge_claim_list(
        &mut self,
        core: &mut Core,
        items: &[WatchedClaim],
        resource_version: Option<u64>,
    ) {
        let snaps: Vec<_> = items.iter().map(edge::decode).collect();
        let removed = core.ledger.replace_claims(&snaps, resource_version);
        for name in &removed {
            self.objects.remove(name);
            self.waits.remove(name);
        }
        for c in items {
            self.take_claim_object(core, c);
        }
        if !removed.is_empty() {
            self.after_space_freed(core);
        }
        // Every claim is looked at again, from the state listed: one
        // waiting for the pool gate needs a check sent after the list.
        self.gated.clear();
        for name in core.ledger.claim_names() {
            self.push(&name);
        }
        core.status.mark();
    }

    /// Feeds a claim state to the ledger (and the object to the cache when
    /// the ledger took it).
    pub(super) fn apply_claim(&mut self, core: &mut Core, c: &WatchedClaim) {
        let snap = edge::decode(c);
        if let Err(e) = &c.0 {
            core.metrics.error("DecodePrefixClaim");
            warn!(claim = %snap.name, "PrefixClaim does not decode: {}", e.error);
        }
        let before = core.ledger.claim_state(&snap.name);
        let moved = core.ledger.upsert_claim(&snap);
        self.take_claim_object(core, c);
        let after = core.ledger.claim_state(&snap.name);
        if before != after {
            // A changed claim waits for a check sent after this state.
            self.gated.remove(&snap.name);
            self.push(&snap.name);
        }
        if moved {
            core.status.mark();
            core.report_new_conflicts();
            self.after_space_freed(core);
            core.wake.waiting_services = true;
        }
    }

    /// Caches the object when the ledger holds exactly its revision.
    pub(super) fn take_claim_object(&mut self, core: &mut Core, c: &WatchedClaim) {
        let Ok(obj) = &c.0 else { return };
        let name = obj.name_any();
        let rv = crate::ledger::parse_resource_version(obj.metadata.resource_version.as_deref());
        if core.ledger.claim_state(&name).is_some_and(|s| {
            Some(s.uid.as_str()) == obj.metadata.uid.as_deref() && s.resource_version == rv
        }) {
            self.objects.insert(name, obj.clone());
        }
    }

    /// Deleted claims that wait for their Services to let go look again.
    pub(crate) fn wake_deleting_claims(&mut self, core: &mut Core) {
        for name in core.ledger.claim_names() {
            if core.ledger.claim_state(&name).is_some_and(|s| s.deleting) {
                self.push(&name);
            }
        }
    }

    /// Space was freed: waiting Nodes and claims are planned again.
    pub(super) fn after_space_freed(&mut self, core: &mut Core) {
        core.wake.waiting_nodes = true;
        self.wake_waiting_claims();
        core.status.mark();
    }

    /// Claims told to wait for space are planned again.
    pub(crate) fn wake_waiting_claims(&mut self) {
        // The recorded wait stays for the status until the next plan
        // replaces it; `replan` lets that plan happen.
        let waiting: Vec<String> = self.waits.keys().cloned().collect();
        for n in waiting {
            self.replan.insert(n.clone());
            self.push(&n);
        }
    }

    /// Claims whose conflicts changed (something now covers their prefix,
    /// or no longer does): their status is written again (`Ready=False`,
    /// reason `Conflict`), a Warning names what collides, and the pools'
    /// `status.conflicts` list them. Nothing is taken from the claim.
    pub(crate) fn report_claim_conflicts(&mut self, core: &mut Core) {
        if !self.claims_ready(core) {
            return;
        }
        for (name, conflicts) in core.ledger.take_claim_conflict_changes() {
            core.status.mark();
            self.push(&name);
            if conflicts.is_empty() {
                info!(claim = %name, "the claim's prefix no longer collides");
                continue;
            }
            warn!(claim = %name, "the claim's prefix collides: {}", conflicts.join("; "));
            let claim_ref = core.claim_ref(&name);
            core.events.send(Note::warning(
                claim_ref,
                "PrefixConflict",
                "Allocate",
                format!(
                    "{}; the claim keeps its prefix (nothing is taken away) and shows Ready=False until what covers it is removed",
                    conflicts.join("; ")
                ),
            ));
        }
    }

    /// A new leader reads every claim before its first write.
    pub(crate) fn maybe_relist_claims(&mut self, core: &mut Core) {
        if !core.relist.claims || !core.is_leader() || !self.lists.is_empty() {
            return;
        }
        let api: Api<WatchedClaim> = Api::all(self.api.clone().into_client());
        self.lists
            .spawn(async move { bounded(list_watch::list_all(&api)).await });
    }

    pub(super) fn on_claim_relist(&mut self, core: &mut Core, list: ClaimList) {
        match list {
            Ok((items, rv)) => {
                if core.relist.claims {
                    let rv = crate::ledger::parse_resource_version(rv.as_deref());
                    self.merge_claim_list(core, &items, rv);
                    core.relist.claims = false;
                }
            }
            Err(e) => {
                core.request_failed(&e);
                warn!("re-listing PrefixClaims failed: {}", error_message(&e));
            }
        }
    }
}
