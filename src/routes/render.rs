//! Printing routes: `ip route` lines, BIRD or FRR static routes, or JSON;
//! a route that is not routed becomes a comment saying why.

use super::{ClaimRoute, Format, Route};

/// Renders routes; routes without a next hop become comments (or `null` in
/// JSON). In JSON, claim routes follow the node routes in the same array,
/// told apart by their `claim` key.
pub fn render(routes: &[Route], claims: &[ClaimRoute], format: Format) -> String {
    match format {
        Format::Ip => render_ip(routes) + &render_claims_ip(claims),
        Format::Bird => render_bird(routes, claims),
        Format::Frr => render_frr(routes) + &render_claims_frr(claims),
        Format::Json => {
            let mut all: Vec<serde_json::Value> = routes
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            all.extend(claims.iter().filter_map(|c| serde_json::to_value(c).ok()));
            let mut s = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
            s.push('\n');
            s
        }
    }
}

/// The comment line for a claim route that is not routed.
fn claim_not_routed(c: &ClaimRoute, comment: &str) -> String {
    if !c.conflicts_with.is_empty() {
        return format!(
            "{comment} not routed: PrefixClaim {} holds {}, which overlaps a prefix of Node(s) {}\n",
            c.claim,
            c.prefix,
            c.conflicts_with.join(", ")
        );
    }
    let family = if c.prefix.addr().is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    };
    if let Some(svc) = &c.service {
        return format!(
            "{comment} Service {svc} (externalTrafficPolicy: Local) holds {} but no Node with an {family} InternalIP has a ready endpoint of it\n",
            c.prefix
        );
    }
    format!(
        "{comment} PrefixClaim {} holds {} but no Node has an {family} InternalIP to route to\n",
        c.claim, c.prefix
    )
}

/// What a claim route is for, as its comment says it.
fn owner(c: &ClaimRoute) -> String {
    match &c.service {
        Some(svc) => format!(
            "Service {svc} (externalTrafficPolicy: Local), address of PrefixClaim {}",
            c.claim
        ),
        None => format!("PrefixClaim {} ({})", c.claim, c.purpose),
    }
}

fn render_claims_ip(claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for c in claims {
        if !c.routed() {
            s.push_str(&claim_not_routed(c, "#"));
            continue;
        }
        let fam = if c.prefix.addr().is_ipv6() {
            "-6"
        } else {
            "-4"
        };
        s.push_str(&format!("# {}\n", owner(c)));
        if let [one] = c.next_hops.as_slice() {
            s.push_str(&format!(
                "ip {fam} route replace {} via {}\n",
                c.prefix, one.address
            ));
        } else {
            let hops: Vec<String> = c
                .next_hops
                .iter()
                .map(|h| format!("nexthop via {}", h.address))
                .collect();
            s.push_str(&format!(
                "ip {fam} route replace {} {}\n",
                c.prefix,
                hops.join(" ")
            ));
        }
    }
    s
}

/// FRR's staticd makes one ECMP route of several next hops of one prefix.
fn render_claims_frr(claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for c in claims {
        if !c.routed() {
            s.push_str(&claim_not_routed(c, "!"));
            continue;
        }
        let kw = if c.prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ip"
        };
        s.push_str(&format!("! {}\n", owner(c)));
        for h in &c.next_hops {
            s.push_str(&format!("{kw} route {} {} tag 4193\n", c.prefix, h.address));
        }
    }
    s
}

fn is_v6(r: &Route) -> bool {
    r.prefix.addr().is_ipv6()
}

/// The comment line for a route that is not routed: in conflict, or with
/// no next hop.
fn not_routed(r: &Route, comment: &str) -> String {
    if !r.conflicts_with.is_empty() {
        return format!(
            "{comment} not routed: Node {} holds {}, which overlaps a prefix of Node(s) {}\n",
            r.node,
            r.prefix,
            r.conflicts_with.join(", ")
        );
    }
    let family = if is_v6(r) { "IPv6" } else { "IPv4" };
    format!(
        "{comment} Node {} holds {} but has no {family} InternalIP to route to\n",
        r.node, r.prefix
    )
}

fn render_ip(routes: &[Route]) -> String {
    let mut s = String::new();
    for r in routes {
        match r.next_hop.filter(|_| r.routed()) {
            Some(h) => {
                let fam = if is_v6(r) { "-6" } else { "-4" };
                s.push_str(&format!("ip {fam} route replace {} via {h}\n", r.prefix));
            }
            None => s.push_str(&not_routed(r, "#")),
        }
    }
    s
}

/// One `protocol static` block per family that has routes; a claim route
/// is one multipath route (`via` repeated).
fn render_bird(routes: &[Route], claims: &[ClaimRoute]) -> String {
    let mut s = String::new();
    for (v6, proto) in [(true, "ipv6"), (false, "ipv4")] {
        let rs: Vec<&Route> = routes.iter().filter(|r| is_v6(r) == v6).collect();
        let cs: Vec<&ClaimRoute> = claims
            .iter()
            .filter(|c| c.prefix.addr().is_ipv6() == v6)
            .collect();
        if rs.is_empty() && cs.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "protocol static prefix_operator_{proto} {{\n  {proto};\n"
        ));
        for r in rs {
            match r.next_hop.filter(|_| r.routed()) {
                Some(h) => s.push_str(&format!("  route {} via {h}; # {}\n", r.prefix, r.node)),
                None => s.push_str(&format!("  {}", not_routed(r, "#"))),
            }
        }
        for c in cs {
            if !c.routed() {
                s.push_str(&format!("  {}", claim_not_routed(c, "#")));
                continue;
            }
            let hops: Vec<String> = c
                .next_hops
                .iter()
                .map(|h| format!("via {}", h.address))
                .collect();
            s.push_str(&format!(
                "  route {} {}; # {}\n",
                c.prefix,
                hops.join(" "),
                owner(c)
            ));
        }
        s.push_str("}\n");
    }
    s
}

/// FRR takes `!` as a comment only at the start of a line, so the Node's
/// name goes on a line of its own before its route.
fn render_frr(routes: &[Route]) -> String {
    let mut s = String::new();
    for r in routes {
        match r.next_hop.filter(|_| r.routed()) {
            Some(h) => {
                let kw = if is_v6(r) { "ipv6" } else { "ip" };
                s.push_str(&format!(
                    "! {}\n{kw} route {} {h} tag 4193\n",
                    r.node, r.prefix
                ));
            }
            None => s.push_str(&not_routed(r, "!")),
        }
    }
    s
}
