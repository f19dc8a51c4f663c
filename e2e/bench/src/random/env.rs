//! One run's world: a fresh control plane, one or two operator replicas as
//! child processes, the watch history, and the op log every step goes to
//! (so a failing seed can be replayed and read). Faults live here too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use prefix_operator_testenv::OperatorProcess;

use super::check::{Snapshot, continuous, snapshot};
use super::history::History;
use super::quiet::quiet;
use super::quiet_claims::conflicts_reported;
use crate::cluster::{Cluster, poll};
use crate::operator::{self, leader_flags};

/// How long a claim conflict may stay unreported once the rest is quiet.
pub const CONFLICT_WAIT: Duration = Duration::from_secs(15);

/// The run's Service ranges: dual-stack, so ClusterIPs of both families
/// exist beside the claims' ServiceCIDRs (no kube-controller-manager runs:
/// a deleted ServiceCIDR goes at once, its IPAddress objects stay).
pub const SERVICE_RANGES: &str = "10.96.0.0/16,fd00:96::/112";

pub struct Replica {
    pub op: Option<OperatorProcess>,
    /// The disturbed span opened when it was frozen (SIGSTOP).
    frozen: Option<usize>,
}

pub struct Env {
    pub cl: Cluster,
    pub hist: History,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub replicas: Vec<Replica>,
    flags: Vec<String>,
    oplog: std::fs::File,
    tag: String,
    step: usize,
}

impl Env {
    /// A control plane with the CRD, the history watches and `replicas`
    /// operators (leader election when `leader_elect`), each ready.
    pub async fn start(
        bin: &Path,
        dir: PathBuf,
        tag: &str,
        replicas: usize,
        leader_elect: bool,
    ) -> Result<Env> {
        Env::start_with(bin, dir, tag, replicas, leader_elect, &[]).await
    }

    /// [`Env::start`] with `extra` operator flags (`--name=value`; one
    /// replaces a leader-election default of the same name).
    pub async fn start_with(
        bin: &Path,
        dir: PathBuf,
        tag: &str,
        replicas: usize,
        leader_elect: bool,
        extra: &[&str],
    ) -> Result<Env> {
        let mut flags = if leader_elect {
            leader_flags("prefix-operator-random")
        } else {
            vec![]
        };
        for x in extra {
            // The operator refuses a flag given twice: `--name=value` in
            // `extra` replaces the default of that name.
            let name = x.split('=').next().unwrap_or(x);
            flags.retain(|f| f.split('=').next() != Some(name));
            flags.push(x.to_string());
        }
        std::fs::create_dir_all(&dir)?;
        let cl = Cluster::start_with_services(SERVICE_RANGES).await?;
        let hist = History::start(&cl.client).await?;
        let oplog = std::fs::File::create(dir.join("ops.log"))?;
        let mut env = Env {
            cl,
            hist,
            bin: bin.to_path_buf(),
            dir,
            replicas: (0..replicas)
                .map(|_| Replica {
                    op: None,
                    frozen: None,
                })
                .collect(),
            flags,
            oplog,
            tag: tag.to_string(),
            step: 0,
        };
        env.note(&format!(
            "start: {replicas} replica(s), leader election {leader_elect}, extra flags {extra:?}, operator {}",
            bin.display()
        ));
        for i in 0..replicas {
            env.spawn(i)?;
        }
        env.all_up().await?;
        Ok(env)
    }

    /// Logs one step, numbered, to ops.log and stderr.
    pub fn note(&mut self, msg: &str) {
        self.step += 1;
        let line = format!("[{}] #{} {msg}", self.tag, self.step);
        eprintln!("   {line}");
        let _ = writeln!(self.oplog, "{line}");
    }

    pub fn replica_log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("replica-{i}.log"))
    }

    /// Starts replica `i` (it must be down).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let op = operator::spawn(
            &self.bin,
            &self.cl.kubeconfig,
            &format!("r{i}"),
            &self.flags,
            &self.replica_log(i),
        )?;
        self.replicas[i].op = Some(op);
        Ok(())
    }

    /// Starts replica `i` (it must be down) and waits until it is ready.
    pub async fn spawn_ready(&mut self, i: usize) -> Result<()> {
        self.spawn(i)?;
        if let Some(op) = self.replicas[i].op.as_mut() {
            op.wait_ready(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// SIGKILL (a thawed-then-killed replica's span ends here).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut op) = self.replicas[i].op.take() {
            op.kill();
        }
        self.thaw_span(i);
    }

    /// SIGTERM, then up to 15 s for a clean exit before SIGKILL.
    pub async fn term(&mut self, i: usize) -> Result<()> {
        self.thaw(i);
        let Some(op) = self.replicas[i].op.as_mut() else {
            return Ok(());
        };
        op.terminate();
        let clean = op.wait_exit(Duration::from_secs(15)).await.is_ok();
        self.kill(i);
        if !clean {
            self.note(&format!("replica {i} ignored SIGTERM for 15 s; killed"));
        }
        Ok(())
    }

    /// SIGSTOP: the replica's picture goes stale while the world moves on.
    pub fn freeze(&mut self, i: usize) {
        if self.replicas[i].frozen.is_none()
            && let Some(op) = self.replicas[i].op.as_mut()
        {
            op.pause();
            self.replicas[i].frozen = Some(self.hist.lock().disturb());
        }
    }

    /// SIGCONT after [`Env::freeze`].
    pub fn thaw(&mut self, i: usize) {
        if let Some(op) = self.replicas[i].op.as_mut() {
            op.resume();
        }
        self.thaw_span(i);
    }

    fn thaw_span(&mut self, i: usize) {
        if let Some(d) = self.replicas[i].frozen.take() {
            self.hist.lock().calm(d);
        }
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.replicas[i].op.is_some() && self.replicas[i].frozen.is_none()
    }

    /// The replica that says it leads, if exactly one does.
    pub async fn leader(&self) -> Option<usize> {
        let mut leaders = vec![];
        for (i, r) in self.replicas.iter().enumerate() {
            if let (Some(op), None) = (&r.op, r.frozen)
                && op.is_leader().await
            {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        poll("exactly one leader", timeout, || self.leader()).await
    }

    /// Waits until replica `i` leads.
    pub async fn wait_leads(&self, i: usize, timeout: Duration) -> Result<()> {
        poll(&format!("replica {i} to lead"), timeout, || async {
            (self.leader().await == Some(i)).then_some(())
        })
        .await
    }

    /// kube-apiserver killed, down for `outage` (the fault), started again.
    pub async fn restart_apiserver(&mut self, outage: Duration) -> Result<()> {
        let d = self.hist.lock().disturb();
        let r = self.cl.restart_apiserver(outage).await;
        self.hist.lock().calm(d);
        r
    }

    pub async fn restart_etcd(&mut self, outage: Duration) -> Result<()> {
        let d = self.hist.lock().disturb();
        let r = self.cl.restart_etcd(outage).await;
        self.hist.lock().calm(d);
        r
    }

    /// Every replica thawed, running and ready, and one leader.
    pub async fn all_up(&mut self) -> Result<()> {
        for i in 0..self.replicas.len() {
            self.thaw(i);
            let exited = self.replicas[i].op.as_mut().is_some_and(|op| !op.alive());
            if exited {
                self.note(&format!("replica {i} had exited; restarting it"));
            }
            if exited || self.replicas[i].op.is_none() {
                self.replicas[i].op = None;
                self.spawn(i)?;
            }
        }
        for r in self.replicas.iter_mut() {
            if let Some(op) = r.op.as_mut() {
                op.wait_ready(Duration::from_secs(60)).await?;
            }
        }
        self.wait_leader(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// A fresh read, checked against the continuous invariants.
    pub async fn check(&self) -> Result<(Snapshot, Vec<String>)> {
        let s = snapshot(&self.cl.client, &self.hist).await?;
        let v = continuous(&s, &self.hist.lock());
        Ok((s, v))
    }

    /// Brings every replica up, then waits up to `timeout` for (e) and (i)
    /// to hold; returns what is still wrong (the continuous checks and (f)
    /// always, (e) and (i) at the end). A claim conflict left unreported
    /// [`CONFLICT_WAIT`] after (e) holds counts as found.
    pub async fn settle(&mut self, timeout: Duration) -> Result<Vec<String>> {
        self.all_up().await?;
        let deadline = Instant::now() + timeout;
        let mut quiet_since: Option<Instant> = None;
        loop {
            let (s, mut v) = self.check().await?;
            let q = quiet(&s, &self.hist.lock());
            let c = conflicts_reported(&s);
            let now = Instant::now();
            quiet_since = if q.is_empty() {
                Some(quiet_since.unwrap_or(now))
            } else {
                None
            };
            let done = q.is_empty()
                && (c.is_empty() || quiet_since.is_some_and(|t| now - t >= CONFLICT_WAIT));
            if done || now > deadline {
                v.extend(q);
                v.extend(c);
                v.extend(self.panics());
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// (f): "panicked" in any operator log of this run.
    pub fn panics(&self) -> Vec<String> {
        let mut out = vec![];
        for i in 0..self.replicas.len() {
            let text = std::fs::read_to_string(self.replica_log(i)).unwrap_or_default();
            for l in text.lines().filter(|l| l.contains("panicked")) {
                out.push(format!("(f) replica {i} log: {l}"));
            }
        }
        out
    }

    /// Lines of replica logs matching `pat` (evidence for reports).
    pub fn log_count(&self, pat: &str) -> usize {
        (0..self.replicas.len())
            .map(|i| {
                std::fs::read_to_string(self.replica_log(i))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(pat))
                    .count()
            })
            .sum()
    }
}
