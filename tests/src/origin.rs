//! A small real HTTP origin (hyper 1, HTTP/1.1): used in-process by the tests, and as the
//! `origin` binary by the local stack and the benchmarks.
//!
//! - `GET /healthz` answers 200, or 503 while the origin is marked unhealthy;
//! - `/slow?ms=N` waits N ms, then answers like any other path;
//! - `/static` answers a fixed small body (the benchmark target);
//! - any other path answers 200 with a JSON echo: origin name, method, path, headers and the
//!   origin's request count `n`; query parameters shape the answer (for cache tests):
//!   `status=N`, `cc=` (Cache-Control), `cdn=` (CDN-Cache-Control), `etag=` (an If-None-Match
//!   naming it gets 304), `lm=` (Last-Modified; an equal If-Modified-Since gets 304),
//!   `cookie=` (Set-Cookie), `vary=`, `ct=` (Content-Type);
//! - while `fail_status` is non-zero, every path but `/healthz` answers that status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub const STATIC_BODY: &[u8] = b"hello from the edgeway origin\n";

pub struct OriginState {
    pub name: String,
    pub healthy: AtomicBool,
    pub requests: AtomicU64,
    /// When non-zero, every path but `/healthz` answers this status (an origin failing).
    pub fail_status: AtomicU16,
}

/// A running origin; it stops when the handle is dropped.
pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        Self::serve(listener, name)
    }

    pub fn serve(listener: TcpListener, name: &str) -> Origin {
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            fail_status: AtomicU16::new(0),
        });
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&st), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, state, task }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }
}

impl Origin {
    /// Answer every request (but `/healthz`) with `status`; 0 recovers.
    pub fn fail_with(&self, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
    }

    /// Requests received so far (health checks included).
    pub fn hits(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    st: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = st.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path();
    if path == "/static" {
        return Ok(Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(STATIC_BODY)))
            .unwrap_or_default());
    }
    if path == "/healthz" {
        let ok = st.healthy.load(Ordering::SeqCst);
        return Ok(Response::builder()
            .status(if ok { 200 } else { 503 })
            .body(Full::new(Bytes::from_static(if ok {
                b"ok"
            } else {
                b"down"
            })))
            .unwrap_or_default());
    }
    let fail = st.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        return Ok(Response::builder()
            .status(fail)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::json!({"origin": st.name, "failing": fail}).to_string(),
            )))
            .unwrap_or_default());
    }
    if path.starts_with("/slow") {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "origin": st.name,
        "method": req.method().as_str(),
        "path": path,
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "n": n,
    });
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut resp =
        Response::builder().header("content-type", param("ct").unwrap_or("application/json"));
    for (p, h) in [
        ("cc", "cache-control"),
        ("cdn", "cdn-cache-control"),
        ("etag", "etag"),
        ("lm", "last-modified"),
        ("cookie", "set-cookie"),
        ("vary", "vary"),
    ] {
        if let Some(v) = param(p) {
            resp = resp.header(h, v);
        }
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let not_modified = param("etag").is_some_and(|e| {
        header("if-none-match").is_some_and(|inm| inm.split(',').any(|t| t.trim() == e))
    }) || param("lm").is_some_and(|lm| header("if-modified-since") == Some(lm));
    if not_modified {
        return Ok(resp
            .status(304)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default());
    }
    let status = param("status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200u16);
    Ok(resp
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default())
}

/// `%XX` and `+` of a query value.
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
