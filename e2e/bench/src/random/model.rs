//! Pure helpers of the randomized run: label selectors as the API server
//! evaluates them, and prefix arithmetic counted in node slots. No I/O, so
//! the checks built on them can be tested without a cluster.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `sel` (absent: every Node) selects `labels`.
pub fn selects(sel: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = sel else { return true };
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let have = labels.get(&e.key);
        let vals = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => have.is_some_and(|h| vals.contains(h)),
            "NotIn" => !have.is_some_and(|h| vals.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// 4 or 6.
pub fn family(n: &IpNet) -> u8 {
    match n {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

fn max_len(n: &IpNet) -> u8 {
    n.max_prefix_len()
}

/// First and last address as integers (IPv4 in the low 32 bits).
fn bounds(n: &IpNet) -> (u128, u128) {
    match n {
        IpNet::V4(v) => (
            u128::from(u32::from(v.network())),
            u128::from(u32::from(v.broadcast())),
        ),
        IpNet::V6(v) => (u128::from(v.network()), u128::from(v.broadcast())),
    }
}

/// Whether the two prefixes share any address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    family(a) == family(b) && (a.contains(&b.network()) || b.contains(&a.network()))
}

/// Node slots of length `len` in `p` (0 when `len` is shorter than `p`).
pub fn capacity(p: &IpNet, len: u8) -> u128 {
    if len < p.prefix_len() || len > max_len(p) {
        return 0;
    }
    1u128 << (len - p.prefix_len())
}

/// Merged slot-index intervals (inclusive) of `p` covered by `taken`.
fn covered(p: &IpNet, len: u8, taken: &[IpNet]) -> Vec<(u128, u128)> {
    let shift = u32::from(max_len(p) - len);
    let (base, _) = bounds(p);
    let mut iv: Vec<(u128, u128)> = taken
        .iter()
        .filter(|t| overlap(p, t))
        .map(|t| {
            let (ts, te) = bounds(t);
            let (ps, pe) = bounds(p);
            let (s, e) = (ts.max(ps), te.min(pe));
            ((s - base) >> shift, (e - base) >> shift)
        })
        .collect();
    iv.sort_unstable();
    let mut out: Vec<(u128, u128)> = vec![];
    for (s, e) in iv {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Free node slots of length `len` in `prefixes`, none touching `taken`.
pub fn free_slots(prefixes: &[IpNet], len: u8, taken: &[IpNet]) -> u128 {
    prefixes
        .iter()
        .map(|p| {
            let used: u128 = covered(p, len, taken).iter().map(|(s, e)| e - s + 1).sum();
            capacity(p, len).saturating_sub(used)
        })
        .sum()
}

/// The `i`-th slot of length `len` in `p`.
pub fn slot(p: &IpNet, len: u8, i: u128) -> Option<IpNet> {
    if i >= capacity(p, len) {
        return None;
    }
    let (base, _) = bounds(p);
    let addr = base + (i << u32::from(max_len(p) - len));
    let net = match p {
        IpNet::V4(_) => IpNet::V4(ipnet::Ipv4Net::new(u32::try_from(addr).ok()?.into(), len).ok()?),
        IpNet::V6(_) => IpNet::V6(ipnet::Ipv6Net::new(addr.into(), len).ok()?),
    };
    Some(net)
}

/// The lowest free slot of `p` not touching `taken`.
pub fn first_free(p: &IpNet, len: u8, taken: &[IpNet]) -> Option<IpNet> {
    let mut next = 0u128;
    for (s, e) in covered(p, len, taken) {
        if s > next {
            break;
        }
        next = e + 1;
    }
    slot(p, len, next)
}

/// Parses CIDRs, skipping the malformed (the checks report those apart).
pub fn nets(v: &[String]) -> Vec<IpNet> {
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn counts_free_slots_around_taken_and_nested_ranges() {
        let p = [n("2001:db8::/62")];
        assert_eq!(free_slots(&p, 64, &[]), 4);
        assert_eq!(free_slots(&p, 64, &[n("2001:db8:0:1::/64")]), 3);
        assert_eq!(free_slots(&p, 64, &[n("2001:db8::/63")]), 2);
        assert_eq!(free_slots(&p, 64, &[n("2001:db8::/48")]), 0);
        assert_eq!(free_slots(&p, 64, &[n("2001:db8:0:1::/80")]), 3);
        assert_eq!(free_slots(&[n("10.1.0.0/22")], 24, &[n("10.1.1.0/24")]), 3);
    }

    #[test]
    fn first_free_skips_taken_slots() {
        let p = n("2001:db8::/62");
        let t = [n("2001:db8::/64"), n("2001:db8:0:1::/64")];
        assert_eq!(first_free(&p, 64, &t), Some(n("2001:db8:0:2::/64")));
        assert_eq!(first_free(&p, 64, &[n("2001:db8::/62")]), None);
    }

    #[test]
    fn selectors_follow_the_api_rules() {
        let l: Labels = [("zone".to_string(), "a".to_string())].into();
        assert!(selects(None, &l));
        assert!(selects(Some(&LabelSelector::default()), &l));
        let sel = LabelSelector {
            match_labels: Some([("zone".to_string(), "b".to_string())].into()),
            ..Default::default()
        };
        assert!(!selects(Some(&sel), &l));
    }
}
