//! Logging through tracing: text or JSON, filtered by `--log-level` (or
//! `RUST_LOG`).

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Checks a `--log-level` value: a level or a tracing filter directive.
pub fn parse_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s).map(|_| s.to_string()).map_err(|e| {
        format!("not a level or tracing filter ({e}); e.g. info, or info,prefix_operator=debug")
    })
}

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_level_is_a_level_or_a_filter() {
        for ok in ["info", "debug", "warn,prefix_operator=trace"] {
            assert_eq!(parse_filter(ok).as_deref(), Ok(ok));
        }
        let err = parse_filter("info,prefix_operator=loud").expect_err("not a level");
        assert!(err.contains("tracing filter"), "{err}");
    }
}
