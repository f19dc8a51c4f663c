//! The random mix: a model of what the run created (its own view, so a seed
//! replays the same choices) and a generator of the next operation from it.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use prefix_operator::api::PrefixPoolSpec;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::model::Labels;

/// IPv6 pools: each name has its own /48, so pools never overlap.
pub const V6_POOLS: [&str; 3] = ["p0", "p1", "p2"];
/// The IPv4 pool (dual-stack Nodes match it and a v6 pool).
pub const V4_POOL: &str = "q0";

#[derive(Clone, Debug)]
pub struct NodeModel {
    pub labels: Labels,
    pub finalizer: bool,
    pub deleting: bool,
}

#[derive(Default)]
pub struct Model {
    pub nodes: BTreeMap<String, NodeModel>,
    pub pools: BTreeMap<String, PrefixPoolSpec>,
    /// Claims the run created and has not deleted (a deleted one may stay
    /// a while, held by the operator's finalizer).
    pub claims: BTreeMap<String, prefix_operator::api::PrefixClaimSpec>,
    /// Services the run created (namespace default): name, LoadBalancer.
    pub services: BTreeMap<String, bool>,
    next: usize,
    pub(super) next_obj: usize,
}

/// Where a hand write points.
#[derive(Clone, Debug)]
pub enum HandTarget {
    /// Outside every pool.
    Outside,
    /// The `i`-th slot of the pool's first prefix (maybe taken: a conflict).
    InPool(String, u128),
}

#[derive(Clone, Debug)]
pub enum Op {
    CreateNodes(Vec<(String, Labels, bool)>),
    DeleteNode(String),
    DropFinalizer(String),
    Relabel(String, Labels),
    HandWrite(String, HandTarget),
    /// A new Node hand-written right after its create, racing the operator.
    CreateAndHandWrite(String, Labels, HandTarget),
    RecreateNode(String, Labels),
    CreatePool(String, PrefixPoolSpec),
    DeletePool(String),
    RecreatePool(String, PrefixPoolSpec),
    ReplaceSpec(String, &'static str, PrefixPoolSpec),
    /// Reserve the `i`-th slot of the pool's first prefix, if free then.
    Reserve(String, u128),
    Kill(usize),
    Term(usize),
    Freeze(usize),
    Thaw(usize),
    Respawn(usize),
    /// Freeze the leader until the other replica leads.
    FreezeLeader,
    RestartApiserver(u64),
    RestartEtcd(u64),
    /// Freeze every replica, delete and re-create the pool with another
    /// spec, restart kube-apiserver (the watches re-list), thaw.
    RecreateBehindRelist(String, PrefixPoolSpec),
    /// Claims and Services (`mix_svc`).
    Svc(super::mix_svc::SvcOp),
    /// Dual-stack Nodes created (some wait for IPv4 space), then the IPv4
    /// pool deleted and, after the gap (ms), made again with this spec.
    V4Squeeze(Vec<(String, Labels)>, u64, PrefixPoolSpec),
    Settle,
}

pub(super) fn sel_labels(k: &str, v: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([(k.to_string(), v.to_string())].into()),
        ..Default::default()
    }
}

fn random_selector(rng: &mut StdRng, v4: bool) -> Option<LabelSelector> {
    if v4 {
        return rng.random_bool(0.8).then(|| sel_labels("stack", "dual"));
    }
    match rng.random_range(0..5) {
        0 => None,
        1 => Some(sel_labels("zone", "a")),
        2 => Some(sel_labels("zone", "b")),
        3 => Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "c".into()]),
            }]),
            ..Default::default()
        }),
        _ => Some(sel_labels("stack", "dual")),
    }
}

/// A prefix of the pool's region: IPv6 /59-/62 (8-32 /64s) in the
/// name's /48, IPv4 /22-/23 (2-4 /24s) in 10.16.0.0/16.
fn random_prefix(rng: &mut StdRng, pool: &str) -> IpNet {
    if pool == V4_POOL {
        let block = rng.random_range(0..64u32);
        let len = rng.random_range(22..=23);
        let addr = (10u32 << 24) | (16 << 16) | (block << 10);
        return IpNet::V4(Ipv4Net::new(addr.into(), len).expect("valid").trunc());
    }
    let idx = V6_POOLS.iter().position(|p| *p == pool).unwrap_or(0) as u128;
    let base = (0x2001_0db8u128 << 96) | ((0x10 + idx) << 80);
    let block = rng.random_range(0..2048u128);
    let len = rng.random_range(59..=62);
    IpNet::V6(
        Ipv6Net::new((base | (block << 69)).into(), len)
            .expect("valid")
            .trunc(),
    )
}

pub fn random_spec(rng: &mut StdRng, pool: &str, node_len: Option<i32>) -> PrefixPoolSpec {
    let v4 = pool == V4_POOL;
    let mut prefixes: Vec<String> = vec![];
    for _ in 0..rng.random_range(1..=2) {
        let p = random_prefix(rng, pool);
        let clash = prefixes
            .iter()
            .filter_map(|q| q.parse::<IpNet>().ok())
            .any(|q| super::model::overlap(&q, &p));
        if !clash {
            prefixes.push(p.to_string());
        }
    }
    PrefixPoolSpec {
        prefixes,
        node_prefix_length: node_len.or(Some(if v4 { 24 } else { 64 })),
        node_selector: random_selector(rng, v4),
        priority: *[0, 0, 10].choose(rng).unwrap_or(&0),
        ..Default::default()
    }
}

pub(super) fn random_labels(rng: &mut StdRng) -> Labels {
    let mut l = Labels::new();
    if rng.random_bool(0.85) {
        let z = ["a", "b", "c"].choose(rng).unwrap_or(&"a");
        l.insert("zone".into(), z.to_string());
    }
    if rng.random_bool(0.3) {
        l.insert("stack".into(), "dual".into());
    }
    l
}

impl Model {
    pub(super) fn new_name(&mut self) -> String {
        self.next += 1;
        format!("n{:04}", self.next)
    }

    fn any_node(&self, rng: &mut StdRng) -> Option<String> {
        let names: Vec<&String> = self.nodes.keys().collect();
        names.choose(rng).map(|s| s.to_string())
    }

    pub(super) fn any_pool(&self, rng: &mut StdRng) -> Option<String> {
        let names: Vec<&String> = self.pools.keys().collect();
        names.choose(rng).map(|s| s.to_string())
    }

    fn hand_target(&self, rng: &mut StdRng) -> HandTarget {
        match self.any_pool(rng) {
            Some(p) if rng.random_bool(0.5) => HandTarget::InPool(p, rng.random_range(0..8)),
            _ => HandTarget::Outside,
        }
    }

    /// The next operation; `replicas` says which fault targets exist.
    pub fn next_op(&mut self, rng: &mut StdRng, replicas: usize) -> Op {
        loop {
            if let Some(op) = self.try_op(rng, replicas) {
                return op;
            }
        }
    }

    fn try_op(&mut self, rng: &mut StdRng, replicas: usize) -> Option<Op> {
        let r = rng.random_range(0..replicas);
        if rng.random_bool(0.35) {
            return self.svc_op(rng);
        }
        let op = match rng.random_range(0..100) {
            0..18 => {
                let n = rng.random_range(1..=20);
                let v = (0..n)
                    .map(|_| (self.new_name(), random_labels(rng), rng.random_bool(0.2)))
                    .collect();
                Op::CreateNodes(v)
            }
            18..26 => Op::DeleteNode(self.any_node(rng)?),
            26..30 => {
                let names: Vec<&String> = self
                    .nodes
                    .iter()
                    .filter(|(_, m)| m.finalizer)
                    .map(|(n, _)| n)
                    .collect();
                Op::DropFinalizer(names.choose(rng)?.to_string())
            }
            30..36 => Op::Relabel(self.any_node(rng)?, random_labels(rng)),
            36..40 => Op::HandWrite(self.any_node(rng)?, self.hand_target(rng)),
            40..44 => {
                let t = self.hand_target(rng);
                Op::CreateAndHandWrite(self.new_name(), random_labels(rng), t)
            }
            44..48 => Op::RecreateNode(self.any_node(rng)?, random_labels(rng)),
            48..52 => {
                let all: Vec<&str> = V6_POOLS.iter().copied().chain([V4_POOL]).collect();
                let free: Vec<&&str> = all
                    .iter()
                    .filter(|p| !self.pools.contains_key(**p))
                    .collect();
                let p = free.choose(rng)?.to_string();
                Op::CreatePool(p.clone(), random_spec(rng, &p, None))
            }
            52..54 => Op::DeletePool(self.any_pool(rng)?),
            54..58 => {
                // Deleted and made again at once, often with another
                // nodePrefixLength (immutable: the only way to change it).
                let p = self.any_pool(rng)?;
                let cur = self.pools.get(&p).map(super::check::node_len);
                let other = match (p == V4_POOL, cur) {
                    (true, Some(24)) => 25,
                    (true, _) => 24,
                    (false, Some(64)) => 63,
                    (false, _) => 64,
                };
                let len = rng.random_bool(0.6).then_some(other);
                Op::RecreatePool(p.clone(), random_spec(rng, &p, len))
            }
            58..66 => self.spec_change(rng)?,
            66..69 => Op::Reserve(self.any_pool(rng)?, rng.random_range(0..8)),
            69..72 => Op::Kill(r),
            72..74 => Op::Term(r),
            74..77 => Op::Freeze(r),
            77..80 => Op::Thaw(r),
            80..82 => Op::Respawn(r),
            82..85 if replicas > 1 => Op::FreezeLeader,
            85..89 => Op::RestartApiserver(rng.random_range(300..2500)),
            89..91 => Op::RestartEtcd(rng.random_range(300..2500)),
            91..94 => {
                let p = self.any_pool(rng)?;
                Op::RecreateBehindRelist(p.clone(), random_spec(rng, &p, None))
            }
            94..100 => Op::Settle,
            _ => return None,
        };
        Some(op)
    }

    /// Grow (add a prefix), shrink (remove one), or re-select.
    fn spec_change(&self, rng: &mut StdRng) -> Option<Op> {
        let p = self.any_pool(rng)?;
        let mut spec = self.pools.get(&p)?.clone();
        let kind = match rng.random_range(0..3) {
            0 => {
                let q = random_prefix(rng, &p);
                let clash = super::model::nets(&spec.prefixes)
                    .iter()
                    .any(|x| super::model::overlap(x, &q));
                if clash {
                    return None;
                }
                spec.prefixes.push(q.to_string());
                "grow"
            }
            1 if spec.prefixes.len() > 1 => {
                let i = rng.random_range(0..spec.prefixes.len());
                let gone: Option<IpNet> = spec.prefixes.remove(i).parse().ok();
                // Reserved ranges must stay inside the prefixes.
                spec.reserved.retain(|r| {
                    let r: Option<IpNet> = r.parse().ok();
                    !matches!((gone, r), (Some(g), Some(r)) if g.contains(&r))
                });
                "shrink"
            }
            _ => {
                spec.node_selector = random_selector(rng, p == V4_POOL);
                "reselect"
            }
        };
        Some(Op::ReplaceSpec(p, kind, spec))
    }
}
