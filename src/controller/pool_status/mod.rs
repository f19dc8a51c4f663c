//! The PrefixPool statuses: what each says ([`build`], [`conditions`],
//! pure), which are due ([`writer`], pure), and their writes, at most one
//! per pool in flight, run beside the loop.

mod build;
pub(crate) mod conditions;
pub(crate) mod writer;

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use tokio::task::{JoinError, JoinSet};
use tracing::warn;

use super::core::Core;
use super::events::Note;
use crate::api::PrefixPool;
use crate::k8s::errors::error_message;
pub use writer::{Due, STATUS_MANAGER, apply_status};

/// A status write's answer: the status it carried, and the stored pool.
pub(crate) type Written = Result<(Due, Result<PrefixPool, kube::Error>), JoinError>;

/// The status writes in flight, and what was warned about already.
pub(crate) struct PoolStatuses {
    api: Api<PrefixPool>,
    writes: JoinSet<(Due, Result<PrefixPool, kube::Error>)>,
    /// Nodes warned about a podCIDR in an expired delegated prefix.
    renumber_warned: HashSet<(String, ipnet::IpNet)>,
}

impl PoolStatuses {
    pub(crate) fn new(client: &Client) -> Self {
        PoolStatuses {
            api: Api::all(client.clone()),
            writes: JoinSet::new(),
            renumber_warned: HashSet::new(),
        }
    }

    /// The next write's answer (pending while none is in flight).
    pub(crate) async fn answer(&mut self) -> Written {
        match self.writes.join_next().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// Writes the status of every pool whose view changed, at most one
    /// write per pool in flight, and publishes the pool gauges.
    pub(crate) fn flush(&mut self, core: &mut Core) {
        if !core.status.is_dirty() || !core.synced() || !core.is_leader() {
            return;
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let views = core.ledger.pool_views();
        for (name, view) in &views {
            core.metrics.publish_pool(name, view);
            self.warn_renumbering(core, name, view);
        }
        for due in core.status.due(&views, &now) {
            core.metrics.status_writes.inc();
            let api = self.api.clone();
            self.writes.spawn(async move {
                let r = tokio::time::timeout(Duration::from_secs(10), apply_status(&api, &due))
                    .await
                    .unwrap_or_else(|_| Err(kube::Error::Service("status write timed out".into())));
                (due, r)
            });
        }
    }

    pub(crate) fn on_written(&mut self, core: &mut Core, written: Written) {
        let Ok((due, result)) = written else { return };
        let pool = due.pool.clone();
        match result {
            Ok(stored) => {
                core.status.written(due);
                // The stored object is the latest state of the pool: taking
                // it in keeps the pool checks from finding the ledger behind.
                core.apply_pool(&kube::core::DeserializeGuard(Ok(stored)));
            }
            Err(e) => {
                core.request_failed(&e);
                core.metrics.status_write_errors.inc();
                warn!(%pool, "status write failed: {}", error_message(&e));
                core.status.failed(&pool);
            }
        }
    }

    /// A Warning Event on each Node of a delegated pool whose podCIDR lies
    /// in an expired delegated prefix, once per Node and prefix (the pool's
    /// `Renumbering` condition lists them all).
    fn warn_renumbering(&mut self, core: &Core, pool: &str, view: &crate::ledger::PoolView) {
        for r in &view.on_expired {
            if !self.renumber_warned.insert((r.node.clone(), r.prefix)) {
                continue;
            }
            let until = r
                .valid_until
                .as_ref()
                .map(|t| format!(" at {}", t.0))
                .unwrap_or_default();
            let msg = format!(
                "podCIDR {} lies in {}, delegated to PrefixPool {pool} by DHCPv6, whose valid lifetime ended{until}: that space no longer routes to the cluster. podCIDRs are write-once: drain this Node, delete it and let it register again to get a prefix of the current delegation",
                r.prefix, r.block
            );
            core.events.send(Note::warning(
                core.node_ref(&r.node),
                "DelegatedPrefixExpired",
                "Renumber",
                msg,
            ));
        }
    }
}
