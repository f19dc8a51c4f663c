//! The operator binary (`prefix-operator run`) as a child process, for the
//! integration tests and the benchmark and fault runs alike: started with a
//! kubeconfig, its own loopback port for `/healthz`, `/readyz` and
//! `/metrics` (plain HTTP, `--metrics-secure=false`, unless asked for the
//! HTTPS `/metrics` on a port of its own), and its output appended to a log
//! file; waited for (ready, a
//! log line, its exit), signalled (SIGTERM, SIGKILL, SIGSTOP, SIGCONT),
//! measured through `/proc`, and SIGKILLed on drop, also when a test
//! panics, and by the kernel when this process dies ([`crate::spawn_tied`]).

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::net::{free_port, http_get};
use crate::process::Supervised;
use crate::promtext::Scrape;

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(5);
/// Log lines shown with a failure (and when a test panics).
const TAIL: usize = 30;

/// How to start one operator process; see [`OperatorProcess::builder`].
#[must_use]
pub struct OperatorBuilder {
    bin: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    identity: Option<String>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    secure_metrics: bool,
}

impl OperatorBuilder {
    /// `/metrics` over HTTPS with authentication and authorization (the
    /// binary's default) on a loopback port of its own
    /// ([`OperatorProcess::metrics_addr`]), instead of plain HTTP beside
    /// `/healthz`.
    pub fn secure_metrics(mut self) -> Self {
        self.secure_metrics = true;
        self
    }

    /// One more argument after `run` and the builder's own flags.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `--identity` (the Lease holder and the Events' reporting instance).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// An environment variable of the child; `RUST_LOG` replaces the
    /// default filter (`$OPERATOR_RUST_LOG`, else `info`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts `BIN run --kubeconfig K --http-addr 127.0.0.1:PORT
    /// (--metrics-secure=false | --metrics-addr 127.0.0.1:PORT2)
    /// [--identity ID] ARGS...`, stdin closed, stdout and stderr appended
    /// to the log. `KUBECONFIG`, `POD_NAME` and `POD_NAMESPACE` are not
    /// passed on: the flags say everything.
    pub fn spawn(self) -> Result<OperatorProcess> {
        let http: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--http-addr")
            .arg(http.to_string());
        let metrics = if self.secure_metrics {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            cmd.arg("--metrics-addr").arg(addr.to_string());
            Some(addr)
        } else {
            // A binary from before the flag serves /metrics plainly anyway
            // (paired benchmarks run one through `PREFIX_OPERATOR_BIN`).
            if knows_flag(&self.bin, "--metrics-secure") {
                cmd.arg("--metrics-secure=false");
            }
            None
        };
        if let Some(id) = &self.identity {
            cmd.arg("--identity").arg(id);
        }
        cmd.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let log_from = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let proc = Supervised::start(cmd, &self.log)?;
        Ok(OperatorProcess {
            pid: proc.pid(),
            proc,
            http,
            metrics,
            identity: self.identity,
            started,
            log: self.log,
            log_from,
        })
    }
}

/// A running `prefix-operator run`; SIGKILLed when dropped.
pub struct OperatorProcess {
    proc: Supervised,
    pid: u32,
    http: SocketAddr,
    /// The HTTPS `/metrics`, when asked for.
    metrics: Option<SocketAddr>,
    identity: Option<String>,
    started: Instant,
    log: PathBuf,
    /// Where this process's output starts in the log (a restart may append
    /// to the log of the process before it).
    log_from: u64,
}

impl OperatorProcess {
    /// The operator binary `bin` against the cluster of `kubeconfig`,
    /// logging to `log` (appended).
    pub fn builder(
        bin: impl Into<PathBuf>,
        kubeconfig: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> OperatorBuilder {
        OperatorBuilder {
            bin: bin.into(),
            kubeconfig: kubeconfig.into(),
            log: log.into(),
            identity: None,
            args: vec![],
            env: vec![],
            secure_metrics: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where `/healthz`, `/readyz` and (unless secure) `/metrics` are
    /// served over plain HTTP.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Where `/metrics` is served over HTTPS, with
    /// [`OperatorBuilder::secure_metrics`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// The `--identity` it was given, if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Just before the fork.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The log file (shared with earlier processes that appended to it).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process still runs (a frozen one does).
    pub fn alive(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM: the operator stops gracefully; see [`Self::wait_exit`].
    pub fn terminate(&mut self) {
        self.proc.signal(libc::SIGTERM);
    }

    /// SIGSTOP: the process freezes, as a long GC pause or a stalled VM would.
    pub fn pause(&mut self) {
        self.proc.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self) {
        self.proc.signal(libc::SIGCONT);
    }

    /// Polls `/readyz` until it answers 200; returns the time since the
    /// fork. Fails when the process exits or `timeout` passes (a zero
    /// `timeout` asks once).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.exited() {
                bail!("the operator exited with {status}\n{}", self.log_tail(TAIL));
            }
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator was not ready after {timeout:?}\n{}",
                    self.log_tail(TAIL)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a line this process logged contains every one of
    /// `needles`, and returns it. Fails when the process exits without
    /// such a line, or `timeout` passes.
    pub async fn wait_log_line(&mut self, needles: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let find = |text: &str| {
            text.lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string)
        };
        loop {
            // Exited first, read second: the last lines are in the file by then.
            let exited = self.proc.exited();
            if let Some(line) = find(&self.log_text()) {
                return Ok(line);
            }
            let why = match exited {
                Some(status) => format!("the operator exited with {status}"),
                None if Instant::now() > deadline => format!("timed out after {timeout:?}"),
                None => {
                    tokio::time::sleep(POLL * 4).await;
                    continue;
                }
            };
            bail!(
                "{why} before logging a line with {needles:?}\n{}",
                self.log_tail(100)
            );
        }
    }

    /// Waits for the process to end by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.exited() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the operator did not exit within {timeout:?}");
            }
            tokio::time::sleep(POLL * 4).await;
        }
    }

    /// A GET of `path` on its HTTP address: (status code, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http, path).await
    }

    /// `/metrics` over plain HTTP, parsed.
    pub async fn scrape(&self) -> Result<Scrape> {
        let (code, body) = self.get("/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(Scrape::parse(&body))
    }

    /// Whether this replica says it holds the leader Lease.
    pub async fn is_leader(&self) -> bool {
        self.scrape()
            .await
            .ok()
            .and_then(|s| s.value("prefix_operator_leader"))
            .is_some_and(|v| v >= 1.0)
    }

    /// Peak resident set (VmHWM), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        crate::process::peak_rss_of(self.pid)
    }

    /// Current resident set (VmRSS), bytes.
    pub fn rss(&self) -> Option<u64> {
        crate::process::proc_status_kib(self.pid, "VmRSS:").map(|k| k * 1024)
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::process::cpu_seconds_of(self.pid)
    }

    /// What this process has logged so far.
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(self.log_from)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The last `n` lines this process logged, under a header.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "----- last {n} lines of {} (pid {}) -----\n{}",
            self.log.display(),
            self.pid,
            lines[from..].join("\n")
        )
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.proc.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(TAIL));
        }
    }
}

/// Whether `bin run --help` lists `flag`. Asked once per binary and
/// remembered.
fn knows_flag(bin: &Path, flag: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static KNOWN: Mutex<Option<HashMap<(PathBuf, String), bool>>> = Mutex::new(None);
    let key = (bin.to_path_buf(), flag.to_string());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = known.get_or_insert_with(HashMap::new).get(&key) {
        return *k;
    }
    let listed = Command::new(bin)
        .args(["run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(true);
    known.get_or_insert_with(HashMap::new).insert(key, listed);
    listed
}
