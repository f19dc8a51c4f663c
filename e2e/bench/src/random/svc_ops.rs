//! Runs the claim, Service and IPv4-pool ops of the random mix
//! ([`super::mix_svc`]) and keeps the model and the tally.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use ipnet::IpNet;
use prefix_operator::api::{IpFamily, PrefixClaimSpec, PrefixPoolSpec, Purpose};

use super::mix::V4_POOL;
use super::mix_svc::{Request, SvcOp, SvcSpec};
use super::model::{Labels, nets};
use super::ops::Runner;
use super::svc_actions::{Bound, nth_address, service};
use crate::cluster::poll;

impl Runner<'_> {
    pub async fn run_svc(&mut self, op: SvcOp) -> Result<()> {
        match op {
            SvcOp::CreateClaim(n, spec) => {
                if self.svc.create_claim(&n, &spec).await? {
                    self.model.claims.insert(n, spec);
                } else {
                    self.count("claim create refused");
                }
            }
            SvcOp::DeleteClaim(n) => {
                self.svc.delete_claim(&n).await?;
                self.model.claims.remove(&n);
            }
            SvcOp::CreateServices(v) => {
                let bound = self.svc.bound().await?;
                for (n, spec) in v {
                    self.create_service(&n, &spec, &bound).await?;
                }
            }
            SvcOp::DeleteService(n) => {
                self.svc.delete_service(&n).await?;
                self.model.services.remove(&n);
            }
            SvcOp::ChurnServiceCidr { pick, names, ms } => self.churn(pick, names, ms).await?,
            SvcOp::ReserveOverClaim(pick) => self.reserve_over_claim(pick).await?,
            SvcOp::HandOverClaim(n, pick) => self.hand_over_claim(n, pick).await?,
        }
        Ok(())
    }

    pub(super) fn count(&mut self, what: &str) {
        *self.tally.notes.entry(what.to_string()).or_default() += 1;
    }

    async fn create_service(&mut self, n: &str, spec: &SvcSpec, bound: &[Bound]) -> Result<()> {
        let want = if spec.lb {
            Purpose::LoadBalancer
        } else {
            Purpose::ServiceCIDR
        };
        let ip = match &spec.request {
            Some(Request::InClaim(pick, k)) => {
                let fit: Vec<&Bound> = bound
                    .iter()
                    .filter(|b| b.purpose == want && !b.deleting)
                    .collect();
                fit.get(pick % fit.len().max(1))
                    .and_then(|b| nth_address(&b.prefix, *k))
            }
            Some(Request::Outside) => "2001:db8:ffff:ffff::7".parse().ok(),
            None => None,
        };
        let svc = service(n, spec, ip);
        match self.svc.create_service(&svc).await? {
            Ok(()) => {
                self.model.services.insert(n.to_string(), spec.lb);
                self.count(if spec.lb {
                    "LoadBalancer Services created"
                } else {
                    "ClusterIP Services created"
                });
            }
            Err(why) => {
                self.env
                    .note(&format!("   Service {n} (asking {ip:?}) refused: {why}"));
                self.count("Service creates refused");
            }
        }
        Ok(())
    }

    /// ClusterIP Services asking for addresses of a ServiceCIDR claim,
    /// created while the claim is deleted.
    async fn churn(&mut self, pick: usize, names: Vec<String>, ms: u64) -> Result<()> {
        let bound = self.svc.bound().await?;
        let sc: Vec<&Bound> = bound
            .iter()
            .filter(|b| b.purpose == Purpose::ServiceCIDR && !b.deleting)
            .collect();
        let c = match sc.get(pick % sc.len().max(1)).copied().cloned() {
            Some(c) => c,
            None => match self.fresh_service_cidr(pick, &names).await? {
                Some(c) => c,
                None => {
                    self.env.note("   no bound ServiceCIDR claim to churn");
                    return Ok(());
                }
            },
        };
        self.env.note(&format!(
            "   {} ClusterIP Services in claim {} {}; the claim deleted after {ms} ms",
            names.len(),
            c.name,
            c.prefix
        ));
        let spec = SvcSpec {
            lb: false,
            families: vec![],
            policy: "SingleStack",
            request: None,
        };
        let svcs: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let ip = nth_address(&c.prefix, i as u128 * 3);
                (n.clone(), service(n, &spec, ip))
            })
            .collect();
        let svc = &self.svc;
        let creates = futures::stream::iter(svcs.iter())
            .map(|(n, s)| async move { (n.clone(), svc.create_service(s).await) })
            .buffer_unordered(4)
            .collect::<Vec<_>>();
        let delete = async {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            svc.delete_claim(&c.name).await
        };
        let (results, deleted) = tokio::join!(creates, delete);
        deleted?;
        self.model.claims.remove(&c.name);
        let (mut made, mut refused) = (0, 0);
        for (n, r) in results {
            match r? {
                Ok(()) => {
                    made += 1;
                    self.model.services.insert(n, false);
                }
                Err(_) => refused += 1,
            }
        }
        self.env
            .note(&format!("   {made} created, {refused} refused"));
        *self
            .tally
            .notes
            .entry("churn: ClusterIP Services created".into())
            .or_default() += made;
        *self
            .tally
            .notes
            .entry("churn: ClusterIP Services refused".into())
            .or_default() += refused;
        Ok(())
    }

    /// A new IPv6 ServiceCIDR claim (/112 of a pool the model has), once
    /// bound: the churn needs one.
    async fn fresh_service_cidr(&mut self, pick: usize, names: &[String]) -> Result<Option<Bound>> {
        let pools: Vec<&String> = self.model.pools.keys().filter(|p| *p != V4_POOL).collect();
        let (Some(pool), Some(first)) = (pools.get(pick % pools.len().max(1)), names.first())
        else {
            return Ok(None);
        };
        let name = format!("{first}-sc");
        let spec = PrefixClaimSpec {
            pool: Some(pool.to_string()),
            pool_selector: None,
            ip_family: IpFamily::IPv6,
            prefix_length: 112,
            purpose: Purpose::ServiceCIDR,
        };
        self.env.note(&format!(
            "   no bound ServiceCIDR claim: creating {name} in {pool}"
        ));
        if !self.svc.create_claim(&name, &spec).await? {
            return Ok(None);
        }
        self.model.claims.insert(name.clone(), spec);
        let svc = &self.svc;
        let bound = poll(
            &format!("claim {name} to be bound"),
            Duration::from_secs(10),
            || async { svc.bound().await.ok()?.into_iter().find(|b| b.name == name) },
        )
        .await;
        Ok(bound.ok())
    }

    /// Bound claims whose prefix lies inside their pool's spec prefixes.
    async fn claims_in_pools(&self) -> Result<Vec<(Bound, String, PrefixPoolSpec)>> {
        let bound = self.svc.bound().await?;
        Ok(bound
            .into_iter()
            .filter_map(|b| {
                let pool = b.pool.clone()?;
                let spec = self.model.pools.get(&pool)?.clone();
                nets(&spec.prefixes)
                    .iter()
                    .any(|q| q.contains(&b.prefix))
                    .then_some((b, pool, spec))
            })
            .collect())
    }

    async fn reserve_over_claim(&mut self, pick: usize) -> Result<()> {
        let cands = self.claims_in_pools().await?;
        let Some((b, pool, mut spec)) = cands.get(pick % cands.len().max(1)).cloned() else {
            self.env
                .note("   no bound claim inside a pool to reserve over");
            return Ok(());
        };
        let r = b.prefix.to_string();
        if spec.reserved.contains(&r) {
            return Ok(());
        }
        spec.reserved.push(r.clone());
        self.env
            .note(&format!("   reserving {r} (claim {}) in {pool}", b.name));
        self.act.replace_spec(&pool, &spec).await?;
        self.model.pools.insert(pool, spec);
        Ok(())
    }

    async fn hand_over_claim(&mut self, n: String, pick: usize) -> Result<()> {
        let cands = self.claims_in_pools().await?;
        let Some((b, _, spec)) = cands.get(pick % cands.len().max(1)).cloned() else {
            self.env
                .note("   no bound claim inside a pool to write a Node over");
            return Ok(());
        };
        let len = super::check::node_len(&spec);
        let Ok(net) = IpNet::new(b.prefix.network(), len) else {
            return Ok(());
        };
        let cidr = net.trunc().to_string();
        let l: Labels = [("zone".to_string(), "h".to_string())].into();
        self.create_nodes(vec![(n.clone(), l, false)]).await?;
        let landed = self.act.hand_write(&n, std::slice::from_ref(&cidr)).await?;
        self.env.note(&format!(
            "   hand write {cidr} (over claim {} {}) into {n}: {}",
            b.name,
            b.prefix,
            if landed { "landed" } else { "refused" }
        ));
        Ok(())
    }

    /// Dual-stack Nodes, then the IPv4 pool deleted and made again after
    /// `gap` ms: while it is gone, Nodes waiting for IPv4 must not be
    /// written with IPv6 alone within the operator's grace.
    pub(super) async fn v4_squeeze(
        &mut self,
        nodes: Vec<(String, Labels)>,
        gap: u64,
        spec: PrefixPoolSpec,
    ) -> Result<()> {
        let v = nodes.into_iter().map(|(n, l)| (n, l, false)).collect();
        self.create_nodes(v).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.env.note(&format!(
            "   delete {V4_POOL}; re-create it after {gap} ms: {spec:?}"
        ));
        self.act.delete_pool(V4_POOL).await?;
        self.act.wait_pool_gone(V4_POOL).await?;
        self.model.pools.remove(V4_POOL);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        self.act.create_pool(V4_POOL, &spec).await?;
        self.model.pools.insert(V4_POOL.to_string(), spec);
        Ok(())
    }
}
