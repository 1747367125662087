//! The head of each HTTP/1 request, watched from the connection's byte stream: a total
//! deadline for reading it, and a record for the requests Pingora refuses before any proxy
//! phase runs.
//!
//! Pingora times each read of a request head separately (the keep-alive timeout), so a client
//! that trickles a header a byte at a time holds its connection for ever. And a head Pingora
//! cannot parse (bad framing, conflicting `Content-Length`, `Transfer-Encoding` with
//! `Content-Length`, invalid bytes, an oversized head), or a `CONNECT`, is answered (400, 405)
//! and closed inside Pingora, before `early_request_filter`: no phase of ours sees it.
//!
//! [`HeadStream`] wraps an HTTP/1 connection's stream ([`crate::connections::Guarded`] puts it
//! in place) and follows where the connection is:
//!
//! ```text
//!  HEAD ──early_request_filter──▶ BODY ──logging──▶ AFTER ──a read waits──▶ IDLE ──a byte──▶ HEAD
//! ```
//!
//! In HEAD the clock runs: from the accepted connection for the first request, from the first
//! byte for later ones (the idle time between requests is the keep-alive timeout's). When
//! `--header-timeout` passes before the proxy phases start, the read fails, the client gets a
//! 408 (when it sent anything) and the connection is closed, counted in
//! `gateway_request_header_timeouts_total`. AFTER covers the end of a request body Pingora
//! drains once the response is out: those bytes start no clock. A status written outside BODY
//! is one of Pingora's own answers (or the 408); when the stream is dropped in HEAD or AFTER
//! with such a status, or mid-head, [`Heads`] writes the request's access-log record from
//! what the stream saw: the request line's method and path (when they parse), the peer, TLS.
//!
//! Cost on the plain route: two atomic stores per request (the phases), one downcast each, and
//! a copy of at most [`LINE`] bytes of each head; the timer is armed only when a head does not
//! arrive in one read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use prometheus::{IntCounter, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access_log::{self, AccessLog};
use crate::state::Shared;
use edgeway_record::outcome::{AuthResult, ErrorClass};
use edgeway_record::{AccessLogRecordRef, RECORD_VERSION};

const HEAD: u8 = 0;
const BODY: u8 = 1;
const AFTER: u8 = 2;
const IDLE: u8 = 3;

/// Bytes of each head kept for the record of a refused request: the request line.
pub const LINE: usize = 256;

const TIMEOUT_BODY: &str = r#"{"error":"client_timeout","message":"client did not send the request in time","status":408}"#;

/// What every watched connection shares: the deadline, and where records of refused heads go.
pub struct Heads {
    pub timeout: Duration,
    pub shared: Arc<Shared>,
    pub log: Option<AccessLog>,
    pub instance: String,
    timeouts: IntCounter,
    /// The whole 408 answer, made once.
    timeout_response: Vec<u8>,
}

impl Heads {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn new(
        timeout: Duration,
        shared: Arc<Shared>,
        log: Option<AccessLog>,
        instance: String,
        registry: &Registry,
    ) -> Heads {
        let timeouts = IntCounter::new(
            "gateway_request_header_timeouts_total",
            "HTTP/1 connections closed because a request head took longer than --header-timeout.",
        )
        .expect("static metric");
        registry
            .register(Box::new(timeouts.clone()))
            .expect("unique metric");
        let timeout_response = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{TIMEOUT_BODY}",
            TIMEOUT_BODY.len()
        )
        .into_bytes();
        Heads {
            timeout,
            shared,
            log,
            instance,
            timeouts,
            timeout_response,
        }
    }

    /// Watch `stream` when it carries HTTP/1 (HTTP/2 has its own stream and header limits).
    pub fn watch(self: &Arc<Self>, stream: Stream) -> Stream {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return stream;
        }
        Box::new(HeadStream {
            inner: stream,
            heads: Arc::clone(self),
            phase: AtomicU8::new(HEAD),
            started: Some(Instant::now()),
            sleep: None,
            line: [0; LINE],
            line_len: 0,
            head_bytes: 0,
            status: 0,
            timed_out: false,
        })
    }

    /// The access-log record (and request metrics) of a request that never reached the proxy
    /// phases.
    fn record(&self, s: &HeadStream) {
        let status = s.status;
        let class = match status {
            0 => ErrorClass::ClientClosed,
            400 => ErrorClass::BadRequest,
            405 => ErrorClass::MethodNotAllowed,
            408 => ErrorClass::ClientTimeout,
            _ => ErrorClass::HttpStatus,
        };
        let elapsed = s.started.map(|t| t.elapsed()).unwrap_or_default();
        let rt = self.shared.current.load();
        rt.unrouted_metrics.observe(status, elapsed.as_secs_f64());
        let (method, target, version) = request_line(&s.line[..s.line_len]);
        tracing::debug!(target: "access", status, error = class.as_str(), method, "request refused before the proxy phases");
        let Some(log) = &self.log else { return };
        let policy = &rt.policy;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = access_log::record::redact_path(path, &policy.access_log.mask_paths);
        let query = access_log::record::filter_query(
            (!query.is_empty()).then_some(query),
            &policy.access_log.query_params,
        );
        let peer: Option<SocketAddr> = s
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        let inet = peer.as_ref().and_then(|a| a.as_inet());
        let tls = s.inner.get_ssl_digest();
        let mut ip_buf = [0u8; 64];
        let request_id = crate::request_id::generate();
        log.emit(&AccessLogRecordRef {
            record_version: RECORD_VERSION,
            event_time: self.shared.clock.now_ms()
                - i64::try_from(elapsed.as_millis()).unwrap_or(0),
            request_id: &request_id,
            client_ip: inet.map_or("", |a| access_log::record::display(&mut ip_buf, a.ip())),
            client_port: inet.map_or(0, |a| i32::from(a.port())),
            method,
            scheme: if tls.is_some() { "https" } else { "http" },
            path: access_log::record::truncate(&path, 2048),
            query: query.as_deref(),
            http_version: version,
            status: i32::from(status),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            auth_result: AuthResult::None.as_str(),
            error_class: Some(class.as_str()),
            tls_version: tls.as_ref().map(|t| &*t.version),
            tls_cipher: tls.as_ref().map(|t| &*t.cipher),
            policy_version: &policy.version,
            gateway_instance: &self.instance,
            request_id_from_client: Some(false),
            ..AccessLogRecordRef::default()
        });
    }
}

/// Method, target and version of a request line, each empty unless well formed (a token
/// method, a visible-ASCII target), so nothing odd reaches the record.
fn request_line(bytes: &[u8]) -> (&str, &str, &'static str) {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (m, t, v) = (
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
    );
    let method_ok = !m.is_empty() && m.len() <= 32 && m.iter().all(|b| b.is_ascii_alphabetic());
    let target_ok = !t.is_empty() && t.iter().all(|b| b.is_ascii_graphic());
    let text = |ok: bool, b| {
        if ok {
            std::str::from_utf8(b).unwrap_or("")
        } else {
            ""
        }
    };
    let version = match v {
        b"HTTP/1.1" => "HTTP/1.1",
        b"HTTP/1.0" => "HTTP/1.0",
        _ => "",
    };
    (text(method_ok, m), text(target_ok, t), version)
}

/// The status of a response head at the start of `buf` (`HTTP/1.x NNN`).
fn response_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// An HTTP/1 connection's stream, watched (see the module docs).
pub struct HeadStream {
    inner: Stream,
    heads: Arc<Heads>,
    phase: AtomicU8,
    /// When the current head's clock started.
    started: Option<Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    line: [u8; LINE],
    line_len: usize,
    head_bytes: usize,
    /// A status written outside BODY: Pingora's own answer, or our 408.
    status: u16,
    timed_out: bool,
}

impl std::fmt::Debug for HeadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// The watched stream under a session, if any.
fn watched(session: &pingora::proxy::Session) -> Option<&HeadStream> {
    let stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<HeadStream>()
}

/// `early_request_filter`: the head was read and the proxy phases have it.
pub fn reached_phases(session: &pingora::proxy::Session) {
    if let Some(s) = watched(session) {
        s.phase.store(BODY, Ordering::Relaxed);
    }
}

/// `logging`: the response is done; what follows is the rest of the body or the next head.
pub fn request_done(session: &pingora::proxy::Session) {
    if let Some(s) = watched(session) {
        s.phase.store(AFTER, Ordering::Relaxed);
    }
}

impl HeadStream {
    /// Bytes arrived outside BODY. (Out of line so that `bench/profile` counts it.)
    #[inline(never)]
    fn saw(&mut self, phase: u8, got: &[u8]) {
        match phase {
            IDLE => {
                self.phase.store(HEAD, Ordering::Relaxed);
                self.started = Some(Instant::now());
                self.line_len = 0;
                self.head_bytes = 0;
                self.status = 0;
            }
            AFTER if self.head_bytes == 0 => self.line_len = 0,
            _ => {}
        }
        self.head_bytes += got.len();
        let n = got.len().min(LINE - self.line_len);
        self.line[self.line_len..self.line_len + n].copy_from_slice(&got[..n]);
        self.line_len += n;
    }

    /// A read of a head is waiting: enforce the deadline.
    #[inline(never)]
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(started) = self.started.filter(|_| !self.heads.timeout.is_zero()) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(started + self.heads.timeout);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timed_out = true;
        self.heads.timeouts.inc();
        if self.head_bytes > 0 {
            // Best effort: a short answer into an idle socket's empty send buffer. Pingora
            // closes the connection once the read fails.
            let heads = Arc::clone(&self.heads);
            if let Poll::Ready(Ok(_)) =
                Pin::new(&mut self.inner).poll_write(cx, &heads.timeout_response)
            {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
            self.status = 408;
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request head not received within --header-timeout",
        )))
    }
}

impl Drop for HeadStream {
    fn drop(&mut self) {
        let phase = *self.phase.get_mut();
        let refused = match phase {
            HEAD => self.status != 0 || self.head_bytes > 0,
            AFTER => self.status != 0,
            _ => false,
        };
        if refused {
            let heads = Arc::clone(&self.heads);
            heads.record(self);
        }
    }
}

impl AsyncRead for HeadStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let phase = this.phase.load(Ordering::Relaxed);
        if phase == BODY {
            return res;
        }
        match res {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    this.saw(phase, got);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match phase {
                HEAD => this.poll_deadline(cx),
                AFTER => {
                    this.phase.store(IDLE, Ordering::Relaxed);
                    Poll::Pending
                }
                _ => Poll::Pending,
            },
            err => err,
        }
    }
}

impl AsyncWrite for HeadStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.status == 0 && this.phase.load(Ordering::Relaxed) != BODY {
            if let Some(status) = response_status(buf) {
                this.status = status;
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.status == 0 && this.phase.load(Ordering::Relaxed) != BODY {
            if let Some(status) = bufs.first().and_then(|b| response_status(b)) {
                this.status = status;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_reach_the_record_only_when_well_formed() {
        assert_eq!(
            request_line(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n"),
            ("CONNECT", "example.com:443", "HTTP/1.1")
        );
        assert_eq!(
            request_line(b"GET /a?b=1 HTTP/1.0\r\n"),
            ("GET", "/a?b=1", "HTTP/1.0")
        );
        assert_eq!(request_line(b"G\x01T /\xff HTTP/9\r\n"), ("", "", ""));
        assert_eq!(request_line(b""), ("", "", ""));
        assert_eq!(request_line(b"GET"), ("GET", "", ""));
    }

    #[test]
    fn response_statuses_are_read_from_heads_only() {
        assert_eq!(response_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(response_status(b"HTTP/1.0 405 x"), Some(405));
        assert_eq!(response_status(b"{\"HTTP/1.1 200"), None);
        assert_eq!(response_status(b"HTTP/1.1 4"), None);
    }
}
