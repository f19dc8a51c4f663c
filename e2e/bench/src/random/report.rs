//! What a run did and found: operations by kind, faults, counted outcomes
//! (refused creates, churned Services), and the violations grouped by the
//! invariant tag each finding starts with.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::mix::Op;

/// Every invariant tag a finding may start with, and what it guards.
pub const INVARIANTS: [(&str, &str); 12] = [
    ("(a)", "no two operator-written Node prefixes overlap"),
    ("(b)", "a Node's podCIDRs never change or vanish"),
    (
        "(c)",
        "canonical form; from a pool that selected it; not reserved",
    ),
    (
        "(d)",
        "no one-family write while a seen pool of the other family selected it",
    ),
    (
        "(e)",
        "after a settle: Nodes served where space is; pool status agrees",
    ),
    ("(f)", "no panic in an operator log"),
    (
        "(g)",
        "no Node or claim holds a live ClusterIP or LoadBalancer address",
    ),
    (
        "(h)",
        "no one-family first write while (or within 10 s after) a pool of the other family selected it, by revision",
    ),
    (
        "(i)",
        "after a settle: every claim conflict shows Ready=False/Conflict",
    ),
    (
        "(j)",
        "claims: none overlap; none under an operator Node or a seen reserved range",
    ),
    ("(k)", "no LoadBalancer address held by two Services"),
    ("(run)", "the run itself failed (timeouts, API errors)"),
];

/// Op kinds that are faults.
const FAULTS: [&str; 9] = [
    "Kill",
    "Term",
    "Freeze",
    "Thaw",
    "Respawn",
    "FreezeLeader",
    "RestartApiserver",
    "RestartEtcd",
    "RecreateBehindRelist",
];

/// Named counts, borrowed from a [`Tally`].
type Counts<'a> = Vec<(&'a String, &'a usize)>;

#[derive(Default, Debug, Clone)]
pub struct Tally {
    pub ops: BTreeMap<String, usize>,
    pub notes: BTreeMap<String, usize>,
}

/// The variant name of `op` (the inner one for claim and Service ops).
pub fn kind_of(op: &Op) -> String {
    let d = format!("{op:?}");
    let d = d.strip_prefix("Svc(").unwrap_or(&d);
    d.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

impl Tally {
    pub fn op(&mut self, op: &Op) {
        *self.ops.entry(kind_of(op)).or_default() += 1;
    }

    fn split(&self) -> (Counts<'_>, Counts<'_>) {
        self.ops
            .iter()
            .partition(|(k, _)| !FAULTS.contains(&k.as_str()))
    }
}

/// Findings by invariant tag: count and the first one.
pub fn by_invariant(lines: &[String]) -> BTreeMap<String, (usize, String)> {
    let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for l in lines {
        let tag = INVARIANTS
            .iter()
            .map(|(t, _)| *t)
            .find(|t| l.starts_with(t))
            .or_else(|| l.starts_with("run error").then_some("(run)"))
            .map(str::to_string)
            .unwrap_or_else(|| l.split(' ').next().unwrap_or("").to_string());
        let e = out.entry(tag).or_insert((0, l.clone()));
        e.0 += 1;
    }
    out
}

fn join(v: &Counts) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The per-run report (operations, faults, outcomes, violations).
pub fn render(t: &Tally, lines: &[String]) -> String {
    let (ops, faults) = t.split();
    let total: usize = t.ops.values().sum();
    let nf: usize = faults.iter().map(|(_, n)| **n).sum();
    let mut s = String::new();
    // Directed scenarios keep no tally: their ops.log says what they did.
    if total > 0 {
        let _ = writeln!(s, "operations ({}): {}", total - nf, join(&ops));
        let _ = writeln!(s, "faults ({nf}): {}", join(&faults));
        let notes: Counts = t.notes.iter().collect();
        let _ = writeln!(s, "outcomes: {}", join(&notes));
    }
    let _ = writeln!(s, "violations by invariant:");
    let found = by_invariant(lines);
    for (tag, what) in INVARIANTS {
        match found.get(tag) {
            Some((n, first)) => {
                let first = first.lines().next().unwrap_or("");
                let _ = writeln!(s, "  {tag} {n:>4}  {what}\n         e.g. {first}");
            }
            None if tag != "(run)" => {
                let _ = writeln!(s, "  {tag}    0  {what}");
            }
            None => {}
        }
    }
    for (tag, (n, first)) in found
        .iter()
        .filter(|(t, _)| !INVARIANTS.iter().any(|(x, _)| x == *t))
    {
        let _ = writeln!(s, "  {tag} {n:>4}  (scenario check)\n         e.g. {first}");
    }
    s
}
