//! The DHCPv6 messages a requesting router sends (Solicit, Request, Renew,
//! Rebind, Release) and the checks every server message passes before the
//! client acts on it (RFC 8415 §16, §18.2.9, §18.2.10, §21.21, §21.22).
//! Encoding and decoding are `dhcproto`'s; what is accepted is decided here.

use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAPD, IAPrefix, Message, MessageType, ORO, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv6Net;

use super::identity::{Identity, hex};

/// A lifetime or timer of all ones: forever.
pub const INFINITY: u32 = u32::MAX;
/// Option code of SOL_MAX_RT (RFC 8415 §21.24), which a client must ask for.
const OPTION_SOL_MAX_RT: u16 = 82;

/// A prefix as a server delegates it (or as the client names it back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    pub prefix: Ipv6Net,
    /// Seconds; [`INFINITY`] for forever.
    pub preferred: u32,
    /// Seconds; [`INFINITY`] for forever; 0 means withdrawn.
    pub valid: u32,
}

/// A status code a server sent (top level or inside the IA_PD), by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStatus {
    /// RFC 8415 §21.13 name, e.g. `NoPrefixAvail`.
    pub code: String,
    pub message: String,
}

impl ServerStatus {
    fn from(s: &dhcproto::v6::StatusCode) -> Option<ServerStatus> {
        use dhcproto::v6::Status;
        if s.status == Status::Success {
            return None;
        }
        let code = match s.status {
            Status::Unknown(n) => format!("Status{n}"),
            other => format!("{other:?}"),
        };
        Some(ServerStatus {
            code,
            message: s
                .msg
                .chars()
                .filter(|c| !c.is_control())
                .take(256)
                .collect(),
        })
    }

    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

/// The client's IA_PD in a server message, after the checks.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IaPd {
    pub t1: u32,
    pub t2: u32,
    pub status: Option<ServerStatus>,
    /// Prefixes that passed the checks, host bits cleared.
    pub prefixes: Vec<Offered>,
}

/// Something in a server message the client dropped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// An IA_PD for an IAID that is not the pool's.
    OtherIaid(u32),
    /// T1 greater than T2 (both non-zero): the whole IA_PD is discarded.
    TimersOutOfOrder { t1: u32, t2: u32 },
    /// A prefix whose preferred lifetime exceeds its valid lifetime.
    PreferredOverValid(Ipv6Net),
    /// A prefix length above 128.
    BadLength(u8),
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::OtherIaid(id) => write!(f, "an IA_PD for IAID {id}, not the pool's"),
            Dropped::TimersOutOfOrder { t1, t2 } => {
                write!(f, "an IA_PD with T1 {t1}s after T2 {t2}s")
            }
            Dropped::PreferredOverValid(p) => {
                write!(
                    f,
                    "prefix {p} with a preferred lifetime above its valid lifetime"
                )
            }
            Dropped::BadLength(l) => write!(f, "a prefix of length {l}"),
        }
    }
}

/// An Advertise or Reply meant for this client, with what was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMessage {
    pub kind: MessageType,
    pub server_id: Vec<u8>,
    pub preference: u8,
    /// A top-level status other than Success.
    pub status: Option<ServerStatus>,
    /// The pool's IA_PD, if the message carries one that passed the checks.
    pub ia_pd: Option<IaPd>,
    pub dropped: Vec<Dropped>,
}

/// Why a received datagram is not acted on at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("malformed DHCPv6 message: {0}")]
    Malformed(String),
    #[error("a {0:?} message, which a client does not take")]
    NotFromServer(MessageType),
    #[error("a reply to another transaction")]
    OtherTransaction,
    #[error("a reply for another client (Client Identifier {0})")]
    OtherClient(String),
    #[error("a reply without a Server Identifier")]
    NoServerId,
}

/// Option codes whose data is a fixed part followed by options.
const IA_PD: u16 = 25;
const IA_PREFIX: u16 = 26;

/// Checks that `data` is a list of whole options (code, length, that many
/// bytes), and so are the options inside IA_PD and IA Prefix options.
/// dhcproto stops decoding at the first option that does not fit and keeps
/// what came before, so a truncated datagram would otherwise pass as a
/// shorter one.
fn check_options(mut data: &[u8], depth: u8) -> Result<(), String> {
    while !data.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = data else {
            return Err(format!("{} stray bytes after the last option", data.len()));
        };
        let (code, len) = (
            u16::from_be_bytes([*c0, *c1]),
            usize::from(u16::from_be_bytes([*l0, *l1])),
        );
        let Some(body) = rest.get(..len) else {
            return Err(format!(
                "option {code} claims {len} bytes, {} remain",
                rest.len()
            ));
        };
        let fixed = match code {
            IA_PD => Some(12),
            IA_PREFIX => Some(25),
            _ => None,
        };
        if let Some(fixed) = fixed {
            if depth > 2 {
                return Err(format!("option {code} nested too deep"));
            }
            let inner = body.get(fixed..).ok_or_else(|| {
                format!("option {code} of {len} bytes, shorter than its {fixed} fixed ones")
            })?;
            check_options(inner, depth + 1)?;
        }
        data = &rest[len..];
    }
    Ok(())
}

/// Reads `bytes` as a server's answer to transaction `xid` of `me`.
pub fn read(bytes: &[u8], me: &Identity, xid: [u8; 3]) -> Result<ServerMessage, Refused> {
    let options = bytes.get(4..).ok_or_else(|| {
        Refused::Malformed(format!("{} bytes, shorter than a header", bytes.len()))
    })?;
    check_options(options, 0).map_err(Refused::Malformed)?;
    let msg =
        Message::decode(&mut Decoder::new(bytes)).map_err(|e| Refused::Malformed(e.to_string()))?;
    let kind = msg.msg_type();
    if !matches!(kind, MessageType::Advertise | MessageType::Reply) {
        return Err(Refused::NotFromServer(kind));
    }
    if msg.xid() != xid {
        return Err(Refused::OtherTransaction);
    }
    let mut client_id = None;
    let mut server_id = None;
    let mut preference = 0;
    let mut status = None;
    let mut ia_pd = None;
    let mut dropped = Vec::new();
    for opt in msg.opts().iter() {
        match opt {
            DhcpOption::ClientId(id) => client_id = Some(id.clone()),
            DhcpOption::ServerId(id) => server_id = Some(id.clone()),
            DhcpOption::Preference(p) => preference = *p,
            DhcpOption::StatusCode(s) => status = ServerStatus::from(s),
            DhcpOption::IAPD(ia) if ia.id != me.iaid => dropped.push(Dropped::OtherIaid(ia.id)),
            // One IA_PD per IAID; a second copy is ignored.
            DhcpOption::IAPD(ia) if ia_pd.is_none() => ia_pd = read_ia(ia, &mut dropped),
            _ => {}
        }
    }
    match client_id {
        Some(id) if id == me.duid => {}
        Some(id) => return Err(Refused::OtherClient(hex(&id))),
        None => return Err(Refused::OtherClient("(none)".into())),
    }
    let server_id = server_id
        .filter(|s| !s.is_empty())
        .ok_or(Refused::NoServerId)?;
    Ok(ServerMessage {
        kind,
        server_id,
        preference,
        status,
        ia_pd,
        dropped,
    })
}

fn read_ia(ia: &IAPD, dropped: &mut Vec<Dropped>) -> Option<IaPd> {
    if ia.t1 > ia.t2 && ia.t2 > 0 {
        dropped.push(Dropped::TimersOutOfOrder {
            t1: ia.t1,
            t2: ia.t2,
        });
        return None;
    }
    let mut out = IaPd {
        t1: ia.t1,
        t2: ia.t2,
        ..Default::default()
    };
    for opt in ia.opts.iter() {
        match opt {
            DhcpOption::StatusCode(s) => out.status = ServerStatus::from(s),
            DhcpOption::IAPrefix(p) => {
                let Ok(net) = Ipv6Net::new(p.prefix_ip, p.prefix_len) else {
                    dropped.push(Dropped::BadLength(p.prefix_len));
                    continue;
                };
                let net = net.trunc();
                if p.preferred_lifetime > p.valid_lifetime {
                    dropped.push(Dropped::PreferredOverValid(net));
                    continue;
                }
                out.prefixes.push(Offered {
                    prefix: net,
                    preferred: p.preferred_lifetime,
                    valid: p.valid_lifetime,
                });
            }
            _ => {}
        }
    }
    Some(out)
}

/// What goes in the IA_PD of a message the client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// A hint: any prefix of this length (Solicit), or none.
    Length(Option<u8>),
    /// These prefixes, lifetimes 0 (Request after an Advertise, Renew,
    /// Rebind, Release).
    Prefixes(Vec<Ipv6Net>),
}

/// Encodes a client message of `kind` for transaction `xid`.
/// `elapsed_cs` is the time since the exchange began, in hundredths of a
/// second (RFC 8415 §21.9).
pub fn write(
    kind: MessageType,
    xid: [u8; 3],
    me: &Identity,
    server_id: Option<&[u8]>,
    elapsed_cs: u16,
    ask: &Ask,
) -> Vec<u8> {
    let mut msg = Message::new_with_id(kind, xid);
    let opts: &mut DhcpOptions = msg.opts_mut();
    opts.insert(DhcpOption::ClientId(me.duid.clone()));
    if let Some(id) = server_id {
        opts.insert(DhcpOption::ServerId(id.to_vec()));
    }
    opts.insert(DhcpOption::ElapsedTime(elapsed_cs));
    if kind != MessageType::Release {
        opts.insert(DhcpOption::ORO(ORO {
            opts: vec![OptionCode::from(OPTION_SOL_MAX_RT)],
        }));
    }
    let mut ia = DhcpOptions::new();
    let prefix = |net: Ipv6Net| {
        DhcpOption::IAPrefix(IAPrefix {
            preferred_lifetime: 0,
            valid_lifetime: 0,
            prefix_len: net.prefix_len(),
            prefix_ip: net.network(),
            opts: DhcpOptions::new(),
        })
    };
    match ask {
        Ask::Length(Some(len)) => {
            if let Ok(net) = Ipv6Net::new(Ipv6Addr::UNSPECIFIED, *len) {
                ia.insert(prefix(net));
            }
        }
        Ask::Length(None) => {}
        Ask::Prefixes(nets) => {
            for n in nets {
                ia.insert(prefix(*n));
            }
        }
    }
    opts.insert(DhcpOption::IAPD(IAPD {
        id: me.iaid,
        t1: 0,
        t2: 0,
        opts: ia,
    }));
    // Encoding a message built from these options cannot fail (every field
    // has a fixed or length-prefixed form); an empty datagram would simply
    // go unanswered.
    msg.to_vec().unwrap_or_default()
}
