//! Upstream clusters: where a routed request goes, and how a failure to get there is named.
//!
//! - [`file`]: `[cluster.<name>]` as written (endpoints, timeouts, TLS, health checks);
//! - [`validate()`]: pure checks, reading CA bytes from the
//!   [`Attachments`](crate::policy::attach::Attachments) loaded beforehand; it records every
//!   cluster name in [`Names`](crate::policy::validate::Names) for the capabilities that
//!   refer to clusters;
//! - [`ClusterSpec`]: the immutable, typed spec in the snapshot;
//! - [`Cluster`]: the runtime (resolved endpoints, round-robin balancer, health checks), kept
//!   across a reload while its spec is unchanged, so health state survives;
//! - phase steps: [`Cluster::select_with`] and [`Cluster::peer`] (called by
//!   [`resilience::Guard::select`](crate::resilience::Guard::select) in `upstream_peer`, which
//!   also decides retries), [`classify`] in `fail_to_proxy`.

mod cluster;
pub mod file;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use pingora::{Error, ErrorSource, ErrorType};

pub use cluster::Cluster;
pub use validate::validate;

use crate::policy::file::PolicyFile;
use edgeway_record::outcome::ErrorClass;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterSpec {
    pub name: Arc<str>,
    /// `host:port`, resolved when the runtime is built.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    pub health_check: Option<HealthCheckSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    pub sni: String,
    /// DER certificates read from `ca_file`; `None` trusts the system roots.
    pub ca_der: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheckSpec {
    pub path: String,
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// Files the clusters of `f` refer to (`tls.ca_file`), for the loading step.
pub fn referenced_files(f: &PolicyFile) -> impl Iterator<Item = &str> {
    f.clusters.values().filter_map(|c| {
        c.get_ref()
            .tls
            .as_ref()
            .and_then(|t| t.ca_file.as_ref())
            .map(|p| p.get_ref().as_str())
    })
}

/// Error type for "every endpoint of the cluster failed its health check".
pub const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("no healthy upstream");

/// Name a proxy error: the class decides the status, the JSON `error` code, the record's
/// `error_class` and the upstream-error metric kind.
pub fn classify(e: &Error) -> ErrorClass {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(_) => ErrorClass::HttpStatus,
        t if *t == NO_HEALTHY_UPSTREAM => ErrorClass::NoHealthyUpstream,
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout => ErrorClass::UpstreamConnectTimeout,
                ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                    ErrorClass::UpstreamConnectFailed
                }
                TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                    ErrorClass::UpstreamTlsFailed
                }
                ReadTimedout | WriteTimedout => ErrorClass::UpstreamTimeout,
                _ => ErrorClass::UpstreamError,
            },
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => ErrorClass::ClientClosed,
                ReadTimedout | WriteTimedout => ErrorClass::ClientTimeout,
                _ => ErrorClass::BadRequest,
            },
            ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
                ConnectTimedout => ErrorClass::UpstreamConnectTimeout,
                ConnectRefused | ConnectNoRoute | ConnectError => ErrorClass::UpstreamConnectFailed,
                ReadTimedout => ErrorClass::UpstreamTimeout,
                _ => ErrorClass::Internal,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_source_and_type() {
        let up = Error::new_up;
        assert_eq!(
            classify(&up(ErrorType::ConnectTimedout)),
            ErrorClass::UpstreamConnectTimeout
        );
        assert_eq!(
            classify(&up(ErrorType::ConnectRefused)),
            ErrorClass::UpstreamConnectFailed
        );
        assert_eq!(
            classify(&up(ErrorType::ReadTimedout)),
            ErrorClass::UpstreamTimeout
        );
        assert_eq!(
            classify(&up(ErrorType::InvalidCert)),
            ErrorClass::UpstreamTlsFailed
        );
        let down = Error::new_down(ErrorType::ReadTimedout);
        assert_eq!(classify(&down), ErrorClass::ClientTimeout);
        let closed = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(classify(&closed), ErrorClass::ClientClosed);
        assert_eq!(
            classify(&Error::new(NO_HEALTHY_UPSTREAM)),
            ErrorClass::NoHealthyUpstream
        );
        assert_eq!(
            classify(&Error::new(ErrorType::HTTPStatus(418))),
            ErrorClass::HttpStatus
        );
    }
}
