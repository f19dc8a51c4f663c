//! `lab-cluster serve --dir DIR [--nodes N] [--import FILE]…`: the lab
//! cluster of `tests/lab.rs` kept running until SIGTERM or SIGINT, for
//! `make dev-up` (see `prefix_operator_testsupport::lab::dev`). Needs root,
//! network namespaces and cgroups; exits with status 3 where network
//! namespaces are forbidden.
//!
//! `lab-cluster sweep [--pid PID]`: kills and removes what lab Nodes left
//! behind (their containers, shims and cgroups): those of processes that
//! are gone, as every lab test does at start, or those of process PID,
//! which has ended (`make dev-down` after a SIGKILL; a zombie still has its
//! /proc entry).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use prefix_operator_testsupport::lab::{cleanup, dev};

fn usage() -> ! {
    eprintln!(
        "usage: lab-cluster serve --dir DIR [--nodes N] [--import FILE]... | lab-cluster sweep [--pid PID]"
    );
    std::process::exit(2);
}

fn parse_serve(mut args: impl Iterator<Item = String>) -> Result<dev::DevOptions> {
    let mut opts = dev::DevOptions {
        dir: PathBuf::new(),
        nodes: 2,
        images: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => opts.dir = value.into(),
            "--nodes" => opts.nodes = value.parse().context("--nodes")?,
            "--import" => opts.images.push(std::path::absolute(value)?),
            _ => bail!("unknown flag {flag}"),
        }
    }
    if opts.dir.as_os_str().is_empty() {
        bail!("--dir is required");
    }
    if !(1..=9).contains(&opts.nodes) {
        bail!("--nodes must be 1 to 9");
    }
    Ok(opts)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") => {
            let opts = parse_serve(args).unwrap_or_else(|e| {
                eprintln!("lab-cluster: {e:#}");
                usage()
            });
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let until = async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            if let Err(e) = dev::serve(opts, until).await {
                eprintln!("lab-cluster: {e:#}");
                std::process::exit(3);
            }
            Ok(())
        }
        Some("sweep") => {
            let pid = match (args.next().as_deref(), args.next()) {
                (None, _) => None,
                (Some("--pid"), Some(p)) => Some(p.parse::<u32>().context("--pid")?),
                _ => usage(),
            };
            tokio::task::spawn_blocking(move || match pid {
                Some(p) => cleanup::sweep_process(p),
                None => cleanup::sweep_stale(),
            })
            .await?;
            Ok(())
        }
        _ => usage(),
    }
}
