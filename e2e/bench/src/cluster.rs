//! The cluster side of a run: a fresh control plane with the CRD, a pool,
//! Nodes created in bursts or at a steady rate, a watch that records when
//! each Node's podCIDRs were first seen, and the end-state check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};
use prefix_operator_testenv::{ControlPlane, Identity, Options};

mod tracker;
mod verify;
pub use tracker::{Tracker, latencies};
pub use verify::{EndState, Held, find_overlaps, overlap, verify_allocations, wait_pool_allocated};

/// A control plane with the CRD installed and an admin kubeconfig on disk.
pub struct Cluster {
    /// Dropped last: kills etcd and kube-apiserver.
    pub cp: Arc<ControlPlane>,
    pub client: Client,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts etcd + kube-apiserver on loopback and installs the CRD.
    pub async fn start() -> Result<Cluster> {
        Cluster::start_with(Options::default()).await
    }

    /// [`Cluster::start`] with the Service ranges `ranges`
    /// (`--service-cluster-ip-range`, e.g. `10.96.0.0/16,fd00:96::/112`):
    /// the API server hands out ClusterIPs only of the families it has.
    pub async fn start_with_services(ranges: &str) -> Result<Cluster> {
        Cluster::start_with(Options {
            extra_apiserver_flags: vec![format!("--service-cluster-ip-range={ranges}")],
            ..Default::default()
        })
        .await
    }

    async fn start_with(opts: Options) -> Result<Cluster> {
        let cp = tokio::task::spawn_blocking(move || ControlPlane::start(opts))
            .await
            .context("joining control-plane start")??;
        let kubeconfig = cp.dir().join("admin.kubeconfig");
        cp.write_kubeconfig(&Identity::Admin, &kubeconfig)?;
        let client = cp.client(&Identity::Admin).await?;
        install_crd(&client).await?;
        Ok(Cluster {
            cp: Arc::new(cp),
            client,
            kubeconfig,
        })
    }

    /// Kills kube-apiserver and starts it again (blocking work off the runtime).
    pub async fn restart_apiserver(&self, outage: Duration) -> Result<()> {
        self.outage(
            outage,
            ControlPlane::stop_apiserver,
            ControlPlane::start_apiserver,
        )
        .await
    }

    /// Runs `stop`, waits `outage`, runs `start`, off the runtime (both block).
    async fn outage(
        &self,
        outage: Duration,
        stop: fn(&ControlPlane),
        start: fn(&ControlPlane) -> Result<()>,
    ) -> Result<()> {
        let cp = self.cp.clone();
        tokio::task::spawn_blocking(move || {
            stop(&cp);
            std::thread::sleep(outage);
            start(&cp)
        })
        .await?
    }

    /// Kills etcd and starts it again; kube-apiserver stays up and fails
    /// requests meanwhile. Returns once the API answers a write again.
    pub async fn restart_etcd(&self, outage: Duration) -> Result<()> {
        self.outage(outage, ControlPlane::stop_etcd, ControlPlane::start_etcd)
            .await?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), "default");
        poll(
            "the API to write through etcd again",
            Duration::from_secs(120),
            || async {
                let cm = k8s_openapi::api::core::v1::ConfigMap {
                    metadata: ObjectMeta {
                        generate_name: Some("etcd-probe-".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                cms.create(&PostParams::default(), &cm)
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await
    }
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    prefix_operator_testenv::poll(what, timeout, Duration::from_millis(20), check).await
}

/// Applies the PrefixPool CRD and waits until the resource is served.
pub async fn install_crd(client: &Client) -> Result<()> {
    prefix_operator::cli::apply_crd(client, "prefix-operator-bench").await
}

/// Creates a pool of `prefix` split into /`node_len`.
pub async fn create_pool(client: &Client, name: &str, prefix: &str, node_len: u8) -> Result<()> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let spec = PrefixPoolSpec {
        prefixes: vec![prefix.to_string()],
        node_prefix_length: Some(node_len.into()),
        ..Default::default()
    };
    pools
        .create(&PostParams::default(), &PrefixPool::new(name, spec))
        .await
        .with_context(|| format!("creating PrefixPool {name}"))?;
    Ok(())
}

/// The pool's `status.allocated`, if written.
pub async fn pool_allocated(client: &Client, name: &str) -> Option<i64> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    pools.get(name).await.ok()?.status?.allocated
}

/// The pool object as the API server returns it, in bytes of JSON.
pub async fn pool_json_size(client: &Client, name: &str) -> Result<usize> {
    let req = http::Request::get(format!(
        "/apis/ipam.prefix-operator.io/v1alpha1/prefixpools/{name}"
    ))
    .body(Vec::new())?;
    Ok(client.request_text(req).await?.len())
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [
                    ("kubernetes.io/hostname".to_string(), name.to_string()),
                    ("kubernetes.io/os".to_string(), "linux".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One created Node: name, uid, when the create returned.
#[derive(Clone, Debug)]
pub struct Created {
    pub name: String,
    pub uid: String,
    pub at: Instant,
}

/// How a creator deals with errors.
#[derive(Clone, Copy, Debug)]
pub enum OnError {
    Fail,
    /// Keep retrying (an API server or etcd may be down): until this long
    /// after the first attempt. An AlreadyExists after a retry counts as
    /// created (the first attempt landed but its answer was lost).
    RetryFor(Duration),
}

/// Creates one Node.
pub async fn create_node(api: &Api<Node>, name: &str, on_error: OnError) -> Result<Created> {
    let first = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match api.create(&PostParams::default(), &node(name)).await {
            Ok(n) => {
                return Ok(Created {
                    name: name.to_string(),
                    uid: n.metadata.uid.unwrap_or_default(),
                    at: Instant::now(),
                });
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt > 1 => {
                let n = api.get(name).await?;
                return Ok(Created {
                    name: name.to_string(),
                    uid: n.metadata.uid.unwrap_or_default(),
                    at: Instant::now(),
                });
            }
            Err(e) => match on_error {
                OnError::RetryFor(d) if first.elapsed() < d => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return Err(anyhow!(e).context(format!("creating Node {name}"))),
            },
        }
    }
}

/// Creates `names` with `concurrency` requests in flight, as fast as the API
/// server takes them. `first_sent` is set just before the first request.
pub async fn create_burst(
    client: &Client,
    names: &[String],
    concurrency: usize,
    on_error: OnError,
) -> Result<(Instant, Vec<Created>)> {
    let api: Api<Node> = Api::all(client.clone());
    let first_sent = Instant::now();
    let out: Vec<Created> = futures::stream::iter(names.iter().cloned())
        .map(|n| {
            let api = api.clone();
            async move { create_node(&api, &n, on_error).await }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok((first_sent, out))
}

/// Creates `count` Nodes named `prefix-NNNNNN` at `rate` per second, each in
/// its own task so a slow answer does not hold up the pace.
pub async fn create_trickle(
    client: &Client,
    prefix: &str,
    count: usize,
    rate: f64,
) -> Result<Vec<Created>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        tick.tick().await;
        let api = api.clone();
        let name = format!("{prefix}-{i:06}");
        tasks.spawn(async move { create_node(&api, &name, OnError::Fail).await });
    }
    let mut out = Vec::with_capacity(count);
    while let Some(r) = tasks.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// The prefix a bare client writes into the `i`-th Node: the `i`-th /`len`
/// of `pool`.
pub fn nth_prefix(pool: IpNet, len: u8, i: u128) -> Result<IpNet> {
    let (IpNet::V6(p), true) = (pool, len <= 128) else {
        bail!("IPv6 pools only");
    };
    let base = u128::from(p.network());
    let addr = base + (i << (128 - u32::from(len)));
    Ok(IpNet::V6(ipnet::Ipv6Net::new(addr.into(), len)?))
}

/// A podCIDRs patch as another writer than the operator sends it: the
/// UID test and both fields, no annotations.
pub fn plain_pod_cidrs_patch(uid: &str, cidrs: &[String]) -> serde_json::Value {
    serde_json::json!([
        { "op": "test", "path": "/metadata/uid", "value": uid },
        { "op": "add", "path": "/spec/podCIDR", "value": cidrs.first() },
        { "op": "add", "path": "/spec/podCIDRs", "value": cidrs },
    ])
}

/// The operator's own podCIDRs patch (`pod_cidrs_patch`, with the pool and
/// time annotations), sent the way the operator sends it.
pub async fn patch_pod_cidrs(api: &Api<Node>, name: &str, uid: &str, cidr: &IpNet) -> Result<()> {
    use prefix_operator::k8s::nodes::{PodCidrsWrite, pod_cidrs_params, pod_cidrs_patch};
    let cidrs = [cidr.to_string()];
    let pools = [crate::scale::POOL.to_string()];
    let value = pod_cidrs_patch(&PodCidrsWrite {
        uid,
        cidrs: &cidrs,
        pools: &pools,
        at: "2026-01-01T00:00:00Z",
    });
    api.patch(name, &pod_cidrs_params(), &Patch::Strategic(value))
        .await
        .with_context(|| format!("patching Node {name}"))?;
    Ok(())
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(v: &[&str]) -> Vec<(IpNet, String)> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (s.parse().expect("cidr"), format!("n{i}")))
            .collect()
    }

    #[test]
    fn finds_nested_and_equal_overlaps() {
        let (o, _) = find_overlaps(
            &held(&["2001:db8::/64", "2001:db8:0:1::/64", "2001:db8::/64"]),
            10,
        );
        assert_eq!(o.len(), 1);
        let (o, _) = find_overlaps(&held(&["2001:db8::/48", "2001:db8:0:5::/64"]), 10);
        assert_eq!(o.len(), 1);
        let (o, _) = find_overlaps(&held(&["2001:db8::/64", "2001:db8:0:1::/64"]), 10);
        assert!(o.is_empty());
    }

    #[test]
    fn sorted_path_finds_a_nested_overlap_with_prefixes_in_between() {
        let pool: IpNet = "2001:db8::/32".parse().expect("cidr");
        let mut v: Vec<(IpNet, String)> = (0..6000u128)
            .map(|i| (nth_prefix(pool, 64, i).expect("prefix"), format!("n{i}")))
            .collect();
        assert!(find_overlaps(&v, 10).0.is_empty());
        // A /56 covering 256 of them, sorted between them.
        v.push(("2001:db8:0:100::/56".parse().expect("cidr"), "big".into()));
        assert!(!find_overlaps(&v, 10).0.is_empty());
    }

    #[test]
    fn nth_prefix_counts_slots() {
        let pool: IpNet = "2001:db8::/32".parse().expect("cidr");
        assert_eq!(
            nth_prefix(pool, 64, 0).expect("p").to_string(),
            "2001:db8::/64"
        );
        assert_eq!(
            nth_prefix(pool, 64, 65537).expect("p").to_string(),
            "2001:db8:1:1::/64"
        );
    }
}
