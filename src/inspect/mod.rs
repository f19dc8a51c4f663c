//! `prefix-operator status` and `prefix-operator whois`: what the pools,
//! claims, Nodes and Services hold and who leads, read from the API server
//! (the statuses the operator wrote, the podCIDRs on the Nodes, the
//! ServiceCIDRs and the Services' addresses), for a person at a terminal
//! (text) or a program (`-o json`, `-o yaml`: the structures of
//! [`report`]).
//!
//! Here the commands, which read ([`read`](mod@read)) and print; what they
//! print is made without I/O by [`status`](mod@status) and
//! [`whois`](mod@whois) (the reports) and [`status_text`](mod@status_text)
//! and [`whois_text`](mod@whois_text) (their text).
//!
//! Exit status: 0 when the command succeeded (for `whois`: something holds
//! the address), 1 when nothing holds the address asked about (`whois`
//! only), 2 on any error (bad input, a kubeconfig or context that does not
//! load, an API server that cannot be reached or refuses).

mod cluster;
mod holders;
mod read;
pub mod report;
mod status;
mod status_text;
mod whois;
mod whois_text;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

pub use cluster::{Cluster, Query};
pub use report::{StatusReport, WhoisReport};
pub use status::status;
pub use status_text::status_text;
pub use whois::whois;
pub use whois_text::whois_text;

/// Exit status: done; for `whois`, something holds the query.
pub const EXIT_OK: i32 = 0;
/// Exit status of `whois` when nothing holds the query.
pub const EXIT_NOBODY: i32 = 1;
/// Exit status on any error.
pub const EXIT_ERROR: i32 = 2;

/// How the commands print their answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Lines and tables for a person.
    #[default]
    Text,
    /// The report as JSON.
    Json,
    /// The report as YAML.
    Yaml,
}

/// Which cluster to ask and how to answer: the flags both commands take.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// Kubeconfig to use instead of the in-cluster config ($KUBECONFIG;
    /// several files separated by ':' are merged).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current-context.
    #[arg(long)]
    pub context: Option<String>,
    /// Output format: text for people; json or yaml for programs.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `prefix-operator status`: the exit status.
pub async fn status_command(t: &Target, lease_namespace: &str, lease_name: &str) -> i32 {
    match print_status(t, lease_namespace, lease_name).await {
        Ok(()) => EXIT_OK,
        Err(e) => fail(&e),
    }
}

/// `prefix-operator whois`: the exit status.
pub async fn whois_command(t: &Target, q: &Query) -> i32 {
    match print_whois(t, q).await {
        Ok(true) => EXIT_OK,
        Ok(false) => EXIT_NOBODY,
        Err(e) => fail(&e),
    }
}

async fn print_status(t: &Target, lease_namespace: &str, lease_name: &str) -> Result<()> {
    let client = client(t).await?;
    let cluster = read::read(&client, Some((lease_namespace, lease_name))).await?;
    let lease = format!("{lease_namespace}/{lease_name}");
    let report = status(&cluster, &lease, k8s_openapi::jiff::Timestamp::now());
    print(&render(t.output, &report, status_text)?)
}

/// Prints who holds `q`; true when something does.
async fn print_whois(t: &Target, q: &Query) -> Result<bool> {
    let client = client(t).await?;
    let cluster = read::read(&client, None).await?;
    let report = whois(q, &cluster);
    print(&render(t.output, &report, whois_text)?)?;
    Ok(report.found)
}

async fn client(t: &Target) -> Result<kube::Client> {
    let config = read::config(t.kubeconfig.as_deref(), t.context.as_deref()).await?;
    crate::k8s::client::build_client(config, 0)
}

/// The report as `output` asks: text made by `text`, or serialized.
pub fn render<T: Serialize>(output: Output, report: &T, text: fn(&T) -> String) -> Result<String> {
    Ok(match output {
        Output::Text => text(report),
        Output::Json => serde_json::to_string_pretty(report)? + "\n",
        Output::Yaml => serde_yaml::to_string(report)?,
    })
}

/// Writes to stdout; a closed pipe is an error, not a panic.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn fail(e: &anyhow::Error) -> i32 {
    let msg = crate::k8s::errors::message_chain(e.chain().map(|c| c.to_string()));
    eprintln!("error: {msg}");
    EXIT_ERROR
}

#[cfg(test)]
mod tests;
