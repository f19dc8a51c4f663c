//! Network namespaces for tests that send real packets: `ip` in a
//! namespace, namespaces removed on drop, and code run on a thread inside one.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// One TCP exchange from namespace `from_ns` (from address `src` when given)
/// to `to`:7000 in `to_ns`; returns the peer address the server saw.
pub fn tcp_exchange(from_ns: &str, src: Option<IpAddr>, to_ns: &str, to: IpAddr) -> IpAddr {
    let listen = SocketAddr::new(to, 7000);
    let listener = in_netns(to_ns, move || {
        TcpListener::bind(listen).expect("bind the server")
    });
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read");
        s.write_all(b"pong!").expect("write");
        assert_eq!(&buf, b"ping!");
        peer.ip()
    });
    let reply = in_netns(from_ns, move || {
        // Neighbour discovery on fresh links may take a moment: retry until connected.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut s: TcpStream = loop {
            let domain = socket2::Domain::for_address(listen);
            let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
            if let Some(src) = src {
                sock.bind(&SocketAddr::new(src, 0).into())
                    .expect("bind the source address");
            }
            match sock.connect_timeout(&listen.into(), Duration::from_secs(3)) {
                Ok(()) => break sock.into(),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("connect to {listen}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("connect to {listen}: {e}"),
            }
        };
        s.write_all(b"ping!").expect("write");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read");
        buf
    });
    assert_eq!(&reply, b"pong!");
    server.join().expect("server")
}
