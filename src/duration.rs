//! Durations as Kubernetes users write them: one grammar and one parser for
//! the command-line flags (`--lease-duration=1m30s`) and for the PrefixPool
//! fields (`retainFor: 1.5s`), with the CRD's CEL rule and the Helm chart's
//! values schema matching the same grammar ([`PATTERN`]).
//!
//! The grammar is a strict subset of Go's `time.ParseDuration`, so any text
//! accepted here means the same to Go (and to `kubectl`, `metav1.Duration`):
//!
//! ```text
//! duration = "0" | part { part }
//! part     = digits [ "." digits ] unit
//! digits   = "0"…"9" { "0"…"9" }
//! unit     = "h" | "m" | "s" | "ms"
//! ```
//!
//! - Parts add up, in any order: `1h30m`, `1m30s`, `90s`, `1.5s`, `500ms`,
//!   `0.5ms`. A bare number needs a unit; only `0` stands alone.
//! - No sign (a duration cannot be negative), no spaces, no `.5s` or `5.s`,
//!   units are lower-case and sub-millisecond units (`us`, `µs`, `ns`) and
//!   days are not accepted.
//! - Resolution is one nanosecond; fraction digits finer than that are
//!   dropped (as Go does).
//! - At most [`MAX`], 87840h (10 years): longer is refused, not clamped
//!   (at admission too, by a second CEL rule, [`cel_max_rule`]).
//!
//! [`Duration`]'s `Display` prints the shortest text in this grammar
//! (`1h30m`, `1m30s`, `1.5s`, `500ms`, `0s`); parsing it gives back the same
//! duration.

use std::fmt;
use std::str::FromStr;

/// The grammar as a regular expression (RE2 and ECMA alike), anchored. The
/// CRD's CEL rule ([`cel_rule`]) and the chart's `values.schema.json` use it.
pub const PATTERN: &str = "^(0|([0-9]+([.][0-9]+)?(h|ms|m|s))+)$";

/// The message the API server shows when the CEL rule refuses a value.
pub const CEL_MESSAGE: &str =
    "must be a duration such as 90s, 1h, 1m30s, 1.5s or 500ms (units h, m, s, ms)";

/// The CEL rule for a string field holding a duration: the grammar.
pub fn cel_rule() -> String {
    format!("self.matches('{PATTERN}')")
}

/// The second CEL rule: at most [`MAX`] (CEL's `duration()` is Go's
/// parser, so it reads every text of the grammar the same way).
pub fn cel_max_rule() -> String {
    format!("!self.matches('{PATTERN}') || duration(self) <= duration('{MAX_TEXT}')")
}

/// The message of [`cel_max_rule`].
pub const CEL_MAX_MESSAGE: &str = "must be at most 87840h (10 years)";

const MAX_TEXT: &str = "87840h";

/// The longest duration accepted: 87840h (10 years of 366 days).
pub const MAX: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 24 * 3600);

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000_000_000;
const NANOS_PER_M: u128 = 60 * NANOS_PER_S;
const NANOS_PER_H: u128 = 60 * NANOS_PER_M;
const MAX_NANOS: u128 = MAX.as_nanos();
/// Fraction digits read per part; the rest are finer than a nanosecond.
const FRACTION_DIGITS: usize = 18;

/// A non-negative span of time of at most [`MAX`], read from and shown as
/// Go-style duration text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// The duration, if it is at most [`MAX`].
    pub fn new(d: std::time::Duration) -> Option<Duration> {
        (d <= MAX).then_some(Duration(d))
    }

    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a text is not a duration. The message names the text and the rule it
/// breaks.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{text:?} is not a duration: {problem}")]
pub struct DurationError {
    pub text: String,
    pub problem: Problem,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    #[error("it is empty; write a number and a unit, such as 90s, 1h, 1m30s, 1.5s or 500ms")]
    Empty,
    #[error("durations cannot be negative")]
    Negative,
    #[error("expected a number at {0:?} (such as 90s, 1h, 1m30s, 1.5s or 500ms)")]
    ExpectedNumber(String),
    #[error("expected digits after the '.' in {0:?}")]
    ExpectedFraction(String),
    #[error("{0:?} has no unit; the units are h, m, s and ms")]
    MissingUnit(String),
    #[error("unknown unit {0:?}; the units are h, m, s and ms")]
    UnknownUnit(String),
    #[error("it is longer than the maximum, 87840h (10 years)")]
    TooLong,
}

/// Parses `text` by the grammar in the module documentation.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    parse_nanos(text)
        .map(|n| Duration(std::time::Duration::from_nanos(n)))
        .map_err(|problem| DurationError {
            text: text.to_string(),
            problem,
        })
}

fn parse_nanos(text: &str) -> Result<u64, Problem> {
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(Problem::Empty);
    }
    if text.starts_with('-') {
        return Err(Problem::Negative);
    }
    let is_digit = |c: char| c.is_ascii_digit();
    // Saturates just above MAX_NANOS so that nothing below can overflow.
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let part = rest;
        let int_len = rest.find(|c: char| !is_digit(c)).unwrap_or(rest.len());
        if int_len == 0 {
            return Err(Problem::ExpectedNumber(rest.to_string()));
        }
        let (int, after) = rest.split_at(int_len);
        rest = after;
        let mut frac = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot
                .find(|c: char| !is_digit(c))
                .unwrap_or(after_dot.len());
            if frac_len == 0 {
                return Err(Problem::ExpectedFraction(part.to_string()));
            }
            (frac, rest) = after_dot.split_at(frac_len);
        }
        // The unit runs up to the next number, as in Go.
        let unit_len = rest
            .find(|c: char| is_digit(c) || c == '.')
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let unit_nanos = match unit {
            "h" => NANOS_PER_H,
            "m" => NANOS_PER_M,
            "s" => NANOS_PER_S,
            "ms" => NANOS_PER_MS,
            "" => {
                let number = &part[..part.len() - rest.len()];
                return Err(Problem::MissingUnit(number.to_string()));
            }
            other => return Err(Problem::UnknownUnit(other.to_string())),
        };
        let whole = int.bytes().fold(0u128, |n, b| {
            (n * 10 + u128::from(b - b'0')).min(MAX_NANOS + 1)
        });
        let frac = &frac[..frac.len().min(FRACTION_DIGITS)];
        let (numerator, denominator) = frac.bytes().fold((0u128, 1u128), |(n, d), b| {
            (n * 10 + u128::from(b - b'0'), d * 10)
        });
        let part_nanos = whole * unit_nanos + numerator * unit_nanos / denominator;
        total = (total + part_nanos).min(MAX_NANOS + 1);
    }
    if total > MAX_NANOS {
        return Err(Problem::TooLong);
    }
    // MAX_NANOS is far below u64::MAX (about 584 years).
    u64::try_from(total).map_err(|_| Problem::TooLong)
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// The shortest text in the grammar: `0s`, `500ms`, `1.5ms`, `1.5s`,
/// `1m30s`, `1h`, `1h0.5s`.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if ns < NANOS_PER_S {
            return write_with_fraction(f, ns / NANOS_PER_MS, ns % NANOS_PER_MS, 6, "ms");
        }
        let (h, rest) = (ns / NANOS_PER_H, ns % NANOS_PER_H);
        let (m, rest) = (rest / NANOS_PER_M, rest % NANOS_PER_M);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if rest > 0 {
            write_with_fraction(f, rest / NANOS_PER_S, rest % NANOS_PER_S, 9, "s")?;
        }
        Ok(())
    }
}

/// Writes `whole[.fraction]unit`, the fraction `width` digits wide with
/// trailing zeros left out.
fn write_with_fraction(
    f: &mut fmt::Formatter<'_>,
    whole: u128,
    fraction: u128,
    width: usize,
    unit: &str,
) -> fmt::Result {
    write!(f, "{whole}")?;
    if fraction > 0 {
        let digits = format!("{fraction:0width$}");
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    f.write_str(unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> std::time::Duration {
        parse(text)
            .unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
            .get()
    }

    fn problem(text: &str) -> Problem {
        parse(text)
            .map(|d| panic!("{text:?} accepted as {d}"))
            .unwrap_err()
            .problem
    }

    #[test]
    fn accepts_go_durations() {
        use std::time::Duration as D;
        for (text, want) in [
            ("90s", D::from_secs(90)),
            ("1h", D::from_secs(3600)),
            ("1m30s", D::from_secs(90)),
            ("1.5s", D::from_millis(1500)),
            ("500ms", D::from_millis(500)),
            ("250ms", D::from_millis(250)),
            ("1h30m", D::from_secs(5400)),
            ("15s", D::from_secs(15)),
            ("2m", D::from_secs(120)),
            ("24h", D::from_secs(86400)),
            ("0.5ms", D::from_micros(500)),
            ("1.000000001s", D::from_nanos(1_000_000_001)),
            // Finer than a nanosecond is dropped.
            ("1.0000000019s", D::from_nanos(1_000_000_001)),
            ("1.5h", D::from_secs(5400)),
            ("1s1h", D::from_secs(3601)),
            ("007s", D::from_secs(7)),
            ("0", D::ZERO),
            ("0s", D::ZERO),
            ("0.0ms", D::ZERO),
            ("87840h", MAX),
            ("87839h60m", MAX),
        ] {
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for (text, want) in [
            ("", Problem::Empty),
            ("-5s", Problem::Negative),
            ("-0", Problem::Negative),
            ("+5s", Problem::ExpectedNumber("+5s".into())),
            ("soon", Problem::ExpectedNumber("soon".into())),
            (" 5s", Problem::ExpectedNumber(" 5s".into())),
            ("5s ", Problem::UnknownUnit("s ".into())),
            ("5", Problem::MissingUnit("5".into())),
            ("3", Problem::MissingUnit("3".into())),
            ("1m30", Problem::MissingUnit("30".into())),
            ("1.5", Problem::MissingUnit("1.5".into())),
            ("5d", Problem::UnknownUnit("d".into())),
            ("5H", Problem::UnknownUnit("H".into())),
            ("5sec", Problem::UnknownUnit("sec".into())),
            ("5us", Problem::UnknownUnit("us".into())),
            ("5µs", Problem::UnknownUnit("µs".into())),
            ("5ns", Problem::UnknownUnit("ns".into())),
            (".5s", Problem::ExpectedNumber(".5s".into())),
            ("5.s", Problem::ExpectedFraction("5.s".into())),
            ("1.2.3s", Problem::MissingUnit("1.2".into())),
            ("1ms.5s", Problem::ExpectedNumber(".5s".into())),
            ("87840h1ns", Problem::UnknownUnit("ns".into())),
            ("87840h1ms", Problem::TooLong),
            ("99999999999h", Problem::TooLong),
            (&"9".repeat(100), Problem::MissingUnit("9".repeat(100))),
            (&format!("{}h", "9".repeat(100)), Problem::TooLong),
        ] {
            assert_eq!(problem(text), want, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_text_and_the_rule() {
        let e = parse("5d").unwrap_err().to_string();
        assert_eq!(
            e,
            "\"5d\" is not a duration: unknown unit \"d\"; the units are h, m, s and ms"
        );
        let e = parse("-1s").unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn formats_the_shortest_text() {
        use std::time::Duration as D;
        for (d, want) in [
            (D::ZERO, "0s"),
            (D::from_nanos(1), "0.000001ms"),
            (D::from_micros(1500), "1.5ms"),
            (D::from_millis(500), "500ms"),
            (D::from_millis(1500), "1.5s"),
            (D::from_secs(90), "1m30s"),
            (D::from_secs(3600), "1h"),
            (D::from_secs(5400), "1h30m"),
            (D::from_millis(3_600_500), "1h0.5s"),
            (D::from_nanos(1_000_000_001), "1.000000001s"),
            (MAX, "87840h"),
        ] {
            let d = Duration::new(d).expect("within MAX");
            assert_eq!(d.to_string(), want);
        }
        assert_eq!(Duration::new(MAX + D::from_nanos(1)), None);
    }

    #[test]
    fn cel_rule_embeds_the_pattern_without_escapes() {
        // A backslash would need escaping in the CEL string literal.
        assert!(!PATTERN.contains('\\'));
        assert!(!PATTERN.contains('\''));
        assert_eq!(cel_rule(), format!("self.matches('{PATTERN}')"));
        assert_eq!(parse(MAX_TEXT).map(Duration::get), Ok(MAX));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ns in 0..=MAX_NANOS as u64) {
            let d = Duration(std::time::Duration::from_nanos(ns));
            let text = d.to_string();
            prop_assert_eq!(parse(&text), Ok(d), "{}", text);
        }

        #[test]
        fn whole_units_round_trip(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let d = Duration(std::time::Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms));
            prop_assert_eq!(parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn parse_then_format_is_stable(text in "(0|([0-9]{1,4}([.][0-9]{1,12})?(h|ms|m|s)){1,4})") {
            let d = parse(&text).expect("matches the grammar, below MAX");
            let canonical = d.to_string();
            prop_assert_eq!(parse(&canonical), Ok(d));
            prop_assert_eq!(parse(&canonical).map(|d| d.to_string()), Ok(canonical.clone()));
        }
    }
}
