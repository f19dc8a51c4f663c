//! The queue of Nodes to plan, in arrival order, each with the stamp of
//! the pool gate (see [`crate::controller::pool_gate`]) it waits for: taken
//! when the Node is queued, and again when its state changes while queued.
//! The head is planned once a check of the pools sent after its stamp has
//! passed.

use std::collections::{HashMap, VecDeque};

use crate::controller::pool_gate::{PoolGate, Stamp};

/// Nodes waiting to be planned, in arrival order.
#[derive(Debug, Default)]
pub struct WriteQueue {
    order: VecDeque<String>,
    /// The stamp of every queued Node.
    stamps: HashMap<String, Stamp>,
}

/// What the head of the queue allows.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// This Node may be planned now (it has left the queue).
    Ready(String),
    /// The head waits for a pool check (asked of the gate).
    Blocked,
    Empty,
}

impl WriteQueue {
    /// Queues `node` unless it is queued already.
    pub fn push(&mut self, node: &str, gate: &mut PoolGate) {
        if !self.stamps.contains_key(node) {
            self.stamps.insert(node.to_string(), gate.stamp());
            self.order.push_back(node.to_string());
        }
    }

    /// The state of `node` changed: if queued, it now needs a check sent
    /// after this.
    pub fn touch(&mut self, node: &str, gate: &mut PoolGate) {
        if let Some(s) = self.stamps.get_mut(node) {
            *s = gate.stamp();
        }
    }

    /// Every queued Node's state changed (a re-list of Nodes).
    pub fn touch_all(&mut self, gate: &mut PoolGate) {
        let s = gate.stamp();
        for v in self.stamps.values_mut() {
            *v = s;
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Takes the head if a passed check covers it; if not, the gate is
    /// asked for one.
    pub fn pop_ready(&mut self, gate: &mut PoolGate) -> Head {
        let Some(head) = self.order.front() else {
            return Head::Empty;
        };
        match self.stamps.get(head) {
            Some(&s) if !gate.wait(s) => Head::Blocked,
            _ => {
                let node = self.order.pop_front().unwrap_or_default();
                self.stamps.remove(&node);
                Head::Ready(node)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn drain(q: &mut WriteQueue, g: &mut PoolGate) -> Vec<String> {
        let mut out = vec![];
        while let Head::Ready(n) = q.pop_ready(g) {
            out.push(n);
        }
        out
    }

    #[test]
    fn nodes_leave_in_order_once_a_check_sent_after_them_passed() {
        let mut q = WriteQueue::default();
        let mut g = PoolGate::default();
        let now = Instant::now();
        q.push("a", &mut g);
        q.push("b", &mut g);
        assert_eq!(q.pop_ready(&mut g), Head::Blocked);
        let m = g
            .start_check(now)
            .expect("the blocked head asked for a check");
        q.push("c", &mut g);
        assert_eq!(q.pop_ready(&mut g), Head::Blocked);
        let m2 = g.start_check(now).expect("a check for c");
        assert!(g.check_passed(m));
        assert_eq!(drain(&mut q, &mut g), vec!["a", "b"]);
        assert_eq!(
            q.pop_ready(&mut g),
            Head::Blocked,
            "c waits for its own check"
        );
        assert!(g.check_passed(m2));
        assert_eq!(drain(&mut q, &mut g), vec!["c"]);
        assert_eq!(q.pop_ready(&mut g), Head::Empty);
    }

    #[test]
    fn a_change_while_queued_needs_a_later_check() {
        let mut q = WriteQueue::default();
        let mut g = PoolGate::default();
        let now = Instant::now();
        q.push("a", &mut g);
        q.pop_ready(&mut g);
        let m = g.start_check(now).expect("a check");
        q.touch("a", &mut g);
        assert!(g.check_passed(m));
        assert_eq!(
            q.pop_ready(&mut g),
            Head::Blocked,
            "changed after the check was sent"
        );
        q.touch("unqueued", &mut g);
        assert_eq!(q.len(), 1, "touch does not queue");
        let m = g.start_check(now).expect("a check");
        q.touch_all(&mut g);
        assert!(g.check_passed(m));
        assert_eq!(
            q.pop_ready(&mut g),
            Head::Blocked,
            "a re-list after the check"
        );
    }

    #[test]
    fn a_node_is_queued_once() {
        let mut q = WriteQueue::default();
        let mut g = PoolGate::default();
        q.push("a", &mut g);
        q.push("a", &mut g);
        assert_eq!(q.len(), 1);
        q.pop_ready(&mut g);
        let m = g.start_check(Instant::now()).expect("a check");
        assert!(g.check_passed(m));
        assert_eq!(drain(&mut q, &mut g), vec!["a"]);
        q.push("a", &mut g);
        assert_eq!(
            q.pop_ready(&mut g),
            Head::Blocked,
            "queued again: a new stamp"
        );
    }
}
