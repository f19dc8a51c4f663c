//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! kube-runtime has none, so this is the client-go algorithm in small: every
//! `retry_period` the replica tries to create, renew or take over the Lease
//! with a resourceVersion precondition. Expiry is judged by the local clock
//! from the moment a change of the record was last *observed* (not by the
//! holder's timestamps), so clock skew between replicas does not matter. A
//! leader that has not renewed for `renew_deadline` stops writing at once;
//! because `renew_deadline < lease_duration`, it stops before any other
//! replica can take over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease timing and identity.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What the last look at the Lease showed.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Until when this replica may write: the moment its last successful renew
/// was *sent* plus the renew deadline. Checked right before every write, so
/// a process that was frozen (SIGSTOP, a long GC-like stall, a VM pause)
/// does not write on a stale "I am the leader" once it wakes.
pub type Deadline = Arc<Mutex<Option<Instant>>>;

/// Ends this replica's writing at once: the API server's fence refused one
/// of its writes. The elector sees the cleared deadline and steps down.
pub fn fence(deadline: &Deadline) {
    if let Ok(mut d) = deadline.lock() {
        *d = None;
    }
}

/// True while `deadline` lies in the future.
pub fn within(deadline: &Deadline) -> bool {
    deadline
        .lock()
        .ok()
        .and_then(|d| *d)
        .is_some_and(|t| Instant::now() < t)
}

/// Starts the lease elector: returns whether this replica leads, the
/// [`Deadline`] until which its writes are covered by the lease, and the task.
pub fn spawn_with_deadline(
    client: Client,
    s: LeaseSettings,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, Deadline, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let deadline: Deadline = Arc::default();
    let dl = deadline.clone();
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let handle = tokio::spawn(async move {
        let mut observed: Option<Observed> = None;
        let mut last_renew: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let attempt = tokio::time::timeout(
                s.retry_period.max(Duration::from_secs(1)),
                try_acquire_or_renew(&api, &s, &mut observed),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => {
                    last_renew = Some(sent);
                    let leading = *tx.borrow();
                    let fenced = leading && dl.lock().is_ok_and(|d| d.is_none());
                    if fenced {
                        // A write was refused by the fence: step down, and
                        // lead again only through the barrier below.
                        warn!(lease = %s.name, "a write was refused by the API server's fence; stepping down");
                        let _ = tx.send(false);
                    } else if leading || fence_barrier(&api, &s).await {
                        if let Ok(mut d) = dl.lock() {
                            *d = Some(sent + s.renew_deadline);
                        }
                        if !leading {
                            info!(lease = %s.name, identity = %s.identity, "acquired leadership");
                            let _ = tx.send(true);
                        }
                    }
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    warn!(lease = %s.name, "leader election: {}", crate::k8s::errors::error_message(&e))
                }
                Err(_) => warn!(lease = %s.name, "leader election: Lease request timed out"),
            }
            let overdue = last_renew.is_none_or(|t| t.elapsed() >= s.renew_deadline);
            let taken = observed
                .as_ref()
                .is_some_and(|o| o.holder.as_deref() != Some(s.identity.as_str()));
            if (overdue || taken)
                && let Ok(mut d) = dl.lock()
            {
                *d = None;
            }
            if *tx.borrow() && (overdue || taken) {
                if overdue {
                    warn!(lease = %s.name, "could not renew the Lease within the renew deadline; stop writing");
                }
                let _ = tx.send(false);
            }
            tokio::select! {
                _ = tokio::time::sleep(s.retry_period) => {}
                _ = stop.changed() => {
                    if let Ok(mut d) = dl.lock() {
                        *d = None;
                    }
                    if *tx.borrow() {
                        let _ = tx.send(false);
                        release(&api, &s).await;
                    }
                    return;
                }
            }
        }
    });
    (rx, deadline, handle)
}

/// One round; `Ok(true)` when this replica holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    s: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        return create(api, s, observed).await;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.clone(),
            at: Instant::now(),
        });
    }
    let me = holder.as_deref() == Some(s.identity.as_str());
    let their_duration = spec
        .lease_duration_seconds
        .map(|d| Duration::from_secs(u64::try_from(d).unwrap_or(0)))
        .unwrap_or(s.lease_duration);
    let expired = holder.is_none()
        || observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() >= their_duration);
    if !me && !expired {
        return Ok(false);
    }
    let new_spec = renewed(spec, s, me);
    let renew_time = new_spec.renew_time.clone();
    lease.spec = Some(new_spec);
    // replace carries the resourceVersion we read: a concurrent writer makes it fail with 409.
    let result = api.replace(&s.name, &PostParams::default(), &lease).await;
    taken(result, s, renew_time, observed)
}

fn duration_secs(s: &LeaseSettings) -> i32 {
    i32::try_from(s.lease_duration.as_secs()).unwrap_or(i32::MAX)
}

/// Creates the Lease held by this replica; a 409 means another replica was first.
async fn create(
    api: &Api<Lease>,
    s: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            namespace: Some(s.namespace.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(s.identity.clone()),
            lease_duration_seconds: Some(duration_secs(s)),
            acquire_time: Some(now_micro()),
            renew_time: Some(now_micro()),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let result = api.create(&PostParams::default(), &lease).await;
    taken(result, s, None, observed)
}

/// The spec this replica writes to renew (`me`) or take over the Lease.
fn renewed(spec: LeaseSpec, s: &LeaseSettings, me: bool) -> LeaseSpec {
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(s.identity.clone());
    new_spec.lease_duration_seconds = Some(duration_secs(s));
    new_spec.renew_time = Some(now_micro());
    if !me {
        new_spec.acquire_time = Some(now_micro());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec
}

/// Whether a create or replace of the Lease made this replica its holder.
fn taken(
    result: Result<Lease, kube::Error>,
    s: &LeaseSettings,
    renew_time: Option<MicroTime>,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => {
            *observed = Some(Observed {
                holder: Some(s.identity.clone()),
                renew_time,
                at: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long a new holder waits for the API server's fence to see its Lease
/// before it gives up for this round, and the pause between two looks.
const BARRIER_LIMIT: Duration = Duration::from_secs(1);
const BARRIER_PAUSE: Duration = Duration::from_millis(20);

/// Before a new holder writes anything: a dry-run update of the Lease,
/// which the chart's fence policy checks like every write of the operator
/// (the token's Pod against the Lease's holder in the API server's cache of
/// Leases). Its pass shows that this API server's cache has seen the new
/// holder, so from here on it refuses every write of the old one; the
/// lists that follow this replica's election are read after that moment,
/// so they hold whatever the old holder wrote before it. Without the
/// policy the dry run simply passes. False: not yet (the round's takeover
/// stands; the next round tries again).
async fn fence_barrier(api: &Api<Lease>, s: &LeaseSettings) -> bool {
    let started = Instant::now();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    loop {
        let result = match api.get(&s.name).await {
            Ok(lease) => api.replace(&s.name, &dry_run, &lease).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(()) => return true,
            Err(e) => e,
        };
        let fenced = crate::k8s::errors::is_fenced(&e);
        if !fenced || started.elapsed() >= BARRIER_LIMIT {
            warn!(
                lease = %s.name,
                identity = %s.identity,
                "holding the Lease, but the API server's fence does not yet let this replica write: {}",
                crate::k8s::errors::error_message(&e)
            );
            return false;
        }
        tokio::time::sleep(BARRIER_PAUSE).await;
    }
}

/// Gives the Lease up on shutdown so that another replica takes over at once.
async fn release(api: &Api<Lease>, s: &LeaseSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&s.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %s.name, "released leadership"),
        Err(e) => warn!(lease = %s.name, "releasing the Lease failed: {e}"),
    }
}
