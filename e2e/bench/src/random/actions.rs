//! The run's own API calls: Nodes and PrefixPools created, changed and
//! deleted, and podCIDRs written by hand as another writer would. Each call
//! retries while the control plane recovers from a fault, and what the API
//! server answers goes straight into the history (no watch lag).

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};

use super::history::{HAND_MANAGER, History, pod_cidrs_writer};
use super::model::Labels;

/// Retries `f` for up to 60 s while it fails with something other than an
/// API answer below 500 (those are returned: the caller decides).
pub(crate) async fn retry<T, F, Fut>(mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Err(kube::Error::Api(s)) if s.code < 500 => return Err(kube::Error::Api(s)),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            r => return r,
        }
    }
}

pub(crate) fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub struct Actions {
    nodes: Api<Node>,
    pools: Api<PrefixPool>,
    hist: History,
}

impl Actions {
    pub fn new(client: &Client, hist: &History) -> Actions {
        Actions {
            nodes: Api::all(client.clone()),
            pools: Api::all(client.clone()),
            hist: hist.clone(),
        }
    }

    fn seen_node(&self, n: &Node) {
        self.hist.lock().observe_node(n, Instant::now());
    }

    /// Creates a Node (with a finalizer that holds it after a delete when
    /// `finalizer`); an AlreadyExists after a lost answer counts as created.
    pub async fn create_node(&self, name: &str, labels: &Labels, finalizer: bool) -> Result<()> {
        let mut l = labels.clone();
        l.insert("kubernetes.io/hostname".into(), name.into());
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                finalizers: finalizer.then(|| vec!["randomized.test/hold".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let (mut tries, pp) = (0, PostParams::default());
        let r = retry(|| {
            tries += 1;
            self.nodes.create(&pp, &node)
        })
        .await;
        match r {
            Ok(n) => self.seen_node(&n),
            Err(e) if code(&e) == Some(409) && tries > 1 => {}
            Err(e) => return Err(anyhow!(e).context(format!("creating Node {name}"))),
        }
        Ok(())
    }

    /// Deletes a Node; gone already is fine. With a finalizer it stays,
    /// with a deletionTimestamp, until [`Actions::drop_finalizer`].
    pub async fn delete_node(&self, name: &str) -> Result<()> {
        let dp = DeleteParams::default();
        match retry(|| self.nodes.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("deleting Node {name}"))),
        }
    }

    pub async fn drop_finalizer(&self, name: &str) -> Result<()> {
        let p = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        let pp = PatchParams::default();
        match retry(|| self.nodes.patch(name, &pp, &p)).await {
            Ok(n) => {
                self.seen_node(&n);
                Ok(())
            }
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("dropping the finalizer of {name}"))),
        }
    }

    /// Replaces the Node's labels (the hostname label stays).
    pub async fn set_labels(&self, name: &str, labels: &Labels) -> Result<()> {
        let mut l = labels.clone();
        l.insert("kubernetes.io/hostname".into(), name.into());
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "replace", "path": "/metadata/labels", "value": l}
        ]))?;
        let p = Patch::<()>::Json(patch);
        let pp = PatchParams::default();
        match retry(|| self.nodes.patch(name, &pp, &p)).await {
            Ok(n) => {
                self.seen_node(&n);
                Ok(())
            }
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("relabelling {name}"))),
        }
    }

    /// Writes `cidrs` into the Node's podCIDRs as another writer (its own
    /// field manager), the way the operator writes. Returns whether it
    /// landed: the API server refuses (422) a Node that has podCIDRs.
    pub async fn hand_write(&self, name: &str, cidrs: &[String]) -> Result<bool> {
        let Some(n) = retry(|| self.nodes.get_opt(name)).await? else {
            return Ok(false);
        };
        let uid = n.metadata.uid.clone().unwrap_or_default();
        let value = crate::cluster::plain_pod_cidrs_patch(&uid, cidrs);
        let patch: json_patch::Patch = serde_json::from_value(value)?;
        let pp = PatchParams {
            field_manager: Some(HAND_MANAGER.into()),
            ..Default::default()
        };
        let p = Patch::<()>::Json(patch);
        match retry(|| self.nodes.patch(name, &pp, &p)).await {
            Ok(n) => {
                self.seen_node(&n);
                // A no-op write over an equal value the operator wrote
                // leaves the operator the owner: not a hand write.
                let landed = pod_cidrs_writer(&n).as_deref() == Some(HAND_MANAGER);
                if landed {
                    self.hist.mark_hand(&uid);
                }
                Ok(landed)
            }
            Err(e) if matches!(code(&e), Some(404 | 409 | 422)) => Ok(false),
            Err(e) => Err(anyhow!(e).context(format!("hand-writing {name}"))),
        }
    }

    pub async fn node_uid(&self, name: &str) -> Result<Option<String>> {
        Ok(retry(|| self.nodes.get_opt(name))
            .await?
            .and_then(|n| n.metadata.uid))
    }

    fn seen_pool(&self, p: &PrefixPool) {
        self.hist.lock().observe_pool(p, Instant::now());
    }

    pub async fn create_pool(&self, name: &str, spec: &PrefixPoolSpec) -> Result<()> {
        let obj = PrefixPool::new(name, spec.clone());
        let (mut tries, pp) = (0, PostParams::default());
        let r = retry(|| {
            tries += 1;
            self.pools.create(&pp, &obj)
        })
        .await;
        match r {
            Ok(p) => self.seen_pool(&p),
            Err(e) if code(&e) == Some(409) && tries > 1 => {}
            Err(e) => return Err(anyhow!(e).context(format!("creating PrefixPool {name}"))),
        }
        Ok(())
    }

    pub async fn delete_pool(&self, name: &str) -> Result<()> {
        let dp = DeleteParams::default();
        match retry(|| self.pools.delete(name, &dp)).await {
            Ok(gone) => {
                // Pools carry no finalizer: the answer means it is gone.
                if let Some(uid) = gone.left().and_then(|p| p.metadata.uid) {
                    self.hist.lock().pool_gone(&uid, 0, Instant::now());
                }
                Ok(())
            }
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("deleting PrefixPool {name}"))),
        }
    }

    /// Waits until the pool named `name` is gone (a delete is not instant).
    pub async fn wait_pool_gone(&self, name: &str) -> Result<()> {
        crate::cluster::poll(
            &format!("PrefixPool {name} to be gone"),
            Duration::from_secs(30),
            || async { matches!(self.pools.get_opt(name).await, Ok(None)).then_some(()) },
        )
        .await
    }

    pub async fn get_pool(&self, name: &str) -> Result<Option<PrefixPool>> {
        Ok(retry(|| self.pools.get_opt(name)).await?)
    }

    /// Replaces the pool's spec (read, change, write; again on a 409).
    pub async fn replace_spec(&self, name: &str, spec: &PrefixPoolSpec) -> Result<()> {
        for _ in 0..10 {
            let Some(mut p) = self.get_pool(name).await? else {
                return Ok(());
            };
            p.spec = spec.clone();
            p.status = None;
            let pp = PostParams::default();
            match retry(|| self.pools.replace(name, &pp, &p)).await {
                Ok(p) => {
                    self.seen_pool(&p);
                    return Ok(());
                }
                Err(e) if code(&e) == Some(409) => continue,
                Err(e) => return Err(anyhow!(e).context(format!("replacing the spec of {name}"))),
            }
        }
        Err(anyhow!(
            "replacing the spec of {name}: 10 conflicts in a row"
        ))
    }
}
