//! Percentiles of latency samples.

/// p50, p90, p99, max and mean of a sample, in the sample's unit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of a sorted sample.
fn rank(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted[i]
}

pub fn summarize(sample: &[f64]) -> Summary {
    if sample.is_empty() {
        return Summary::default();
    }
    let mut s = sample.to_vec();
    s.sort_by(f64::total_cmp);
    Summary {
        n: s.len(),
        p50: rank(&s, 0.50),
        p90: rank(&s, 0.90),
        p99: rank(&s, 0.99),
        max: s[s.len() - 1],
        mean: s.iter().sum::<f64>() / s.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(summarize(&[]).n, 0);
        assert_eq!(summarize(&[3.0]).p99, 3.0);
    }
}
