//! Downstream TLS: certificate loading with validation up front (Pingora's own loader panics on
//! a bad file), a resolver that swaps certificates without a restart, and development
//! certificate generation. Only TLS 1.2 and 1.3 are offered (rustls speaks nothing older).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("generating development certificates: {0}")]
    Generate(String),
}

/// Load and check a PEM certificate chain and private key, and that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let invalid = |p: &Path, what: String| TlsError::Invalid {
        path: p.to_path_buf(),
        what,
    };
    let cert_pem = read(cert)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no CERTIFICATE block found".into()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| invalid(key, format!("not valid PEM: {e}")))?
        .ok_or_else(|| invalid(key, "no PRIVATE KEY block found".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| invalid(key, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        invalid(
            key,
            format!("does not match the certificate in {}: {e}", cert.display()),
        )
    })?;
    Ok(ck)
}

/// What to do with a TLS client whose SNI names none of the certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum UnknownSni {
    /// Serve the first certificate (as nginx's default server does).
    #[default]
    Default,
    /// Refuse the handshake (an `unrecognized_name` alert): scanners that probe by IP or
    /// by a guessed name learn nothing about the hosts served.
    Reject,
}

/// One certificate and key pair, with the names it serves (its DNS subject alternative
/// names; `*.example.com` matches one label).
#[derive(Debug)]
struct Served {
    cert_path: PathBuf,
    key_path: PathBuf,
    names: ArcSwap<Vec<String>>,
    current: ArcSwap<CertifiedKey>,
    loaded: ArcSwap<(Vec<u8>, Vec<u8>)>,
}

/// Serves a certificate per SNI name (several `--tls-cert`/`--tls-key` pairs) and swaps
/// them without a restart after validation ([`CertResolver::reload`]). A client without SNI
/// (an IP literal) gets the first certificate; a client whose SNI matches none gets the
/// first, or no handshake with [`UnknownSni::Reject`].
#[derive(Debug)]
pub struct CertResolver {
    served: Vec<Served>,
    unknown_sni: UnknownSni,
}

/// DNS names of a certificate chain's leaf (subject alternative names), lower-cased.
fn dns_names(ck: &CertifiedKey) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Some(leaf) = ck.cert.first() else {
        return Vec::new();
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether `sni` (lower-case) is one of `names` (`*.x` matches exactly one more label).
fn serves(names: &[String], sni: &str) -> bool {
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => sni
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => n == sni,
    })
}

impl CertResolver {
    /// One certificate for every name.
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        Self::with_pairs(
            &[(cert_path.to_path_buf(), key_path.to_path_buf())],
            UnknownSni::Default,
        )
    }

    /// Several pairs, in order; the first is the default.
    pub fn with_pairs(
        pairs: &[(PathBuf, PathBuf)],
        unknown_sni: UnknownSni,
    ) -> Result<Self, TlsError> {
        let mut served = Vec::with_capacity(pairs.len());
        for (cert_path, key_path) in pairs {
            let ck = load_certified_key(cert_path, key_path)?;
            served.push(Served {
                names: ArcSwap::from_pointee(dns_names(&ck)),
                current: ArcSwap::from_pointee(ck),
                loaded: ArcSwap::from_pointee(fingerprint(cert_path, key_path)),
                cert_path: cert_path.clone(),
                key_path: key_path.clone(),
            });
        }
        if served.is_empty() {
            return Err(TlsError::Invalid {
                path: PathBuf::from("--tls-cert"),
                what: "no certificate given".into(),
            });
        }
        Ok(CertResolver {
            served,
            unknown_sni,
        })
    }

    /// Reload every pair whose files changed. `Ok(true)` when a new certificate is served; a
    /// pair that fails to load keeps its current certificate (the first error is returned).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut changed = false;
        let mut first_err = None;
        for s in &self.served {
            let fp = fingerprint(&s.cert_path, &s.key_path);
            if **s.loaded.load() == fp {
                continue;
            }
            match load_certified_key(&s.cert_path, &s.key_path) {
                Ok(ck) => {
                    s.names.store(Arc::new(dns_names(&ck)));
                    s.current.store(Arc::new(ck));
                    s.loaded.store(Arc::new(fp));
                    changed = true;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(changed),
        }
    }

    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .served
            .iter()
            .flat_map(|s| [&s.cert_path, &s.key_path])
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p
                }
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The certificate for a client's SNI (`None`: refuse the handshake).
    pub fn for_sni(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let default = || self.served.first().map(|s| s.current.load_full());
        let Some(sni) = sni else { return default() };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(s) = self.served.iter().find(|s| serves(&s.names.load(), &sni)) {
            return Some(s.current.load_full());
        }
        match self.unknown_sni {
            UnknownSni::Default => default(),
            UnknownSni::Reject => {
                tracing::debug!(target: "tls", sni = %sni, "handshake refused: unknown SNI");
                None
            }
        }
    }
}

fn fingerprint(cert: &Path, key: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(cert).unwrap_or_default(),
        std::fs::read(key).unwrap_or_default(),
    )
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_sni(hello.server_name())
    }
}

/// Paths of a generated development certificate set.
pub struct DevCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Create (if missing) a development CA and a server certificate signed by it, valid for
/// `localhost`, `api.localhost`, `*.localhost`, `127.0.0.1` and `::1` plus `extra_names`. The private keys are
/// written with mode 0600 and never leave `dir`.
pub fn ensure_dev_certs(dir: &Path, extra_names: &[String]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let out = DevCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    if out.ca.exists() && out.cert.exists() && out.key.exists() {
        return Ok(out);
    }
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate().map_err(g)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "edgeway development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(g)?;

    let mut names: Vec<String> = vec![
        "localhost".into(),
        "*.localhost".into(),
        "api.localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    names.extend(extra_names.iter().cloned());
    let srv_key = KeyPair::generate().map_err(g)?;
    let mut srv = CertificateParams::new(names).map_err(g)?;
    srv.distinguished_name
        .push(DnType::CommonName, "edgeway development server");
    srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let srv_cert = srv.signed_by(&srv_key, &ca_cert, &ca_key).map_err(g)?;

    let write = |p: &Path, data: String, private: bool| -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        if private {
            opts.mode(0o600);
        }
        let mut f = opts.open(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })?;
        f.write_all(data.as_bytes())
            .map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
    };
    // Key first: a crash between writes leaves no certificate without its key.
    write(&out.key, srv_key.serialize_pem(), true)?;
    write(
        &out.cert,
        format!("{}{}", srv_cert.pem(), ca_cert.pem()),
        false,
    )?;
    write(&out.ca, ca_cert.pem(), false)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_load_and_mismatch_is_rejected() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ca = ensure_dev_certs(a.path(), &[]).unwrap();
        let cb = ensure_dev_certs(b.path(), &["api.example.test".into()]).unwrap();
        load_certified_key(&ca.cert, &ca.key).unwrap();
        let err = load_certified_key(&ca.cert, &cb.key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
        let err = load_certified_key(&ca.key, &ca.key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }

    fn self_signed(dir: &Path, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn certificates_are_chosen_by_sni() {
        let d = tempfile::tempdir().unwrap();
        let a = self_signed(d.path(), "a", &["a.test", "www.a.test"]);
        let b = self_signed(d.path(), "b", &["*.b.test"]);
        let names = |r: &CertResolver, sni: Option<&str>| r.for_sni(sni).map(|ck| dns_names(&ck));
        let r = CertResolver::with_pairs(&[a.clone(), b.clone()], UnknownSni::Default).unwrap();
        let a_names = Some(vec!["a.test".to_string(), "www.a.test".to_string()]);
        let b_names = Some(vec!["*.b.test".to_string()]);
        assert_eq!(names(&r, Some("a.test")), a_names);
        assert_eq!(
            names(&r, Some("WWW.A.TEST.")),
            a_names,
            "case and trailing dot"
        );
        assert_eq!(names(&r, Some("x.b.test")), b_names);
        assert_eq!(
            names(&r, Some("b.test")),
            a_names,
            "a wildcard needs one label: default"
        );
        assert_eq!(names(&r, Some("x.y.b.test")), a_names, "exactly one label");
        assert_eq!(names(&r, None), a_names, "no SNI: the first");
        assert_eq!(names(&r, Some("other.test")), a_names, "unknown: the first");

        let strict = CertResolver::with_pairs(&[a, b], UnknownSni::Reject).unwrap();
        assert_eq!(names(&strict, Some("x.b.test")), b_names);
        assert!(
            strict.for_sni(Some("other.test")).is_none(),
            "unknown SNI refused"
        );
        assert!(strict.for_sni(None).is_some(), "no SNI: the first");
    }
}
