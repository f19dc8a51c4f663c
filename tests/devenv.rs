//! `make dev-up` / `make dev-down`, as a developer uses them.

use std::path::Path;
use std::process::Command;

fn make(args: &[&str]) -> std::process::Output {
    Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .args(args)
        .output()
        .expect("make")
}

#[test]
fn dev_up_gives_a_working_kubeconfig_and_dev_down_leaves_nothing() {
    let controlplane = Path::new(env!("CARGO_BIN_EXE_prefix-operator"))
        .parent()
        .expect("target dir")
        .join("controlplane");
    assert!(
        controlplane.exists(),
        "{} is built by `cargo build --workspace` (make test does it)",
        controlplane.display()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let dev = dir.path().join("dev");
    let dev_arg = format!("DEV={}", dev.display());
    // Whatever happens below, stop it.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            make(&["dev-down", &self.0]);
        }
    }
    let _down = Down(dev_arg.clone());
    // `cargo test --workspace` has built target/debug/controlplane already; a
    // nested cargo build would only re-resolve features and recompile.
    let up = make(&["dev-up", &dev_arg, "CONTROLPLANE_BUILD=:"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("kubectl"),
        "prints how to use it"
    );
    let kubectl = dev.join("kubectl");
    let out = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(dev.join("kubeconfig"))
        .args(["get", "nodes"])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Dual-stack Service ranges, IPv4 first, so the README's IPv6 Services
    // and PrefixClaims work on the dev cluster as written.
    let mut apply = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(dev.join("kubeconfig"))
        .args(["apply", "-f", "-", "-o", "jsonpath={.spec.clusterIPs}"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(
        &mut apply.stdin.take().expect("stdin"),
        b"apiVersion: v1\nkind: Service\nmetadata: {name: dual, namespace: default}\n\
          spec: {ipFamilyPolicy: RequireDualStack, ports: [{port: 80}]}\n",
    )
    .expect("write");
    let out = apply.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ips: Vec<std::net::IpAddr> = serde_json::from_slice::<Vec<String>>(&out.stdout)
        .expect("clusterIPs")
        .iter()
        .map(|ip| ip.parse().expect("an address"))
        .collect();
    assert!(
        matches!(ips.as_slice(), [a, b] if a.is_ipv4() && b.is_ipv6()),
        "{ips:?}"
    );
    let pid: u32 = std::fs::read_to_string(dev.join("controlplane.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let down = make(&["dev-down", &dev_arg]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "controlplane still running"
    );
    let ps = Command::new("pgrep")
        .args(["-f", &dev.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    assert!(!dev.exists(), "state removed");
}
