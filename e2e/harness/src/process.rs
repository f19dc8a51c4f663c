//! Child processes that cannot outlive their parent.
//!
//! `PR_SET_PDEATHSIG` sends the child SIGKILL when the *thread* that forked it
//! ends, so every child is forked from one thread that lives as long as the
//! process. When the process ends in any way, the kernel kills the children.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

use anyhow::{Context, Result};

type Job = (Command, Sender<std::io::Result<Child>>);

fn spawner() -> &'static std::sync::Mutex<Sender<Job>> {
    static TX: OnceLock<std::sync::Mutex<Sender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static, so this loop never ends and
                // the thread (the children's parent) lives as long as the process.
            })
            .expect("spawning the spawner thread");
        std::sync::Mutex::new(tx)
    })
}

/// Spawns `cmd` so that the kernel kills it (SIGKILL) when this process
/// ends, however it ends.
pub fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("parent already exited"));
            }
            Ok(())
        });
    }
    let (tx, rx) = channel();
    spawner()
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// User + system CPU seconds process `pid` has used so far.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the fields start at 3 (state); utime is 14, stime is 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// A `/proc/PID/status` field in KiB (`VmHWM:`, `VmRSS:`).
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Peak resident set (VmHWM) of process `pid`, bytes.
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// A child process killed on drop and when the parent dies.
pub struct Supervised {
    child: Child,
}

impl Supervised {
    pub fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Self::start(cmd, log)
    }

    /// Starts `cmd` (program, arguments and environment already set) with
    /// stdin closed and stdout and stderr appended to `log`, tied to this
    /// process with [`spawn_tied`].
    pub fn start(mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = spawn_tied(cmd).with_context(|| format!("starting {program}"))?;
        Ok(Supervised { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` unless the process has already ended (and been
    /// reaped: its pid may belong to another process by now). Returns
    /// whether it was sent.
    pub fn signal(&mut self, signal: libc::c_int) -> bool {
        if self.exited().is_some() {
            return false;
        }
        // SAFETY: kill(2) on our own child, which has not been reaped, so the
        // pid is still ours (a zombie keeps it until waited for).
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) == 0 }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}
