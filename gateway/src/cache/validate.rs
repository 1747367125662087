//! `[cache.<name>]` → [`CachePolicies`]: pure. Every directive list is parsed strictly
//! (unknown directives, negative lifetimes, `immutable` without a lifetime are errors at the
//! directive's place); a micro-cache needs a size bound; `authenticated = "public"` is a
//! warning, not an error (it is a documented, explicit choice), given by `policy::lint` once
//! the routes using the policy are known.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::directives::Directives;
use super::file::{ByteSizeFile, CachePolicyFile, MicroCacheFile, RuleFile, TagsFile};
use super::spec::{
    AuthenticatedMode, CachePolicies, CachePolicy, Directed, MediaRange, MicroSpec, PathPattern,
    Rendered, Rule, TagHeaders, Tags, DEFAULT_STATUSES,
};
use crate::policy::validate::{define_name, duration, Errors, Files, Names};

const DEFAULT_TTL: Duration = Duration::from_secs(1);
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// Every `[cache.<name>]` across files. Names (valid or not) go into `names` so that routes
/// naming them are checked once.
pub fn validate(errs: &mut Errors, files: &Files, names: &mut Names) -> CachePolicies {
    let mut out = CachePolicies::default();
    for (fi, f) in files {
        for (name, p) in &f.cache {
            let field = format!("cache.{name}");
            if !define_name(
                errs,
                &mut names.cache_policies,
                *fi,
                name,
                p.span(),
                &field,
                "cache policy",
            ) {
                continue;
            }
            if let Some(policy) = policy(errs, *fi, name, p.get_ref()) {
                out.policies.push(Arc::new(policy));
            }
        }
    }
    out.policies.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn policy(errs: &mut Errors, fi: usize, name: &str, p: &CachePolicyFile) -> Option<CachePolicy> {
    let before = errs.count();
    let f = format!("cache.{name}");
    let directed = directed(errs, fi, &f, &p.cache_control, &p.cdn_cache_control);
    let cdn_header = p.cdn_header.as_ref().and_then(|h| {
        header_name(errs, fi, &format!("{f}.cdn_header"), h).and_then(|n| {
            if n == http::header::CACHE_CONTROL {
                errs.at(
                    fi,
                    h.span(),
                    &format!("{f}.cdn_header"),
                    "found `Cache-Control`, expected a CDN-specific header such as `Cloudflare-CDN-Cache-Control` or `Surrogate-Control`".into(),
                );
                return None;
            }
            if p.cdn_cache_control.is_none() {
                errs.at(
                    fi,
                    h.span(),
                    &format!("{f}.cdn_header"),
                    "sends the value of `cdn_cache_control`, which is not set".into(),
                );
            }
            Some(n)
        })
    });
    let mut vary: Vec<HeaderName> = Vec::new();
    for (k, v) in p.vary.iter().enumerate() {
        if let Some(n) = header_name(errs, fi, &format!("{f}.vary[{k}]"), v) {
            if vary.contains(&n) {
                errs.at(
                    fi,
                    v.span(),
                    &format!("{f}.vary[{k}]"),
                    format!("duplicate header `{}`", v.get_ref()),
                );
            } else {
                vary.push(n);
            }
        }
    }
    let vary_value = (!vary.is_empty()).then(|| {
        let names: Vec<&str> = vary.iter().map(HeaderName::as_str).collect();
        HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static("*"))
    });
    let statuses = statuses(errs, fi, &format!("{f}.statuses"), &p.statuses)
        .unwrap_or_else(|| DEFAULT_STATUSES.to_vec());
    let mut credential_cookies = Vec::new();
    for (k, c) in p.credential_cookies.iter().enumerate() {
        let v = c.get_ref();
        if v.is_empty() || !v.bytes().all(is_tchar) {
            errs.at(
                fi,
                c.span(),
                &format!("{f}.credential_cookies[{k}]"),
                format!("found `{v}`, expected a cookie name"),
            );
        } else {
            credential_cookies.push(v.clone());
        }
    }
    let authenticated = p
        .authenticated
        .as_ref()
        .map_or(AuthenticatedMode::Private, |a| *a.get_ref());
    if let Some(a) = &p.authenticated {
        // `authenticated = "public"` is warned about by `policy::lint`, which also names the
        // authenticated routes that use the policy.
        errs.define(format!("{f}.authenticated"), fi, a.span());
    }
    let tags = p.tags.as_ref().and_then(|t| tags(errs, fi, &f, t));
    let mut rules = Vec::new();
    for (k, r) in p.rules.iter().enumerate() {
        if let Some(r) = rule(errs, fi, &format!("{f}.rule[{k}]"), r) {
            rules.push(r);
        }
    }
    let micro = p
        .micro_cache
        .as_ref()
        .and_then(|m| micro(errs, fi, name, &f, m, &vary));
    if errs.count() > before {
        return None;
    }
    Some(CachePolicy {
        name: Arc::from(name),
        directed,
        cdn_header,
        origin: p.origin,
        vary,
        vary_value,
        statuses,
        credential_cookies,
        authenticated,
        tags,
        rules,
        micro,
    })
}

fn directed(
    errs: &mut Errors,
    fi: usize,
    f: &str,
    cc: &Option<Spanned<String>>,
    cdn: &Option<Spanned<String>>,
) -> Directed {
    Directed {
        cache_control: cc
            .as_ref()
            .and_then(|v| directives(errs, fi, &format!("{f}.cache_control"), v)),
        cdn_cache_control: cdn
            .as_ref()
            .and_then(|v| directives(errs, fi, &format!("{f}.cdn_cache_control"), v)),
    }
}

/// A directive list, errors placed at the directive (the span is the quoted string; one
/// past the quote is the text's start for the plain strings policies use).
fn directives(errs: &mut Errors, fi: usize, field: &str, v: &Spanned<String>) -> Option<Rendered> {
    match Directives::parse_policy(v.get_ref()) {
        Ok(d) => Some(Rendered::new(d)),
        Err(list) => {
            let span = v.span();
            for e in list {
                let start = (span.start + 1 + e.offset).min(span.end);
                errs.at(fi, start..span.end, field, e.message);
            }
            None
        }
    }
}

fn header_name(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: &Spanned<String>,
) -> Option<HeaderName> {
    match HeaderName::from_bytes(v.get_ref().as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            errs.at(
                fi,
                v.span(),
                field,
                format!("found `{}`, expected an HTTP header name", v.get_ref()),
            );
            None
        }
    }
}

fn statuses(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: &Option<Spanned<Vec<Spanned<u16>>>>,
) -> Option<Vec<u16>> {
    let v = v.as_ref()?;
    let mut out = Vec::new();
    for (k, s) in v.get_ref().iter().enumerate() {
        let code = *s.get_ref();
        if !(200..=599).contains(&code) {
            errs.at(
                fi,
                s.span(),
                &format!("{field}[{k}]"),
                format!("found `{code}`, expected a final response status from 200 to 599"),
            );
        } else if code == 304 {
            errs.at(
                fi,
                s.span(),
                &format!("{field}[{k}]"),
                "found `304`, expected the status of the full response (a 304 gets the headers of the response it revalidates)".into(),
            );
        } else {
            out.push(code);
        }
    }
    Some(out)
}

fn tags(errs: &mut Errors, fi: usize, f: &str, t: &Spanned<TagsFile>) -> Option<Tags> {
    let tf = t.get_ref();
    let mut headers = TagHeaders {
        surrogate_key: true,
        cache_tag: false,
    };
    if let Some(list) = &tf.headers {
        headers.surrogate_key = false;
        for (k, h) in list.iter().enumerate() {
            let v = h.get_ref();
            if v.eq_ignore_ascii_case("surrogate-key") {
                headers.surrogate_key = true;
            } else if v.eq_ignore_ascii_case("cache-tag") {
                headers.cache_tag = true;
            } else {
                errs.at(
                    fi,
                    h.span(),
                    &format!("{f}.tags.headers[{k}]"),
                    format!("found `{v}`, expected `Surrogate-Key` or `Cache-Tag`"),
                );
            }
        }
        if list.is_empty() {
            errs.at(
                fi,
                t.span(),
                &format!("{f}.tags.headers"),
                "empty, expected `Surrogate-Key` and/or `Cache-Tag`".into(),
            );
        }
    }
    let mut fixed = Vec::new();
    for (k, tag) in tf.fixed.iter().enumerate() {
        let v = tag.get_ref();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            errs.at(
                fi,
                tag.span(),
                &format!("{f}.tags.fixed[{k}]"),
                format!(
                    "found `{v}`, expected a tag of visible characters without spaces or commas"
                ),
            );
        } else {
            fixed.push(v.clone());
        }
    }
    Some(Tags {
        headers,
        route: tf.route,
        path_segments: tf.path_segments,
        fixed,
    })
}

fn rule(errs: &mut Errors, fi: usize, f: &str, r: &Spanned<RuleFile>) -> Option<Rule> {
    let before = errs.count();
    let rf = r.get_ref();
    if rf.cache_control.is_none() && rf.cdn_cache_control.is_none() {
        errs.at(
            fi,
            r.span(),
            f,
            "sets no headers, expected `cache_control` and/or `cdn_cache_control`".into(),
        );
    }
    let statuses = statuses(errs, fi, &format!("{f}.statuses"), &rf.statuses);
    let mut paths = Vec::new();
    for (k, p) in rf.paths.iter().enumerate() {
        let v = p.get_ref();
        if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
            errs.at(
                fi,
                p.span(),
                &format!("{f}.paths[{k}]"),
                format!(
                    "found `{v}`, expected a path pattern starting with `/` like `/static/*.js`"
                ),
            );
        } else {
            paths.push(PathPattern(v.clone()));
        }
    }
    let mut content_types = Vec::new();
    for (k, c) in rf.content_types.iter().enumerate() {
        let v = c.get_ref().trim().to_ascii_lowercase();
        let ok = v
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a != "*");
        if ok && v.bytes().all(|b| is_tchar(b) || b == b'/') {
            content_types.push(MediaRange(v));
        } else {
            errs.at(
                fi,
                c.span(),
                &format!("{f}.content_types[{k}]"),
                format!(
                    "found `{}`, expected a media type like `text/css` or `image/*`",
                    c.get_ref()
                ),
            );
        }
    }
    let directed = directed(errs, fi, f, &rf.cache_control, &rf.cdn_cache_control);
    (errs.count() == before).then_some(Rule {
        statuses,
        paths,
        content_types,
        directed,
    })
}

fn micro(
    errs: &mut Errors,
    fi: usize,
    name: &str,
    f: &str,
    m: &Spanned<MicroCacheFile>,
    vary: &[HeaderName],
) -> Option<MicroSpec> {
    let before = errs.count();
    let mf = m.get_ref();
    let f = format!("{f}.micro_cache");
    let max_bytes = match &mf.max_bytes {
        None => {
            errs.at(
                fi,
                m.span(),
                &format!("{f}.max_bytes"),
                "missing, expected a memory bound such as `max_bytes = \"64MiB\"` (a micro-cache without one could take all memory)".into(),
            );
            None
        }
        Some(v) => byte_size(errs, fi, &format!("{f}.max_bytes"), v),
    };
    let max_object_bytes = match &mf.max_object_bytes {
        None => max_bytes.map(|b| (b / 8).max(1)),
        Some(v) => byte_size(errs, fi, &format!("{f}.max_object_bytes"), v),
    };
    if let (Some(all), Some(one), Some(v)) = (max_bytes, max_object_bytes, &mf.max_object_bytes) {
        if one > all {
            errs.at(
                fi,
                v.span(),
                &format!("{f}.max_object_bytes"),
                format!("found {one} bytes, expected at most max_bytes ({all})"),
            );
        }
    }
    let ttl = duration(errs, fi, &format!("{f}.ttl"), &mf.ttl, DEFAULT_TTL);
    let swr = optional_duration(
        errs,
        fi,
        &format!("{f}.stale_while_revalidate"),
        &mf.stale_while_revalidate,
    );
    let sie = optional_duration(errs, fi, &format!("{f}.stale_if_error"), &mf.stale_if_error);
    let lock_timeout = duration(
        errs,
        fi,
        &format!("{f}.lock_timeout"),
        &mf.lock_timeout,
        DEFAULT_LOCK_TIMEOUT,
    );
    let mut query_params = Vec::new();
    for (k, q) in mf.query_params.iter().enumerate() {
        if q.get_ref().is_empty() || q.get_ref().contains(['&', '=', '#']) {
            errs.at(
                fi,
                q.span(),
                &format!("{f}.query_params[{k}]"),
                format!("found `{}`, expected a query parameter name", q.get_ref()),
            );
        } else {
            query_params.push(q.get_ref().clone());
        }
    }
    query_params.sort();
    query_params.dedup();
    if errs.count() > before {
        return None;
    }
    Some(MicroSpec {
        name: Arc::from(name),
        max_bytes: max_bytes?,
        max_object_bytes: max_object_bytes?,
        ttl: ttl?,
        stale_while_revalidate: swr?,
        stale_if_error: sie?,
        lock_timeout: lock_timeout?,
        query_params,
        per_subject: mf.per_subject,
        vary: vary.to_vec(),
    })
}

/// A duration that may be zero or absent (zero then).
fn optional_duration(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: &Option<Spanned<String>>,
) -> Option<Duration> {
    let Some(s) = v else {
        return Some(Duration::ZERO);
    };
    if s.get_ref().trim() == "0" {
        return Some(Duration::ZERO);
    }
    if s.get_ref().starts_with('-') {
        errs.at(
            fi,
            s.span(),
            field,
            format!(
                "found `{}`, a negative lifetime, expected a duration like `30s`",
                s.get_ref()
            ),
        );
        return None;
    }
    duration(errs, fi, field, v, Duration::ZERO)
}

/// A byte size: a positive integer or `"64MiB"`.
fn byte_size(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: &Spanned<ByteSizeFile>,
) -> Option<usize> {
    let parsed = match v.get_ref() {
        ByteSizeFile::Bytes(n) if *n > 0 => Ok(*n as u64),
        ByteSizeFile::Bytes(n) => Err(format!("found `{n}`, expected a positive number of bytes")),
        ByteSizeFile::Text(t) => parse_bytes(t),
    };
    match parsed {
        Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Err(m) => {
            errs.at(fi, v.span(), field, m);
            None
        }
    }
}

/// `"64MiB"`, `"512 KB"`, `"1GiB"`, `"1000"`.
pub fn parse_bytes(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let bad = || format!("found `{t}`, expected a size like `64MiB`, `512KB` or a number of bytes");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("found `{t}`, expected a positive size")),
        Some(v) => Ok(v),
        None => Err(bad()),
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{attach::Attachments, validate as policy_validate, Source};
    use std::path::Path;

    /// `gateway check`'s messages for a cache section (after one cluster line pair).
    fn check(text: &str) -> Result<Vec<String>, Vec<String>> {
        let sources = vec![Source {
            path: "c.toml".into(),
            text: format!("[cluster.a]\nendpoints = [\"127.0.0.1:9\"]\n{text}"),
        }];
        let mut errs = Errors::new(&sources);
        let files = policy_validate::parse(&mut errs, &sources);
        let att = Attachments::load(&files, Path::new("."));
        match policy_validate::validate(&files, &att, Path::new("."), errs) {
            Ok(s) => Ok(s.warnings.iter().map(ToString::to_string).collect()),
            Err(e) => Err(e.0.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn every_bad_value_is_located() {
        let errs = check(
            "[cache.x]\ncache_control = \"public, max-age=60\"\ncdn_header = \"Surrogate-Control\"\nstatuses = [200, 304, 99]\nvary = [\"Accept\", \"accept\", \"bad header\"]\ncredential_cookies = [\"a b\"]\n[cache.x.tags]\nheaders = [\"X-Tag\"]\nfixed = [\"a,b\"]\n[[cache.x.rule]]\npaths = [\"static/*\"]\ncontent_types = [\"*/*\"]\n[cache.x.micro_cache]\nmax_bytes = \"lots\"\nmax_object_bytes = -1\nstale_if_error = \"-5s\"\nlock_timeout = \"0s\"\n",
        )
        .unwrap_err();
        let want = [
            "c.toml:5:14: cache.x.cdn_header: sends the value of `cdn_cache_control`, which is not set",
            "c.toml:6:18: cache.x.statuses[1]: found `304`",
            "c.toml:6:23: cache.x.statuses[2]: found `99`",
            "c.toml:7:19: cache.x.vary[1]: duplicate header `accept`",
            "c.toml:7:29: cache.x.vary[2]: found `bad header`",
            "c.toml:8:23: cache.x.credential_cookies[0]: found `a b`",
            "c.toml:10:12: cache.x.tags.headers[0]: found `X-Tag`",
            "c.toml:11:10: cache.x.tags.fixed[0]: found `a,b`",
            "c.toml:12:1: cache.x.rule[0]: sets no headers",
            "c.toml:13:10: cache.x.rule[0].paths[0]: found `static/*`",
            "c.toml:14:18: cache.x.rule[0].content_types[0]: found `*/*`",
            "c.toml:16:13: cache.x.micro_cache.max_bytes: found `lots`",
            "c.toml:17:20: cache.x.micro_cache.max_object_bytes: found `-1`",
            "c.toml:18:18: cache.x.micro_cache.stale_if_error: found `-5s`, a negative lifetime",
            "c.toml:19:16: cache.x.micro_cache.lock_timeout: found `0`",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "{w}\n{errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
    }

    #[test]
    fn public_for_authenticated_is_a_warning() {
        let warnings = check(
            "[cache.x]\ncache_control = \"public, max-age=60\"\nauthenticated = \"public\"\n",
        )
        .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(
                "c.toml:5:17: cache.x.authenticated: responses to requests with credentials"
            ),
            "{warnings:?}"
        );
        assert_eq!(
            check(
                "[cache.x]\ncache_control = \"public, max-age=60\"\nauthenticated = \"private\"\n"
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KB"), Ok(512_000));
        assert_eq!(parse_bytes("10"), Ok(10));
        assert!(parse_bytes("0MiB").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
