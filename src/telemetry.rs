//! Logging through tracing: text or JSON, filtered by `--log-level` (or
//! `RUST_LOG`).

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What `--log-level` (and `$RUST_LOG`) accepts, as a regular expression
/// (RE2 and ECMA alike; the chart's `values.schema.json` uses it): one or
/// more directives separated by commas, each a level (`error`, `warn`,
/// `info`, `debug`, `trace`, `off`, any case, or `0`-`5`) or
/// `TARGET=LEVEL`, `TARGET[SPAN]=LEVEL` or `[SPAN]=LEVEL`, where a target
/// or span name is letters, digits, `_`, `:` and `-`. Every directive names
/// its level: tracing would read a bare word such as `loud` as "everything
/// from the target `loud`", which silences the operator's own logs.
/// [`parse_filter`] accepts exactly this.
pub const FILTER_PATTERN: &str = r"^(([A-Za-z0-9_:-]+|[A-Za-z0-9_:-]*\[[A-Za-z0-9_:-]*\])=)?([Tt][Rr][Aa][Cc][Ee]|[Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn]|[Ee][Rr][Rr][Oo][Rr]|[Oo][Ff][Ff]|[0-5])(,(([A-Za-z0-9_:-]+|[A-Za-z0-9_:-]*\[[A-Za-z0-9_:-]*\])=)?([Tt][Rr][Aa][Cc][Ee]|[Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn]|[Ee][Rr][Rr][Oo][Rr]|[Oo][Ff][Ff]|[0-5]))*$";

/// Checks a `--log-level` value: comma-separated directives by
/// [`FILTER_PATTERN`], which tracing's filter parser accepts too.
pub fn parse_filter(s: &str) -> Result<String, String> {
    let refused = || {
        format!(
            "{s:?} is not a log level or filter: give a level (error, warn, info, debug, trace, off) or comma-separated directives that each name one, e.g. info,prefix_operator=debug"
        )
    };
    if !s.split(',').all(directive) {
        return Err(refused());
    }
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{} ({e})", refused()))
}

/// One directive: `LEVEL` or `SELECTOR=LEVEL`.
fn directive(d: &str) -> bool {
    let (selector, level) = match d.split_once('=') {
        Some((selector, level)) => (Some(selector), level),
        None => (None, d),
    };
    let is_level = matches!(
        level.to_ascii_lowercase().as_str(),
        "error" | "warn" | "info" | "debug" | "trace" | "off" | "0" | "1" | "2" | "3" | "4" | "5"
    );
    is_level && selector.is_none_or(selector_ok)
}

/// `TARGET`, `TARGET[SPAN]` or `[SPAN]`.
fn selector_ok(s: &str) -> bool {
    let name = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    };
    match s.split_once('[') {
        None => !s.is_empty() && name(s),
        Some((target, span)) => name(target) && span.strip_suffix(']').is_some_and(name),
    }
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

    /// Values `--log-level` accepts (tests/chart/flags.rs holds the
    /// schema's pattern to the same verdicts).
    const ACCEPTED: &[&str] = &[
        "info",
        "DEBUG",
        "Warn",
        "off",
        "0",
        "5",
        "warn,prefix_operator=trace",
        "info,prefix_operator::controller=debug,kube_client=warn",
        "my-crate=error",
        "prefix_operator[reconcile]=debug",
        "[reconcile]=trace",
        "info,[]=debug",
    ];

    /// Values it refuses.
    const REFUSED: &[&str] = &[
        "",
        "loud",
        "prefix_operator",
        "info,prefix_operator=loud",
        "info,",
        ",info",
        "info debug",
        " info",
        "6",
        "=info",
        "prefix_operator=",
        "a=b=info",
        "x[span=info",
        "x[a]b=info",
        "[span{field=1}]=debug",
        "prefix/operator=debug",
        "infó",
    ];

    #[test]
    fn a_log_level_is_a_level_or_a_filter() {
        for ok in ACCEPTED {
            assert_eq!(parse_filter(ok).as_deref(), Ok(*ok));
        }
        for bad in REFUSED {
            let err = parse_filter(bad).expect_err(bad);
            assert!(
                err.contains("is not a log level or filter"),
                "{bad:?}: {err}"
            );
        }
    }
}
