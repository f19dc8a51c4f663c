//! What a pool's `status.delegation` shows, and back: one pool's client
//! ([`PoolClient`]) with the prefixes it no longer holds and the message
//! for the admin, the status written from its binding, and the binding a
//! status records for the next leader to resume.

use ipnet::Ipv6Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, warn};

use crate::api::{
    DELEGATED_DEPRECATED, DELEGATED_EXPIRED, DELEGATED_PREFERRED, DelegatedPrefix,
    DelegationStatus, MAX_LISTED_DELEGATED,
};
use crate::dhcp::client::{Binding, Client, Lease, Millis, NEVER, Note, Output};
use crate::dhcp::identity::{Identity, hex};
use crate::dhcp::wire::Refused;

fn to_time(ms: Millis) -> Option<Time> {
    if ms == NEVER {
        return None;
    }
    let ms = i64::try_from(ms).ok()?;
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(Time)
}

fn from_time(t: Option<&Time>) -> Millis {
    t.map_or(NEVER, |t| t.0.as_millisecond().max(0) as Millis)
}

/// One pool's client and what its status shows.
pub(super) struct PoolClient {
    pub(super) uid: String,
    pub(super) interface: String,
    pub(super) client: Client,
    /// Prefixes no longer in the binding, newest first (deprecated by the
    /// server, or expired).
    pub(super) history: Vec<DelegatedPrefix>,
    pub(super) message: Option<String>,
    pub(super) written: Option<DelegationStatus>,
    /// A status write failed: try again then.
    pub(super) retry_at: Option<Millis>,
    /// The pool is gone: release, then forget.
    pub(super) deleted: bool,
}

impl PoolClient {
    pub(super) fn status(&self, now: Millis) -> DelegationStatus {
        let identity = Identity::for_pool(&self.uid);
        let binding = self.client.binding();
        let mut prefixes: Vec<DelegatedPrefix> = binding
            .map(|b| {
                b.leases
                    .iter()
                    .map(|l| DelegatedPrefix {
                        prefix: l.prefix.to_string(),
                        state: if l.preferred_until > now {
                            DELEGATED_PREFERRED
                        } else {
                            DELEGATED_DEPRECATED
                        }
                        .into(),
                        preferred_until: to_time(l.preferred_until),
                        valid_until: to_time(l.valid_until),
                    })
                    .collect()
            })
            .unwrap_or_default();
        prefixes.sort_by(|a, b| b.valid_until.cmp(&a.valid_until));
        for h in &self.history {
            if !prefixes.iter().any(|p| p.prefix == h.prefix) {
                let mut h = h.clone();
                if from_time(h.valid_until.as_ref()) <= now {
                    h.state = DELEGATED_EXPIRED.into();
                }
                prefixes.push(h);
            }
        }
        prefixes.truncate(MAX_LISTED_DELEGATED);
        DelegationStatus {
            duid: identity.duid_text(),
            iaid: i64::from(identity.iaid),
            phase: format!("{:?}", self.client.phase()),
            server_id: binding.map(|b| hex(&b.server_id)),
            prefixes,
            renew_at: binding.and_then(|b| to_time(b.t1_at)),
            rebind_at: binding.and_then(|b| to_time(b.t2_at)),
            last_reply: binding.and_then(|b| to_time(b.updated_at)),
            message: self.message.clone(),
        }
    }

    /// When the client or the status next changes by itself.
    pub(super) fn next_wakeup(&self, now: Millis) -> Option<Millis> {
        let preferred_ends = self
            .client
            .binding()
            .into_iter()
            .flat_map(|b| b.leases.iter().map(|l| l.preferred_until))
            .chain(
                self.history
                    .iter()
                    .map(|h| from_time(h.valid_until.as_ref())),
            )
            .filter(|t| *t > now && *t != NEVER);
        self.client
            .next_wakeup()
            .into_iter()
            .chain(preferred_ends)
            .chain(self.retry_at)
            .min()
    }

    /// Takes in what the state machine said; returns the datagrams to send.
    pub(super) fn take(&mut self, pool: &str, now: Millis, out: Vec<Output>) -> Vec<Vec<u8>> {
        let mut send = Vec::new();
        for o in out {
            match o {
                Output::Send(b) => send.push(b),
                Output::Note(n) => self.note(pool, now, n),
            }
        }
        send
    }

    fn note(&mut self, pool: &str, now: Millis, n: Note) {
        match n {
            Note::Bound(b) => {
                info!(pool, prefixes = ?b.leases.iter().map(|l| l.prefix.to_string()).collect::<Vec<_>>(), "DHCPv6 binding accepted");
                self.message = None;
                for l in &b.leases {
                    self.history.retain(|h| h.prefix != l.prefix.to_string());
                }
            }
            Note::Withdrawn(p) => {
                info!(pool, prefix = %p, "the DHCPv6 server withdrew a prefix");
                self.remember(p, DELEGATED_EXPIRED, now, now);
            }
            Note::Expired(leases) => {
                for l in leases {
                    warn!(pool, prefix = %l.prefix, "delegated prefix expired without renewal");
                    self.remember(
                        l.prefix,
                        DELEGATED_EXPIRED,
                        l.preferred_until,
                        l.valid_until,
                    );
                }
                self.message = Some("the delegated prefix's valid lifetime ended with no Reply from a DHCPv6 server".into());
            }
            Note::Ignored(why @ (Refused::Malformed(_) | Refused::NoServerId)) => {
                // Not from a well-behaved server: worth the admin's eyes.
                warn!(pool, "DHCPv6 datagram ignored: {why}");
                self.message = Some(format!("ignored {why}"));
            }
            Note::Ignored(why) => {
                // Other clients' replies on a shared link, stale transactions.
                tracing::debug!(pool, "DHCPv6 datagram ignored: {why}");
            }
            Note::Dropped(d) => {
                warn!(pool, "DHCPv6 server message: dropped {d}");
                self.message = Some(format!("the DHCPv6 server sent {d}; it was dropped"));
            }
            Note::PrefixRefused { prefix, reason } => {
                warn!(pool, %prefix, "delegated prefix refused: {reason}");
                self.message = Some(format!("delegated prefix {prefix} refused: {reason}"));
            }
            Note::ServerSaid(s) => {
                warn!(pool, code = %s.code, "DHCPv6 server: {}", s.message);
                self.message = Some(format!("DHCPv6 server answered {}: {}", s.code, s.message));
            }
            Note::RequestUnanswered => {
                self.message = Some("no Reply to ten Requests; soliciting again".into());
            }
            Note::Released => info!(pool, "DHCPv6 binding released"),
        }
    }

    fn remember(&mut self, p: Ipv6Net, state: &str, preferred: Millis, valid: Millis) {
        let prefix = p.to_string();
        self.history.retain(|h| h.prefix != prefix);
        self.history.insert(
            0,
            DelegatedPrefix {
                prefix,
                state: state.into(),
                preferred_until: to_time(preferred.min(valid)),
                valid_until: to_time(valid),
            },
        );
        self.history.truncate(MAX_LISTED_DELEGATED);
    }
}

/// The binding a pool's status records, if it names one still valid.
pub(super) fn recorded_binding(
    st: &DelegationStatus,
    me: &Identity,
    now: Millis,
) -> Option<Binding> {
    if st.duid != me.duid_text() {
        return None;
    }
    let server_id = parse_hex(st.server_id.as_deref()?)?;
    let leases: Vec<Lease> = st
        .prefixes
        .iter()
        .filter(|p| p.state == DELEGATED_PREFERRED || p.state == DELEGATED_DEPRECATED)
        .filter_map(|p| {
            Some(Lease {
                prefix: p.prefix.parse().ok()?,
                preferred_until: from_time(p.preferred_until.as_ref()),
                valid_until: from_time(p.valid_until.as_ref()),
            })
        })
        .filter(|l| l.valid_until > now)
        .collect();
    if leases.is_empty() {
        return None;
    }
    Some(Binding {
        server_id,
        leases,
        updated_at: from_time(st.last_reply.as_ref()).min(now),
        t1_at: from_time(st.renew_at.as_ref()),
        t2_at: from_time(st.rebind_at.as_ref()),
    })
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dhcp::client::tests::{T0, UID, cfg};

    fn binding(leases: Vec<Lease>) -> Binding {
        Binding {
            server_id: vec![0, 1, 2, 3],
            leases,
            updated_at: T0,
            t1_at: T0 + 100_000,
            t2_at: T0 + 160_000,
        }
    }

    fn lease(p: &str, preferred: Millis, valid: Millis) -> Lease {
        Lease {
            prefix: p.parse().expect("net"),
            preferred_until: preferred,
            valid_until: valid,
        }
    }

    fn pool_client(b: Binding, now: Millis) -> PoolClient {
        let (client, _) = Client::resume(cfg(), b, now, 1);
        PoolClient {
            uid: UID.into(),
            interface: "eth1".into(),
            client,
            history: Vec::new(),
            message: None,
            written: None,
            retry_at: None,
            deleted: false,
        }
    }

    /// What one leader writes, the next reads back as the same binding.
    #[test]
    fn a_written_binding_reads_back_the_same() {
        let b = binding(vec![
            lease("2001:db8:1::/56", T0 + 200_000, T0 + 300_000),
            lease("2001:db8:2::/56", NEVER, NEVER),
        ]);
        let st = pool_client(b.clone(), T0 + 1).status(T0 + 1);
        assert_eq!(st.duid, Identity::for_pool(UID).duid_text());
        assert_eq!(st.server_id.as_deref(), Some("00:01:02:03"));
        assert!(st.prefixes.iter().all(|p| p.state == DELEGATED_PREFERRED));
        let mut back = recorded_binding(&st, &Identity::for_pool(UID), T0 + 1).expect("a binding");
        back.leases.sort_by_key(|l| l.prefix);
        assert_eq!(back, b);
    }

    #[test]
    fn a_prefix_past_its_preferred_lifetime_is_deprecated_and_one_past_its_valid_lifetime_expired()
    {
        let now = T0 + 250_000;
        let mut c = pool_client(
            binding(vec![lease("2001:db8:1::/56", T0 + 200_000, T0 + 300_000)]),
            now,
        );
        c.remember(
            "2001:db8:9::/56".parse().expect("net"),
            DELEGATED_DEPRECATED,
            T0,
            T0 + 240_000,
        );
        let st = c.status(now);
        let states: Vec<(&str, &str)> = st
            .prefixes
            .iter()
            .map(|p| (p.prefix.as_str(), p.state.as_str()))
            .collect();
        assert_eq!(
            states,
            vec![
                ("2001:db8:1::/56", DELEGATED_DEPRECATED),
                ("2001:db8:9::/56", DELEGATED_EXPIRED)
            ]
        );
        // Read back, only what is still valid is held.
        let back = recorded_binding(&st, &Identity::for_pool(UID), now).expect("binding");
        assert_eq!(back.leases.len(), 1);
    }

    #[test]
    fn a_recorded_binding_of_another_duid_or_with_nothing_valid_is_not_resumed() {
        let st = pool_client(
            binding(vec![lease("2001:db8:1::/56", T0 + 200_000, T0 + 300_000)]),
            T0,
        )
        .status(T0);
        let other = Identity::for_pool("7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(
            recorded_binding(&st, &other, T0),
            None,
            "another pool's binding"
        );
        assert_eq!(
            recorded_binding(&st, &Identity::for_pool(UID), T0 + 300_000),
            None,
            "nothing valid left"
        );
        let mut bad = st.clone();
        bad.server_id = Some("zz:01".into());
        assert_eq!(
            recorded_binding(&bad, &Identity::for_pool(UID), T0),
            None,
            "a server id that is not hex"
        );
        let mut garbage = st.clone();
        garbage.prefixes[0].prefix = "banana".into();
        assert_eq!(
            recorded_binding(&garbage, &Identity::for_pool(UID), T0),
            None,
            "no prefix parses"
        );
    }

    #[test]
    fn the_listed_history_is_bounded() {
        let mut c = pool_client(
            binding(vec![lease("2001:db8:1::/56", T0 + 200_000, T0 + 300_000)]),
            T0,
        );
        for i in 0..40u16 {
            let p: Ipv6Net = format!("2001:db8:{:x}::/56", 0x100 + i)
                .parse()
                .expect("net");
            c.remember(p, DELEGATED_EXPIRED, T0, T0);
        }
        assert_eq!(c.status(T0).prefixes.len(), MAX_LISTED_DELEGATED);
        assert_eq!(
            c.status(T0).prefixes[0].prefix,
            "2001:db8:1::/56",
            "the live prefix first"
        );
    }
}
