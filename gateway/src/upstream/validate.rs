//! `[cluster.<name>]` → [`ClusterSpec`]: pure; CA files come from [`Attachments`].

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::file::ClusterFile;
use super::{ClusterSpec, HealthCheckSpec, UpstreamTls};
use crate::host::valid_hostname;
use crate::policy::attach::Attachments;
use crate::policy::validate::{define_name, duration, Errors, Files, Names};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);

/// Every `[cluster.<name>]` across files. Each name, valid or not, goes into `names` so that
/// references to it are checked once.
pub fn validate(
    errs: &mut Errors,
    files: &Files,
    attachments: &Attachments,
    base_dir: &Path,
    names: &mut Names,
) -> Vec<ClusterSpec> {
    let mut clusters = Vec::new();
    for (fi, f) in files {
        for (name, c) in &f.clusters {
            let field = format!("cluster.{name}");
            if !define_name(
                errs,
                &mut names.clusters,
                *fi,
                name,
                c.span(),
                &field,
                "cluster",
            ) {
                continue;
            }
            if let Some(spec) = cluster(errs, *fi, name, c, attachments, base_dir) {
                clusters.push(spec);
            }
        }
    }
    clusters
}

fn cluster(
    errs: &mut Errors,
    fi: usize,
    name: &str,
    c: &Spanned<ClusterFile>,
    attachments: &Attachments,
    base_dir: &Path,
) -> Option<ClusterSpec> {
    let before = errs.count();
    let f = format!("cluster.{name}");
    let c_ref = c.get_ref();
    if c_ref.endpoints.is_empty() {
        errs.at(
            fi,
            c.span(),
            &format!("{f}.endpoints"),
            "found an empty list, expected at least one `host:port`".into(),
        );
    }
    let mut endpoints = Vec::new();
    let mut seen = HashSet::new();
    for (k, ep) in c_ref.endpoints.iter().enumerate() {
        let field = format!("{f}.endpoints[{k}]");
        match parse_endpoint(ep.get_ref()) {
            Ok(e) if !seen.insert(e.clone()) => errs.at(
                fi,
                ep.span(),
                &field,
                format!("duplicate endpoint `{e}`, expected each endpoint once"),
            ),
            Ok(e) => endpoints.push(e),
            Err(msg) => errs.at(fi, ep.span(), &field, msg),
        }
    }
    let connect_timeout = duration(
        errs,
        fi,
        &format!("{f}.connect_timeout"),
        &c_ref.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let read_timeout = duration(
        errs,
        fi,
        &format!("{f}.read_timeout"),
        &c_ref.read_timeout,
        DEFAULT_READ_TIMEOUT,
    );
    let tls = c_ref.tls.as_ref().map(|t| {
        let sni = t.sni.get_ref().trim().to_string();
        if sni.is_empty() {
            errs.at(
                fi,
                t.sni.span(),
                &format!("{f}.tls.sni"),
                "found an empty name, expected the upstream's DNS name".into(),
            );
        }
        let ca_der = match &t.ca_file {
            None => None,
            Some(p) => match attachments
                .get(base_dir, p.get_ref())
                .and_then(|pem| parse_ca(&base_dir.join(p.get_ref()), pem))
            {
                Ok(ders) => Some(ders),
                Err(msg) => {
                    errs.at(fi, p.span(), &format!("{f}.tls.ca_file"), msg);
                    None
                }
            },
        };
        UpstreamTls { sni, ca_der }
    });
    let health_check = c_ref.health_check.as_ref().and_then(|h| {
        let path = h
            .path
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            let span = h.path.as_ref().map(|p| p.span()).unwrap_or(c.span());
            errs.at(
                fi,
                span,
                &format!("{f}.health_check.path"),
                format!("found `{path}`, expected a path starting with `/`"),
            );
        }
        let interval = duration(
            errs,
            fi,
            &format!("{f}.health_check.interval"),
            &h.interval,
            DEFAULT_HC_INTERVAL,
        )?;
        let timeout = duration(
            errs,
            fi,
            &format!("{f}.health_check.timeout"),
            &h.timeout,
            DEFAULT_HC_TIMEOUT,
        )?;
        let threshold =
            |errs: &mut Errors, v: &Option<Spanned<u32>>, name: &str, default: u32| match v {
                None => default,
                Some(v) if *v.get_ref() == 0 => {
                    errs.at(
                        fi,
                        v.span(),
                        &format!("{f}.health_check.{name}"),
                        "found 0, expected at least 1".into(),
                    );
                    default
                }
                Some(v) => *v.get_ref(),
            };
        let unhealthy_threshold = threshold(errs, &h.unhealthy_threshold, "unhealthy_threshold", 2);
        let healthy_threshold = threshold(errs, &h.healthy_threshold, "healthy_threshold", 1);
        let host = h
            .host
            .clone()
            .or_else(|| c_ref.tls.as_ref().map(|t| t.sni.get_ref().clone()))
            .unwrap_or_else(|| "localhost".into());
        Some(HealthCheckSpec {
            path,
            host,
            interval,
            timeout,
            unhealthy_threshold,
            healthy_threshold,
        })
    });
    if errs.count() > before {
        return None;
    }
    Some(ClusterSpec {
        name: Arc::from(name),
        endpoints,
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        tls,
        health_check,
    })
}

fn parse_ca(path: &Path, mut pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "found no certificate in `{}`, expected PEM `CERTIFICATE` blocks",
            path.display()
        ));
    }
    // Parse them now: the TLS connector would otherwise fail (or worse) per connection.
    let mut store = rustls::RootCertStore::empty();
    for der in &certs {
        store
            .add(der.clone().into())
            .map_err(|e| format!("`{}` holds an invalid CA certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

pub(crate) fn parse_endpoint(s: &str) -> Result<String, String> {
    let bad = || format!("found `{s}`, expected `host:port` such as `10.0.0.5:8080`");
    if let Ok(addr) = std::net::SocketAddr::from_str(s) {
        return Ok(addr.to_string());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() || !valid_hostname(host) {
        return Err(bad());
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}
