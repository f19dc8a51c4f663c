//! Just enough of the Prometheus/OpenMetrics text format to read counters,
//! gauges and a histogram from the operator's `/metrics` ([`crate::OperatorProcess::scrape`]).

/// One scrape.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// (metric name, label text without braces, value)
    pub samples: Vec<(String, String, f64)>,
}

/// A cumulative histogram: (upper bound, count at or below it), sorted,
/// ending with `+Inf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// The value of label `key` in a sample's label text (`a="x",b="y"`), as
/// [`Scrape::series`] hands it out.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = vec![];
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, rest) = match line.find('{') {
                Some(i) => {
                    let Some(j) = line[i..].find('}') else {
                        continue;
                    };
                    let name = &line[..i];
                    let labels = &line[i + 1..i + j];
                    ((name.to_string(), labels.to_string()), &line[i + j + 1..])
                }
                None => {
                    let Some((name, rest)) = line.split_once(' ') else {
                        continue;
                    };
                    ((name.to_string(), String::new()), rest)
                }
            };
            let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            samples.push((series.0, series.1, v));
        }
        Scrape { samples }
    }

    /// Sum over every label set of `name`; `None` when absent.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut sum = 0.0;
        for (n, _, v) in &self.samples {
            if n == name {
                found = true;
                sum += v;
            }
        }
        found.then_some(sum)
    }

    /// `name{labels} value` pairs, for a table of e.g. errors by reason.
    pub fn series(&self, name: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// The histogram `base` (`base_bucket`, `base_sum`, `base_count`).
    pub fn histogram(&self, base: &str) -> Histogram {
        self.histogram_with(base, "")
    }

    /// The series of histogram `base` whose labels include `label` (e.g.
    /// `kind="node_event"`; "" for all of them).
    pub fn histogram_with(&self, base: &str, label: &str) -> Histogram {
        let bucket = format!("{base}_bucket");
        let total = |name: String| -> f64 {
            self.samples
                .iter()
                .filter(|(n, l, _)| *n == name && l.contains(label))
                .map(|(_, _, v)| v)
                .sum()
        };
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|(n, l, _)| *n == bucket && l.contains(label))
            .filter_map(|(_, labels, v)| {
                let le = self::label(labels, "le")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        // One label set's buckets, or several summed bound by bound.
        buckets.dedup_by(|later, first| {
            let same = later.0 == first.0;
            if same {
                first.1 += later.1;
            }
            same
        });
        Histogram {
            buckets,
            sum: total(format!("{base}_sum")),
            count: total(format!("{base}_count")),
        }
    }
}

impl Histogram {
    /// `self - earlier`, bucket by bucket (both from the same process).
    pub fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map(|b| b.1)
                    .unwrap_or(0.0);
                (le, c - before)
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Quantile estimate as Prometheus' `histogram_quantile` makes it: linear
    /// within the bucket. A quantile in the `+Inf` bucket returns the highest
    /// finite bound (the true value is above it).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev_le = 0.0;
        let mut prev_c = 0.0;
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return Some(prev_le);
                }
                let width = c - prev_c;
                let frac = if width > 0.0 {
                    (rank - prev_c) / width
                } else {
                    1.0
                };
                return Some(prev_le + (le - prev_le) * frac);
            }
            prev_le = le;
            prev_c = c;
        }
        Some(prev_le)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP prefix_operator_status_writes PrefixPool status writes.
# TYPE prefix_operator_status_writes counter
prefix_operator_status_writes_total 7
prefix_operator_reconcile_errors_total{reason="Conflict"} 2
prefix_operator_reconcile_errors_total{reason="Transport"} 3
prefix_operator_allocation_latency_seconds_sum 1.5
prefix_operator_allocation_latency_seconds_count 10
prefix_operator_allocation_latency_seconds_bucket{le="0.01"} 5
prefix_operator_allocation_latency_seconds_bucket{le="0.1"} 9
prefix_operator_allocation_latency_seconds_bucket{le="+Inf"} 10
# EOF
"#;

    #[test]
    fn reads_counters_and_histograms() {
        let s = Scrape::parse(TEXT);
        assert_eq!(s.value("prefix_operator_status_writes_total"), Some(7.0));
        assert_eq!(s.value("prefix_operator_reconcile_errors_total"), Some(5.0));
        assert_eq!(s.value("missing"), None);
        let h = s.histogram("prefix_operator_allocation_latency_seconds");
        assert_eq!(h.count, 10.0);
        assert_eq!(h.buckets.len(), 3);
        assert_eq!(h.quantile(0.5), Some(0.01));
        let p90 = h.quantile(0.9).expect("p90");
        assert!((p90 - 0.1).abs() < 1e-9, "{p90}");
        assert_eq!(h.quantile(0.99), Some(0.1));
        let d = h.minus(&h);
        assert_eq!(d.quantile(0.5), None);
    }
}
