//! Runs one operation of the random mix against the cluster and updates the
//! model. Faults are synchronous: when an op returns, kube-apiserver and
//! etcd serve again (replicas may stay frozen or dead until a later op).

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use ipnet::IpNet;

use super::actions::Actions;
use super::env::Env;
use super::mix::{HandTarget, Model, NodeModel, Op};
use super::model::{first_free, nets, slot};
use super::report::Tally;
use super::svc_actions::SvcActions;
use crate::cluster::poll;

/// Settles within this long, or (e) fails.
pub const SETTLE: Duration = Duration::from_secs(60);

pub struct Runner<'a> {
    pub env: &'a mut Env,
    pub act: Actions,
    pub svc: SvcActions,
    pub model: Model,
    pub tally: Tally,
}

impl<'a> Runner<'a> {
    pub fn new(env: &'a mut Env) -> Runner<'a> {
        let act = Actions::new(&env.cl.client, &env.hist);
        let svc = SvcActions::new(&env.cl.client, &env.hist);
        Runner {
            env,
            act,
            svc,
            model: Model::default(),
            tally: Tally::default(),
        }
    }

    /// Executes `op`; returns violations found by a settle it did.
    pub async fn run(&mut self, op: Op) -> Result<Vec<String>> {
        self.tally.op(&op);
        match op {
            Op::CreateNodes(v) => self.create_nodes(v).await?,
            Op::DeleteNode(n) => {
                self.act.delete_node(&n).await?;
                match self.model.nodes.get_mut(&n) {
                    Some(m) if m.finalizer => m.deleting = true,
                    _ => {
                        self.model.nodes.remove(&n);
                    }
                }
            }
            Op::DropFinalizer(n) => {
                self.act.drop_finalizer(&n).await?;
                if let Some(m) = self.model.nodes.get_mut(&n) {
                    m.finalizer = false;
                    if m.deleting {
                        self.model.nodes.remove(&n);
                    }
                }
            }
            Op::Relabel(n, l) => {
                self.act.set_labels(&n, &l).await?;
                if let Some(m) = self.model.nodes.get_mut(&n) {
                    m.labels = l;
                }
            }
            Op::HandWrite(n, t) => self.hand_write(&n, &t).await?,
            Op::CreateAndHandWrite(n, l, t) => {
                self.create_nodes(vec![(n.clone(), l, false)]).await?;
                self.hand_write(&n, &t).await?;
            }
            Op::RecreateNode(n, l) => self.recreate_node(&n, l).await?,
            Op::CreatePool(p, spec) => {
                self.act.create_pool(&p, &spec).await?;
                self.model.pools.insert(p, spec);
            }
            Op::DeletePool(p) => {
                self.act.delete_pool(&p).await?;
                self.model.pools.remove(&p);
            }
            Op::RecreatePool(p, spec) => self.recreate_pool(&p, spec).await?,
            Op::ReplaceSpec(p, _, spec) => {
                self.act.replace_spec(&p, &spec).await?;
                self.model.pools.insert(p, spec);
            }
            Op::Reserve(p, i) => self.reserve(&p, i).await?,
            Op::Kill(r) => self.env.kill(r),
            Op::Term(r) => self.env.term(r).await?,
            Op::Freeze(r) => self.env.freeze(r),
            Op::Thaw(r) => self.env.thaw(r),
            Op::Respawn(r) => {
                if self.env.replicas[r].op.is_none() {
                    self.env.spawn(r)?;
                }
            }
            Op::FreezeLeader => self.freeze_leader().await?,
            Op::RestartApiserver(ms) => {
                self.env
                    .restart_apiserver(Duration::from_millis(ms))
                    .await?
            }
            Op::RestartEtcd(ms) => self.env.restart_etcd(Duration::from_millis(ms)).await?,
            Op::RecreateBehindRelist(p, spec) => {
                let frozen: Vec<usize> = (0..self.env.replicas.len()).collect();
                frozen.iter().for_each(|r| self.env.freeze(*r));
                self.recreate_pool(&p, spec).await?;
                self.env
                    .restart_apiserver(Duration::from_millis(500))
                    .await?;
                frozen.iter().for_each(|r| self.env.thaw(*r));
            }
            Op::Svc(s) => self.run_svc(s).await?,
            Op::V4Squeeze(nodes, gap, spec) => self.v4_squeeze(nodes, gap, spec).await?,
            Op::Settle => return self.env.settle(SETTLE).await,
        }
        Ok(vec![])
    }

    pub(super) async fn create_nodes(
        &mut self,
        v: Vec<(String, super::model::Labels, bool)>,
    ) -> Result<()> {
        let act = &self.act;
        let results: Vec<Result<()>> = futures::stream::iter(v.iter())
            .map(|(n, l, f)| act.create_node(n, l, *f))
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        for (n, l, f) in v {
            let m = NodeModel {
                labels: l,
                finalizer: f,
                deleting: false,
            };
            self.model.nodes.insert(n, m);
        }
        Ok(())
    }

    /// The CIDR a hand write uses: a slot of a pool (maybe held: then a
    /// conflict the operator must report, never repeat), or space outside
    /// every pool.
    fn hand_cidr(&self, t: &HandTarget, name: &str) -> Option<String> {
        match t {
            HandTarget::Outside => {
                let h = name
                    .bytes()
                    .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(b.into()));
                Some(format!("2001:db8:ffff:{h:x}::/64"))
            }
            HandTarget::InPool(p, i) => {
                let spec = self.model.pools.get(p)?;
                let q = *nets(&spec.prefixes).first()?;
                let len = super::check::node_len(spec);
                slot(&q, len, *i).map(|s| s.to_string())
            }
        }
    }

    async fn hand_write(&mut self, n: &str, t: &HandTarget) -> Result<()> {
        let Some(cidr) = self.hand_cidr(t, n) else {
            return Ok(());
        };
        let landed = self.act.hand_write(n, std::slice::from_ref(&cidr)).await?;
        self.env.note(&format!(
            "   hand write {cidr} into {n}: {}",
            if landed { "landed" } else { "refused" }
        ));
        Ok(())
    }

    /// Deletes the Node for good (finalizer dropped) and creates it again
    /// under the same name: a new UID that must start without podCIDRs.
    async fn recreate_node(&mut self, n: &str, l: super::model::Labels) -> Result<()> {
        self.act.drop_finalizer(n).await?;
        self.act.delete_node(n).await?;
        poll(
            &format!("Node {n} to be gone"),
            Duration::from_secs(30),
            || async { matches!(self.act.node_uid(n).await, Ok(None)).then_some(()) },
        )
        .await?;
        self.model.nodes.remove(n);
        self.create_nodes(vec![(n.to_string(), l, false)]).await
    }

    async fn recreate_pool(
        &mut self,
        p: &str,
        spec: prefix_operator::api::PrefixPoolSpec,
    ) -> Result<()> {
        self.act.delete_pool(p).await?;
        self.act.wait_pool_gone(p).await?;
        self.act.create_pool(p, &spec).await?;
        self.model.pools.insert(p.to_string(), spec);
        Ok(())
    }

    /// Adds a reserved range over a slot that no Node holds right now.
    async fn reserve(&mut self, p: &str, i: u128) -> Result<()> {
        let Some(mut spec) = self.model.pools.get(p).cloned() else {
            return Ok(());
        };
        let Some(q) = nets(&spec.prefixes).first().copied() else {
            return Ok(());
        };
        let len = super::check::node_len(&spec);
        let (s, _) = self.env.check().await?;
        let mut taken: Vec<IpNet> = s
            .nodes
            .iter()
            .flat_map(|n| nets(&super::check::view(n).cidrs))
            .collect();
        taken.extend(nets(&spec.reserved));
        let want = slot(&q, len, i).filter(|w| !taken.iter().any(|t| super::model::overlap(t, w)));
        let Some(r) = want.or_else(|| first_free(&q, len, &taken)) else {
            self.env.note("   no free slot to reserve");
            return Ok(());
        };
        spec.reserved.push(r.to_string());
        self.env.note(&format!("   reserving {r} in {p}"));
        self.act.replace_spec(p, &spec).await?;
        self.model.pools.insert(p.to_string(), spec);
        Ok(())
    }

    /// Freezes the leader past its Lease until the other replica leads.
    async fn freeze_leader(&mut self) -> Result<()> {
        let Some(l) = self.env.leader().await else {
            return Ok(());
        };
        let other = 1 - l;
        if !self.env.is_up(other) {
            return Ok(());
        }
        self.env.freeze(l);
        self.env.wait_leads(other, Duration::from_secs(30)).await
    }
}
