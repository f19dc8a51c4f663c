//! What a PrefixPool state does to the picture, and the pool checks every
//! Node write waits for (see [`super::queue`]).

use std::time::Instant;

use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::events::Note;
use super::reconciler::Reconciler;
use crate::api::{PrefixPool, PrefixPoolStatus};
use crate::k8s::errors::{error_message, error_reason};
use crate::k8s::list_watch::{self, Watched};
use crate::k8s::pools::{self, WatchedPool};
use crate::ledger::PoolSnapshot;

/// The answer to a check of the pools (see [`queue`]), sent with `mark`.
pub(super) enum PoolCheck {
    /// Every pool's revision, from one consistent list of metadata.
    Revisions {
        mark: u64,
        result: Result<pools::Revisions, kube::Error>,
    },
    /// The ledger was behind: every pool, from one consistent list.
    Full {
        mark: u64,
        result: Result<(Vec<WatchedPool>, Option<String>), kube::Error>,
    },
}

impl Reconciler {
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
                self.pools_synced = true;
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
                self.enqueue_all_unallocated();
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
                    self.enqueue_all_unallocated();
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
        self.enqueue_all_unallocated();
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

    /// Sends a check of the pools that serves every Node queued so far:
    /// one consistent list of every pool's metadata. A list, not a read of
    /// each pool the picture knows, so that a pool created (or re-created)
    /// since the picture was taken is seen too: a dual-stack Node written
    /// without a family that a new pool serves could never get it.
    pub(super) fn start_pool_check(&mut self, mark: u64) {
        let api = self.pools_api.clone();
        self.pool_checks.spawn(async move {
            PoolCheck::Revisions {
                mark,
                result: bounded(pools::list_revisions(&api)).await,
            }
        });
    }

    /// Reads every pool whole and merges the list: the check with `mark`
    /// found the picture behind.
    fn list_pools_for(&mut self, mark: u64) {
        debug!("the picture of pools is behind the API server; listing them");
        let api = self.guarded_pools.clone();
        self.pool_checks.spawn(async move {
            PoolCheck::Full {
                mark,
                result: bounded(list_watch::list_all(&api)).await,
            }
        });
    }

    pub(super) fn on_pool_check(&mut self, c: PoolCheck) {
        match c {
            PoolCheck::Revisions {
                mark,
                result: Ok((listed, list_rv)),
            } => {
                if self.ledger.pools_current(&listed, list_rv) {
                    self.pipeline.check_passed(mark);
                } else {
                    self.list_pools_for(mark);
                }
            }
            PoolCheck::Full {
                mark,
                result: Ok((items, list_rv)),
            } => {
                let rv = crate::ledger::parse_resource_version(list_rv.as_deref());
                self.merge_pool_list(&items, rv);
                self.pipeline.check_passed(mark);
            }
            PoolCheck::Revisions {
                mark,
                result: Err(e),
            }
            | PoolCheck::Full {
                mark,
                result: Err(e),
            } => {
                self.metrics.error(error_reason(&e));
                let delay = self.pipeline.check_failed(mark, Instant::now());
                warn!(
                    "checking PrefixPools before writing failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
            }
        }
    }
}

fn pool_ref(name: &str, uid: Option<String>) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(PrefixPool::api_version(&()).into_owned()),
        kind: Some(PrefixPool::kind(&()).into_owned()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

/// How long a pool check may take: every Node write waits for it, so a
/// request stuck on a dead connection must not stall them all.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    crate::k8s::errors::bounded(CHECK_TIMEOUT, f).await
}
