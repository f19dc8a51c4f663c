//! The operator binary run as a child process: started with a kubeconfig,
//! probed over its HTTP endpoints, measured through `/proc`, and killed on
//! drop and when this process dies.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use prefix_operator_testenv::Supervised;

use crate::promtext::Scrape;

/// Every operator started here carries `--identity` with this prefix, so a
/// leftover check can find exactly ours (`pgrep -f -- '--identity pob-'`).
pub const IDENTITY_PREFIX: &str = "pob-";

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Leader-election flags of the fault runs: short timings (a 4 s Lease) so
/// that a leader change happens within a run; `lease` names the Lease.
pub fn leader_flags(lease: &str) -> Vec<String> {
    vec![
        "--leader-elect=true".into(),
        "--lease-namespace=default".into(),
        format!("--lease-name={lease}"),
        "--lease-duration=4s".into(),
        "--renew-deadline=3s".into(),
        "--retry-period=1s".into(),
    ]
}

/// The operator binary: `$PREFIX_OPERATOR_BIN`, else the workspace's
/// `target/release/prefix-operator`.
pub fn default_operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PREFIX_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("release").join("prefix-operator")
}

/// `given`, else [`default_operator_bin`], made absolute; fails with a hint
/// when it has not been built.
pub fn operator_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    let bin = given.unwrap_or_else(default_operator_bin);
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    if !bin.exists() {
        bail!(
            "{} not found; build it with `cargo build --release --bin prefix-operator`",
            bin.display()
        );
    }
    Ok(bin)
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// A running `prefix-operator run`.
pub struct OperatorProcess {
    proc: Supervised,
    pub pid: u32,
    pub http: SocketAddr,
    pub identity: String,
    /// Just before the fork.
    pub started: Instant,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `bin run --kubeconfig K --http-addr 127.0.0.1:PORT --identity ID EXTRA...`,
    /// logging to `log` (appended).
    pub fn spawn(
        bin: &Path,
        kubeconfig: &Path,
        role: &str,
        extra: &[String],
        log: &Path,
    ) -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let identity = format!(
            "{IDENTITY_PREFIX}{role}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let port = free_port()?;
        let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--identity")
            .arg(&identity)
            .arg("--log-format")
            .arg("text")
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let started = Instant::now();
        let proc = Supervised::start(cmd, log)?;
        Ok(OperatorProcess {
            pid: proc.pid(),
            proc,
            http,
            identity,
            started,
            log: log.to_path_buf(),
        })
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGSTOP: the process freezes, as a long GC pause or a stalled VM would.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGSTOP) };
    }

    /// SIGCONT after [`OperatorProcess::pause`].
    pub fn resume(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGCONT) };
    }

    /// Polls `/readyz` every 5 ms until it answers 200; returns the time since
    /// the fork. Fails when the process exits or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.exited() {
                bail!("operator exited with {status}\n{}", self.log_tail(30));
            }
            if let Ok((200, _)) = http_get(self.http, "/readyz").await {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "operator not ready after {timeout:?}\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `/metrics`, parsed.
    pub async fn scrape(&self) -> Result<Scrape> {
        let (code, body) = http_get(self.http, "/metrics").await?;
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
        proc_status_kib(self.pid, "VmHWM:").map(|k| k * 1024)
    }

    /// Current resident set (VmRSS), bytes.
    pub fn rss(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmRSS:").map(|k| k * 1024)
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // The command name may hold spaces; fields after it are plain.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ')' the fields start at 3 (state); utime is 14, stime is 15.
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some((utime + stime) / hz)
    }

    /// The last `n` lines of the operator's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "----- last {n} lines of {} -----\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// A plain HTTP/1.1 GET with `Connection: close`; returns the status code and
/// the body (chunked bodies decoded).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| anyhow!("GET {path} timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
