//! File types → [`Snapshot`]. Pure apart from reading the CA files a cluster names; collects
//! every error instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;
use toml::Spanned;

use super::file::{ClusterFile, PolicyFile, RouteFile};
use super::{
    line_col, AccessLogPolicy, ClusterSpec, Forwarding, HealthCheckSpec, HostMatch, PolicyError,
    PolicyErrors, Route, Snapshot, Source, UpstreamTls,
};
use crate::route::Router;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HC_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HC_TIMEOUT: Duration = Duration::from_secs(1);

/// Collects errors against the file currently being looked at.
struct Errors<'a> {
    sources: &'a [Source],
    out: Vec<PolicyError>,
}

impl Errors<'_> {
    fn at(&mut self, file: usize, span: std::ops::Range<usize>, field: &str, message: String) {
        let src = &self.sources[file];
        let (line, column) = line_col(&src.text, span.start);
        self.out.push(PolicyError {
            file: src.path.clone(),
            line,
            column,
            field: field.to_string(),
            message,
        });
    }
}

pub fn validate(sources: &[Source], base_dir: &Path) -> Result<Snapshot, PolicyErrors> {
    let mut errs = Errors {
        sources,
        out: Vec::new(),
    };

    // 1. Parse every file; a syntax or type error stops only that file.
    let mut files: Vec<(usize, PolicyFile)> = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let de = toml::Deserializer::new(&src.text);
        match serde_path_to_error::deserialize::<_, PolicyFile>(de) {
            Ok(f) => files.push((i, f)),
            Err(e) => {
                // Spanned<T> shows up as a private path segment; hide it from users.
                let path = e
                    .path()
                    .to_string()
                    .split('.')
                    .filter(|seg| !seg.starts_with("$__"))
                    .collect::<Vec<_>>()
                    .join(".");
                let inner = e.into_inner();
                let span = inner.span().unwrap_or(0..0);
                let field = if path == "." { "-".to_string() } else { path };
                errs.at(i, span, &field, inner.message().to_string());
            }
        }
    }

    // 2. Clusters, across all files.
    let mut clusters: Vec<ClusterSpec> = Vec::new();
    let mut cluster_index: HashMap<String, (usize, usize)> = HashMap::new(); // name → (idx, file)
    for (fi, f) in &files {
        for (name, c) in &f.clusters {
            let field = format!("cluster.{name}");
            if let Some((_, other)) = cluster_index.get(name) {
                let other = sources[*other].path.display().to_string();
                errs.at(
                    *fi,
                    c.span(),
                    &field,
                    format!("duplicate cluster `{name}`, already defined in {other}"),
                );
                continue;
            }
            if let Some(spec) = cluster(&mut errs, *fi, name, c, base_dir) {
                cluster_index.insert(name.clone(), (clusters.len(), *fi));
                clusters.push(spec);
            } else {
                // Still reserve the name so routes pointing at it are not reported twice.
                cluster_index.insert(name.clone(), (usize::MAX, *fi));
            }
        }
    }

    // 3. Forwarding (at most one section).
    let mut forwarding = Forwarding::default();
    let mut forwarding_seen: Option<usize> = None;
    for (fi, f) in &files {
        let Some(fw) = &f.forwarding else { continue };
        if let Some(other) = forwarding_seen {
            let other = sources[other].path.display().to_string();
            errs.at(
                *fi,
                fw.span(),
                "forwarding",
                format!("duplicate [forwarding] section, already set in {other}"),
            );
            continue;
        }
        forwarding_seen = Some(*fi);
        for (k, cidr) in fw.get_ref().trusted_proxies.iter().enumerate() {
            match parse_cidr(cidr.get_ref()) {
                Ok(net) => forwarding.trusted_proxies.push(net),
                Err(msg) => errs.at(
                    *fi,
                    cidr.span(),
                    &format!("forwarding.trusted_proxies[{k}]"),
                    msg,
                ),
            }
        }
    }

    // 3b. Access log (at most one section).
    let mut access_log = AccessLogPolicy::default();
    let mut access_log_seen: Option<usize> = None;
    for (fi, f) in &files {
        let Some(al) = &f.access_log else { continue };
        if let Some(other) = access_log_seen {
            let other = sources[other].path.display().to_string();
            errs.at(
                *fi,
                al.span(),
                "access_log",
                format!("duplicate [access_log] section, already set in {other}"),
            );
            continue;
        }
        access_log_seen = Some(*fi);
        for (k, p) in al.get_ref().query_params.iter().enumerate() {
            let name = p.get_ref();
            if name.is_empty() || name.contains(['&', '=', ' ']) {
                errs.at(
                    *fi,
                    p.span(),
                    &format!("access_log.query_params[{k}]"),
                    format!("found `{name}`, expected a query parameter name"),
                );
            } else if !access_log.query_params.contains(name) {
                access_log.query_params.push(name.clone());
            }
        }
    }

    // 4. Routes.
    let mut routes: Vec<Route> = Vec::new();
    let mut route_names: HashMap<String, usize> = HashMap::new();
    // (host key, prefix) → methods already claimed, for duplicate detection.
    let mut claimed: HashMap<(Option<HostMatch>, String), Vec<(Option<Vec<Method>>, String)>> =
        HashMap::new();
    for (fi, f) in &files {
        for (ri, r) in f.routes.iter().enumerate() {
            let Some(route) = route(&mut errs, *fi, ri, r.get_ref(), &cluster_index) else {
                continue;
            };
            let rf = r.get_ref();
            let name = rf.name.get_ref().clone();
            if let Some(other) = route_names.get(&name) {
                let other = sources[*other].path.display().to_string();
                errs.at(
                    *fi,
                    rf.name.span(),
                    &format!("route[{ri}].name"),
                    format!("duplicate route name `{name}`, already used in {other}"),
                );
                continue;
            }
            route_names.insert(name.clone(), *fi);
            let host_keys: Vec<Option<HostMatch>> = if route.hosts.is_empty() {
                vec![None]
            } else {
                route.hosts.iter().cloned().map(Some).collect()
            };
            let mut dup = None;
            for hk in &host_keys {
                let entry = claimed
                    .entry((hk.clone(), route.path_prefix.clone()))
                    .or_default();
                if let Some((_, other)) = entry
                    .iter()
                    .find(|(m, _)| methods_overlap(m, &route.methods))
                {
                    dup = Some(other.clone());
                    break;
                }
            }
            if let Some(other) = dup {
                errs.at(
                    *fi,
                    rf.name.span(),
                    &format!("route[{ri}]"),
                    format!(
                        "duplicate route: same hosts, path_prefix `{}` and methods as route `{other}`, expected each match to be unique",
                        route.path_prefix
                    ),
                );
                continue;
            }
            for hk in host_keys {
                claimed
                    .entry((hk, route.path_prefix.clone()))
                    .or_default()
                    .push((route.methods.clone(), name.clone()));
            }
            routes.push(route);
        }
    }

    if !errs.out.is_empty() {
        return Err(PolicyErrors(errs.out));
    }
    let router = Router::new(&routes);
    Ok(Snapshot {
        version: Arc::from(""),
        routes,
        clusters,
        forwarding,
        access_log,
        router,
    })
}

fn methods_overlap(a: &Option<Vec<Method>>, b: &Option<Vec<Method>>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(s) {
        return Ok(net);
    }
    std::net::IpAddr::from_str(s)
        .map(IpNet::from)
        .map_err(|_| format!("found `{s}`, expected an IP address or CIDR block like 10.0.0.0/8"))
}

fn duration(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: &Option<Spanned<String>>,
    default: Duration,
) -> Option<Duration> {
    let Some(v) = v else { return Some(default) };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errs.at(
                fi,
                v.span(),
                field,
                "found `0`, expected a positive duration".into(),
            );
            None
        }
        Err(e) => {
            errs.at(
                fi,
                v.span(),
                field,
                format!(
                    "found `{}` ({e}), expected a duration like `500ms` or `2s`",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn cluster(
    errs: &mut Errors,
    fi: usize,
    name: &str,
    c: &Spanned<ClusterFile>,
    base_dir: &Path,
) -> Option<ClusterSpec> {
    let before = errs.out.len();
    let f = format!("cluster.{name}");
    let c_ref = c.get_ref();
    if !valid_name(name) {
        errs.at(
            fi,
            c.span(),
            &f,
            format!("found cluster name `{name}`, expected letters, digits, `-` or `_`"),
        );
    }
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
    let tls = c_ref.tls.as_ref().and_then(|t| {
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
            Some(p) => match read_ca(&base_dir.join(p.get_ref())) {
                Ok(ders) => Some(ders),
                Err(msg) => {
                    errs.at(fi, p.span(), &format!("{f}.tls.ca_file"), msg);
                    None
                }
            },
        };
        Some(UpstreamTls { sni, ca_der })
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
    if errs.out.len() > before {
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

fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_endpoint(s: &str) -> Result<String, String> {
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

fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn route(
    errs: &mut Errors,
    fi: usize,
    ri: usize,
    r: &RouteFile,
    clusters: &HashMap<String, (usize, usize)>,
) -> Option<Route> {
    let before = errs.out.len();
    let f = format!("route[{ri}]");
    let name = r.name.get_ref();
    if !valid_name(name) {
        errs.at(
            fi,
            r.name.span(),
            &format!("{f}.name"),
            format!("found `{name}`, expected letters, digits, `-`, `_` or `.`"),
        );
    }
    let mut hosts = Vec::new();
    for (k, h) in r.hosts.iter().enumerate() {
        let raw = h.get_ref().trim().to_ascii_lowercase();
        let m = if let Some(suffix) = raw.strip_prefix("*.") {
            valid_hostname(suffix).then(|| HostMatch::Suffix(format!(".{suffix}")))
        } else {
            valid_hostname(&raw).then(|| HostMatch::Exact(raw.clone()))
        };
        match m {
            Some(m) if hosts.contains(&m) => errs.at(
                fi,
                h.span(),
                &format!("{f}.hosts[{k}]"),
                format!("duplicate host `{raw}`"),
            ),
            Some(m) => hosts.push(m),
            None => errs.at(
                fi,
                h.span(),
                &format!("{f}.hosts[{k}]"),
                format!(
                    "found `{}`, expected a host name like `api.example.com` or `*.example.com`",
                    h.get_ref()
                ),
            ),
        }
    }
    let path_prefix = match &r.path_prefix {
        None => "/".to_string(),
        Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['?', '#', ' ']) => {
            p.get_ref().clone()
        }
        Some(p) => {
            errs.at(
                fi,
                p.span(),
                &format!("{f}.path_prefix"),
                format!(
                    "found `{}`, expected a path starting with `/` without `?` or `#`",
                    p.get_ref()
                ),
            );
            String::new()
        }
    };
    let mut methods = Vec::new();
    for (k, m) in r.methods.iter().enumerate() {
        let upper = m.get_ref().to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(me) if upper.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(me),
            _ => errs.at(
                fi,
                m.span(),
                &format!("{f}.methods[{k}]"),
                format!(
                    "found `{}`, expected an HTTP method like `GET`",
                    m.get_ref()
                ),
            ),
        }
    }
    let cluster_name = r.cluster.get_ref();
    let cluster = match clusters.get(cluster_name) {
        Some((idx, _)) => *idx,
        None => {
            let mut known: Vec<&str> = clusters.keys().map(String::as_str).collect();
            known.sort_unstable();
            errs.at(
                fi,
                r.cluster.span(),
                &format!("{f}.cluster"),
                format!(
                    "found `{cluster_name}`, expected one of the defined clusters: [{}]",
                    known.join(", ")
                ),
            );
            usize::MAX
        }
    };
    if errs.out.len() > before || cluster == usize::MAX {
        return None;
    }
    Some(Route {
        name: Arc::from(name.as_str()),
        hosts,
        path_prefix,
        methods: (!methods.is_empty()).then_some(methods),
        cluster,
    })
}
