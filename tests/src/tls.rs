//! Raw TLS probes for what no modern client library will send (old protocol versions).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send a minimal ClientHello claiming `version` ([3, 2] = TLS 1.1, [3, 3] = TLS 1.2) with no
/// `supported_versions` extension, and return the first bytes the server answers.
pub async fn send_client_hello(addr: SocketAddr, version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
                  // ECDHE-ECDSA/RSA with AES-GCM (TLS 1.2) and AES-CBC-SHA (TLS 1.1).
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xc013, 0x002f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    suites
        .iter()
        .for_each(|s| body.extend_from_slice(&s.to_be_bytes()));
    body.extend_from_slice(&[1, 0]); // compression: null
                                     // Extensions: supported_groups (x25519, P-256), ec_point_formats, signature_algorithms.
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![22u8, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);

    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&record).await.expect("send hello");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("server answered")
        .unwrap_or(0);
    buf.truncate(n);
    buf
}
