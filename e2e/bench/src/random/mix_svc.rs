//! The claim and Service part of the random mix: PrefixClaims of every
//! purpose and both families, LoadBalancer Services of the operator's
//! class (one or two families, some asking for an address), ClusterIP
//! Services (IPv6 and dual-stack, some asking for an address of a
//! ServiceCIDR claim), ServiceCIDR claims deleted while ClusterIP Services
//! are created in them, reserved ranges and hand-written Node prefixes
//! over bound claims, and the IPv4 pool made again while dual-stack Nodes
//! wait for it. Choices that need the live state (which bound claim) are
//! drawn as numbers here and resolved when the op runs.

use prefix_operator::api::{IpFamily, PrefixClaimSpec, Purpose};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::mix::{Model, Op, V4_POOL, V6_POOLS, random_labels, random_spec, sel_labels};

/// An address a Service asks for.
#[derive(Clone, Debug)]
pub enum Request {
    /// The `n`-th usable address of the `pick`-th bound claim of the
    /// fitting purpose (LoadBalancer or ServiceCIDR).
    InClaim(usize, u128),
    /// An address no claim holds (the Service must wait).
    Outside,
}

#[derive(Clone, Debug)]
pub struct SvcSpec {
    pub lb: bool,
    pub families: Vec<&'static str>,
    pub policy: &'static str,
    pub request: Option<Request>,
}

#[derive(Clone, Debug)]
pub enum SvcOp {
    CreateClaim(String, PrefixClaimSpec),
    DeleteClaim(String),
    CreateServices(Vec<(String, SvcSpec)>),
    DeleteService(String),
    /// The `pick`-th bound ServiceCIDR claim deleted after `ms` while
    /// ClusterIP Services asking for its addresses are being created.
    ChurnServiceCidr {
        pick: usize,
        names: Vec<String>,
        ms: u64,
    },
    /// The `pick`-th bound claim's prefix added to its pool's reserved ranges.
    ReserveOverClaim(usize),
    /// A new Node, written by hand at once with the node-sized prefix
    /// over (or inside) the `pick`-th bound claim.
    HandOverClaim(String, usize),
}

fn random_claim(rng: &mut StdRng) -> PrefixClaimSpec {
    let v4 = rng.random_bool(0.3);
    let purpose = match rng.random_range(0..100) {
        0..40 => Purpose::ServiceCIDR,
        40..75 => Purpose::LoadBalancer,
        _ => Purpose::Static,
    };
    // IPv4 pools hold 2-4 /24 slots: a claim takes one whole.
    let lens: &[i32] = match (v4, purpose) {
        (false, Purpose::ServiceCIDR) => &[112, 112, 120, 64],
        (false, Purpose::LoadBalancer) => &[120, 124, 112],
        (false, Purpose::Static) => &[64, 63, 100],
        (true, Purpose::ServiceCIDR) => &[28, 27],
        (true, Purpose::LoadBalancer) => &[29, 28],
        (true, Purpose::Static) => &[24, 26],
    };
    let pool = if v4 {
        V4_POOL
    } else {
        V6_POOLS.choose(rng).copied().unwrap_or("p0")
    };
    PrefixClaimSpec {
        pool: Some(pool.into()),
        pool_selector: None,
        ip_family: if v4 { IpFamily::IPv4 } else { IpFamily::IPv6 },
        prefix_length: *lens.choose(rng).unwrap_or(&lens[0]),
        purpose,
    }
}

fn random_service(rng: &mut StdRng) -> SvcSpec {
    let lb = rng.random_bool(0.55);
    let (families, policy): (Vec<&'static str>, &'static str) = match rng.random_range(0..6) {
        0 | 1 => (vec!["IPv6"], "SingleStack"),
        2 if lb => (vec!["IPv4"], "SingleStack"),
        2 | 3 => (vec!["IPv6", "IPv4"], "RequireDualStack"),
        4 => (vec!["IPv4", "IPv6"], "RequireDualStack"),
        _ => (vec!["IPv6", "IPv4"], "PreferDualStack"),
    };
    let request = match rng.random_range(0..100) {
        0..30 => Some(Request::InClaim(
            rng.random_range(0..1000),
            rng.random_range(0..6),
        )),
        30..35 if lb => Some(Request::Outside),
        _ => None,
    };
    SvcSpec {
        lb,
        families,
        policy,
        request,
    }
}

impl Model {
    fn new_obj(&mut self, kind: &str) -> String {
        self.next_obj += 1;
        format!("{kind}{:04}", self.next_obj)
    }

    pub(super) fn svc_op(&mut self, rng: &mut StdRng) -> Option<Op> {
        let op = match rng.random_range(0..100) {
            0..22 => SvcOp::CreateClaim(self.new_obj("c"), random_claim(rng)),
            22..32 => {
                let names: Vec<&String> = self.claims.keys().collect();
                SvcOp::DeleteClaim(names.choose(rng)?.to_string())
            }
            32..58 => {
                let v = (0..rng.random_range(1..=4))
                    .map(|_| (self.new_obj("s"), random_service(rng)))
                    .collect();
                SvcOp::CreateServices(v)
            }
            58..70 => {
                let names: Vec<&String> = self.services.keys().collect();
                SvcOp::DeleteService(names.choose(rng)?.to_string())
            }
            70..77 => SvcOp::ChurnServiceCidr {
                pick: rng.random_range(0..1000),
                names: (0..rng.random_range(4..=10))
                    .map(|_| self.new_obj("s"))
                    .collect(),
                ms: rng.random_range(0..60),
            },
            77..84 => SvcOp::ReserveOverClaim(rng.random_range(0..1000)),
            84..91 => SvcOp::HandOverClaim(self.new_name(), rng.random_range(0..1000)),
            _ => return Some(self.v4_squeeze(rng)),
        };
        Some(Op::Svc(op))
    }

    /// Dual-stack Nodes beyond the IPv4 pool's few slots, then the pool
    /// deleted and made again (maybe with another nodePrefixLength) after
    /// a gap shorter or longer than the operator's family grace.
    fn v4_squeeze(&mut self, rng: &mut StdRng) -> Op {
        let nodes = (0..rng.random_range(3..=6))
            .map(|_| {
                let mut l = random_labels(rng);
                l.insert("stack".into(), "dual".into());
                (self.new_name(), l)
            })
            .collect();
        let gap = *[0u64, 0, 300, 3000, 8000, 14000].choose(rng).unwrap_or(&0);
        let len = *[24, 24, 25].choose(rng).unwrap_or(&24);
        let mut spec = random_spec(rng, V4_POOL, Some(len));
        spec.node_selector = Some(sel_labels("stack", "dual"));
        Op::V4Squeeze(nodes, gap, spec)
    }
}
