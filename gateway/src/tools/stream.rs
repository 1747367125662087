//! An in-memory connection for the offline tools: Pingora reads the request from a buffer and
//! writes its answer into another, and the connection reports the client address (and TLS)
//! the caller chose. This is how `gateway explain` and `gateway test` run the proxy's own
//! phases without a socket.

use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the gateway wrote back, shared with the caller.
pub type Written = Arc<Mutex<Vec<u8>>>;

#[derive(Debug)]
pub struct Offline {
    input: Cursor<Vec<u8>>,
    output: Written,
    socket: Arc<SocketDigest>,
    tls: Option<Arc<SslDigest>>,
}

impl Offline {
    /// A connection from `peer` that carries `request` (the raw bytes of one request).
    pub fn new(request: Vec<u8>, peer: std::net::SocketAddr, tls: bool) -> (Offline, Written) {
        let output = Written::default();
        // No file descriptor: the addresses are set here, so Pingora never asks the kernel.
        let socket = SocketDigest::from_raw_fd(-1);
        let _ = socket.peer_addr.set(Some(SocketAddr::Inet(peer)));
        let _ = socket.local_addr.set(None);
        let tls = tls.then(|| {
            Arc::new(SslDigest::new(
                "TLS13_AES_128_GCM_SHA256",
                "TLSv1.3",
                None,
                None,
                Vec::new(),
            ))
        });
        let conn = Offline {
            input: Cursor::new(request),
            output: Arc::clone(&output),
            socket: Arc::new(socket),
            tls,
        };
        (conn, output)
    }
}

impl AsyncRead for Offline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Offline {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.output.lock() {
            Ok(mut out) => {
                out.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(std::io::Error::other("output buffer poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Shutdown for Offline {
    async fn shutdown(&mut self) {}
}

impl UniqueID for Offline {
    fn id(&self) -> UniqueIDType {
        0
    }
}

impl Ssl for Offline {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.tls.clone()
    }
}

impl GetTimingDigest for Offline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for Offline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Offline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(Arc::clone(&self.socket))
    }
}

impl Peek for Offline {}
