//! The client sockets: one UDP socket on port 546 per interface in use,
//! bound to the device, sending to the servers' multicast group and handing
//! what the servers send to the leader's loop.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use crate::dhcp::client::Millis;

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
const CLIENT_PORT: u16 = 546;
const SERVER_PORT: u16 = 547;
/// How long before trying again to open an interface's socket.
const SOCKET_RETRY: Duration = Duration::from_secs(5);

struct Link {
    socket: Arc<UdpSocket>,
    index: u32,
    _reader: tokio_util::task::AbortOnDropHandle<()>,
}

/// Opens the client socket of `interface`: port 546, bound to the device,
/// sending to the servers' multicast group on it.
fn open(interface: &str) -> std::io::Result<(UdpSocket, u32)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let name = std::ffi::CString::new(interface)
        .map_err(|_| std::io::Error::other("interface name contains NUL"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_hops_v6(1)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT, 0, 0).into())?;
    Ok((UdpSocket::from_std(s.into())?, index))
}

/// The client sockets, one per interface in use, and the interfaces that
/// could not be opened (tried again after [`SOCKET_RETRY`]).
pub(super) struct Links {
    open: HashMap<String, Link>,
    failed: HashMap<String, (Millis, String)>,
    /// Where every socket's reader hands its datagrams: (interface, bytes).
    tx: mpsc::Sender<(String, Vec<u8>)>,
}

impl Links {
    /// No socket open yet; the readers will hand their datagrams to `tx`.
    pub(super) fn new(tx: mpsc::Sender<(String, Vec<u8>)>) -> Self {
        Links {
            open: HashMap::new(),
            failed: HashMap::new(),
            tx,
        }
    }

    pub(super) fn next_retry(&self) -> Option<Millis> {
        self.failed.values().map(|(at, _)| *at).min()
    }

    pub(super) fn forget_failures_until(&mut self, now: Millis) {
        self.failed.retain(|_, (at, _)| *at > now);
    }

    /// Opens `interface` unless it is open; why not, if it cannot be.
    pub(super) fn ensure(&mut self, interface: &str, now: Millis) -> Result<(), String> {
        if self.open.contains_key(interface) {
            return Ok(());
        }
        if let Some((_, e)) = self.failed.get(interface) {
            return Err(e.clone());
        }
        match open(interface) {
            Ok((socket, index)) => {
                let socket = Arc::new(socket);
                let reader = tokio::spawn(read_datagrams(
                    socket.clone(),
                    interface.to_string(),
                    self.tx.clone(),
                ));
                self.open.insert(
                    interface.to_string(),
                    Link {
                        socket,
                        index,
                        _reader: tokio_util::task::AbortOnDropHandle::new(reader),
                    },
                );
                Ok(())
            }
            Err(e) => {
                let msg =
                    format!("cannot open the DHCPv6 client socket on interface {interface}: {e}");
                warn!("{msg}");
                let retry = now + SOCKET_RETRY.as_millis() as Millis;
                self.failed
                    .insert(interface.to_string(), (retry, msg.clone()));
                Err(msg)
            }
        }
    }

    /// Sends `datagrams` of pool `pool` to the servers on `interface`; a
    /// socket whose interface went away (or was made again with another
    /// index) is dropped, to be opened afresh.
    pub(super) async fn send(&mut self, interface: &str, pool: &str, datagrams: &[Vec<u8>]) {
        let Some(link) = self.open.get(interface) else {
            return;
        };
        let to = SocketAddrV6::new(ALL_SERVERS, SERVER_PORT, 0, link.index);
        let mut gone = false;
        for d in datagrams.iter().filter(|d| !d.is_empty()) {
            if let Err(e) = link.socket.send_to(d, to).await {
                warn!(pool, interface, "sending a DHCPv6 message: {e}");
                gone |= matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENXIO));
            }
        }
        if gone {
            self.open.remove(interface);
        }
    }
}

/// Hands every datagram from a server port on `socket` to `tx`.
async fn read_datagrams(
    socket: Arc<UdpSocket>,
    interface: String,
    tx: mpsc::Sender<(String, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) if from.port() == SERVER_PORT => {
                if tx
                    .send((interface.clone(), buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(interface = %interface, "DHCPv6 socket: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
