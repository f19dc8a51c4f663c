//! A watch that records when each Node's podCIDRs were first seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::{Created, poll};

#[derive(Default)]
struct TrackState {
    synced: bool,
    /// Node → when its podCIDRs were first seen, and what they were.
    allocated: HashMap<String, (Instant, Vec<String>)>,
}

/// Watches every Node and records when each one's podCIDRs were first seen.
pub struct Tracker {
    state: Arc<Mutex<TrackState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Starts the watch and waits for its initial list.
    pub async fn start(client: &Client) -> Result<Tracker> {
        let api: Api<Node> = Api::all(client.clone());
        let state = Arc::new(Mutex::new(TrackState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default().page_size(5000)).default_backoff();
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let Ok(ev) = ev else { continue };
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    Event::Apply(n) | Event::InitApply(n) => {
                        let cidrs = n.spec.and_then(|s| s.pod_cidrs).unwrap_or_default();
                        if let Some(name) = n.metadata.name
                            && !cidrs.is_empty()
                        {
                            s.allocated.entry(name).or_insert((now, cidrs));
                        }
                    }
                    Event::InitDone => s.synced = true,
                    Event::Init | Event::Delete(_) => {}
                }
            }
        });
        let t = Tracker { state, task };
        poll(
            "the Node watch to list",
            Duration::from_secs(60),
            || async { t.lock().synced.then_some(()) },
        )
        .await?;
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nodes seen with podCIDRs.
    pub fn count(&self) -> usize {
        self.lock().allocated.len()
    }

    /// When `name`'s podCIDRs were first seen.
    pub fn allocated_at(&self, name: &str) -> Option<Instant> {
        self.lock().allocated.get(name).map(|a| a.0)
    }

    /// How many of `names` have been seen with podCIDRs.
    pub fn count_of(&self, names: &[String]) -> usize {
        let s = self.lock();
        names
            .iter()
            .filter(|n| s.allocated.contains_key(*n))
            .count()
    }

    /// Waits until every one of `names` has podCIDRs; returns the latest
    /// first-seen time among them.
    pub async fn wait_all(&self, names: &[String], timeout: Duration) -> Result<Instant> {
        let mut pending: Vec<&String> = names.iter().collect();
        let deadline = Instant::now() + timeout;
        loop {
            {
                let s = self.lock();
                pending.retain(|n| !s.allocated.contains_key(*n));
                if pending.is_empty() {
                    return names
                        .iter()
                        .filter_map(|n| s.allocated.get(n).map(|a| a.0))
                        .max()
                        .context("no names");
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?}: {} of {} Nodes still without podCIDRs (first: {:?})",
                    pending.len(),
                    names.len(),
                    pending.iter().take(5).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

use kube::runtime::watcher::watcher;

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-Node latency, create answered → podCIDRs first seen, in seconds.
pub fn latencies(tracker: &Tracker, created: &[Created]) -> Vec<f64> {
    created
        .iter()
        .filter_map(|c| {
            let seen = tracker.allocated_at(&c.name)?;
            Some(seen.saturating_duration_since(c.at).as_secs_f64())
        })
        .collect()
}
