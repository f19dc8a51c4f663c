//! A real Kubernetes control plane (etcd + kube-apiserver) on loopback.
//!
//! The binaries come from `e2e/controlplane/build.sh`, which builds them from
//! pinned Go modules into a cache outside the checkout. Every process started
//! here is tied to its parent with `PR_SET_PDEATHSIG`, so none of them outlives
//! the test binary, the demo or the `controlplane serve` supervisor, even when
//! that process panics or is killed.
//!
//! The operator binary runs the same way ([`OperatorProcess`]), and
//! [`http_get`] and [`promtext`] read its HTTP endpoints.

mod certs;
pub mod hold_proxy;
mod kubeconfig;
mod net;
mod operator;
pub mod pod_identity;
mod process;
pub mod promtext;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub use certs::Pki;
pub use kubeconfig::{Identity, client_from_yaml};
pub use net::{HTTP_TIMEOUT, established_connections, free_port, http_get, https_get};
pub use operator::{OperatorBuilder, OperatorProcess};
pub use process::{Supervised, cpu_seconds_of, peak_rss_of, spawn_tied};

/// The Service ranges of a control plane whose options set none: dual-stack,
/// IPv4 first (so a Service that asks for nothing gets an IPv4 ClusterIP, as
/// on most clusters), and an IPv6 range so that IPv6 and dual-stack Services
/// (the README's examples, the benchmarks) are accepted.
pub const DEFAULT_SERVICE_RANGES: &str = "10.96.0.0/16,fd00:10:96::/108";

const SERVICE_RANGE_FLAG: &str = "--service-cluster-ip-range";

/// Options for a control plane.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Directory to keep state in; a fresh temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Extra kube-apiserver flags (`--name=value`). A
    /// `--service-cluster-ip-range` here replaces [`DEFAULT_SERVICE_RANGES`].
    pub extra_apiserver_flags: Vec<String>,
}

/// A running etcd + kube-apiserver pair.
pub struct ControlPlane {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    bin_dir: PathBuf,
    pki: Pki,
    etcd_port: u16,
    etcd_peer_port: u16,
    api_port: u16,
    extra_apiserver_flags: Vec<String>,
    etcd: Mutex<Option<Supervised>>,
    apiserver: Mutex<Option<Supervised>>,
    /// How long the last start took, from spawn to ready.
    pub start_time: Duration,
}

/// The directory with kube-apiserver, etcd, kubectl and helm: `$CONTROLPLANE_BIN`
/// when set, otherwise whatever `e2e/controlplane/build.sh` prints (building
/// the binaries first if the cache does not have them).
pub fn bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CONTROLPLANE_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/build.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed with {}", script.display(), out.status));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers ok and
    /// the `default` namespace exists.
    pub fn start(opts: Options) -> Result<Self> {
        let bin_dir = bin_dir()?;
        let (tmp, dir) = match &opts.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, std::fs::canonicalize(d)?)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("prefix-operator-cp.")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let pki = Pki::generate()?;
        pki.write_to(&dir.join("pki"))?;
        let cp = ControlPlane {
            dir,
            _tmp: tmp,
            bin_dir,
            pki,
            etcd_port: free_port()?,
            etcd_peer_port: free_port()?,
            api_port: free_port()?,
            extra_apiserver_flags: opts.extra_apiserver_flags,
            etcd: Mutex::new(None),
            apiserver: Mutex::new(None),
            start_time: Duration::ZERO,
        };
        let started = Instant::now();
        cp.start_etcd()?;
        cp.start_apiserver()?;
        let mut cp = cp;
        cp.start_time = started.elapsed();
        Ok(cp)
    }

    /// The state directory (certificates, etcd data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory holding kube-apiserver, etcd, kubectl and helm.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `https://127.0.0.1:PORT`
    /// kube-apiserver's port on 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Process ids of etcd and kube-apiserver, where running.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![];
        for m in [&self.etcd, &self.apiserver] {
            if let Some(p) = m.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                v.push(p.pid());
            }
        }
        v
    }

    /// Starts etcd (again) with the same data directory and port.
    pub fn start_etcd(&self) -> Result<()> {
        let data = self.dir.join("etcd");
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let args = vec![
            "--name=default".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            "--listen-metrics-urls=".to_string(),
            // Tests and benchmarks do not need durability across power loss.
            "--unsafe-no-fsync".to_string(),
            "--quota-backend-bytes=8589934592".to_string(),
            "--log-level=warn".to_string(),
        ];
        let p = Supervised::spawn(&self.bin("etcd"), &args, &self.dir.join("etcd.log"))?;
        *self.etcd.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        Ok(())
    }

    /// Kills etcd (SIGKILL) and waits for it to be gone.
    pub fn stop_etcd(&self) {
        if let Some(mut p) = self.etcd.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.kill();
        }
    }

    /// Starts kube-apiserver (again) on the same port and waits until ready.
    pub fn start_apiserver(&self) -> Result<()> {
        let pki = self.dir.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={}", self.api_port),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", p("serving.crt")),
            format!("--tls-private-key-file={}", p("serving.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".to_string(),
            "--authorization-mode=RBAC".to_string(),
            // Nothing but this process serves the API: no Endpoints to reconcile.
            "--endpoint-reconciler-type=none".to_string(),
            "--allow-privileged=true".to_string(),
            "--v=1".to_string(),
        ];
        if !self
            .extra_apiserver_flags
            .iter()
            .any(|f| f.starts_with(SERVICE_RANGE_FLAG))
        {
            args.push(format!("{SERVICE_RANGE_FLAG}={DEFAULT_SERVICE_RANGES}"));
        }
        args.extend(self.extra_apiserver_flags.iter().cloned());
        let started = Instant::now();
        let proc = Supervised::spawn(
            &self.bin("kube-apiserver"),
            &args,
            &self.dir.join("kube-apiserver.log"),
        )?;
        *self.apiserver.lock().unwrap_or_else(|e| e.into_inner()) = Some(proc);
        self.wait_ready(Duration::from_secs(120))
            .with_context(|| format!("kube-apiserver not ready\n{}", self.log_tails(40)))?;
        tracing_free_log(&format!(
            "control plane ready at {} in {:.1}s",
            self.server_url(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Kills kube-apiserver (SIGKILL).
    pub fn stop_apiserver(&self) {
        if let Some(mut p) = self
            .apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            p.kill();
        }
    }

    /// Kills both processes.
    pub fn stop(&self) {
        self.stop_apiserver();
        self.stop_etcd();
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let kubeconfig = self.kubeconfig_yaml(&Identity::Admin)?;
        let deadline = Instant::now() + timeout;
        // Runs on its own thread so that callers inside a tokio runtime can use it.
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let client = client_from_yaml(&kubeconfig).await?;
                    let mut last = String::new();
                    loop {
                        if Instant::now() > deadline {
                            bail!("timed out waiting for /readyz and namespace default: {last}");
                        }
                        if let Some(p) = self
                            .apiserver
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            && let Some(status) = p.exited()
                        {
                            bail!("kube-apiserver exited with {status}");
                        }
                        // An etcd that could not start (its port taken) must not
                        // go unnoticed behind an apiserver that reached another.
                        if let Some(p) =
                            self.etcd.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                            && let Some(status) = p.exited()
                        {
                            bail!("etcd exited with {status}");
                        }
                        let req = http::Request::get("/readyz").body(Vec::new())?;
                        match client.request_text(req).await {
                            Ok(body) if body.trim() == "ok" => {
                                let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                                    kube::Api::all(client.clone());
                                match ns.get_opt("default").await {
                                    Ok(Some(_)) => return Ok(()),
                                    Ok(None) => last = "namespace default missing".into(),
                                    Err(e) => last = e.to_string(),
                                }
                            }
                            Ok(body) => last = body,
                            Err(e) => last = e.to_string(),
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            })
            .join()
            .map_err(|_| anyhow!("readiness thread panicked"))?
        })
    }

    /// The last `n` lines of the etcd and kube-apiserver logs.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        for name in ["etcd.log", "kube-apiserver.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            out.push_str(&format!("----- last {n} lines of {name} -----\n"));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// A kubeconfig for `who`, with the CA and credentials embedded.
    pub fn kubeconfig_yaml(&self, who: &Identity) -> Result<String> {
        kubeconfig::render(self.server_url(), &self.pki, who)
    }

    /// Writes a kubeconfig for `who` to `path` (mode 0600).
    pub fn write_kubeconfig(&self, who: &Identity, path: &Path) -> Result<()> {
        kubeconfig::write_private(&self.kubeconfig_yaml(who)?, path)
    }

    /// Writes a kubeconfig for `who` against `server` instead of this API
    /// server (a proxy in front of it), with this control plane's CA.
    pub fn write_kubeconfig_via(&self, server: &str, who: &Identity, path: &Path) -> Result<()> {
        kubeconfig::write_private(
            &kubeconfig::render(server.to_string(), &self.pki, who)?,
            path,
        )
    }

    /// A client acting as `who`.
    pub async fn client(&self, who: &Identity) -> Result<kube::Client> {
        client_from_yaml(&self.kubeconfig_yaml(who)?).await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tracing_free_log(msg: &str) {
    if std::env::var_os("PREFIX_OPERATOR_CP_QUIET").is_none() {
        eprintln!("{msg}");
    }
}

/// One control plane per test subject, started on first use and killed
/// when the process exits (normally, by panic, or by signal). A subject is
/// a file under `tests/` with the folder of the same name (`tests/chart.rs`
/// and `tests/chart/*.rs`): its cases share the control plane; the
/// subjects grouped into one test binary do not share theirs (their objects
/// and operators stay apart, as when each was a binary of its own).
#[track_caller]
pub fn shared() -> &'static ControlPlane {
    type Planes = std::collections::BTreeMap<&'static str, &'static OnceLock<ControlPlane>>;
    static PLANES: std::sync::Mutex<Planes> = std::sync::Mutex::new(Planes::new());
    let file = subject(std::panic::Location::caller().file());
    let cell: &'static OnceLock<ControlPlane> = {
        let mut planes = PLANES.lock().unwrap_or_else(|p| p.into_inner());
        planes
            .entry(file)
            .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    cell.get_or_init(|| match ControlPlane::start(Options::default()) {
        Ok(cp) => cp,
        Err(e) => panic!("starting the test control plane failed: {e:#}"),
    })
}

/// The test subject of source file `file`: `tests/chart/install.rs` and
/// `tests/chart.rs` are both `chart`.
fn subject(file: &'static str) -> &'static str {
    let rest = file.rsplit_once("tests/").map_or(file, |(_, r)| r);
    let first = rest.split('/').next().unwrap_or(rest);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Calls `check` every `every` until it returns `Some`; fails after `timeout`
/// with "timed out after … waiting for `what`".
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::subject;

    #[test]
    fn a_test_subject_is_its_file_or_folder_under_tests() {
        assert_eq!(subject("tests/chart.rs"), "chart");
        assert_eq!(subject("tests/chart/install.rs"), "chart");
        assert_eq!(subject("/work/repo/tests/lab/cluster.rs"), "lab");
        assert_eq!(subject("tests/operator/admin_view.rs"), "operator");
        assert_ne!(subject("tests/claims.rs"), subject("tests/conflicts.rs"));
    }
}
