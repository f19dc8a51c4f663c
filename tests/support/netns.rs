//! Network namespaces for tests that send real packets: `ip` in a
//! namespace, namespaces removed on drop, and code run on a thread inside one.

use std::os::fd::AsRawFd;
use std::process::Command;

/// Runs `ip ARGS` and returns its stderr as the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `ip ARGS` inside namespace `ns`; panics on failure.
pub fn nsip(ns: &str, args: &[&str]) {
    let mut v = vec!["netns", "exec", ns, "ip"];
    v.extend_from_slice(args);
    ip(&v).unwrap_or_else(|e| panic!("{e}"));
}

/// `sysctl -qw KEY` inside namespace `ns`; panics on failure.
pub fn nssysctl(ns: &str, key: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", key])
        .status()
        .expect("sysctl");
    assert!(ok.success(), "sysctl {key} in {ns}");
}

/// Network namespaces deleted on drop, even when the test panics.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    /// Adds namespace `name`, to be deleted with the others.
    pub fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.0.push(name.to_string());
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}
