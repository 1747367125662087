//! The admin listener: `/healthz` (process is up), `/readyz` (a validated policy is serving), `/metrics` (Prometheus text format),
//! `PURGE /cache/purge?tag=T` or `?key=host/path` (remove micro-cache entries; `POST` works
//! too) and `/cache/stats` (micro-cache sizes). Keep it on a private address: it needs no
//! authentication because it exposes no secrets, and purging belongs here, never on the
//! public listeners.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::cache::Purge;
use crate::state::Shared;

pub struct Admin {
    pub shared: Arc<Shared>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.as_str().to_string();
        if path == "/cache/purge" {
            return self.purge(&method, session.req_header().uri.query()).await;
        }
        match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                // A policy is always loaded once the listener is up: start-up fails otherwise.
                let v = self.shared.current.load().policy.version.clone();
                reply(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready policy={v}\n").into_bytes(),
                )
            }
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.shared.metrics.encode(),
            ),
            "/cache/stats" => {
                let stats = self.shared.current.load().cache.stats();
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec(&stats).unwrap_or_default(),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

impl Admin {
    async fn purge(&self, method: &str, query: Option<&str>) -> Response<Vec<u8>> {
        if method != "PURGE" && method != "POST" {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"use PURGE (or POST)\n".to_vec(),
            );
        }
        let param = |name: &str| {
            query?
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(percent_decode)
        };
        let (tag, key) = (param("tag"), param("key"));
        let rt = self.shared.current.load_full();
        let purged = match (&tag, &key) {
            (Some(t), None) => rt.cache.purge(Purge::Tag(t)).await,
            (None, Some(k)) => rt.cache.purge(Purge::Key(k)).await,
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    b"expected one of ?tag=<surrogate key> or ?key=<host/path?query>\n".to_vec(),
                )
            }
        };
        tracing::info!(tag = ?tag, key = ?key, purged, "micro-cache purge");
        reply(
            StatusCode::OK,
            "application/json",
            format!("{{\"purged\":{purged}}}\n").into_bytes(),
        )
    }
}

/// `%XX` escapes and `+` (space) of a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
