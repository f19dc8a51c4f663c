//! The Debian packages `e2e/debs/fetch.sh` unpacks into the cache (FRR,
//! BIRD, iptables, Kea), and how to run their binaries without installing
//! them.

use std::path::{Path, PathBuf};

/// The unpacked packages (fetched on first use, then cached).
pub fn debs() -> PathBuf {
    super::built_by("e2e/debs/fetch.sh")
}

/// The multiarch library directory of the unpacked packages.
pub fn lib_dir(root: &Path) -> PathBuf {
    ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .into_iter()
        .map(|a| root.join("usr/lib").join(a))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no unpacked libraries under {}", root.display()))
}

/// The environment that makes the unpacked iptables work: its names first
/// on PATH, its libraries and its extensions.
pub fn iptables_env(debs: &Path) -> Vec<(String, String)> {
    let lib = lib_dir(debs);
    vec![
        (
            "PATH".into(),
            format!(
                "{}:{}",
                debs.join("iptables-bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        ("LD_LIBRARY_PATH".into(), lib.display().to_string()),
        (
            "XTABLES_LIBDIR".into(),
            lib.join("xtables").display().to_string(),
        ),
    ]
}
