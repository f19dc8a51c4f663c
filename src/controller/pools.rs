//! What a PrefixPool state does to the shared picture: watch events and
//! lists applied to the ledger, the status each pool holds as last seen,
//! and the Warnings about pools (invalid, overlapping, deleted with bound
//! claims). Pools changing wakes the lanes (see [`super::core::Wake`]).

use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::core::{Core, pool_ref};
use super::events::Note;
use crate::api::PrefixPoolStatus;
use crate::k8s::list_watch::Watched;
use crate::k8s::pools::{self, WatchedPool};
use crate::ledger::PoolSnapshot;

impl Core {
    pub(super) fn on_pool_event(&mut self, ev: Watched<WatchedPool>) {
        match ev {
            Watched::Failed(e) => {
                // The list-watch retries by itself. Pool events may be
                // missed meanwhile: the pool checks before every write
                // batch catch that (see `queue`).
                self.metrics.error("WatchPrefixPools");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(
                    pools = items.len(),
                    "PrefixPool list complete; merged into the picture"
                );
                self.merge_pool_list(&items, resource_version);
                self.synced.pools = true;
                self.after_sync();
            }
            Watched::Apply(p) => {
                if !self.apply_pool(&p) {
                    // Stale, our own status write coming back, or a label
                    // change.
                    return;
                }
                self.report_new_conflicts();
                self.report_pool_overlaps();
                self.wake.pools_changed();
                self.status.mark();
            }
            Watched::Delete(p) => {
                let name = p.name_any();
                let uid = p.meta().uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(p.meta().resource_version.as_deref());
                let claimed = self
                    .ledger
                    .pool_view(&name)
                    .filter(|v| v.uid == uid)
                    .map(|v| v.claims)
                    .unwrap_or_default();
                if self.ledger.remove_pool(&name, &uid, rv) {
                    self.report_claims_orphaned(&name, &uid, &claimed);
                    self.forget_pool(&name);
                    self.report_pool_overlaps();
                    self.status.mark();
                    self.wake.pools_changed();
                }
            }
        }
    }

    /// A pool was deleted while claims held prefixes of it: said on the
    /// pool and on every claim, since nothing blocks the deletion. The
    /// claims keep their prefixes (their status is the record, and the
    /// space stays taken in every pool that overlaps it).
    fn report_claims_orphaned(
        &mut self,
        pool: &str,
        uid: &str,
        claimed: &[crate::ledger::ClaimView],
    ) {
        if claimed.is_empty() {
            return;
        }
        let names: Vec<String> = claimed
            .iter()
            .map(|c| format!("{} ({})", c.claim, c.prefix))
            .collect();
        let msg = format!(
            "PrefixPool {pool} was deleted while PrefixClaim(s) {} held prefixes of it: they keep them and no Node or claim is given that space, but no pool counts them until one with those prefixes exists again; delete the claims first to free the space",
            names.join(", ")
        );
        warn!(pool, claims = %names.join(","), "PrefixPool deleted with bound claims");
        self.events.send(Note::warning(
            pool_ref(pool, Some(uid.to_string())),
            "DeletedWithClaims",
            "Delete",
            msg.clone(),
        ));
        for c in claimed {
            let r = self.claim_ref(&c.claim);
            self.events
                .send(Note::warning(r, "PoolDeleted", "Delete", msg.clone()));
        }
    }

    /// Merges a complete list of pools (from the watch's re-list or a pool
    /// check) into the picture.
    pub(super) fn merge_pool_list(&mut self, items: &[WatchedPool], resource_version: Option<u64>) {
        let decoded: Vec<_> = items.iter().map(pools::decode).collect();
        let snaps: Vec<_> = decoded.iter().map(|(s, _)| s.clone()).collect();
        for name in self.ledger.replace_pools(&snaps, resource_version) {
            self.forget_pool(&name);
        }
        for (snap, status) in decoded {
            self.take_status(&snap, status);
            self.report_pool_error(&snap.name, &snap.uid);
        }
        self.report_new_conflicts();
        self.report_pool_overlaps();
        self.wake.pools_changed();
        self.status.mark();
    }

    fn forget_pool(&mut self, name: &str) {
        self.status.forget(name);
        self.warned.forget_pool(name);
        self.metrics.forget_pool(name);
    }

    /// Warns on each pool once per set of other pools its prefixes overlap
    /// (the `Conflict` condition says it too; space held through one pool
    /// is never handed out by the other).
    fn report_pool_overlaps(&mut self) {
        for name in self.ledger.pool_names() {
            let mut others = self.ledger.pool_overlaps(&name);
            others.sort();
            if !self.warned.first_overlap(&name, &others) {
                continue;
            }
            let msg = format!(
                "prefixes overlap those of PrefixPool(s) {}; overlapping space is served by one pool at a time and never handed out twice, but which pool serves a Node there depends on the order of events: give each pool its own prefixes",
                others.join(", ")
            );
            warn!(pool = %name, overlaps = %others.join(","), "PrefixPools overlap");
            let uid = self.ledger.pool_uid(&name);
            self.events.send(Note::warning(
                pool_ref(&name, uid),
                "PoolOverlap",
                "Validate",
                msg,
            ));
        }
    }

    /// Feeds a pool to the ledger; false when nothing the picture reads
    /// changed.
    pub(super) fn apply_pool(&mut self, obj: &WatchedPool) -> bool {
        let (snap, status) = pools::decode(obj);
        if let Err(e) = &obj.0 {
            // A pool that does not even decode is reported, not fatal.
            self.metrics.error("DecodePrefixPool");
            warn!(pool = %snap.name, "PrefixPool does not decode: {}", e.error);
        }
        let changed = self.ledger.upsert_pool(&snap);
        self.take_status(&snap, status);
        if !changed {
            return false;
        }
        self.report_pool_error(&snap.name, &snap.uid);
        true
    }

    /// The status the pool holds as last seen (another replica's writes
    /// too, so that a new leader compares with what is there), when the
    /// ledger holds this very revision: a stale event's status is not what
    /// the pool holds now.
    fn take_status(&mut self, snap: &PoolSnapshot, status: Option<PrefixPoolStatus>) {
        if self
            .ledger
            .holds_pool(&snap.name, &snap.uid, snap.resource_version)
        {
            self.status.seen(&snap.name, &snap.uid, status);
        }
    }

    /// Warns once per distinct reason why pool `name` serves nothing.
    fn report_pool_error(&mut self, name: &str, uid: &str) {
        let Some(err) = self.ledger.pool_error(name).map(str::to_string) else {
            self.warned.valid(name);
            return;
        };
        if !self.warned.first_invalid(name, &err) {
            return;
        }
        warn!(pool = name, "invalid PrefixPool: {err}");
        self.events.send(Note::warning(
            pool_ref(name, Some(uid.to_string())),
            "InvalidSpec",
            "Validate",
            err,
        ));
    }
}
