//! A proxy in front of the API server that can hold requests: what a frozen
//! host does to the writes a process handed to its HTTP client before the
//! freeze (a VM pause stops the kernel's socket buffers too). Held requests
//! are sent on when released, whether or not their client still waits, and
//! the API server's answer to each is recorded.
//!
//! It serves plain HTTP/1.1 on loopback and forwards each request, headers
//! (the client's bearer token) included, to the API server over TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube::client::Body;
use tokio::sync::watch;

/// Which requests a hold applies to.
pub type Matcher = fn(&Method, &str) -> bool;

/// A `PATCH` of a Node (the podCIDRs write).
pub fn node_patch(m: &Method, path: &str) -> bool {
    m == Method::PATCH && path.starts_with("/api/v1/nodes/")
}

/// One held request and what the API server answered.
#[derive(Clone, Debug)]
pub struct Answered {
    pub path: String,
    pub status: u16,
    pub body: String,
}

struct State {
    upstream: kube::Client,
    matches: Matcher,
    hold: watch::Sender<bool>,
    held: Mutex<usize>,
    answered: Mutex<Vec<Answered>>,
}

/// The proxy; its task ends when it is dropped.
pub struct HoldProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldProxy {
    /// Listens on a free loopback port; forwards to the API server through
    /// `upstream`, a client that carries no credentials of its own.
    pub async fn start(upstream: kube::Client, matches: Matcher) -> HoldProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            upstream,
            matches,
            hold: watch::channel(false).0,
            held: Mutex::new(0),
            answered: Mutex::new(vec![]),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HoldProxy { addr, state, task }
    }

    /// `http://ADDR`, the server of a kubeconfig that goes through it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds matching requests from now on (`true`) or sends on every held
    /// one and stops holding (`false`).
    pub fn hold(&self, on: bool) {
        self.state.hold.send_replace(on);
    }

    /// Matching requests held right now.
    pub fn held(&self) -> usize {
        *self.state.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The API server's answers to the requests that were held.
    pub fn answered(&self) -> Vec<Answered> {
        self.state
            .answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for HoldProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let held = (st.matches)(req.method(), req.uri().path()) && *st.hold.borrow();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    // Read whole: a held request is sent on later, by a task of its own.
    let body = match body.collect().await {
        Ok(c) => c.to_bytes().to_vec(),
        Err(e) => return Ok(bad_gateway(e.to_string())),
    };
    let req = Request::from_parts(parts, Body::from(body));
    // Its own task: the request goes on when released even if its client
    // has given up by then.
    let forward = tokio::spawn(async move {
        if held {
            *st.held.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let mut rx = st.hold.subscribe();
            let _ = rx.wait_for(|on| !*on).await;
            *st.held.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
        let resp = st.upstream.send(req).await;
        if !held {
            return resp.map_err(|e| e.to_string());
        }
        // A held request's answer is read whole, recorded, and passed on.
        let resp = resp.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect_bytes().await.map_err(|e| e.to_string())?;
        st.answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Answered {
                path,
                status: parts.status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        Ok(Response::from_parts(parts, Body::from(bytes.to_vec())))
    });
    Ok(match forward.await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => bad_gateway(e),
        Err(e) => bad_gateway(e.to_string()),
    })
}

fn bad_gateway(e: String) -> Response<Body> {
    let mut r = Response::new(Body::from(e.into_bytes()));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}
