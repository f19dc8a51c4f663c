//! Kea's kea-dhcp6 (Debian's package, unpacked by `e2e/debs/fetch.sh`) as a
//! delegating router: prefix delegation on one interface of a network
//! namespace, its lease file and log in a directory of the test's.

use std::path::{Path, PathBuf};
use std::process::Command;

use prefix_operator_testenv::Supervised;

/// Lifetimes handed out, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub t1: u32,
    pub t2: u32,
    pub preferred: u32,
    pub valid: u32,
}

/// A running kea-dhcp6, killed on drop.
pub struct Kea {
    _proc: Supervised,
    leases: PathBuf,
    log: PathBuf,
}

/// kea-dhcp6 in namespace `ns`, delegating /56s of `pd_pool` to clients on
/// `interface`; files named `name` in `dir`.
pub fn start(
    ns: &str,
    interface: &str,
    dir: &Path,
    pd_pool: &str,
    name: &str,
    life: Lifetimes,
) -> Kea {
    let root = super::debs::debs();
    let lib = super::debs::lib_dir(&root);
    let leases = dir.join(format!("{name}-leases6.csv"));
    let log = dir.join(format!("{name}.log"));
    let (prefix, len) = pd_pool.split_once('/').expect("prefix/len");
    let config = serde_json::json!({"Dhcp6": {
        "interfaces-config": {"interfaces": [interface]},
        "lease-database": {"type": "memfile", "name": leases, "persist": true, "lfc-interval": 0},
        // The server's DUID, not written to /var/lib/kea.
        "server-id": {"type": "LLT", "persist": false},
        "preferred-lifetime": life.preferred, "valid-lifetime": life.valid,
        "renew-timer": life.t1, "rebind-timer": life.t2,
        "subnet6": [{
            "id": 1, "subnet": "2001:db8:ffff::/64", "interface": interface,
            "pd-pools": [{"prefix": prefix, "prefix-len": len.parse::<u8>().expect("len"), "delegated-len": 56}],
        }],
        "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}], "severity": "INFO"}],
    }});
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(root.join("usr/sbin/kea-dhcp6"))
        .arg("-c")
        .arg(&conf)
        .env("LD_LIBRARY_PATH", &lib)
        .env("KEA_PIDFILE_DIR", dir)
        .env("KEA_LOCKFILE_DIR", dir);
    let proc = Supervised::start(cmd, &log).expect("start kea-dhcp6");
    Kea {
        _proc: proc,
        leases,
        log,
    }
}

impl Kea {
    /// Kea's lease file lines (memfile CSV: address, DUID, ...) for `duid`.
    pub fn leases_of(&self, duid: &str) -> Vec<String> {
        std::fs::read_to_string(&self.leases)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(duid))
            .map(str::to_string)
            .collect()
    }

    /// Every lease line (the header included).
    pub fn leases(&self) -> String {
        std::fs::read_to_string(&self.leases).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
