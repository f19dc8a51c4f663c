//! `scale-bench`: how fast the operator carves prefixes for N Nodes, against
//! what the API server itself can take, on this machine. The phases and the
//! report are in `prefix_operator_bench::scale`.

use anyhow::Result;
use clap::Parser;
use prefix_operator_bench::scale::{self, Args};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    scale::run(Args::parse()).await
}
