//! The list-watch of Nodes and of PrefixPools. kube's `watcher` would do the
//! same loop, but it does not hand out the `resourceVersion` of its list,
//! and the ledger needs it: a list is merged into the picture (not swapped
//! in), and only the list's own `resourceVersion` says which states not in
//! it are older than it (see `Ledger::replace_nodes`,
//! `Ledger::replace_pools`). So this loop lists (consistent, paged), hands
//! out the list whole with its `resourceVersion`, then watches from there
//! with bookmarks, resuming after a dropped watch and listing again when the
//! server says the version is too old (410).

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What the loop hands to the reconciler.
#[derive(Debug)]
pub enum Watched<K> {
    /// Every object, from one consistent list at `resource_version`.
    Listed {
        items: Vec<K>,
        resource_version: Option<u64>,
    },
    Apply(K),
    Delete(K),
    /// Listing or watching failed; the loop retries by itself.
    Failed(String),
}

/// What the list-watch hands on, with when it had it (the reconciler
/// measures how long an input waited for its turn).
pub type Stamped<K> = (std::time::Instant, Watched<K>);

/// Sends `ev`, stamped with the time now; fails when the receiver is gone.
async fn send<K>(
    tx: &mpsc::Sender<Stamped<K>>,
    ev: Watched<K>,
) -> Result<(), mpsc::error::SendError<Stamped<K>>> {
    tx.send((std::time::Instant::now(), ev)).await
}

/// The object `name` as the API server holds it now, from a consistent list
/// of that one name: the operator may list a resource it has no `get` on.
pub async fn read_by_name<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&lp).await?.items.into_iter().next())
}

/// Objects per page of a list (the same as kube's watcher).
pub const LIST_PAGE: u32 = 500;

/// Lists every object with a consistent read (quorum, `resourceVersion=""`),
/// page by page; the pages are one snapshot, whose `resourceVersion` is
/// returned with them.
pub async fn list_all<K>(api: &Api<K>) -> Result<(Vec<K>, Option<String>), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut items = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(LIST_PAGE);
        lp.continue_token = token.take();
        let page = api.list(&lp).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => {
                let rv = page.metadata.resource_version.filter(|v| !v.is_empty());
                return Ok((items, rv));
            }
        }
    }
}

/// Server-side watch timeout, as kube's watcher uses.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A watch that says nothing (not even a bookmark) for this long is dead.
const IDLE: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 15);

/// Runs the list-watch of `what` (a plural for messages) until `tx` is
/// closed.
pub async fn run<K>(api: Api<K>, what: &'static str, tx: mpsc::Sender<Stamped<K>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        let (items, rv_text) = match list_all(&api).await {
            Ok(l) => l,
            Err(e) => {
                if send(&tx, Watched::Failed(format!("listing {what}: {e}")))
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
            let _ = send(
                &tx,
                Watched::Failed(format!("the list of {what} has no resourceVersion")),
            )
            .await;
            tokio::time::sleep(backoff.next()).await;
            continue;
        };
        let listed = Watched::Listed {
            items,
            resource_version: crate::ledger::parse_resource_version(Some(&rv)),
        };
        if send(&tx, listed).await.is_err() {
            return;
        }
        backoff.reset();
        match watch_from(&api, what, &tx, &mut rv, &mut backoff).await {
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
async fn watch_from<K>(
    api: &Api<K>,
    what: &'static str,
    tx: &mpsc::Sender<Stamped<K>>,
    rv: &mut String,
    backoff: &mut Backoff,
) -> Resume
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    // Bookmarks are on by default: they move `rv` on while nothing changes.
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    loop {
        let stream = match api.watch(&params, rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Resume::Relist,
            Err(e) => {
                if send(tx, Watched::Failed(format!("watching {what}: {e}")))
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
                    Watched::Apply(n)
                }
                Ok(WatchEvent::Deleted(n)) => {
                    advance(rv, &n);
                    Watched::Delete(n)
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    *rv = b.metadata.resource_version;
                    continue;
                }
                Ok(WatchEvent::Error(e)) if e.code == 410 => return Resume::Relist,
                Ok(WatchEvent::Error(e)) => {
                    Watched::Failed(format!("watching {what}: {}", e.message))
                }
                // An object that does not decode: skip it, keep watching.
                Err(e) => Watched::Failed(format!("watching {what}: {e}")),
            };
            if send(tx, event).await.is_err() {
                return Resume::Closed;
            }
            backoff.reset();
        }
        debug!(resource_version = %rv, "watch of {what} ended; resuming");
    }
}

fn advance<K: Resource>(rv: &mut String, o: &K) {
    match o.meta().resource_version.as_deref() {
        Some(v) if !v.is_empty() => *rv = v.to_string(),
        _ => warn!("a watch event without resourceVersion"),
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
        super::errors::backoff(self.attempt)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}
