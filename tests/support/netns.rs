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

/// A TCP forwarder from 127.0.0.1:PORT inside namespace `ns` to `to` as
/// this process reaches it (the control plane listens on the host's
/// loopback only): a process in `ns` reaches `to` at the returned port.
/// Runs until the process exits.
pub fn forward_into(ns: &str, to: SocketAddr) -> u16 {
    forward_at(ns, SocketAddr::from(([127, 0, 0, 1], 0)), to)
}

/// Like [`forward_into`], listening on `at` in `ns` (port 0: any free one);
/// returns the port.
pub fn forward_at(ns: &str, at: SocketAddr, to: SocketAddr) -> u16 {
    let listener = in_netns(ns, move || {
        TcpListener::bind(at).unwrap_or_else(|e| panic!("bind the forwarder on {at}: {e}"))
    });
    let port = listener.local_addr().expect("local addr").port();
    // Threads start in the namespace of the thread that spawns them: this
    // one, not `ns`, so the connections out reach the host's loopback.
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { continue };
            let Ok(outbound) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (inbound.try_clone(), outbound.try_clone()),
                (outbound.try_clone(), inbound.try_clone()),
            ]
            .into_iter()
            .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// A TCP server on port `port` of every address in namespace `ns` that
/// answers each connection with `NAME PEER\n` (the peer address it saw)
/// and closes it. Runs until the process exits.
pub fn serve_whoami(ns: &str, name: &str, port: u16) {
    let listener = in_netns(ns, move || {
        TcpListener::bind(("::", port)).expect("bind the pod's server")
    });
    let name = name.to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = s.write_all(format!("{name} {peer}\n").as_bytes());
        }
    });
}

/// Connects from namespace `from_ns` to `to` (retrying while the path is
/// not there yet, up to `patience`) and returns what a [`serve_whoami`]
/// server answered: its name and the peer address it saw.
pub fn ask_whoami(from_ns: &str, to: SocketAddr, patience: Duration) -> (String, IpAddr) {
    let text = in_netns(from_ns, move || {
        let deadline = Instant::now() + patience;
        loop {
            let attempt =
                TcpStream::connect_timeout(&to, Duration::from_secs(2)).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                });
            match attempt {
                Ok(t) if !t.is_empty() => break t,
                Ok(_) if Instant::now() < deadline => {}
                Err(_) if Instant::now() < deadline => {}
                other => panic!("connect to {to}: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut words = text.split_whitespace();
    let name = words.next().unwrap_or_default().to_string();
    let peer = words
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server at {to} answered {text:?}"));
    (name, peer)
}
