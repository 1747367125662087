//! `[issuer.<name>]`, `[auth.<name>]`, `[revocation]` → [`AuthPolicy`]: pure; JWKS, CA and
//! secret files come from [`Attachments`]; `secret_env` is read from the environment.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::file::{AuthRuleFile, IssuerFile, RevocationFile, TokenSourceFile};
use super::jwks::KeySet;
use super::spec::{
    AuthPolicy, IssuerSpec, JwksSource, JwksUrl, RedisRevocation, RevocationSpec, RuleSpec, Secret,
    TokenSource,
};
use crate::policy::attach::Attachments;
use crate::policy::validate::{at_most_one, define_name, duration, lookup, Errors, Files, Names};

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
const DEFAULT_REFRESH_MIN: Duration = Duration::from_secs(60);
const DEFAULT_REFRESH_MAX: Duration = Duration::from_secs(86_400);
const DEFAULT_REFETCH: Duration = Duration::from_secs(10);
const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
const DEFAULT_REVOCATION_REFRESH: Duration = Duration::from_secs(1);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(10);
/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size; 32 bytes for HS256).
const MIN_SECRET_BYTES: usize = 32;

/// Every issuer, rule and the revocation section across files. Issuer and rule names, valid
/// or not, go into `names` so references to them are checked once.
pub fn validate(
    errs: &mut Errors,
    files: &Files,
    attachments: &Attachments,
    base_dir: &Path,
    names: &mut Names,
) -> AuthPolicy {
    let mut policy = AuthPolicy::default();
    for (fi, f) in files {
        for (name, i) in &f.issuers {
            let field = format!("issuer.{name}");
            if define_name(
                errs,
                &mut names.issuers,
                *fi,
                name,
                i.span(),
                &field,
                "issuer",
            ) {
                if let Some(spec) = issuer(errs, *fi, name, i, attachments, base_dir) {
                    policy.issuers.push(Arc::new(spec));
                }
            }
        }
    }
    let mut identity_headers: BTreeSet<String> = BTreeSet::new();
    for (fi, f) in files {
        for (name, r) in &f.auth_rules {
            let field = format!("auth.{name}");
            if define_name(
                errs,
                &mut names.auth_rules,
                *fi,
                name,
                r.span(),
                &field,
                "auth rule",
            ) {
                if let Some(spec) = rule(errs, *fi, name, r, names) {
                    identity_headers.extend(spec.forward_claims.iter().map(|(_, h)| h.to_string()));
                    policy.rules.push(Arc::new(spec));
                }
            }
        }
    }
    policy.identity_headers = identity_headers
        .into_iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    if let Some((fi, r)) = at_most_one(errs, files, "revocation", |f| f.revocation.as_ref()) {
        policy.revocation = revocation(errs, fi, r.get_ref());
    }
    policy
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn issuer(
    errs: &mut Errors,
    fi: usize,
    name: &str,
    i: &Spanned<IssuerFile>,
    attachments: &Attachments,
    base_dir: &Path,
) -> Option<IssuerSpec> {
    let before = errs.count();
    let f = format!("issuer.{name}");
    let i_ref = i.get_ref();
    if let Some(s) = &i_ref.secret {
        errs.at(
            fi,
            s.span(),
            &format!("{f}.secret"),
            "found an inline secret: policy files are shared and versioned; put the secret in `secret_file` or `secret_env`".into(),
        );
    }
    let iss = i_ref.iss.get_ref();
    if iss.is_empty() {
        errs.at(
            fi,
            i_ref.iss.span(),
            &format!("{f}.iss"),
            "found an empty `iss`, expected the issuer's exact `iss` claim".into(),
        );
    }
    if i_ref.audiences.get_ref().iter().all(|a| a.is_empty()) {
        errs.at(
            fi,
            i_ref.audiences.span(),
            &format!("{f}.audiences"),
            "found no audience, expected at least one accepted `aud` value".into(),
        );
    }
    let mut algorithms = Vec::new();
    if i_ref.algorithms.get_ref().is_empty() {
        errs.at(
            fi,
            i_ref.algorithms.span(),
            &format!("{f}.algorithms"),
            "found an empty list, expected at least one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512".into(),
        );
    }
    for (k, a) in i_ref.algorithms.get_ref().iter().enumerate() {
        match super::token::algorithm(a.get_ref()) {
            Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Some(_) => {}
            None => errs.at(
                fi,
                a.span(),
                &format!("{f}.algorithms[{k}]"),
                format!(
                    "found `{}`, expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512 (`none` is never accepted)",
                    a.get_ref()
                ),
            ),
        }
    }
    let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
    let wants_keys = algorithms.iter().any(|a| !is_hmac(*a));

    // Keys: a JWKS (file or URL) for the asymmetric algorithms, a secret for HMAC.
    if i_ref.jwks_file.is_some() && i_ref.jwks_url.is_some() {
        errs.at(
            fi,
            i.span(),
            &format!("{f}.jwks_url"),
            "found both `jwks_file` and `jwks_url`, expected one".into(),
        );
    }
    let secs = |errs: &mut Errors, key: &str, v: &Option<Spanned<String>>, d| {
        duration(errs, fi, &format!("{f}.{key}"), v, d)
    };
    let jwks = if let Some(p) = &i_ref.jwks_file {
        match attachments
            .get(base_dir, p.get_ref())
            .and_then(|b| KeySet::parse(b).map(|_| b))
        {
            Ok(bytes) => Some(JwksSource::File {
                path: p.get_ref().clone(),
                bytes: bytes.to_vec(),
            }),
            Err(msg) => {
                errs.at(fi, p.span(), &format!("{f}.jwks_file"), msg);
                None
            }
        }
    } else if let Some(u) = &i_ref.jwks_url {
        let url = match u.get_ref().parse::<http::Uri>() {
            Ok(url) if url.scheme_str() == Some("https") && url.host().is_some() => Some(url),
            _ => {
                errs.at(
                    fi,
                    u.span(),
                    &format!("{f}.jwks_url"),
                    format!("found `{}`, expected an https:// URL", u.get_ref()),
                );
                None
            }
        };
        let ca_pem = i_ref.jwks_ca_file.as_ref().and_then(|p| {
            match attachments.get(base_dir, p.get_ref()) {
                Ok(b) if b.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    Some(b.to_vec())
                }
                Ok(_) => {
                    errs.at(
                        fi,
                        p.span(),
                        &format!("{f}.jwks_ca_file"),
                        "found no PEM certificate".into(),
                    );
                    None
                }
                Err(msg) => {
                    errs.at(fi, p.span(), &format!("{f}.jwks_ca_file"), msg);
                    None
                }
            }
        });
        let refresh = secs(errs, "jwks_refresh", &i_ref.jwks_refresh, DEFAULT_REFRESH);
        let refresh_min = secs(
            errs,
            "jwks_refresh_min",
            &i_ref.jwks_refresh_min,
            DEFAULT_REFRESH_MIN,
        );
        let refresh_max = secs(
            errs,
            "jwks_refresh_max",
            &i_ref.jwks_refresh_max,
            DEFAULT_REFRESH_MAX,
        );
        let refetch = secs(
            errs,
            "jwks_refetch_interval",
            &i_ref.jwks_refetch_interval,
            DEFAULT_REFETCH,
        );
        match (url, refresh, refresh_min, refresh_max, refetch) {
            (Some(url), Some(refresh), Some(lo), Some(hi), Some(refetch_interval)) => {
                if lo > hi {
                    errs.at(
                        fi,
                        i.span(),
                        &format!("{f}.jwks_refresh_min"),
                        format!("found jwks_refresh_min {lo:?} above jwks_refresh_max {hi:?}"),
                    );
                }
                Some(JwksSource::Url(JwksUrl {
                    url,
                    ca_pem,
                    refresh,
                    refresh_min: lo,
                    refresh_max: hi,
                    refetch_interval,
                }))
            }
            _ => None,
        }
    } else {
        if wants_keys {
            errs.at(
                fi,
                i_ref.algorithms.span(),
                &format!("{f}.jwks_file"),
                "the algorithms need public keys: expected `jwks_file` or `jwks_url`".into(),
            );
        }
        None
    };
    if jwks.is_some() && !wants_keys && before == errs.count() {
        errs.at(
            fi,
            i_ref.algorithms.span(),
            &format!("{f}.algorithms"),
            "a JWKS is set but only HMAC algorithms are allowed: add the key set's algorithms"
                .into(),
        );
    }
    if i_ref.jwks_ca_file.is_some() && i_ref.jwks_url.is_none() {
        let span = i_ref.jwks_ca_file.as_ref().map_or(i.span(), |p| p.span());
        errs.at(
            fi,
            span,
            &format!("{f}.jwks_ca_file"),
            "only meaningful with `jwks_url`".into(),
        );
    }
    let secret = secret(errs, fi, &f, i, attachments, base_dir);
    if wants_hmac && secret.is_none() && i_ref.secret.is_none() {
        errs.at(
            fi,
            i_ref.algorithms.span(),
            &format!("{f}.algorithms"),
            "HS256/HS384/HS512 need a secret: expected `secret_file` or `secret_env`".into(),
        );
    }
    if secret.is_some() && !wants_hmac {
        errs.at(
            fi,
            i.span(),
            &format!("{f}.secret_file"),
            "a secret is set but no HS* algorithm is allowed".into(),
        );
    }

    let leeway = secs(errs, "leeway", &i_ref.leeway, DEFAULT_LEEWAY);
    let max_lifetime = match &i_ref.max_lifetime {
        None => None,
        Some(_) => secs(errs, "max_lifetime", &i_ref.max_lifetime, Duration::ZERO),
    };
    let token = token_source(errs, fi, &f, i_ref.token.as_ref());
    let max_token_bytes = match &i_ref.max_token_bytes {
        None => DEFAULT_MAX_TOKEN_BYTES,
        Some(v) if (256..=65_536).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            errs.at(
                fi,
                v.span(),
                &format!("{f}.max_token_bytes"),
                format!("found {}, expected 256 to 65536", v.get_ref()),
            );
            DEFAULT_MAX_TOKEN_BYTES
        }
    };
    let required_claims = i_ref
        .required_claims
        .iter()
        .map(|c| c.get_ref().clone())
        .filter(|c| c != "exp")
        .collect();
    if errs.count() != before {
        return None;
    }
    Some(IssuerSpec {
        name: Arc::from(name),
        iss: iss.clone(),
        audiences: i_ref.audiences.get_ref().clone(),
        algorithms,
        jwks,
        secret,
        leeway: leeway?,
        max_lifetime,
        required_claims,
        token: token?,
        max_token_bytes,
        cache_tokens: i_ref.cache_tokens.unwrap_or(true),
    })
}

fn secret(
    errs: &mut Errors,
    fi: usize,
    f: &str,
    i: &Spanned<IssuerFile>,
    attachments: &Attachments,
    base_dir: &Path,
) -> Option<Secret> {
    let i_ref = i.get_ref();
    let (bytes, span, field) = match (&i_ref.secret_file, &i_ref.secret_env) {
        (Some(_), Some(e)) => {
            errs.at(
                fi,
                e.span(),
                &format!("{f}.secret_env"),
                "found both `secret_file` and `secret_env`, expected one".into(),
            );
            return None;
        }
        (Some(p), None) => match attachments.get(base_dir, p.get_ref()) {
            Ok(b) => (
                b.strip_suffix(b"\n").unwrap_or(b).to_vec(),
                p.span(),
                "secret_file",
            ),
            Err(msg) => {
                errs.at(fi, p.span(), &format!("{f}.secret_file"), msg);
                return None;
            }
        },
        (None, Some(e)) => match std::env::var_os(e.get_ref()) {
            Some(v) => (v.into_encoded_bytes(), e.span(), "secret_env"),
            None => {
                errs.at(
                    fi,
                    e.span(),
                    &format!("{f}.secret_env"),
                    format!("environment variable `{}` is not set", e.get_ref()),
                );
                return None;
            }
        },
        (None, None) => return None,
    };
    if bytes.len() < MIN_SECRET_BYTES {
        errs.at(
            fi,
            span,
            &format!("{f}.{field}"),
            format!(
                "the secret has {} bytes, expected at least {MIN_SECRET_BYTES}",
                bytes.len()
            ),
        );
        return None;
    }
    Some(Secret(bytes))
}

fn token_source(
    errs: &mut Errors,
    fi: usize,
    f: &str,
    t: Option<&TokenSourceFile>,
) -> Option<TokenSource> {
    let Some(t) = t else {
        return Some(TokenSource::Bearer);
    };
    let set: Vec<_> = [
        ("header", &t.header),
        ("cookie", &t.cookie),
        ("query", &t.query),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let [(kind, v)] = set.as_slice() else {
        let span = set.first().map(|(_, v)| v.span()).unwrap_or(0..0);
        errs.at(
            fi,
            span,
            &format!("{f}.token"),
            "expected exactly one of `header`, `cookie`, `query`".into(),
        );
        return None;
    };
    let name = v.get_ref();
    let field = format!("{f}.token.{kind}");
    if name.is_empty() {
        errs.at(fi, v.span(), &field, "found an empty name".into());
        return None;
    }
    match *kind {
        "header" => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if h == http::header::AUTHORIZATION => Some(TokenSource::Bearer),
            Ok(h) => Some(TokenSource::Header(h)),
            Err(_) => {
                errs.at(
                    fi,
                    v.span(),
                    &field,
                    format!("found `{name}`, expected a header name"),
                );
                None
            }
        },
        "cookie" => Some(TokenSource::Cookie(name.clone())),
        _ => Some(TokenSource::Query(name.clone())),
    }
}

fn rule(
    errs: &mut Errors,
    fi: usize,
    name: &str,
    r: &Spanned<AuthRuleFile>,
    names: &Names,
) -> Option<RuleSpec> {
    let before = errs.count();
    let f = format!("auth.{name}");
    let r_ref = r.get_ref();
    if r_ref.issuers.get_ref().is_empty() {
        errs.at(
            fi,
            r_ref.issuers.span(),
            &format!("{f}.issuers"),
            "found an empty list, expected at least one issuer".into(),
        );
    }
    for (k, i) in r_ref.issuers.get_ref().iter().enumerate() {
        lookup(
            errs,
            fi,
            i,
            &format!("{f}.issuers[{k}]"),
            "issuers",
            &names.issuers,
        );
    }
    let mut claims = Vec::new();
    for (claim, v) in &r_ref.claims {
        let values: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        let mut json = Vec::new();
        for value in values {
            match value {
                toml::Value::String(s) => json.push(serde_json::Value::from(s.clone())),
                toml::Value::Integer(n) => json.push(serde_json::Value::from(*n)),
                toml::Value::Boolean(b) => json.push(serde_json::Value::from(*b)),
                other => {
                    errs.at(
                        fi,
                        v.span(),
                        &format!("{f}.claims.{claim}"),
                        format!(
                            "found {}, expected a string, integer or boolean (or a list of them)",
                            other.type_str()
                        ),
                    );
                }
            }
        }
        if json.is_empty() {
            errs.at(
                fi,
                v.span(),
                &format!("{f}.claims.{claim}"),
                "found an empty list, expected at least one accepted value".into(),
            );
        }
        claims.push((claim.clone(), json));
    }
    let mut forward_claims = Vec::new();
    for (claim, header) in &r_ref.forward_claims {
        let field = format!("{f}.forward_claims.{claim}");
        match HeaderName::from_bytes(header.get_ref().as_bytes()) {
            Ok(h) if is_reserved(&h) => errs.at(
                fi,
                header.span(),
                &field,
                format!("found `{h}`, a header the gateway or HTTP itself controls; expected an application header such as `x-user-id`"),
            ),
            Ok(h) => forward_claims.push((claim.clone(), h)),
            Err(_) => errs.at(
                fi,
                header.span(),
                &field,
                format!("found `{}`, expected a header name", header.get_ref()),
            ),
        }
    }
    let realm = r_ref.realm.clone().unwrap_or_else(|| "edgeway".into());
    if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        errs.at(
            fi,
            r.span(),
            &format!("{f}.realm"),
            "the realm may not contain quotes, backslashes or control characters".into(),
        );
    }
    if errs.count() != before {
        return None;
    }
    Some(RuleSpec {
        name: Arc::from(name),
        mode: r_ref.mode,
        issuers: r_ref
            .issuers
            .get_ref()
            .iter()
            .map(|i| Arc::from(i.get_ref().as_str()))
            .collect(),
        scopes: r_ref.scopes.iter().map(|s| s.get_ref().clone()).collect(),
        scopes_match: r_ref.scopes_match,
        claims,
        forward_claims,
        forward_authorization: r_ref.forward_authorization,
        realm,
    })
}

/// Headers a claim may not be copied into.
fn is_reserved(h: &HeaderName) -> bool {
    use http::header::*;
    [
        AUTHORIZATION,
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        COOKIE,
        UPGRADE,
        TE,
    ]
    .contains(h)
        || h.as_str().starts_with("x-forwarded-")
        || h == "x-request-id"
        || h == "x-real-ip"
}

fn revocation(errs: &mut Errors, fi: usize, r: &RevocationFile) -> RevocationSpec {
    let f = "revocation";
    let redis = r.redis_url.as_ref().and_then(|u| {
        let url = u.get_ref();
        if redis::Client::open(url.as_str()).is_err()
            || !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            errs.at(
                fi,
                u.span(),
                &format!("{f}.redis_url"),
                format!("found `{url}`, expected a URL like redis://host:6379/0"),
            );
            return None;
        }
        let refresh = duration(
            errs,
            fi,
            &format!("{f}.refresh"),
            &r.refresh,
            DEFAULT_REVOCATION_REFRESH,
        )?;
        let max_stale = duration(
            errs,
            fi,
            &format!("{f}.max_stale"),
            &r.max_stale,
            DEFAULT_MAX_STALE,
        )?;
        Some(RedisRevocation {
            url: url.clone(),
            key: r
                .redis_key
                .clone()
                .unwrap_or_else(|| "edgeway:revoked".into()),
            refresh,
            on_error: r.on_redis_error,
            max_stale,
        })
    });
    RevocationSpec {
        jti: r.jti.iter().cloned().collect(),
        sub: r.sub.iter().cloned().collect(),
        redis,
    }
}
