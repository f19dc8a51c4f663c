//! The Node list-watch. kube's `watcher` would do the same loop, but it does
//! not hand out the `resourceVersion` of its list, and the ledger needs it:
//! a list is merged into the picture (not swapped in), and only the list's
//! own `resourceVersion` says which states not in it are older than it (see
//! `Ledger::replace_nodes`). So this loop lists (consistent, paged), hands
//! out the list whole with its `resourceVersion`, then watches from there
//! with bookmarks, resuming after a dropped watch and listing again when the
//! server says the version is too old (410).

use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::nodes::{self, NodeLite};

/// What the loop hands to the reconciler.
#[derive(Debug)]
pub enum NodeEvent {
    /// Every Node, from one consistent list at `resource_version`.
    Listed {
        nodes: Vec<NodeLite>,
        resource_version: Option<u64>,
    },
    Apply(NodeLite),
    Delete(NodeLite),
    /// Listing or watching failed; the loop retries by itself.
    Failed(String),
}

/// Server-side watch timeout, as kube's watcher uses.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A watch that says nothing (not even a bookmark) for this long is dead.
const IDLE: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 15);

/// Runs the list-watch until `tx` is closed.
pub async fn run(api: Api<NodeLite>, tx: mpsc::Sender<NodeEvent>) {
    let mut backoff = Backoff::default();
    loop {
        let (items, rv_text) = match nodes::list_all(&api).await {
            Ok(l) => l,
            Err(e) => {
                if tx
                    .send(NodeEvent::Failed(format!("listing Nodes: {e}")))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let Some(mut rv) = rv_text else {
            let _ = tx
                .send(NodeEvent::Failed(
                    "the Node list has no resourceVersion".into(),
                ))
                .await;
            tokio::time::sleep(backoff.next()).await;
            continue;
        };
        let listed = NodeEvent::Listed {
            nodes: items,
            resource_version: crate::ledger::parse_resource_version(Some(&rv)),
        };
        if tx.send(listed).await.is_err() {
            return;
        }
        backoff.reset();
        match watch_from(&api, &tx, &mut rv, &mut backoff).await {
            Resume::Relist => continue,
            Resume::Closed => return,
        }
    }
}

enum Resume {
    Relist,
    Closed,
}

/// Watches from `rv` (advanced as events and bookmarks come) until the
/// server says it is too old, or the receiver is gone.
async fn watch_from(
    api: &Api<NodeLite>,
    tx: &mpsc::Sender<NodeEvent>,
    rv: &mut String,
    backoff: &mut Backoff,
) -> Resume {
    // Bookmarks are on by default: they move `rv` on while no Node changes.
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    loop {
        let stream = match api.watch(&params, rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Resume::Relist,
            Err(e) => {
                if tx
                    .send(NodeEvent::Failed(format!("watching Nodes: {e}")))
                    .await
                    .is_err()
                {
                    return Resume::Closed;
                }
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        futures::pin_mut!(stream);
        loop {
            let next = match tokio::time::timeout(IDLE, stream.next()).await {
                Ok(Some(n)) => n,
                // Ended (the server's timeout) or silent too long: resume.
                Ok(None) | Err(_) => break,
            };
            let event = match next {
                Ok(WatchEvent::Added(n) | WatchEvent::Modified(n)) => {
                    advance(rv, &n);
                    NodeEvent::Apply(n)
                }
                Ok(WatchEvent::Deleted(n)) => {
                    advance(rv, &n);
                    NodeEvent::Delete(n)
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    *rv = b.metadata.resource_version;
                    continue;
                }
                Ok(WatchEvent::Error(e)) if e.code == 410 => return Resume::Relist,
                Ok(WatchEvent::Error(e)) => {
                    NodeEvent::Failed(format!("watching Nodes: {}", e.message))
                }
                // A Node that does not decode: skip it, keep watching.
                Err(e) => NodeEvent::Failed(format!("watching Nodes: {e}")),
            };
            if tx.send(event).await.is_err() {
                return Resume::Closed;
            }
            backoff.reset();
        }
        debug!(resource_version = %rv, "Node watch ended; resuming");
    }
}

fn advance(rv: &mut String, n: &NodeLite) {
    match n.metadata.resource_version.as_deref() {
        Some(v) if !v.is_empty() => *rv = v.to_string(),
        _ => warn!("a Node event without resourceVersion"),
    }
}

/// The reconciler's retry backoff, counting failures in a row.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        super::backoff(self.attempt)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}
