//! Loopback networking for tests and runs: free ports, a plain HTTP GET
//! for the operator's `/healthz`, `/readyz` and `/metrics`, and a GET over
//! HTTPS with a bearer token for its secure `/metrics`.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one GET may take, connect to last byte.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A free loopback port, never one this process handed out before: the
/// probe listener is closed at once, so without the record two control
/// planes (or operators) started side by side could get the same port, and
/// the second kube-apiserver would talk to the first one's etcd.
pub fn free_port() -> Result<u16> {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
        let port = l.local_addr()?.port();
        if TAKEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return Ok(port);
        }
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`, at most [`HTTP_TIMEOUT`];
/// returns the status code and the body (chunked bodies decoded).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("GET {path} from {addr} timed out"))?
        .with_context(|| format!("GET {path} from {addr}"))?;
    parse_response(&String::from_utf8_lossy(&buf))
}

/// A GET of `path` over HTTPS, trusting whatever certificate `addr` shows
/// (the operator's own is self-signed), with `token` as bearer token when
/// given, at most [`HTTP_TIMEOUT`]; returns the status code and the body.
pub async fn https_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let user = match token {
        Some(t) => format!("{{token: '{}'}}", t.replace('\'', "''")),
        None => "{}".to_string(),
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://{addr}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {user}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
    );
    let kc = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.connect_timeout = Some(HTTP_TIMEOUT);
    cfg.read_timeout = Some(HTTP_TIMEOUT);
    let client = kube::Client::try_from(cfg)?;
    let req = http::Request::get(path).body(kube::client::Body::from(Vec::new()))?;
    let fut = async {
        let res = client.send(req).await?;
        let code = res.status().as_u16();
        let body = res.into_body().collect_bytes().await?;
        anyhow::Ok((code, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("GET {path} from https://{addr} timed out"))?
        .with_context(|| format!("GET {path} from https://{addr}"))
}

fn parse_response(text: &str) -> Result<(u16, String)> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}

/// Established TCP connections of process `pid` to port `port` at any
/// address: its sockets' inodes matched against /proc/net/tcp and tcp6.
pub fn established_connections(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(rem), Some(state), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
                continue;
            };
            let rport = rem
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if rport == Some(port) && *state == "01" && inodes.contains(*inode) {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain).expect("plain"), (200, "ok".into()));
        let chunked = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).expect("chunked"),
            (503, "no".into())
        );
        assert!(parse_response("garbage").is_err());
    }

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port().expect("port")).collect();
        assert_eq!(ports.len(), 50);
    }
}
