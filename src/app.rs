//! The composition root: starts the operator's parts — the reconciler,
//! leader election, the HTTP server and the leader gauge — and supervises
//! them. When any part stops on its own, the operator stops with an error
//! (its Pod is restarted) instead of running on half alive: a replica whose
//! HTTP server died would be killed by its probes anyway, one whose leader
//! election died would never write again. `cli::run` and the tests start
//! the operator through here.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::info;

use crate::controller::{self, Health, Settings};
use crate::leader::{self, LeaseSettings};
use crate::metrics::Metrics;

/// Who decides whether this replica may write.
pub enum Leadership {
    /// The only replica: always.
    Sole,
    /// A Lease, with its own client (renewals must not queue behind the
    /// reconciler's rate limit).
    Elect {
        client: Client,
        lease: LeaseSettings,
    },
    /// Someone else (tests): writes while the value is true.
    Given(watch::Receiver<bool>),
}

/// How to run the operator.
pub struct Config {
    pub settings: Settings,
    pub leadership: Leadership,
    /// Where to serve /healthz and /readyz over plain HTTP (None: not
    /// served) — and /metrics, unauthenticated, when `secure_metrics` is None.
    pub http: Option<SocketAddr>,
    /// Serve /metrics over HTTPS to callers the API server authorizes.
    pub secure_metrics: Option<crate::metrics::serve::Secure>,
}

/// The operator, started: its parts run while [`App::run`] is polled.
pub struct App {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The bound HTTP address, when serving.
    pub http_addr: Option<SocketAddr>,
    /// The bound HTTPS address of /metrics, when serving it securely.
    pub metrics_addr: Option<SocketAddr>,
    client: Client,
    settings: Settings,
    leader: watch::Receiver<bool>,
    /// Parts that must not end before shutdown, by name.
    parts: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop_lease: watch::Sender<bool>,
    /// Aborted if the App is dropped without `run` finishing (a crash).
    lease_task: Option<AbortOnDropHandle<()>>,
    /// Without leader election: the sender of an always-true leadership,
    /// kept for as long as the App lives.
    _sole: Option<watch::Sender<bool>>,
}

impl App {
    /// Checks the API server and the CRD, binds the HTTP address and starts
    /// leader election.
    pub async fn start(client: Client, config: Config) -> anyhow::Result<App> {
        controller::preflight(&client).await?;
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let mut parts = JoinSet::new();
        let plain_metrics = config.secure_metrics.is_none().then(|| metrics.clone());
        let http_addr = match config.http {
            Some(addr) => {
                let (bound, server) = crate::http::bind(addr, health.clone(), plain_metrics)
                    .await
                    .with_context(|| format!("binding {addr}"))?;
                parts.spawn(async move { ("HTTP server", server.await.map_err(Into::into)) });
                Some(bound)
            }
            None => None,
        };
        let metrics_addr = match config.secure_metrics {
            Some(secure) => {
                let (bound, server) = crate::metrics::serve::bind(secure, metrics.clone()).await?;
                parts.spawn(async move { ("metrics server", server.await.map_err(Into::into)) });
                Some(bound)
            }
            None => None,
        };
        let (stop_lease, stop_rx) = watch::channel(false);
        let mut settings = config.settings;
        let mut sole = None;
        let (leader, lease_task) = match config.leadership {
            Leadership::Sole => {
                let (tx, rx) = watch::channel(true);
                sole = Some(tx);
                (rx, None)
            }
            Leadership::Elect { client, lease } => {
                let (rx, deadline, task) = leader::spawn_with_deadline(client, lease, stop_rx);
                settings.lease_deadline = Some(deadline);
                (rx, Some(AbortOnDropHandle::new(task)))
            }
            Leadership::Given(rx) => (rx, None),
        };
        {
            let m = metrics.clone();
            let mut l = leader.clone();
            parts.spawn(async move {
                loop {
                    m.leader.set(i64::from(*l.borrow()));
                    if l.changed().await.is_err() {
                        // Leadership can no longer change: nothing to show.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
        {
            // Pools fed by DHCPv6 prefix delegation: only the leader talks DHCP.
            let (c, l) = (client.clone(), leader.clone());
            parts.spawn(async move { ("DHCPv6 client", crate::dhcp::runner::run(c, l).await) });
        }
        Ok(App {
            metrics,
            health,
            http_addr,
            metrics_addr,
            client,
            settings,
            leader,
            parts,
            stop_lease,
            lease_task,
            _sole: sole,
        })
    }

    /// Whether this replica may write, as it changes.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Runs the reconciler until `shutdown` resolves or a part stops; then
    /// releases the Lease (if held) and stops the rest.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let reconciler = controller::run(
            self.client.clone(),
            self.settings.clone(),
            self.metrics.clone(),
            self.health.clone(),
            self.leader.clone(),
            shutdown,
        );
        tokio::pin!(reconciler);
        let mut lease_task = self.lease_task.take();
        let lease_ended = async {
            match lease_task.as_mut() {
                Some(t) => {
                    let _ = t.await;
                }
                None => std::future::pending().await,
            }
        };
        let (result, lease_gone) = tokio::select! {
            r = &mut reconciler => (r, false),
            Some(part) = self.parts.join_next() => (Err(match part {
                Ok((name, Ok(()))) => anyhow!("the {name} stopped"),
                Ok((name, Err(e))) => anyhow!("the {name} failed: {e:#}"),
                Err(e) => anyhow!("a part of the operator panicked: {e}"),
            }), false),
            () = lease_ended => (Err(anyhow!("leader election stopped")), true),
        };
        let _ = self.stop_lease.send(true);
        // The Lease is released before the process ends: another replica
        // takes over at once instead of after the lease duration.
        if let Some(t) = lease_task.filter(|_| !lease_gone) {
            let _ = t.await;
        }
        self.parts.abort_all();
        info!("stopped");
        result
    }
}
