//! The pool check every Node write waits for (see [`super::queue`]): one
//! consistent list of every pool's revision, and a full list merged into
//! the picture when the ledger is found behind.

use std::time::Instant;

use tracing::{debug, warn};

use super::NodeLane;
use crate::controller::core::Core;
use crate::k8s::errors::{error_message, error_reason};
use crate::k8s::list_watch;
use crate::k8s::pools::{self, WatchedPool};
/// The answer to a check of the pools (see [`queue`]), sent with `mark`.
pub(crate) enum PoolCheck {
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

impl NodeLane {
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
    pub(super) fn list_pools_for(&mut self, mark: u64) {
        debug!("the picture of pools is behind the API server; listing them");
        let api = self.guarded_pools.clone();
        self.pool_checks.spawn(async move {
            PoolCheck::Full {
                mark,
                result: bounded(list_watch::list_all(&api)).await,
            }
        });
    }

    pub(super) fn on_pool_check(&mut self, core: &mut Core, c: PoolCheck) {
        match c {
            PoolCheck::Revisions {
                mark,
                result: Ok((listed, list_rv)),
            } => {
                if core.ledger.pools_current(&listed, list_rv) {
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
                core.merge_pool_list(&items, rv);
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
                core.metrics.error(error_reason(&e));
                let delay = self.pipeline.check_failed(mark, Instant::now());
                warn!(
                    "checking PrefixPools before writing failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
            }
        }
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
