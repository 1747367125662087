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

/// Serves the current certificate; [`CertResolver::reload`] swaps it after validation.
#[derive(Debug)]
pub struct CertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    loaded: ArcSwap<(Vec<u8>, Vec<u8>)>,
}

impl CertResolver {
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let ck = load_certified_key(cert_path, key_path)?;
        Ok(CertResolver {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(ck),
            loaded: ArcSwap::from_pointee(Self::fingerprint(cert_path, key_path)),
        })
    }

    fn fingerprint(cert: &Path, key: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(cert).unwrap_or_default(),
            std::fs::read(key).unwrap_or_default(),
        )
    }

    /// Reload if the files changed. `Ok(true)` when a new certificate is now served.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let fp = Self::fingerprint(&self.cert_path, &self.key_path);
        if **self.loaded.load() == fp {
            return Ok(false);
        }
        let ck = load_certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(ck));
        self.loaded.store(Arc::new(fp));
        Ok(true)
    }

    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert_path, &self.key_path]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p
                }
            })
            .collect();
        dirs.dedup();
        dirs
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
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
}
