//! Kubernetes Events, published off the reconciler's path: a bounded queue
//! feeds a publisher task, and when the queue is full an Event is dropped
//! (and counted) rather than slowing down allocation.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
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

/// Sends Events without waiting for them.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Note>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    pub fn start(client: Client, instance: &str, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Note>(QUEUE);
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "prefix-operator".into(),
                instance: Some(instance.to_string()),
            },
        );
        let m = metrics.clone();
        let warned: Arc<std::sync::Mutex<std::collections::HashSet<&'static str>>> = Arc::default();
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            while let Some(n) = rx.recv().await {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let recorder = recorder.clone();
                let m = m.clone();
                let warned = warned.clone();
                tokio::spawn(async move {
                    let ev = Event {
                        type_: n.type_,
                        reason: n.reason.into(),
                        note: Some(n.message),
                        action: n.action.into(),
                        secondary: None,
                    };
                    if let Err(e) = recorder.publish(&ev, &n.regarding).await {
                        m.error("PublishEvent");
                        let reason = crate::controller::error_reason(&e);
                        // Warn once per failure reason; the metric counts the rest.
                        if warned.lock().map(|mut w| w.insert(reason)).unwrap_or(false) {
                            warn!(
                                "publishing Event {} on {} {} failed ({reason}; further failures of this kind are only counted): {}",
                                ev.reason,
                                n.regarding.kind.as_deref().unwrap_or("object"),
                                n.regarding.name.as_deref().unwrap_or(""),
                                crate::controller::error_message(&e)
                            );
                        } else {
                            debug!("publishing Event failed: {e}");
                        }
                    }
                    drop(permit);
                });
            }
        });
        EventSink { tx, metrics }
    }

    pub fn send(&self, note: Note) {
        if self.tx.try_send(note).is_err() {
            self.metrics.events_dropped.inc();
        }
    }
}
