//! The standard `process_*` metrics (CPU, memory, file descriptors, threads,
//! start time), read from `/proc/self` at each scrape, as the Go and Python
//! Prometheus clients export them. Nothing is exported where `/proc` cannot
//! be read (not Linux).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub virtual_bytes: i64,
    pub threads: i64,
    pub start_time_seconds: f64,
    pub open_fds: i64,
    pub max_fds: Option<i64>,
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces and parentheses, so split after its last `)`): index 0 is field 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

impl ProcessStats {
    /// Parses the texts of `/proc/self/stat`, `/proc/stat` and
    /// `/proc/self/limits`; `None` when they are not as Linux writes them.
    pub fn parse(
        stat: &str,
        system_stat: &str,
        limits: &str,
        open_fds: i64,
        ticks_per_second: f64,
        page_size: i64,
    ) -> Option<ProcessStats> {
        let f = stat_fields(stat)?;
        let num = |i: usize| -> Option<f64> { f.get(i)?.parse::<f64>().ok() };
        // Fields (1-based, proc(5)): utime 14, stime 15, num_threads 20,
        // starttime 22, vsize 23 (bytes), rss 24 (pages).
        let (utime, stime) = (num(11)?, num(12)?);
        let boot: f64 = system_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l["Max open files".len()..].split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(ProcessStats {
            cpu_seconds: (utime + stime) / ticks_per_second,
            threads: num(17)? as i64,
            start_time_seconds: boot + num(19)? / ticks_per_second,
            virtual_bytes: num(20)? as i64,
            resident_bytes: num(21)? as i64 * page_size,
            open_fds,
            max_fds,
        })
    }

    /// Reads this process's figures; `None` where `/proc` is unreadable.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        // SAFETY: sysconf only reads configuration values.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if ticks <= 0 || page <= 0 {
            return None;
        }
        ProcessStats::parse(&stat, &system, &limits, fds, ticks as f64, page)
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, f64); 5] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                s.resident_bytes as f64,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(Unit::Bytes),
                s.virtual_bytes as f64,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch in seconds",
                Some(Unit::Seconds),
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                s.open_fds as f64,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                None,
                s.threads as f64,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        if let Some(max) = s.max_fds {
            let g = ConstGauge::new(max as f64);
            g.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (prefix (op) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 150 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";

    #[test]
    fn parses_proc_as_linux_writes_it() {
        let s = ProcessStats::parse(
            STAT,
            "cpu  1 2 3\nbtime 1764633600\nprocesses 9\n",
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n",
            12,
            100.0,
            4096,
        )
        .expect("parses");
        assert_eq!(
            s,
            ProcessStats {
                cpu_seconds: 4.0,
                resident_bytes: 2560 * 4096,
                virtual_bytes: 104_857_600,
                threads: 7,
                start_time_seconds: 1_764_633_600.0 + 123.45,
                open_fds: 12,
                max_fds: Some(1_048_576),
            }
        );
    }

    #[test]
    fn refuses_text_that_is_not_proc() {
        assert_eq!(
            ProcessStats::parse("garbage", "btime 1", "", 0, 100.0, 4096),
            None
        );
        assert_eq!(
            ProcessStats::parse(STAT, "no btime here", "", 0, 100.0, 4096),
            None
        );
        let unlimited = ProcessStats::parse(
            STAT,
            "btime 1",
            "Max open files unlimited unlimited files",
            0,
            100.0,
            4096,
        );
        assert_eq!(unlimited.expect("parses").max_fds, None);
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().expect("/proc/self is readable on Linux");
        assert!(
            s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 1,
            "{s:?}"
        );
    }
}
