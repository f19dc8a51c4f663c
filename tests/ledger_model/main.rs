//! Model-based property test of the ledger against API-server histories.
//!
//! Generated histories create Nodes (with and without finalizers), patch
//! their status (heartbeats), relabel them, give them podCIDRs by hand,
//! delete and re-create them under the same name. The operator's messages —
//! the watch (in order), write answers, adoption and verification reads,
//! re-lists and a new leader's resync — are delivered in any interleaving a
//! real watch plus concurrent requests can produce: each stream in its own
//! order, interleaved arbitrarily, reads and lists possibly older than what
//! the ledger already holds. Writes may be refused, find the Node gone, or
//! end with an unknown outcome (landed or not).
//!
//! The invariants are checked against the server model, not the ledger:
//! - never a prefix planned for one Node while the server has it on another
//!   Node that the operator wrote or the ledger was told of;
//! - never a live Node's prefix free in the ledger (outside the window after
//!   a leadership change, where no plan is made before the resync);
//! - never two live Nodes written by the operator with overlapping prefixes;
//! - once every message is delivered, the ledger holds exactly the server's
//!   Nodes and prefixes.

#[path = "operator.rs"]
mod operator;
#[path = "server.rs"]
mod server;

use ipnet::IpNet;
use prefix_operator::alloc::cidr;
use prefix_operator::api::PrefixPoolSpec;
use prefix_operator::ledger::PoolSnapshot;
use proptest::prelude::*;

use operator::Operator;
use server::{Answer, Server, WatchMsg};

const NAMES: usize = 6;
const POOL: &str = "2001:db8::/61"; // 8 node prefixes: reuse and exhaustion happen

fn name(i: u8) -> String {
    format!("n{}", i as usize % NAMES)
}

fn pool_prefix(slot: u8) -> String {
    format!("2001:db8:0:{}::/64", slot % 8)
}

struct World {
    server: Server,
    op: Operator,
}

impl World {
    fn new() -> World {
        let mut op = Operator::default();
        let spec: PrefixPoolSpec = serde_json::from_value(serde_json::json!({
            "prefixes": [POOL],
            "nodeSelector": {"matchLabels": {"pool": "p"}},
        }))
        .expect("spec");
        op.ledger.upsert_pool(&PoolSnapshot {
            name: "p".into(),
            uid: "pool-uid".into(),
            resource_version: Some(1),
            generation: 1,
            def: prefix_operator::api::validate_spec(&spec),
            retired: vec![],
            held_back: vec![],
            labels: Default::default(),
            delegation: None,
        });
        World {
            server: Server::default(),
            op,
        }
    }

    /// Applies one generated step; steps that do not apply now do nothing.
    fn step(&mut self, kind: u8, a: u8, b: u8) -> Result<(), String> {
        let n = name(a);
        match kind % 17 {
            0 => self
                .server
                .create(&n, !b.is_multiple_of(4), b.is_multiple_of(3)),
            1 => self.server.heartbeat(&n),
            2 => self.server.toggle_label(&n),
            3 => {
                let cidr = if b.is_multiple_of(2) {
                    pool_prefix(b / 2)
                } else {
                    "2001:db9::/64".to_string()
                };
                self.server.foreign_write(&n, &cidr);
            }
            4 => self.server.delete(&n),
            5 => self.server.finalize(&n),
            6 | 7 => {
                if let Some(picks) = self.op.plan(&n) {
                    self.check_plan(&n, &picks)?;
                }
            }
            8 => self.apply_write(a, b),
            9 => {
                if !self.op.answers.is_empty() {
                    let (w, ans) = self.op.answers.remove(a as usize % self.op.answers.len());
                    self.op.deliver_answer(w, ans);
                }
            }
            10 | 11 => self.deliver_watch(),
            12 => {
                if !self.op.reads.is_empty() {
                    let r = self.op.reads.remove(a as usize % self.op.reads.len());
                    let got = self.server.get(&r.node);
                    self.op.read_answers.push((r, got));
                }
            }
            13 => {
                if !self.op.read_answers.is_empty() {
                    let i = a as usize % self.op.read_answers.len();
                    let (r, got) = self.op.read_answers.remove(i);
                    self.op.deliver_read(r, got);
                }
            }
            14 => self.relist(b),
            15 => self.leadership(b),
            _ => self.op.settle(&n),
        }
        self.check_held()
    }

    /// The server applies a sent write; `b` picks how its answer goes.
    fn apply_write(&mut self, a: u8, b: u8) {
        if self.op.sent.is_empty() {
            return;
        }
        let w = self.op.sent.remove(a as usize % self.op.sent.len());
        let ans = match b % 6 {
            // Landed, but the answer was lost.
            0 => {
                self.server.apply_write(&w.node, &w.uid, &w.cidrs());
                Answer::Unknown
            }
            // Never got there.
            1 => Answer::Unknown,
            _ => self.server.apply_write(&w.node, &w.uid, &w.cidrs()),
        };
        self.op.answers.push((w, ans));
    }

    fn deliver_watch(&mut self) {
        if self.op.relist.is_some() {
            // The watch resumes only after its re-list is in.
            return;
        }
        match self.server.watch.pop_front() {
            Some(WatchMsg::Apply(s)) => {
                self.op.tell(&s);
                self.op.ledger.upsert_node(&s);
            }
            Some(WatchMsg::Delete { name, uid, rv }) => {
                self.op.ledger.remove_node(&name, &uid, Some(rv));
            }
            None => {}
        }
    }

    /// `b` even: the watch fails ("too old resource version") and re-lists;
    /// events up to the list are folded into it. `b` odd: deliver it.
    fn relist(&mut self, b: u8) {
        match self.op.relist.take() {
            None if b.is_multiple_of(2) => {
                self.server.watch.clear();
                self.op.relist = Some((self.server.list(), self.server.rv()));
            }
            Some((list, rv)) if !b.is_multiple_of(2) => self.op.deliver_list(list, Some(rv)),
            other => self.op.relist = other,
        }
    }

    /// `b` even: leadership goes away and comes back. `b` odd: the new
    /// leader's resync, as the reconciler does it: list and merge in one
    /// turn of its loop (a re-list of the watch may be under way, and be
    /// delivered after it: older).
    fn leadership(&mut self, b: u8) {
        if b.is_multiple_of(2) {
            self.op.lose_leadership();
        } else if self.op.needs_resync {
            let (list, rv) = (self.server.list(), self.server.rv());
            self.op.deliver_list(list, Some(rv));
            self.op.needs_resync = false;
        }
    }

    /// Live Nodes whose prefixes the ledger must treat as taken.
    fn must_hold(&self) -> Vec<(String, IpNet)> {
        let mut out = vec![];
        for (n, o) in &self.server.nodes {
            if o.by_operator || self.op.aware.contains(&o.uid) {
                for c in &o.cidrs {
                    if let Ok(net) = cidr::parse_lenient(c) {
                        out.push((n.clone(), net));
                    }
                }
            }
        }
        out
    }

    fn check_plan(&self, node: &str, picks: &[(String, IpNet)]) -> Result<(), String> {
        for (_, p) in picks {
            for (holder, net) in self.must_hold() {
                if holder != node && cidr::overlaps(p, &net) {
                    return Err(format!("planned {p} for {node} while {holder} holds {net}"));
                }
            }
        }
        Ok(())
    }

    fn check_held(&self) -> Result<(), String> {
        let held = self.must_hold();
        if !self.op.needs_resync {
            for (holder, net) in &held {
                if self.op.ledger.is_free(net) {
                    return Err(format!("{net} of live Node {holder} is free in the ledger"));
                }
            }
        }
        let ours: Vec<&(String, IpNet)> = held
            .iter()
            .filter(|(n, _)| self.server.nodes.get(n).is_some_and(|o| o.by_operator))
            .collect();
        for (i, (a, x)) in ours.iter().enumerate() {
            for (b, y) in &ours[i + 1..] {
                if cidr::overlaps(x, y) {
                    return Err(format!("the operator wrote {x} to {a} and {y} to {b}"));
                }
            }
        }
        Ok(())
    }

    /// Delivers everything still pending, then compares the picture.
    fn settle(&mut self) -> Result<(), String> {
        self.relist(1);
        self.leadership(1);
        for _ in 0..64 {
            while !self.op.sent.is_empty() {
                self.apply_write(0, 2);
            }
            while let Some((w, a)) = self.op.answers.pop() {
                self.op.deliver_answer(w, a);
            }
            while let Some((r, got)) = self.op.read_answers.pop() {
                self.op.deliver_read(r, got);
            }
            while let Some(r) = self.op.reads.pop() {
                let got = self.server.get(&r.node);
                self.op.deliver_read(r, got);
            }
            while !self.server.watch.is_empty() {
                self.deliver_watch();
            }
            let names: Vec<String> = self.op.uncertain.keys().cloned().collect();
            for n in &names {
                self.op.settle(n);
            }
            self.check_held()?;
            if self.op.sent.is_empty() && self.op.reads.is_empty() && self.op.uncertain.is_empty() {
                break;
            }
        }
        for i in 0..NAMES as u8 {
            let n = name(i);
            let want = self.server.nodes.get(&n);
            let uid = self.op.ledger.node_uid(&n);
            if want.map(|o| o.uid.clone()) != uid {
                return Err(format!("{n}: server has {want:?}, ledger has UID {uid:?}"));
            }
            let want_cidrs: Vec<IpNet> = want
                .map(|o| {
                    o.cidrs
                        .iter()
                        .filter_map(|c| cidr::parse_lenient(c).ok())
                        .collect()
                })
                .unwrap_or_default();
            if self.op.ledger.node_prefixes(&n) != want_cidrs {
                return Err(format!("{n}: ledger prefixes differ from {want_cidrs:?}"));
            }
        }
        Ok(())
    }
}

fn steps() -> impl Strategy<Value = Vec<(u8, u8, u8)>> {
    prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..160)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_never_frees_or_plans_a_live_nodes_prefix(steps in steps()) {
        let mut w = World::new();
        for (i, (k, a, b)) in steps.iter().enumerate() {
            if let Err(e) = w.step(*k, *a, *b) {
                prop_assert!(false, "step {i} ({k}, {a}, {b}): {e}");
            }
        }
        if let Err(e) = w.settle() {
            prop_assert!(false, "after settling: {e}");
        }
    }
}

/// The history of the duplicate seen under kubelet traffic, step by step:
/// a status patch's event arrives after the write's answer.
#[test]
fn the_kubelet_race_is_caught_by_the_model() {
    let mut w = World::new();
    let steps = [
        (0, 0, 1),  // n0 created, selected
        (10, 0, 0), // its watch event
        (1, 0, 0),  // kubelet patches status (event queued)
        (6, 0, 0),  // plan n0
        (8, 0, 2),  // the server applies the write
        (9, 0, 0),  // its answer arrives first
        (10, 0, 0), // then the stale status event
        (0, 1, 1),  // n1 created
        (10, 0, 0), // the write's own event
        (10, 0, 0), // n1's event
        (6, 1, 0),  // plan n1: must not get n0's prefix
    ];
    for (k, a, b) in steps {
        w.step(k, a, b).expect("no violation");
    }
    w.settle().expect("settles");
}
