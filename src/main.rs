use clap::Parser;
use prefix_operator::cli::{self, Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run(args).await,
        Command::Crd => cli::crd_yaml().map(|y| print!("{y}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
