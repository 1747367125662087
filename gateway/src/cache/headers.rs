//! The `response_filter` step: the cache headers a response leaves with. It runs on every
//! response of a route with a cache policy (served from the origin or the micro-cache), so
//! it works on borrowed bytes and pre-rendered values, and formats a header only when two
//! sources must be merged or a credentialed response must be made private.
//!
//! Order: pick the directives (first matching rule, else the policy's for listed statuses,
//! else `no-store`), combine them with the origin's (`keep` / `override` / `stricter`),
//! apply the safety rule (credentials or `Set-Cookie` → never public, never `s-maxage`, no
//! CDN headers, `Vary: Authorization`), then `Vary` and the tags.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, VARY};
use http::{HeaderName, HeaderValue, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};

use super::directives::Directives;
use super::spec::{AuthenticatedMode, CachePolicy, Directed, OriginMode, Rendered};
use edgeway_record::outcome::CacheStatus;

pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
pub static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const PRIVATE: HeaderValue = HeaderValue::from_static("private");

/// What the request carried that makes its response personal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials {
    /// An `Authorization` header.
    pub authorization: bool,
    /// A cookie the policy names in `credential_cookies`.
    pub cookie: bool,
    /// The route has an auth rule (every response it gives is for someone).
    pub route_auth: bool,
}

impl Credentials {
    /// Read from the request; cookies are only parsed when the policy names some.
    pub fn of(policy: &CachePolicy, req: &RequestHeader, route_auth: bool) -> Credentials {
        let authorization = req.headers.contains_key(http::header::AUTHORIZATION);
        let cookie = !policy.credential_cookies.is_empty()
            && req.headers.get_all(COOKIE).iter().any(|v| {
                v.as_bytes().split(|&b| b == b';').any(|pair| {
                    let name = pair
                        .split(|&b| b == b'=')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    policy
                        .credential_cookies
                        .iter()
                        .any(|c| c.as_bytes() == name)
                })
            });
        Credentials {
            authorization,
            cookie,
            route_auth,
        }
    }

    pub fn any(&self) -> bool {
        self.authorization || self.cookie || self.route_auth
    }
}

/// What the step decided, for the record and the micro-cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// `public` / `private` / `no-store` from the final `Cache-Control`; `None` without one.
    pub status: Option<CacheStatus>,
    /// A shared cache may store the response (listed status, no `private`/`no-store`, not
    /// made private).
    pub shareable: bool,
    /// The response was made private (credentials or `Set-Cookie`).
    pub made_private: bool,
}

/// One header's outcome.
enum Value {
    /// Leave what the origin sent (possibly nothing).
    Keep,
    Set(HeaderValue),
    Render(Directives),
}

impl Value {
    fn directives(
        &self,
        origin: Option<&HeaderValue>,
        pre: Option<&Directives>,
    ) -> Option<Directives> {
        match self {
            Value::Keep => origin.map(|v| Directives::parse_origin(v.as_bytes())),
            Value::Set(_) => pre.copied(),
            Value::Render(d) => Some(*d),
        }
    }

    fn write(self, resp: &mut ResponseHeader, name: &HeaderName) -> pingora::Result<()> {
        match self {
            Value::Keep => Ok(()),
            Value::Set(v) => resp.insert_header(name.clone(), v),
            Value::Render(d) => resp.insert_header(name.clone(), d.render()),
        }
    }
}

/// The directives for this response: the first rule that matches status, path and content
/// type, else the policy's for a listed status; `None` for an unlisted status.
fn select<'p>(
    policy: &'p CachePolicy,
    status: u16,
    path: &str,
    resp: &ResponseHeader,
) -> Option<&'p Directed> {
    // A 304 refreshes the stored response; it must carry that response's headers.
    let status = if status == StatusCode::NOT_MODIFIED.as_u16() {
        200
    } else {
        status
    };
    let content_type = resp.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
    for rule in &policy.rules {
        let statuses = rule.statuses.as_deref().unwrap_or(&policy.statuses);
        if !statuses.contains(&status) {
            continue;
        }
        if !rule.paths.is_empty() && !rule.paths.iter().any(|p| p.matches(path)) {
            continue;
        }
        if !rule.content_types.is_empty()
            && !content_type.is_some_and(|ct| rule.content_types.iter().any(|m| m.matches(ct)))
        {
            continue;
        }
        return Some(&rule.directed);
    }
    policy
        .statuses
        .contains(&status)
        .then_some(&policy.directed)
}

/// Combine the policy's directives with the origin's header per `mode`, made private when
/// `private`.
fn combine(
    policy: Option<&Rendered>,
    origin: Option<&HeaderValue>,
    mode: OriginMode,
    private: bool,
) -> Value {
    let chosen = match (policy, origin) {
        (None, None) => None,
        (Some(p), None) => Some(Ok(p)),
        (None, Some(o)) => Some(Err(o)),
        (Some(p), Some(o)) => match mode {
            OriginMode::Override => Some(Ok(p)),
            OriginMode::Keep => Some(Err(o)),
            OriginMode::Stricter => {
                let merged = p
                    .directives
                    .stricter(&Directives::parse_origin(o.as_bytes()));
                let merged = if private {
                    merged.made_private()
                } else {
                    merged
                };
                return Value::Render(merged);
            }
        },
    };
    match (chosen, private) {
        (None, _) => Value::Keep,
        (Some(Ok(p)), false) => Value::Set(p.value.clone()),
        (Some(Ok(p)), true) => Value::Render(p.directives.made_private()),
        (Some(Err(_)), false) => Value::Keep,
        (Some(Err(o)), true) => {
            Value::Render(Directives::parse_origin(o.as_bytes()).made_private())
        }
    }
}

/// Decide and write the cache headers of `resp`. `route` and `path` (canonical) feed the
/// tags and the path rules.
pub fn apply(
    policy: &CachePolicy,
    creds: Credentials,
    route: &str,
    path: &str,
    resp: &mut ResponseHeader,
) -> pingora::Result<Applied> {
    let status = resp.status.as_u16();
    let sets_cookie = resp.headers.contains_key(SET_COOKIE);
    let private =
        (creds.any() || sets_cookie) && policy.authenticated == AuthenticatedMode::Private;
    let Some(directed) = select(policy, status, path, resp) else {
        // Unlisted status (5xx by default): never cached anywhere.
        resp.insert_header(CACHE_CONTROL, NO_STORE)?;
        remove_cdn(policy, resp);
        return Ok(Applied {
            status: Some(CacheStatus::NoStore),
            shareable: false,
            made_private: private,
        });
    };

    // Cache-Control.
    let origin_cc = resp.headers.get(CACHE_CONTROL);
    let cc = combine(
        directed.cache_control.as_ref(),
        origin_cc,
        policy.origin,
        private,
    );
    let mut final_cc = cc.directives(
        origin_cc,
        directed.cache_control.as_ref().map(|r| &r.directives),
    );
    let cc = match (cc, private) {
        // A credentialed response without any Cache-Control: say `private` so no shared cache
        // stores it heuristically.
        (Value::Keep, true) if origin_cc.is_none() => {
            final_cc = Some(Directives {
                private: true,
                ..Directives::default()
            });
            Value::Set(PRIVATE)
        }
        (v, _) => v,
    };
    cc.write(resp, &CACHE_CONTROL)?;

    // CDN-Cache-Control (and the CDN's own name for it): never on a private response.
    if private {
        remove_cdn(policy, resp);
    } else {
        let origin_cdn = resp.headers.get(&CDN_CACHE_CONTROL);
        let cdn = combine(
            directed.cdn_cache_control.as_ref(),
            origin_cdn,
            policy.origin,
            false,
        );
        if let Some(name) = &policy.cdn_header {
            let value = match &cdn {
                Value::Keep => origin_cdn.cloned(),
                Value::Set(v) => Some(v.clone()),
                Value::Render(d) => HeaderValue::from_str(&d.render()).ok(),
            };
            if let Some(v) = value {
                resp.insert_header(name.clone(), v)?;
            }
        }
        cdn.write(resp, &CDN_CACHE_CONTROL)?;
    }

    // Vary: the configured names, plus Authorization on a private response to a request
    // that had (or needed) one, merged with the origin's.
    let vary_auth = private && (creds.authorization || creds.route_auth);
    merge_vary(policy, vary_auth, resp)?;

    let shareable = !private && final_cc.is_none_or(|d| d.shareable());
    if shareable {
        if let Some(tags) = &policy.tags {
            let list = tag_list(policy, route, path);
            if !list.is_empty() {
                if tags.headers.surrogate_key {
                    resp.insert_header(SURROGATE_KEY.clone(), list.join(" "))?;
                }
                if tags.headers.cache_tag {
                    resp.insert_header(CACHE_TAG.clone(), list.join(","))?;
                }
            }
        }
    } else {
        resp.remove_header(&SURROGATE_KEY);
        resp.remove_header(&CACHE_TAG);
    }

    Ok(Applied {
        status: final_cc.map(|d| {
            if d.no_store {
                CacheStatus::NoStore
            } else if d.private {
                CacheStatus::Private
            } else {
                CacheStatus::Public
            }
        }),
        shareable,
        made_private: private,
    })
}

fn remove_cdn(policy: &CachePolicy, resp: &mut ResponseHeader) {
    resp.remove_header(&CDN_CACHE_CONTROL);
    if let Some(name) = &policy.cdn_header {
        resp.remove_header(name);
    }
}

/// Merge the configured `Vary` names (and `Authorization`) into the origin's `Vary`.
fn merge_vary(
    policy: &CachePolicy,
    vary_auth: bool,
    resp: &mut ResponseHeader,
) -> pingora::Result<()> {
    let auth = http::header::AUTHORIZATION;
    let has = |resp: &ResponseHeader, name: &HeaderName| {
        resp.headers.get_all(VARY).iter().any(|v| {
            v.as_bytes().split(|&b| b == b',').any(|t| {
                let t = t.trim_ascii();
                t == b"*" || t.eq_ignore_ascii_case(name.as_str().as_bytes())
            })
        })
    };
    if !resp.headers.contains_key(VARY) && !vary_auth {
        if let Some(v) = &policy.vary_value {
            resp.insert_header(VARY, v.clone())?;
        }
        return Ok(());
    }
    let mut missing: Vec<&str> = policy
        .vary
        .iter()
        .filter(|n| !has(resp, n))
        .map(HeaderName::as_str)
        .collect();
    if vary_auth && !has(resp, &auth) && !policy.vary.contains(&auth) {
        missing.push("authorization");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut merged = String::with_capacity(64);
    for v in resp.headers.get_all(VARY) {
        if let Ok(s) = v.to_str() {
            if !s.trim().is_empty() {
                if !merged.is_empty() {
                    merged.push_str(", ");
                }
                merged.push_str(s.trim());
            }
        }
    }
    for m in missing {
        if !merged.is_empty() {
            merged.push_str(", ");
        }
        merged.push_str(m);
    }
    resp.insert_header(VARY, merged)
}

/// The cache tags of a response: the route name, the leading path segments, the fixed tags.
/// Path tags with characters a tag header cannot carry are left out.
pub fn tag_list(policy: &CachePolicy, route: &str, path: &str) -> Vec<String> {
    let Some(tags) = &policy.tags else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(1 + tags.path_segments as usize + tags.fixed.len());
    if tags.route {
        out.push(route.to_string());
    }
    let mut end = 0;
    for _ in 0..tags.path_segments {
        let rest = &path[end..];
        let Some(seg_start) = rest.strip_prefix('/') else {
            break;
        };
        if seg_start.is_empty() {
            break;
        }
        let len = seg_start.find('/').unwrap_or(seg_start.len());
        end += 1 + len;
        let tag = &path[..end];
        if tag.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            out.push(tag.to_string());
        }
    }
    out.extend(tags.fixed.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::spec::{
        CachePolicy, MediaRange, PathPattern, Rule, TagHeaders, Tags, DEFAULT_STATUSES,
    };
    use std::sync::Arc;

    fn rendered(s: &str) -> Rendered {
        Rendered::new(Directives::parse_policy(s).unwrap())
    }

    fn policy(cc: Option<&str>, cdn: Option<&str>, origin: OriginMode) -> CachePolicy {
        CachePolicy {
            name: Arc::from("p"),
            directed: Directed {
                cache_control: cc.map(rendered),
                cdn_cache_control: cdn.map(rendered),
            },
            cdn_header: None,
            origin,
            vary: vec![],
            vary_value: None,
            statuses: DEFAULT_STATUSES.to_vec(),
            credential_cookies: vec!["session".into()],
            authenticated: AuthenticatedMode::Private,
            tags: None,
            rules: vec![],
            micro: None,
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn header(r: &ResponseHeader, name: &str) -> Option<String> {
        let all: Vec<_> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        (!all.is_empty()).then(|| all.join(" | "))
    }

    const ANON: Credentials = Credentials {
        authorization: false,
        cookie: false,
        route_auth: false,
    };
    const BEARER: Credentials = Credentials {
        authorization: true,
        cookie: false,
        route_auth: false,
    };

    fn run(p: &CachePolicy, creds: Credentials, r: &mut ResponseHeader) -> Applied {
        apply(p, creds, "web", "/shop/42/reviews", r).unwrap()
    }

    #[test]
    fn policy_headers_are_sent_exactly() {
        let p = policy(
            Some("public, max-age=60, stale-while-revalidate=30"),
            Some("max-age=600, stale-if-error=86400"),
            OriginMode::Override,
        );
        let mut r = resp(200, &[]);
        let a = run(&p, ANON, &mut r);
        assert_eq!(
            header(&r, "cache-control").unwrap(),
            "public, max-age=60, stale-while-revalidate=30"
        );
        assert_eq!(
            header(&r, "cdn-cache-control").unwrap(),
            "max-age=600, stale-if-error=86400"
        );
        assert_eq!(a.status, Some(CacheStatus::Public));
        assert!(a.shareable);
    }

    #[test]
    fn origin_kept_overridden_or_made_stricter() {
        let origin = [
            ("cache-control", "public, max-age=30, s-maxage=9999"),
            ("cdn-cache-control", "max-age=5"),
        ];
        let cases = [
            (
                OriginMode::Keep,
                "public, max-age=30, s-maxage=9999",
                "max-age=5",
            ),
            (
                OriginMode::Override,
                "public, max-age=300, s-maxage=600",
                "max-age=3600",
            ),
            (
                OriginMode::Stricter,
                "public, max-age=30, s-maxage=600",
                "max-age=5",
            ),
        ];
        for (mode, cc, cdn) in cases {
            let p = policy(
                Some("public, max-age=300, s-maxage=600"),
                Some("max-age=3600"),
                mode,
            );
            let mut r = resp(200, &origin);
            run(&p, ANON, &mut r);
            assert_eq!(header(&r, "cache-control").unwrap(), cc, "{mode:?}");
            assert_eq!(header(&r, "cdn-cache-control").unwrap(), cdn, "{mode:?}");
        }
        // Stricter: the origin's private beats the policy's public, its no-store beats all.
        let p = policy(Some("public, max-age=300"), None, OriginMode::Stricter);
        let mut r = resp(200, &[("cache-control", "private, max-age=900")]);
        let a = run(&p, ANON, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "private, max-age=300");
        assert_eq!(a.status, Some(CacheStatus::Private));
        let mut r = resp(200, &[("cache-control", "no-store")]);
        let a = run(&p, ANON, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "no-store");
        assert_eq!(a.status, Some(CacheStatus::NoStore));
        // Without a policy directive the origin's header passes untouched.
        let p = policy(None, None, OriginMode::Stricter);
        let mut r = resp(200, &[("cache-control", "max-age=7, x-custom")]);
        let a = run(&p, ANON, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "max-age=7, x-custom");
        assert_eq!(a.status, Some(CacheStatus::Public));
    }

    #[test]
    fn credentials_make_responses_private() {
        let p = policy(
            Some("public, max-age=60, s-maxage=600, proxy-revalidate"),
            Some("max-age=600"),
            OriginMode::Override,
        );
        for creds in [
            BEARER,
            Credentials {
                cookie: true,
                ..ANON
            },
            Credentials {
                route_auth: true,
                ..ANON
            },
        ] {
            let mut r = resp(
                200,
                &[
                    ("cdn-cache-control", "max-age=99"),
                    ("vary", "Accept-Encoding"),
                ],
            );
            let a = run(&p, creds, &mut r);
            assert_eq!(
                header(&r, "cache-control").unwrap(),
                "private, max-age=60",
                "{creds:?}"
            );
            assert_eq!(header(&r, "cdn-cache-control"), None, "{creds:?}");
            let vary = if creds.cookie {
                "Accept-Encoding"
            } else {
                "Accept-Encoding, authorization"
            };
            assert_eq!(header(&r, "vary").unwrap(), vary, "{creds:?}");
            assert_eq!(a.status, Some(CacheStatus::Private));
            assert!(!a.shareable && a.made_private);
        }
        // Origin's public with keep is made private too.
        let p = policy(None, None, OriginMode::Keep);
        let mut r = resp(
            200,
            &[("cache-control", "public, s-maxage=600, max-age=60")],
        );
        run(&p, BEARER, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "private, max-age=60");
        assert_eq!(header(&r, "vary").unwrap(), "authorization");
        // Nothing at all: private.
        let mut r = resp(200, &[]);
        run(&p, BEARER, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "private");
        // no-store stays no-store.
        let p = policy(Some("no-store"), None, OriginMode::Override);
        let mut r = resp(200, &[]);
        run(&p, BEARER, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "no-store");
    }

    #[test]
    fn set_cookie_makes_private_and_the_explicit_public_mode_does_not() {
        let mut p = policy(
            Some("public, max-age=60, s-maxage=600"),
            Some("max-age=600"),
            OriginMode::Override,
        );
        let mut r = resp(200, &[("set-cookie", "a=b")]);
        run(&p, ANON, &mut r);
        assert_eq!(header(&r, "cache-control").unwrap(), "private, max-age=60");
        assert_eq!(header(&r, "cdn-cache-control"), None);
        assert_eq!(header(&r, "vary"), None);
        p.authenticated = AuthenticatedMode::Public;
        let mut r = resp(200, &[("set-cookie", "a=b")]);
        run(&p, BEARER, &mut r);
        assert_eq!(
            header(&r, "cache-control").unwrap(),
            "public, max-age=60, s-maxage=600"
        );
        assert_eq!(header(&r, "cdn-cache-control").unwrap(), "max-age=600");
    }

    #[test]
    fn statuses_and_rules() {
        let mut p = policy(
            Some("public, max-age=60"),
            Some("max-age=600"),
            OriginMode::Override,
        );
        p.rules = vec![
            Rule {
                statuses: Some(vec![200]),
                paths: vec![PathPattern("/static/*.js".into())],
                content_types: vec![],
                directed: Directed {
                    cache_control: Some(rendered("public, max-age=1y, immutable")),
                    cdn_cache_control: None,
                },
            },
            Rule {
                statuses: Some(vec![404]),
                paths: vec![],
                content_types: vec![],
                directed: Directed {
                    cache_control: Some(rendered("public, max-age=10")),
                    cdn_cache_control: None,
                },
            },
            Rule {
                statuses: None,
                paths: vec![],
                content_types: vec![MediaRange("image/*".into())],
                directed: Directed {
                    cache_control: Some(rendered("public, max-age=1d")),
                    cdn_cache_control: None,
                },
            },
        ];
        let go = |status: u16, path: &str, ct: Option<&str>| {
            let mut r = resp(
                status,
                &ct.map(|c| vec![("content-type", c)]).unwrap_or_default(),
            );
            apply(&p, ANON, "web", path, &mut r).unwrap();
            (
                header(&r, "cache-control").unwrap(),
                header(&r, "cdn-cache-control"),
            )
        };
        assert_eq!(
            go(200, "/static/app.1a2b.js", None),
            ("public, max-age=31557600, immutable".into(), None)
        );
        assert_eq!(
            go(200, "/static/deep/app.js", None),
            ("public, max-age=60".into(), Some("max-age=600".into()))
        );
        assert_eq!(go(404, "/x", None), ("public, max-age=10".into(), None));
        assert_eq!(
            go(200, "/logo", Some("image/png")),
            ("public, max-age=86400".into(), None)
        );
        assert_eq!(
            go(301, "/old", None),
            ("public, max-age=60".into(), Some("max-age=600".into()))
        );
        // A 304 gets the headers of the 200 it revalidates.
        assert_eq!(
            go(304, "/static/app.js", None),
            ("public, max-age=31557600, immutable".into(), None)
        );
        // 5xx and unlisted statuses: no-store, no CDN header even if the origin sent one.
        for s in [500, 502, 503, 400, 403] {
            let mut r = resp(
                s,
                &[
                    ("cache-control", "public, max-age=600"),
                    ("cdn-cache-control", "max-age=9"),
                ],
            );
            let a = apply(&p, ANON, "web", "/x", &mut r).unwrap();
            assert_eq!(header(&r, "cache-control").unwrap(), "no-store", "{s}");
            assert_eq!(header(&r, "cdn-cache-control"), None);
            assert_eq!(a.status, Some(CacheStatus::NoStore));
        }
    }

    #[test]
    fn vary_merges_and_tags() {
        let mut p = policy(Some("public, max-age=60"), None, OriginMode::Override);
        p.vary = vec![
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("accept-language"),
        ];
        p.vary_value = Some(HeaderValue::from_static("accept-encoding, accept-language"));
        p.tags = Some(Tags {
            headers: TagHeaders {
                surrogate_key: true,
                cache_tag: true,
            },
            route: true,
            path_segments: 2,
            fixed: vec!["site".into()],
        });
        p.cdn_header = Some(HeaderName::from_static("surrogate-control"));
        p.directed.cdn_cache_control = Some(rendered("max-age=600"));
        let mut r = resp(200, &[]);
        run(&p, ANON, &mut r);
        assert_eq!(
            header(&r, "vary").unwrap(),
            "accept-encoding, accept-language"
        );
        assert_eq!(
            header(&r, "surrogate-key").unwrap(),
            "web /shop /shop/42 site"
        );
        assert_eq!(header(&r, "cache-tag").unwrap(), "web,/shop,/shop/42,site");
        assert_eq!(header(&r, "surrogate-control").unwrap(), "max-age=600");
        assert_eq!(header(&r, "cdn-cache-control").unwrap(), "max-age=600");
        let mut r = resp(200, &[("vary", "Accept-Encoding, Origin")]);
        run(&p, ANON, &mut r);
        assert_eq!(
            header(&r, "vary").unwrap(),
            "Accept-Encoding, Origin, accept-language"
        );
        let mut r = resp(200, &[("vary", "*")]);
        run(&p, ANON, &mut r);
        assert_eq!(header(&r, "vary").unwrap(), "*");
        // Private responses carry no tags and no CDN variant.
        let mut r = resp(200, &[]);
        run(&p, BEARER, &mut r);
        assert_eq!(header(&r, "surrogate-key"), None);
        assert_eq!(header(&r, "surrogate-control"), None);
        assert_eq!(
            header(&r, "vary").unwrap(),
            "accept-encoding, accept-language, authorization"
        );
        // Tags stop at the path's end.
        assert_eq!(tag_list(&p, "web", "/"), ["web", "site"]);
        assert_eq!(tag_list(&p, "web", "/a"), ["web", "/a", "site"]);
    }

    #[test]
    fn cookies_count_only_when_named() {
        let p = policy(None, None, OriginMode::Keep);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "theme=dark; sessionx=1")
            .unwrap();
        assert!(!Credentials::of(&p, &req, false).any());
        req.append_header("cookie", "a=1; session=abc").unwrap();
        assert!(Credentials::of(&p, &req, false).cookie);
    }
}
