//! `controlplane serve`: runs etcd + kube-apiserver in the foreground until
//! SIGTERM/SIGINT, writing an admin kubeconfig once ready (used by
//! `make dev-up` and `make demo`).
//!
//! `controlplane panic-probe`: starts a control plane, records the pids and
//! panics; tests use it to prove that no process outlives a panicking test.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use prefix_operator_testenv::{ControlPlane, Identity, Options};

#[derive(Parser)]
#[command(about = "A local etcd + kube-apiserver for prefix-operator development")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a control plane until interrupted.
    Serve {
        /// Directory for certificates, etcd data and logs.
        #[arg(long)]
        state_dir: PathBuf,
        /// Where to write the admin kubeconfig once the API server is ready.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Start a control plane, write its pids to FILE, then panic.
    PanicProbe {
        #[arg(long)]
        pidfile: PathBuf,
    },
    /// Print the directory holding the control-plane binaries (building them if needed).
    BinDir,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve {
            state_dir,
            kubeconfig,
        } => {
            let cp = ControlPlane::start(Options {
                state_dir: Some(state_dir),
                ..Default::default()
            })?;
            cp.write_kubeconfig(&Identity::Admin, &kubeconfig)?;
            eprintln!(
                "control plane up at {} (started in {:.1}s); kubeconfig {}",
                cp.server_url(),
                cp.start_time.as_secs_f64(),
                kubeconfig.display()
            );
            wait_for_signal();
            cp.stop();
            Ok(())
        }
        Cmd::PanicProbe { pidfile } => {
            let cp = ControlPlane::start(Options::default())?;
            let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
            std::fs::write(&pidfile, pids.join("\n"))?;
            // Leak it so that no destructor gets a chance to clean up: only the
            // kernel's parent-death signal may stop the children.
            std::mem::forget(cp);
            panic!("panic-probe: panicking with a running control plane");
        }
        Cmd::BinDir => {
            println!("{}", prefix_operator_testenv::bin_dir()?.display());
            Ok(())
        }
    }
}

fn wait_for_signal() {
    // Block SIGINT/SIGTERM and wait for one synchronously.
    // SAFETY: plain libc signal-set calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig: libc::c_int = 0;
        libc::sigwait(&set, &mut sig);
    }
}
