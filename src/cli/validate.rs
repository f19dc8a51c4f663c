//! The checks of `prefix-operator run`'s flags that no single flag's parser
//! can make: how the leader-election durations relate. One pure function,
//! so that the chart's tests can hold the rendered arguments against it.

use super::RunArgs;

impl RunArgs {
    /// Refuses flag values that parse one by one but do not work together,
    /// with the reason. `run` calls it before it builds a client.
    pub fn validate(&self) -> Result<(), String> {
        let lease = self.lease_duration.get();
        let renew = self.renew_deadline.get();
        let retry = self.retry_period.get();
        if lease.subsec_nanos() != 0 || lease.is_zero() {
            return Err(format!(
                "--lease-duration must be a whole number of seconds, at least 1s (got {}): the Lease records it in whole seconds (leaseDurationSeconds)",
                self.lease_duration
            ));
        }
        if renew >= lease {
            return Err(format!(
                "--renew-deadline must be shorter than --lease-duration (got {} and {}), so a leader stops writing before another can take over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if retry.is_zero() {
            return Err(
                "--retry-period must be longer than 0s: it is the pause between two tries to acquire or renew the Lease".into(),
            );
        }
        if retry >= renew {
            return Err(format!(
                "--retry-period must be shorter than --renew-deadline (got {} and {}), or a leader gives up between two renewals",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command, RunArgs};

    fn args(flags: &[&str]) -> RunArgs {
        let argv = ["prefix-operator", "run"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Run(a) => *a,
            _ => unreachable!("run"),
        }
    }

    #[test]
    fn defaults_and_edges_pass() {
        for flags in [
            vec![],
            vec![
                "--lease-duration=1s",
                "--renew-deadline=2ms",
                "--retry-period=1ms",
            ],
            vec![
                "--lease-duration=87840h",
                "--renew-deadline=87839h",
                "--retry-period=1h",
            ],
            vec![
                "--lease-duration=1m30s",
                "--renew-deadline=1m",
                "--retry-period=1.5s",
            ],
            vec![
                "--lease-duration=3s",
                "--renew-deadline=2s",
                "--retry-period=250ms",
            ],
        ] {
            assert_eq!(args(&flags).validate(), Ok(()), "{flags:?}");
        }
    }

    #[test]
    fn refuses_durations_that_do_not_work_together() {
        for (flags, want) in [
            (
                vec!["--lease-duration=5s"],
                "--renew-deadline must be shorter than --lease-duration (got 10s and 5s)",
            ),
            (
                vec!["--lease-duration=10s"],
                "--renew-deadline must be shorter than --lease-duration",
            ),
            (
                vec!["--retry-period=10s"],
                "--retry-period must be shorter than --renew-deadline (got 10s and 10s)",
            ),
            (
                vec!["--retry-period=0"],
                "--retry-period must be longer than 0s",
            ),
            (
                vec!["--lease-duration=15.5s"],
                "--lease-duration must be a whole number of seconds, at least 1s (got 15.5s)",
            ),
            (
                vec![
                    "--lease-duration=0",
                    "--renew-deadline=0",
                    "--retry-period=0",
                ],
                "--lease-duration must be a whole number of seconds, at least 1s (got 0s)",
            ),
            (
                vec![
                    "--lease-duration=1500ms",
                    "--renew-deadline=1s",
                    "--retry-period=1ms",
                ],
                "whole number of seconds",
            ),
        ] {
            let err = args(&flags).validate().expect_err(&format!("{flags:?}"));
            assert!(err.contains(want), "{flags:?}: {err}");
        }
    }
}
