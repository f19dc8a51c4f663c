//! Kubernetes Events, published off the reconciler's path: bounded queues
//! feed a publisher task, and when a queue is full an Event is dropped (and
//! counted) rather than slowing down allocation. Allocation Events wait for
//! the reconciler to be idle, so they never compete with podCIDRs writes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Events waiting to be published at most.
const QUEUE: usize = 1024;
/// Events published at once.
const PARALLEL: usize = 8;

/// One Event about one object.
pub struct Note {
    pub regarding: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(
        regarding: ObjectReference,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) -> Self {
        Note {
            regarding,
            type_: EventType::Normal,
            reason,
            action,
            message,
        }
    }

    pub fn warning(
        regarding: ObjectReference,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) -> Self {
        Note {
            regarding,
            type_: EventType::Warning,
            reason,
            action,
            message,
        }
    }
}

/// `<object>.<hex nanoseconds>` as client-go names Events, cut so that it
/// stays within 253 characters; a counter keeps names unique within a process.
fn event_name(base: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let suffix = format!(
        "{:x}",
        nanos.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed))
    );
    let mut cut = base.len().min(252 - suffix.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    // A name must not end in '.' or '-' before the separator.
    let head = base[..cut].trim_end_matches(['.', '-']);
    format!("{head}.{suffix}")
}

/// Creates an `events.k8s.io/v1` Event without series aggregation.
async fn create_event(client: &Client, instance: &str, n: Note) -> Result<(), kube::Error> {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let ns = n
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let base = n.regarding.name.clone().unwrap_or_else(|| "object".into());
    let ev = K8sEvent {
        metadata: kube::api::ObjectMeta {
            name: Some(event_name(&base)),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some(n.action.into()),
        reason: Some(n.reason.into()),
        note: Some(n.message),
        type_: Some("Normal".into()),
        regarding: Some(n.regarding),
        reporting_controller: Some("prefix-operator".into()),
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    };
    kube::Api::<K8sEvent>::namespaced(client.clone(), &ns)
        .create(&kube::api::PostParams::default(), &ev)
        .await
        .map(|_| ())
}

/// Sends Events without waiting for them.
///
/// Two queues: Warnings go out at once; Normal Events (one per allocation)
/// wait until the reconciler is idle — nothing queued, no Node write in
/// flight — so that in a burst the API server spends itself on podCIDRs,
/// not on telling about them. Each queue holds [`QUEUE`] Events; beyond
/// that an Event is dropped and counted.
#[derive(Clone)]
pub struct EventSink {
    urgent: mpsc::Sender<Note>,
    deferred: mpsc::Sender<Note>,
    metrics: Arc<Metrics>,
}

/// The next deferred Event, once the reconciler is idle. Cancel-safe: an
/// Event taken from the queue waits in `held` until it may go.
async fn next_deferred(
    held: &mut Option<Note>,
    deferred: &mut mpsc::Receiver<Note>,
    idle: &mut watch::Receiver<bool>,
) -> Option<Note> {
    if held.is_none() {
        *held = Some(deferred.recv().await?);
    }
    // A closed channel means the reconciler is gone: nothing to yield to.
    let _ = idle.wait_for(|idle| *idle).await;
    held.take()
}

impl EventSink {
    /// Starts the publisher. `idle` is true while the reconciler has no
    /// Node write queued or in flight.
    pub fn start(
        client: Client,
        instance: &str,
        metrics: Arc<Metrics>,
        mut idle: watch::Receiver<bool>,
    ) -> Self {
        let (urgent_tx, mut urgent) = mpsc::channel::<Note>(QUEUE);
        let (deferred_tx, mut deferred) = mpsc::channel::<Note>(QUEUE);
        let publisher = Arc::new(Publisher::new(client, instance, metrics.clone()));
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            let mut held = None;
            loop {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let n = tokio::select! {
                    biased;
                    Some(n) = urgent.recv() => n,
                    Some(n) = next_deferred(&mut held, &mut deferred, &mut idle) => n,
                    else => break,
                };
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    publisher.publish(n).await;
                    drop(permit);
                });
            }
        });
        EventSink {
            urgent: urgent_tx,
            deferred: deferred_tx,
            metrics,
        }
    }

    /// Queues `note`: a Warning to go out at once, a Normal Event to go out
    /// when the reconciler is idle.
    pub fn send(&self, note: Note) {
        let queue = if note.type_ == EventType::Normal {
            &self.deferred
        } else {
            &self.urgent
        };
        if queue.try_send(note).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}

/// Publishes one Event at a time; shared by the publisher's tasks.
struct Publisher {
    client: Client,
    instance: String,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Failure reasons already logged as warnings.
    warned: std::sync::Mutex<std::collections::HashSet<&'static str>>,
}

impl Publisher {
    fn new(client: Client, instance: &str, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "prefix-operator".into(),
                instance: Some(instance.to_string()),
            },
        );
        Publisher {
            client,
            instance: instance.to_string(),
            recorder,
            metrics,
            warned: Default::default(),
        }
    }

    async fn publish(&self, n: Note) {
        let (reason, kind, name) = (
            n.reason,
            n.regarding.kind.clone().unwrap_or_else(|| "object".into()),
            n.regarding.name.clone().unwrap_or_default(),
        );
        let result = if n.type_ == EventType::Normal {
            // One-off Events skip the Recorder: it keeps every Event
            // for six minutes and sweeps that cache on each publish,
            // which costs O(allocations) per allocation in a burst.
            create_event(&self.client, &self.instance, n).await
        } else {
            // Warnings repeat: the Recorder turns repeats into a series.
            let ev = Event {
                type_: n.type_,
                reason: n.reason.into(),
                note: Some(n.message),
                action: n.action.into(),
                secondary: None,
            };
            self.recorder.publish(&ev, &n.regarding).await
        };
        let Err(e) = result else {
            return;
        };
        self.metrics.error("PublishEvent");
        let why = crate::k8s::errors::error_reason(&e);
        // Warn once per failure reason; the metric counts the rest.
        if self
            .warned
            .lock()
            .map(|mut w| w.insert(why))
            .unwrap_or(false)
        {
            warn!(
                "publishing Event {reason} on {kind} {name} failed ({why}; further failures of this kind are only counted): {}",
                crate::k8s::errors::error_message(&e)
            );
        } else {
            debug!("publishing Event {reason} on {kind} {name} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_name;

    #[test]
    fn event_names_are_valid_and_unique() {
        let a = event_name("worker-1");
        let b = event_name("worker-1");
        assert!(a.starts_with("worker-1.") && a != b);
        let long = event_name(&"n".repeat(253));
        assert!(long.len() <= 253, "{}", long.len());
        assert!(!event_name("a.-").contains(".-."));
    }
}
