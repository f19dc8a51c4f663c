//! The leader's loop: a [`Lead`] holds the DHCPv6 clients of the delegated
//! pools, routes pool events, datagrams, timers and status-write answers to
//! them, and writes their `status.delegation` beside the loop.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::links::Links;
use super::status::{PoolClient, recorded_binding};
use super::{FIELD_MANAGER, MIN_DELEGATED_LENGTH, now_ms};
use crate::api::{DELEGATED_DEPRECATED, DELEGATED_PREFERRED, DelegationStatus, PrefixPool};
use crate::dhcp::client::{Client, Config, Millis, Phase};
use crate::dhcp::identity::Identity;

/// How long before writing a binding again after a failed write.
const STATUS_RETRY: Duration = Duration::from_secs(2);

/// A status write's answer: the pool, the status written, the result.
type Written = (String, DelegationStatus, Result<(), kube::Error>);

/// The leader's DHCPv6 clients, one per delegated pool, with their links
/// and their status writes, which run beside the loop (a slow API server
/// never delays a retransmission).
struct Lead {
    api: Api<PrefixPool>,
    clients: HashMap<String, PoolClient>,
    links: Links,
    writes: tokio::task::JoinSet<Written>,
    /// Pools with a status write in flight (one at a time per pool).
    writing: std::collections::HashSet<String>,
    /// Datagrams to send, per pool, after the event at hand.
    due: Vec<(String, Vec<Vec<u8>>)>,
}

pub(super) async fn lead(api: &Api<PrefixPool>, leader: &mut watch::Receiver<bool>) {
    let mut pools = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(256);
    let mut l = Lead {
        api: api.clone(),
        clients: HashMap::new(),
        links: Links::new(tx),
        writes: tokio::task::JoinSet::new(),
        writing: Default::default(),
        due: Vec::new(),
    };
    info!("leading the DHCPv6 clients of delegated pools");
    loop {
        let sleep = tokio::time::sleep(l.until_next(now_ms()));
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() || !*leader.borrow() {
                    info!("no longer leading: DHCPv6 clients stop (the next leader renews their bindings)");
                    return;
                }
            }
            ev = pools.next() => match ev {
                Some(Ok(ev)) => l.on_pool_event(ev),
                Some(Err(e)) => warn!("watching PrefixPools for delegations: {e}"),
                None => return,
            },
            Some((iface, bytes)) = rx.recv() => l.on_datagram(&iface, &bytes),
            Some(done) = l.writes.join_next(), if !l.writes.is_empty() => {
                if let Ok(written) = done {
                    l.on_written(written);
                }
            }
            () = sleep => l.on_timer(),
        }
        l.send_due().await;
        l.write_statuses();
    }
}

impl Lead {
    /// How long to sleep: until the earliest client or link deadline.
    fn until_next(&self, now: Millis) -> Duration {
        let next = self
            .clients
            .values()
            .filter_map(|c| c.next_wakeup(now))
            .chain(self.links.next_retry())
            .min();
        next.map_or(Duration::from_secs(3600), |t| {
            Duration::from_millis(t.saturating_sub(now))
        })
    }

    fn on_pool_event(&mut self, ev: Event<PrefixPool>) {
        let now = now_ms();
        match ev {
            Event::Apply(p) | Event::InitApply(p) => {
                if let Some(sent) = upsert(&mut self.clients, &p, now) {
                    self.due.push((p.name_any(), sent));
                }
            }
            Event::Delete(p) => {
                if let Some(c) = self.clients.get_mut(&p.name_any()) {
                    c.deleted = true;
                    let out = c.client.release(now);
                    let sent = c.take(&p.name_any(), now, out);
                    self.due.push((p.name_any(), sent));
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }

    fn on_datagram(&mut self, iface: &str, bytes: &[u8]) {
        let now = now_ms();
        for (name, c) in self
            .clients
            .iter_mut()
            .filter(|(_, c)| c.interface == iface)
        {
            let out = c.client.on_message(now, bytes);
            let sent = c.take(name, now, out);
            self.due.push((name.clone(), sent));
        }
    }

    /// Woken at a deadline: act on the time it is now, not the time the
    /// sleep began.
    fn on_timer(&mut self) {
        let now = now_ms();
        for (name, c) in self.clients.iter_mut() {
            let out = c.client.on_timer(now);
            let sent = c.take(name, now, out);
            self.due.push((name.clone(), sent));
        }
        self.links.forget_failures_until(now);
    }

    /// Opens the sockets the clients need (retried after an error) and
    /// sends what is due; forgets released clients of deleted pools.
    async fn send_due(&mut self) {
        let now = now_ms();
        for c in self.clients.values_mut() {
            if let Err(e) = self.links.ensure(&c.interface, now) {
                c.message = Some(e);
            }
        }
        for (name, datagrams) in std::mem::take(&mut self.due) {
            if let Some(c) = self.clients.get(&name) {
                self.links.send(&c.interface, &name, &datagrams).await;
            }
        }
        self.clients
            .retain(|_, c| !(c.deleted && c.client.phase() == Phase::Released));
    }

    /// Starts a status write for every pool whose status changed and has
    /// none in flight.
    fn write_statuses(&mut self) {
        let now = now_ms();
        for (name, c) in self.clients.iter_mut().filter(|(_, c)| !c.deleted) {
            let st = c.status(now);
            if c.written.as_ref() == Some(&st) {
                c.retry_at = None;
                continue;
            }
            if self.writing.contains(name) || c.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            self.writing.insert(name.clone());
            let (api, name) = (self.api.clone(), name.clone());
            self.writes.spawn(async move {
                let result = write_status(&api, &name, &st).await;
                (name, st, result)
            });
        }
    }

    fn on_written(&mut self, (name, st, result): Written) {
        self.writing.remove(&name);
        let Some(c) = self.clients.get_mut(&name) else {
            return;
        };
        match result {
            Ok(()) => {
                c.written = Some(st);
                c.retry_at = None;
            }
            Err(e) => {
                warn!(pool = %name, "writing status.delegation: {e}");
                c.retry_at = Some(now_ms() + STATUS_RETRY.as_millis() as Millis);
            }
        }
    }
}

/// Starts or updates the client of `pool`; returns what to send.
fn upsert(
    clients: &mut HashMap<String, PoolClient>,
    pool: &PrefixPool,
    now: Millis,
) -> Option<Vec<Vec<u8>>> {
    let name = pool.name_any();
    let Some((interface, cfg)) = config(pool) else {
        clients.remove(&name);
        return None;
    };
    let uid = pool.metadata.uid.clone().unwrap_or_default();
    if let Some(c) = clients.get_mut(&name)
        && c.uid == uid
    {
        c.interface = interface;
        return None;
    }
    let recorded = pool.status.as_ref().and_then(|s| s.delegation.as_ref());
    let seed = now
        ^ u64::from(
            cfg.identity
                .duid
                .iter()
                .fold(0u32, |a, b| a.rotate_left(5) ^ u32::from(*b)),
        );
    let (client, out) = match recorded.and_then(|st| recorded_binding(st, &cfg.identity, now)) {
        Some(b) => {
            info!(pool = %name, prefixes = ?b.leases.iter().map(|l| l.prefix.to_string()).collect::<Vec<_>>(), "resuming the DHCPv6 binding recorded in the pool's status");
            Client::resume(cfg, b, now, seed)
        }
        None => Client::new(cfg, now, seed),
    };
    let history = recorded
        .map(|st| {
            st.prefixes
                .iter()
                .filter(|p| {
                    client
                        .binding()
                        .is_none_or(|b| !b.leases.iter().any(|l| l.prefix.to_string() == p.prefix))
                })
                .cloned()
                .map(|mut p| {
                    if p.state == DELEGATED_PREFERRED {
                        p.state = DELEGATED_DEPRECATED.into();
                    }
                    p
                })
                .collect()
        })
        .unwrap_or_default();
    let mut c = PoolClient {
        uid,
        interface,
        client,
        history,
        message: None,
        written: recorded.cloned(),
        retry_at: None,
        deleted: false,
    };
    let sent = c.take(&name, now, out);
    clients.insert(name, c);
    Some(sent)
}

async fn write_status(
    api: &Api<PrefixPool>,
    name: &str,
    st: &DelegationStatus,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "PrefixPool",
        "metadata": {"name": name},
        "status": {"delegation": st},
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// The state machine's settings for a pool.
fn config(pool: &PrefixPool) -> Option<(String, Config)> {
    let d = pool.spec.delegation.as_ref()?;
    let longest = pool
        .spec
        .node_prefix_length
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or(crate::api::DEFAULT_NODE_PREFIX_LENGTH_V6)
        .min(128);
    Some((
        d.interface.clone(),
        Config {
            identity: Identity::for_pool(pool.metadata.uid.as_deref().unwrap_or_default()),
            hint_length: d.prefix_length.and_then(|n| u8::try_from(n).ok()),
            // Nothing shorter than a /32, what a registry allocates to an
            // ISP: a server delegating more is misconfigured or hostile.
            shortest: longest.saturating_sub(64).max(MIN_DELEGATED_LENGTH),
            longest,
        },
    ))
}
