//! The DHCPv6 client at work: while this replica leads, every PrefixPool
//! with `spec.delegation` gets a [`Client`] on its interface (one UDP socket
//! on port 546 per interface, shared by the pools on it), and its binding is
//! written to the pool's `status.delegation` under a field manager of its
//! own. The allocator reads the pool's prefixes from there, as it reads
//! everything else from the API server. A replica that stops leading drops
//! its clients without a Release (the next leader resumes the binding from
//! the status); a deleted pool's binding is released.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use ipnet::Ipv6Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::client::{Binding, Client, Config, Lease, Millis, NEVER, Note, Output, Phase};
use super::identity::{Identity, hex};
use super::wire::Refused;
use crate::api::{
    DELEGATED_DEPRECATED, DELEGATED_EXPIRED, DELEGATED_PREFERRED, DelegatedPrefix,
    DelegationStatus, MAX_LISTED_DELEGATED, PrefixPool,
};

/// Field manager of `status.delegation`.
pub const FIELD_MANAGER: &str = "prefix-operator-dhcpv6";
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
const CLIENT_PORT: u16 = 546;
const SERVER_PORT: u16 = 547;
/// The shortest delegated prefix a pool takes.
pub const MIN_DELEGATED_LENGTH: u8 = 32;
/// How long before writing a binding again after a failed write.
const STATUS_RETRY: Duration = Duration::from_secs(2);
/// How long before trying again to open an interface's socket.
const SOCKET_RETRY: Duration = Duration::from_secs(5);

/// Wall-clock now, in the state machine's unit.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

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

/// Runs forever: leads the pools' DHCPv6 clients whenever `leader` is true.
pub async fn run(client: kube::Client, mut leader: watch::Receiver<bool>) -> anyhow::Result<()> {
    let api: Api<PrefixPool> = Api::all(client);
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            // Leadership can no longer change, and this replica does not lead.
            std::future::pending::<()>().await;
        }
        lead(&api, &mut leader).await;
    }
}

/// One pool's client and what its status shows.
struct PoolClient {
    uid: String,
    interface: String,
    client: Client,
    /// Prefixes no longer in the binding, newest first (deprecated by the
    /// server, or expired).
    history: Vec<DelegatedPrefix>,
    message: Option<String>,
    written: Option<DelegationStatus>,
    /// A status write failed: try again then.
    retry_at: Option<Millis>,
    /// The pool is gone: release, then forget.
    deleted: bool,
}

impl PoolClient {
    fn status(&self, now: Millis) -> DelegationStatus {
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
    fn next_wakeup(&self, now: Millis) -> Option<Millis> {
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
    fn take(&mut self, pool: &str, now: Millis, out: Vec<Output>) -> Vec<Vec<u8>> {
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
fn recorded_binding(st: &DelegationStatus, me: &Identity, now: Millis) -> Option<Binding> {
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

struct Link {
    socket: Arc<UdpSocket>,
    index: u32,
    _reader: tokio_util::task::AbortOnDropHandle<()>,
}

/// Opens the client socket of `interface`: port 546, bound to the device,
/// sending to the servers' multicast group on it.
fn open(interface: &str) -> std::io::Result<(UdpSocket, u32)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let name = std::ffi::CString::new(interface)
        .map_err(|_| std::io::Error::other("interface name contains NUL"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_hops_v6(1)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT, 0, 0).into())?;
    Ok((UdpSocket::from_std(s.into())?, index))
}

/// The client sockets, one per interface in use, and the interfaces that
/// could not be opened (tried again after [`SOCKET_RETRY`]).
struct Links {
    open: HashMap<String, Link>,
    failed: HashMap<String, (Millis, String)>,
    /// Where every socket's reader hands its datagrams: (interface, bytes).
    tx: mpsc::Sender<(String, Vec<u8>)>,
}

impl Links {
    fn next_retry(&self) -> Option<Millis> {
        self.failed.values().map(|(at, _)| *at).min()
    }

    fn forget_failures_until(&mut self, now: Millis) {
        self.failed.retain(|_, (at, _)| *at > now);
    }

    /// Opens `interface` unless it is open; why not, if it cannot be.
    fn ensure(&mut self, interface: &str, now: Millis) -> Result<(), String> {
        if self.open.contains_key(interface) {
            return Ok(());
        }
        if let Some((_, e)) = self.failed.get(interface) {
            return Err(e.clone());
        }
        match open(interface) {
            Ok((socket, index)) => {
                let socket = Arc::new(socket);
                let reader = tokio::spawn(read_datagrams(
                    socket.clone(),
                    interface.to_string(),
                    self.tx.clone(),
                ));
                self.open.insert(
                    interface.to_string(),
                    Link {
                        socket,
                        index,
                        _reader: tokio_util::task::AbortOnDropHandle::new(reader),
                    },
                );
                Ok(())
            }
            Err(e) => {
                let msg =
                    format!("cannot open the DHCPv6 client socket on interface {interface}: {e}");
                warn!("{msg}");
                let retry = now + SOCKET_RETRY.as_millis() as Millis;
                self.failed
                    .insert(interface.to_string(), (retry, msg.clone()));
                Err(msg)
            }
        }
    }

    /// Sends `datagrams` of pool `pool` to the servers on `interface`; a
    /// socket whose interface went away (or was made again with another
    /// index) is dropped, to be opened afresh.
    async fn send(&mut self, interface: &str, pool: &str, datagrams: &[Vec<u8>]) {
        let Some(link) = self.open.get(interface) else {
            return;
        };
        let to = SocketAddrV6::new(ALL_SERVERS, SERVER_PORT, 0, link.index);
        let mut gone = false;
        for d in datagrams.iter().filter(|d| !d.is_empty()) {
            if let Err(e) = link.socket.send_to(d, to).await {
                warn!(pool, interface, "sending a DHCPv6 message: {e}");
                gone |= matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENXIO));
            }
        }
        if gone {
            self.open.remove(interface);
        }
    }
}

/// Hands every datagram from a server port on `socket` to `tx`.
async fn read_datagrams(
    socket: Arc<UdpSocket>,
    interface: String,
    tx: mpsc::Sender<(String, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) if from.port() == SERVER_PORT => {
                if tx
                    .send((interface.clone(), buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(interface = %interface, "DHCPv6 socket: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

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

async fn lead(api: &Api<PrefixPool>, leader: &mut watch::Receiver<bool>) {
    let mut pools = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let (tx, mut rx) = mpsc::channel::<(String, Vec<u8>)>(256);
    let mut l = Lead {
        api: api.clone(),
        clients: HashMap::new(),
        links: Links {
            open: HashMap::new(),
            failed: HashMap::new(),
            tx,
        },
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
