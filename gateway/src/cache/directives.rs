//! `Cache-Control` (RFC 9111 §5.2) and `CDN-Cache-Control` (RFC 9213) directives: parsed
//! strictly from the policy (unknown directives and negative lifetimes are errors), leniently
//! from the origin (unknown extensions are dropped), merged ("the stricter of the two"),
//! made safe for credentialed responses, and rendered in one canonical order so the header a
//! setting sends is exact and testable.

use std::fmt::Write as _;

/// The directives the gateway understands. Lifetimes are seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    pub public: bool,
    pub private: bool,
    pub no_store: bool,
    pub no_cache: bool,
    pub max_age: Option<u32>,
    pub s_maxage: Option<u32>,
    pub stale_while_revalidate: Option<u32>,
    pub stale_if_error: Option<u32>,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub no_transform: bool,
}

/// The directive names accepted in policy files, for "expected one of" messages.
pub const KNOWN: &[&str] = &[
    "public",
    "private",
    "no-store",
    "no-cache",
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
    "must-revalidate",
    "proxy-revalidate",
    "immutable",
    "no-transform",
];

/// A problem in a policy directive list: the byte offset of the directive in the text, and
/// what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveError {
    pub offset: usize,
    pub message: String,
}

/// Largest lifetime sent (RFC 9111 §1.2.2: caches treat larger values as 2^31).
const MAX_DELTA: u64 = 2_147_483_648;

impl Directives {
    /// Parse a policy's directive list strictly. Lifetimes may be seconds or durations
    /// (`10m`, `365d`).
    pub fn parse_policy(text: &str) -> Result<Directives, Vec<DirectiveError>> {
        let mut d = Directives::default();
        let mut errors = Vec::new();
        let mut offset = 0;
        for part in text.split(',') {
            let here = offset + (part.len() - part.trim_start().len());
            offset += part.len() + 1;
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (part.to_ascii_lowercase(), None),
            };
            let err = |message: String| DirectiveError {
                offset: here,
                message,
            };
            let lifetime = |v: Option<&str>| -> Result<u32, DirectiveError> {
                let Some(v) = v else {
                    return Err(err(format!(
                        "`{name}` needs a lifetime, like `{name}=600` or `{name}=10m`"
                    )));
                };
                parse_lifetime(v).map_err(|m| err(format!("`{name}={v}`: {m}")))
            };
            let flag = |v: Option<&str>| -> Result<bool, DirectiveError> {
                match v {
                    None => Ok(true),
                    Some(_) => Err(err(format!("`{name}` takes no value in a policy"))),
                }
            };
            let r = match name.as_str() {
                "public" => flag(value).map(|b| d.public = b),
                "private" => flag(value).map(|b| d.private = b),
                "no-store" => flag(value).map(|b| d.no_store = b),
                "no-cache" => flag(value).map(|b| d.no_cache = b),
                "must-revalidate" => flag(value).map(|b| d.must_revalidate = b),
                "proxy-revalidate" => flag(value).map(|b| d.proxy_revalidate = b),
                "immutable" => flag(value).map(|b| d.immutable = b),
                "no-transform" => flag(value).map(|b| d.no_transform = b),
                "max-age" => lifetime(value).map(|s| d.max_age = Some(s)),
                "s-maxage" => lifetime(value).map(|s| d.s_maxage = Some(s)),
                "stale-while-revalidate" => {
                    lifetime(value).map(|s| d.stale_while_revalidate = Some(s))
                }
                "stale-if-error" => lifetime(value).map(|s| d.stale_if_error = Some(s)),
                _ => Err(err(format!(
                    "unknown directive `{name}`, expected one of: {}",
                    KNOWN.join(", ")
                ))),
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        if d.public && d.private {
            errors.push(DirectiveError {
                offset: 0,
                message: "`public` and `private` contradict each other, expected one".into(),
            });
        }
        if d.immutable && d.max_age.is_none() && d.s_maxage.is_none() {
            errors.push(DirectiveError {
                offset: 0,
                message: "`immutable` without a lifetime means nothing to caches, expected `max-age` (or `s-maxage`) too".into(),
            });
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }

    /// Parse an origin's header leniently: unknown extensions are dropped, a malformed
    /// lifetime makes the response stale (RFC 9111 §4.2.1), `private="x"` and
    /// `no-cache="x"` count as the unqualified (stricter) forms. Allocation-free.
    pub fn parse_origin(value: &[u8]) -> Directives {
        let mut d = Directives::default();
        let text = String::from_utf8_lossy(value);
        for part in text.split(',') {
            let part = part.trim();
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (part, None),
            };
            let secs = || {
                value
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| s.min(MAX_DELTA) as u32)
                    .unwrap_or(0)
            };
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            if is("public") {
                d.public = true;
            } else if is("private") {
                d.private = true;
            } else if is("no-store") {
                d.no_store = true;
            } else if is("no-cache") {
                d.no_cache = true;
            } else if is("must-revalidate") {
                d.must_revalidate = true;
            } else if is("proxy-revalidate") {
                d.proxy_revalidate = true;
            } else if is("immutable") {
                d.immutable = true;
            } else if is("no-transform") {
                d.no_transform = true;
            } else if is("max-age") {
                d.max_age = Some(secs());
            } else if is("s-maxage") {
                d.s_maxage = Some(secs());
            } else if is("stale-while-revalidate") {
                d.stale_while_revalidate = Some(secs());
            } else if is("stale-if-error") {
                d.stale_if_error = Some(secs());
            }
        }
        if d.private {
            d.public = false;
        }
        d
    }

    /// Per directive, the stricter of `self` and `other`: `no-store` and `no-cache` if either
    /// has them, `private` over `public`, the shorter of two lifetimes (a lifetime only one
    /// side gives is kept), `immutable` only if both say so, revalidation requirements from
    /// either.
    pub fn stricter(&self, other: &Directives) -> Directives {
        fn min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let private = self.private || other.private;
        let no_store = self.no_store || other.no_store;
        Directives {
            public: !private && !no_store && (self.public || other.public),
            private,
            no_store,
            no_cache: self.no_cache || other.no_cache,
            max_age: min(self.max_age, other.max_age),
            s_maxage: min(self.s_maxage, other.s_maxage),
            stale_while_revalidate: min(self.stale_while_revalidate, other.stale_while_revalidate),
            stale_if_error: min(self.stale_if_error, other.stale_if_error),
            must_revalidate: self.must_revalidate || other.must_revalidate,
            proxy_revalidate: self.proxy_revalidate || other.proxy_revalidate,
            immutable: self.immutable && other.immutable,
            no_transform: self.no_transform || other.no_transform,
        }
    }

    /// For a response to a credentialed request (or one setting a cookie): never `public`,
    /// no shared-cache lifetime or requirement, `private` unless `no-store` already keeps it
    /// out of every cache.
    pub fn made_private(&self) -> Directives {
        let mut d = *self;
        d.public = false;
        d.s_maxage = None;
        d.proxy_revalidate = false;
        if !d.no_store {
            d.private = true;
        }
        d
    }

    /// Whether a shared cache (the CDN, the micro-cache) may store a response with these
    /// directives.
    pub fn shareable(&self) -> bool {
        !self.private && !self.no_store
    }

    /// The header value, in canonical order. `no-store` stands alone (with `private`), as
    /// every other directive is then moot.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64);
        let mut put = |s: &str| {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(s);
        };
        if self.public {
            put("public");
        }
        if self.private {
            put("private");
        }
        if self.no_store {
            put("no-store");
            return out;
        }
        if self.no_cache {
            put("no-cache");
        }
        let secs = |out: &mut String, name: &str, v: Option<u32>| {
            if let Some(v) = v {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                let _ = write!(out, "{name}={v}");
            }
        };
        secs(&mut out, "max-age", self.max_age);
        secs(&mut out, "s-maxage", self.s_maxage);
        secs(
            &mut out,
            "stale-while-revalidate",
            self.stale_while_revalidate,
        );
        secs(&mut out, "stale-if-error", self.stale_if_error);
        let mut put = |s: &str| {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(s);
        };
        if self.must_revalidate {
            put("must-revalidate");
        }
        if self.proxy_revalidate {
            put("proxy-revalidate");
        }
        if self.immutable {
            put("immutable");
        }
        if self.no_transform {
            put("no-transform");
        }
        out
    }
}

/// A policy lifetime: whole seconds (`600`) or a duration (`10m`, `1d`, `365d`), never
/// negative, at most 2^31 seconds.
pub fn parse_lifetime(v: &str) -> Result<u32, String> {
    if v.starts_with('-') {
        return Err("negative lifetime, expected 0 or more seconds".into());
    }
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => match humantime::parse_duration(v) {
            Ok(d) if d.subsec_nanos() == 0 => d.as_secs(),
            Ok(_) => return Err("expected whole seconds".into()),
            Err(_) => {
                return Err("expected seconds (`600`) or a duration (`10m`, `1d`)".into());
            }
        },
    };
    if secs > MAX_DELTA {
        return Err(format!("{secs} s is over the 2^31 s caches accept"));
    }
    Ok(secs as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Directives {
        Directives::parse_policy(s).unwrap()
    }

    #[test]
    fn every_directive_renders_in_canonical_order() {
        let cases = [
            ("public, max-age=60", "public, max-age=60"),
            ("max-age=60, public", "public, max-age=60"),
            (
                "private, max-age=0, must-revalidate",
                "private, max-age=0, must-revalidate",
            ),
            ("no-store", "no-store"),
            ("no-store, max-age=60", "no-store"),
            ("no-cache", "no-cache"),
            ("public, no-cache, max-age=0", "public, no-cache, max-age=0"),
            (
                "public, max-age=1y, immutable",
                "public, max-age=31557600, immutable",
            ),
            (
                "public, max-age=365d, immutable",
                "public, max-age=31536000, immutable",
            ),
            (
                "public, max-age=60, s-maxage=10m, stale-while-revalidate=30, stale-if-error=1d",
                "public, max-age=60, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400",
            ),
            (
                "max-age=60, proxy-revalidate, must-revalidate, no-transform",
                "max-age=60, must-revalidate, proxy-revalidate, no-transform",
            ),
            ("PUBLIC, Max-Age=5", "public, max-age=5"),
            ("s-maxage=10, immutable", "s-maxage=10, immutable"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).render(), want, "{input}");
        }
    }

    #[test]
    fn policy_errors_name_the_directive() {
        let e = Directives::parse_policy("public, max-ag=60").unwrap_err();
        assert_eq!(e[0].offset, 8);
        assert!(
            e[0].message
                .starts_with("unknown directive `max-ag`, expected one of: public,"),
            "{}",
            e[0].message
        );
        let e = Directives::parse_policy("max-age=-1").unwrap_err();
        assert_eq!(
            e[0].message,
            "`max-age=-1`: negative lifetime, expected 0 or more seconds"
        );
        let e = Directives::parse_policy("public, immutable").unwrap_err();
        assert!(e[0].message.starts_with("`immutable` without a lifetime"));
        let e = Directives::parse_policy("public, private").unwrap_err();
        assert!(e[0].message.contains("contradict"));
        let e = Directives::parse_policy("max-age").unwrap_err();
        assert!(e[0].message.contains("needs a lifetime"));
        let e = Directives::parse_policy("no-store=1").unwrap_err();
        assert!(e[0].message.contains("takes no value"));
        let e = Directives::parse_policy("max-age=soon").unwrap_err();
        assert!(e[0].message.contains("expected seconds"));
    }

    #[test]
    fn origin_parsing_is_lenient() {
        let d = Directives::parse_origin(b"Public, MAX-AGE=\"30\", x-ext=1, community=\"UCI\"");
        assert_eq!(d.render(), "public, max-age=30");
        let d = Directives::parse_origin(b"private=\"set-cookie\", public, max-age=bad");
        assert_eq!(d.render(), "private, max-age=0");
        let d = Directives::parse_origin(b"max-age=99999999999");
        assert_eq!(d.max_age, Some(2_147_483_648));
    }

    #[test]
    fn stricter_of_two() {
        let policy = p("public, max-age=600, s-maxage=3600, stale-while-revalidate=60");
        let cases = [
            // Shorter lifetime wins on each directive.
            (
                "max-age=60",
                "public, max-age=60, s-maxage=3600, stale-while-revalidate=60",
            ),
            (
                "max-age=6000, s-maxage=10",
                "public, max-age=600, s-maxage=10, stale-while-revalidate=60",
            ),
            // private over public.
            (
                "private, max-age=30",
                "private, max-age=30, s-maxage=3600, stale-while-revalidate=60",
            ),
            // no-store over everything.
            ("no-store", "no-store"),
            (
                "no-cache",
                "public, no-cache, max-age=600, s-maxage=3600, stale-while-revalidate=60",
            ),
            (
                "must-revalidate",
                "public, max-age=600, s-maxage=3600, stale-while-revalidate=60, must-revalidate",
            ),
        ];
        for (origin, want) in cases {
            let merged = policy.stricter(&Directives::parse_origin(origin.as_bytes()));
            assert_eq!(merged.render(), want, "origin {origin}");
        }
        // immutable needs both.
        let imm = p("public, max-age=1y, immutable");
        assert_eq!(
            imm.stricter(&Directives::parse_origin(b"max-age=60"))
                .render(),
            "public, max-age=60"
        );
        assert_eq!(
            imm.stricter(&Directives::parse_origin(b"max-age=60, immutable"))
                .render(),
            "public, max-age=60, immutable"
        );
    }

    #[test]
    fn made_private_drops_shared_cache_directives() {
        let d = p("public, max-age=60, s-maxage=600, proxy-revalidate, stale-if-error=5");
        assert_eq!(
            d.made_private().render(),
            "private, max-age=60, stale-if-error=5"
        );
        assert_eq!(p("no-store").made_private().render(), "no-store");
        assert!(!d.made_private().shareable());
    }
}
