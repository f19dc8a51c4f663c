//! The checks of the pools the [`PoolGate`](super::pool_gate::PoolGate)
//! asks for, sent off the loop: one consistent list of every pool's
//! revision, and a full list merged into the picture when the ledger is
//! found behind. A check that passes frees every Node and claim stamped
//! before it was sent.

use std::time::Instant;

use kube::{Api, Client};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, warn};

use super::core::Core;
use crate::api::PrefixPool;
use crate::k8s::errors::error_message;
use crate::k8s::list_watch;
use crate::k8s::pools::{self, WatchedPool};

/// The answer to a check of the pools, sent with `mark`.
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

/// The checks in flight.
pub(crate) struct PoolChecks {
    pools_api: Api<PrefixPool>,
    guarded_pools: Api<WatchedPool>,
    tasks: JoinSet<PoolCheck>,
}

impl PoolChecks {
    pub(crate) fn new(client: &Client) -> Self {
        PoolChecks {
            pools_api: Api::all(client.clone()),
            guarded_pools: Api::all(client.clone()),
            tasks: JoinSet::new(),
        }
    }

    /// The pools as the watch reads them (the loop's pool watch uses it).
    pub(crate) fn pools_api(&self) -> Api<WatchedPool> {
        self.guarded_pools.clone()
    }

    /// Sends the check the gate asks for, if any (the end of a turn, after
    /// every lane said whether it waits). One list of every pool's
    /// metadata, not a read of each pool the picture knows, so that a pool
    /// created (or re-created) since the picture was taken is seen too: a
    /// dual-stack Node written without a family that a new pool serves
    /// could never get it.
    pub(crate) fn dispatch(&mut self, core: &mut Core) {
        let Some(mark) = core.gate.start_check(Instant::now()) else {
            return;
        };
        let api = self.pools_api.clone();
        self.tasks.spawn(async move {
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
        self.tasks.spawn(async move {
            PoolCheck::Full {
                mark,
                result: bounded(list_watch::list_all(&api)).await,
            }
        });
    }

    /// The next answer (pending while none is in flight).
    pub(crate) async fn answer(&mut self) -> Result<PoolCheck, JoinError> {
        match self.tasks.join_next().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn on_answer(&mut self, core: &mut Core, answer: Result<PoolCheck, JoinError>) {
        let c = match answer {
            Ok(c) => c,
            Err(e) => {
                let delay = core.gate.check_lost(Instant::now());
                warn!("pool check task failed, checking again in {delay:?}: {e}");
                return;
            }
        };
        match c {
            PoolCheck::Revisions {
                mark,
                result: Ok((listed, list_rv)),
            } => {
                if core.ledger.pools_current(&listed, list_rv) {
                    passed(core, mark);
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
                passed(core, mark);
            }
            PoolCheck::Revisions {
                mark,
                result: Err(e),
            }
            | PoolCheck::Full {
                mark,
                result: Err(e),
            } => {
                core.request_failed(&e);
                let delay = core.gate.check_failed(mark, Instant::now());
                warn!(
                    "checking PrefixPools before planning failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
            }
        }
    }
}

/// A check passed: claims that wait for it look again (the Node lane
/// looks at its queue every turn).
fn passed(core: &mut Core, mark: u64) {
    if core.gate.check_passed(mark) {
        core.wake.pools_checked = true;
    }
}

/// How long a pool check may take: every plan waits for it, so a request
/// stuck on a dead connection must not stall them all.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    crate::k8s::errors::bounded(CHECK_TIMEOUT, f).await
}
