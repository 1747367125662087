//! `[limit.*]`, `[rate_limits]`, `[ip_list.*]`, `[ip_access]`, `[load_shedding]` and the
//! routes' protection fields → [`LimitPolicy`] and [`RouteRules`]: pure (list files come in
//! as attachments), every error located.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::file::{LimitFile, Scope};
use super::{
    cidr, CidrSet, LimitPolicy, LimitSpec, Rate, RedisSpec, RouteRules, Shedding, PRIORITY_BULK,
    PRIORITY_CRITICAL, PRIORITY_NORMAL,
};
use crate::key::KeySpec;
use crate::policy::attach::Attachments;
use crate::policy::validate::{at_most_one, define_name, duration, lookup, Errors, Files, Names};
use crate::route::file::RouteFile;

/// Default `redis_budget`: a loopback or same-AZ round trip is well under a millisecond.
pub const DEFAULT_REDIS_BUDGET: Duration = Duration::from_millis(5);
/// Default `max_keys` per limit.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// Default `Retry-After` of a shed response.
pub const DEFAULT_SHED_RETRY: Duration = Duration::from_secs(1);

/// Files the protection sections refer to (IP list files), for [`Attachments::load`].
pub fn referenced_files(f: &crate::policy::file::PolicyFile) -> impl Iterator<Item = &str> {
    let ca = f
        .rate_limits
        .as_ref()
        .and_then(|r| r.get_ref().redis_ca_file.as_ref())
        .map(|p| p.get_ref().as_str());
    f.ip_lists
        .values()
        .flat_map(|l| l.get_ref().files.iter().map(|p| p.get_ref().as_str()))
        .chain(ca)
}

/// Every protection section; records the names routes may use in `names`.
pub fn validate(
    errs: &mut Errors,
    files: &Files,
    attachments: &Attachments,
    base_dir: &Path,
    names: &mut Names,
) -> LimitPolicy {
    let mut policy = LimitPolicy::default();

    // IP lists first: `[ip_access]` names them.
    for (fi, f) in files {
        for (name, list) in &f.ip_lists {
            let field = format!("ip_list.{name}");
            if !define_name(
                errs,
                &mut names.ip_lists,
                *fi,
                name,
                list.span(),
                &field,
                "IP list",
            ) {
                continue;
            }
            let l = list.get_ref();
            let mut nets = Vec::new();
            for (k, c) in l.cidrs.iter().enumerate() {
                match crate::policy::validate::parse_cidr(c.get_ref()) {
                    Ok(n) => nets.push(n),
                    Err(e) => errs.at(*fi, c.span(), &format!("{field}.cidrs[{k}]"), e),
                }
            }
            for (k, p) in l.files.iter().enumerate() {
                let at = format!("{field}.files[{k}]");
                match attachments.get(base_dir, p.get_ref()) {
                    Err(e) => errs.at(*fi, p.span(), &at, e),
                    Ok(bytes) => match std::str::from_utf8(bytes)
                        .map_err(|_| (0, "not UTF-8 text".to_string()))
                        .and_then(cidr::parse_list)
                    {
                        Ok(more) => nets.extend(more),
                        Err((line, e)) => errs.at(
                            *fi,
                            p.span(),
                            &at,
                            format!("`{}` line {line}: {e}", p.get_ref()),
                        ),
                    },
                }
            }
            policy
                .ip_lists
                .insert(Arc::from(name.as_str()), Arc::new(CidrSet::new(nets)));
        }
    }
    if let Some((fi, access)) = at_most_one(errs, files, "ip_access", |f| f.ip_access.as_ref()) {
        let a = access.get_ref();
        policy.allow = list_names(errs, fi, "ip_access.allow", &a.allow, names);
        policy.deny = list_names(errs, fi, "ip_access.deny", &a.deny, names);
    }

    let settings = at_most_one(errs, files, "rate_limits", |f| f.rate_limits.as_ref());
    let mut redis_at = None;
    if let Some((fi, s)) = settings {
        let s = s.get_ref();
        let budget = duration(
            errs,
            fi,
            "rate_limits.redis_budget",
            &s.redis_budget,
            DEFAULT_REDIS_BUDGET,
        );
        let instances = positive(errs, fi, "rate_limits.instances", s.instances.as_ref(), 1);
        let tls = s
            .redis_url
            .as_ref()
            .is_some_and(|u| u.get_ref().starts_with("rediss://"));
        let ca_pem = match &s.redis_ca_file {
            None => None,
            Some(p) if !tls => {
                errs.at(
                    fi,
                    p.span(),
                    "rate_limits.redis_ca_file",
                    "found a CA file, but redis_url is not a `rediss://` (TLS) URL".into(),
                );
                None
            }
            Some(p) => match attachments.get(base_dir, p.get_ref()) {
                Err(e) => {
                    errs.at(fi, p.span(), "rate_limits.redis_ca_file", e);
                    None
                }
                Ok(bytes) => {
                    let certs = rustls_pemfile::certs(&mut &bytes[..])
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap_or_default();
                    if certs.is_empty() {
                        errs.at(
                            fi,
                            p.span(),
                            "rate_limits.redis_ca_file",
                            format!(
                                "`{}` holds no PEM certificate, expected the CA certificates of the Redis server",
                                p.get_ref()
                            ),
                        );
                        None
                    } else {
                        Some(bytes.to_vec())
                    }
                }
            },
        };
        if let Some(url) = &s.redis_url {
            match redis::Client::open(url.get_ref().as_str()) {
                Ok(_) => {
                    policy.settings.redis = Some(RedisSpec {
                        url: url.get_ref().clone(),
                        ca_pem,
                        cluster: s.redis_cluster,
                        budget: budget.unwrap_or(DEFAULT_REDIS_BUDGET),
                        on_down: s.on_redis_down,
                        instances: instances.map_or(1, NonZeroU32::get),
                    });
                    errs.define("rate_limits.redis_url".into(), fi, url.span());
                }
                // The error text may echo the URL, which may hold a password.
                Err(e) => errs.at(
                    fi,
                    url.span(),
                    "rate_limits.redis_url",
                    format!(
                        "not a Redis URL ({:?}), expected `redis://[user:password@]host:port/[db]` or `rediss://…`",
                        e.kind()
                    ),
                ),
            }
            redis_at = Some((fi, url.span()));
        }
    }

    for (fi, f) in files {
        for (name, l) in &f.limits {
            let field = format!("limit.{name}");
            if !define_name(
                errs,
                &mut names.limits,
                *fi,
                name,
                l.span(),
                &field,
                "limit",
            ) {
                continue;
            }
            if let Some(spec) = limit(errs, *fi, &field, name, l.get_ref()) {
                if spec.scope == Scope::Cluster && policy.settings.redis.is_none() {
                    errs.at(
                        *fi,
                        l.get_ref().key.span(),
                        &format!("{field}.scope"),
                        "found `cluster`, but no `[rate_limits] redis_url` is set; expected a Redis URL for cluster-wide limits".into(),
                    );
                    continue;
                }
                policy.limits.push(Arc::new(spec));
            }
        }
    }
    let _ = redis_at;

    if let Some((fi, s)) = settings {
        for (k, d) in s.get_ref().default.iter().enumerate() {
            if lookup(
                errs,
                fi,
                d,
                &format!("rate_limits.default[{k}]"),
                "limits",
                &names.limits,
            ) {
                policy
                    .settings
                    .default
                    .push(Arc::from(d.get_ref().as_str()));
            }
        }
    }

    if let Some((fi, s)) = at_most_one(errs, files, "load_shedding", |f| f.load_shedding.as_ref()) {
        let s = s.get_ref();
        let max = positive(
            errs,
            fi,
            "load_shedding.max_in_flight",
            Some(&s.max_in_flight),
            1,
        );
        let retry = duration(
            errs,
            fi,
            "load_shedding.retry_after",
            &s.retry_after,
            DEFAULT_SHED_RETRY,
        );
        if let (Some(max), Some(retry_after)) = (max, retry) {
            policy.shedding = Some(Shedding {
                max_in_flight: max.get(),
                retry_after,
            });
        }
    }
    policy
}

fn list_names(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    list: &[Spanned<String>],
    names: &Names,
) -> Vec<Arc<str>> {
    let mut out = Vec::new();
    for (k, n) in list.iter().enumerate() {
        if lookup(
            errs,
            fi,
            n,
            &format!("{field}[{k}]"),
            "ip lists",
            &names.ip_lists,
        ) {
            out.push(Arc::from(n.get_ref().as_str()));
        }
    }
    out
}

/// A positive integer (`default` when unset) that fits in a `u32`.
fn positive(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    v: Option<&Spanned<i64>>,
    default: u32,
) -> Option<NonZeroU32> {
    let Some(v) = v else {
        return NonZeroU32::new(default);
    };
    match u32::try_from(*v.get_ref()).ok().and_then(NonZeroU32::new) {
        Some(n) => Some(n),
        None => {
            errs.at(
                fi,
                v.span(),
                field,
                format!(
                    "found `{}`, expected a positive whole number (1 to {})",
                    v.get_ref(),
                    u32::MAX
                ),
            );
            None
        }
    }
}

fn rate(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    rate_v: &Spanned<i64>,
    per_v: &Option<Spanned<String>>,
    per_default: Duration,
    burst_v: Option<&Spanned<i64>>,
) -> Option<Rate> {
    let rate = positive(errs, fi, &format!("{field}.rate"), Some(rate_v), 1);
    let per = duration(errs, fi, &format!("{field}.per"), per_v, per_default);
    let burst = match burst_v {
        Some(b) => positive(errs, fi, &format!("{field}.burst"), Some(b), 1),
        None => rate,
    };
    let (rate, per, burst) = (rate?, per?, burst?);
    let interval = per / rate.get();
    if interval < Duration::from_micros(1) {
        errs.at(
            fi,
            rate_v.span(),
            &format!("{field}.rate"),
            format!("found {rate} per {per:?}, expected at most one token per microsecond"),
        );
        return None;
    }
    Some(Rate {
        rate,
        per,
        burst,
        interval,
    })
}

fn key_spec(errs: &mut Errors, fi: usize, field: &str, v: &Spanned<String>) -> Option<KeySpec> {
    match v.get_ref().parse::<KeySpec>() {
        Ok(k) => Some(k),
        Err(e) => {
            errs.at(fi, v.span(), field, e.to_string());
            None
        }
    }
}

fn limit(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    name: &str,
    l: &LimitFile,
) -> Option<LimitSpec> {
    let before = errs.count();
    let key = key_spec(errs, fi, &format!("{field}.key"), &l.key);
    let base = rate(
        errs,
        fi,
        field,
        &l.rate,
        &l.per,
        Duration::from_secs(1),
        l.burst.as_ref(),
    );
    let tier_key = l
        .tier
        .as_ref()
        .and_then(|t| key_spec(errs, fi, &format!("{field}.tier"), t));
    if l.tier.is_some() == l.tiers.is_empty() {
        let span = l.tier.as_ref().map_or(l.key.span(), |t| t.span());
        errs.at(
            fi,
            span,
            &format!("{field}.tier"),
            "expected `tier` (the key whose value picks a tier) and `[tiers.<value>]` together"
                .into(),
        );
    }
    let mut tiers = Vec::new();
    for (value, t) in &l.tiers {
        let tf = format!("{field}.tiers.{value}");
        let t_ref = t.get_ref();
        let per_default = base.as_ref().map_or(Duration::from_secs(1), |b| b.per);
        if let Some(r) = rate(
            errs,
            fi,
            &tf,
            &t_ref.rate,
            &t_ref.per,
            per_default,
            t_ref.burst.as_ref(),
        ) {
            tiers.push((Box::<str>::from(value.as_str()), r));
        }
    }
    let mut cost = Vec::new();
    for (method, c) in &l.cost {
        let cf = format!("{field}.cost.{method}");
        let upper = method.to_ascii_uppercase();
        let m = match Method::from_bytes(upper.as_bytes()) {
            Ok(m) if upper.bytes().all(|b| b.is_ascii_uppercase()) => Some(m),
            _ => {
                errs.at(
                    fi,
                    c.span(),
                    &cf,
                    format!("found `{method}`, expected an HTTP method like `POST`"),
                );
                None
            }
        };
        if let (Some(m), Some(n)) = (m, positive(errs, fi, &cf, Some(c), 1)) {
            // A request that costs more than a bucket holds could never pass.
            let smallest = base
                .iter()
                .chain(tiers.iter().map(|(_, r)| r))
                .map(|r| r.burst.get())
                .min()
                .unwrap_or(u32::MAX);
            if n.get() > smallest {
                errs.at(
                    fi,
                    c.span(),
                    &cf,
                    format!(
                        "found cost {n}, expected at most the smallest burst ({smallest}): such a request could never pass"
                    ),
                );
            } else {
                cost.push((m, n));
            }
        }
    }
    let burst = base.as_ref().map_or(1, |b| b.burst.get());
    let lease = match &l.lease {
        Some(v) => positive(errs, fi, &format!("{field}.lease"), Some(v), 1)?.get(),
        None => (burst / 10).max(1),
    };
    let max_keys = match &l.max_keys {
        Some(v) => positive(errs, fi, &format!("{field}.max_keys"), Some(v), 1)?.get() as usize,
        None => DEFAULT_MAX_KEYS,
    };
    if errs.count() > before {
        return None;
    }
    Some(LimitSpec {
        name: Arc::from(name),
        key: key?,
        base: base?,
        tier_key,
        tiers,
        cost,
        mode: l.mode,
        scope: l.scope,
        lease,
        max_keys,
    })
}

/// The protection fields of one `[[route]]` (`route[ri]` in file `fi`).
pub fn route_rules(
    errs: &mut Errors,
    fi: usize,
    ri: usize,
    r: &RouteFile,
    names: &Names,
) -> RouteRules {
    let f = format!("route[{ri}]");
    let limits = r.limits.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter(|(k, n)| {
                lookup(
                    errs,
                    fi,
                    n,
                    &format!("{f}.limits[{k}]"),
                    "limits",
                    &names.limits,
                )
            })
            .map(|(_, n)| Arc::from(n.get_ref().as_str()))
            .collect()
    });
    let priority = match &r.priority {
        None => PRIORITY_NORMAL,
        Some(p) => {
            let found = match p.get_ref() {
                toml::Value::String(s) => match s.as_str() {
                    "critical" => Some(PRIORITY_CRITICAL),
                    "normal" => Some(PRIORITY_NORMAL),
                    "bulk" => Some(PRIORITY_BULK),
                    _ => None,
                },
                toml::Value::Integer(n) => u8::try_from(*n).ok().filter(|n| (1..=100).contains(n)),
                _ => None,
            };
            found.unwrap_or_else(|| {
                errs.at(
                    fi,
                    p.span(),
                    &format!("{f}.priority"),
                    format!(
                        "found `{}`, expected `critical`, `normal`, `bulk` or a number from 1 to 100",
                        match p.get_ref() {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(n) => n.to_string(),
                            other => other.type_str().to_string(),
                        }
                    ),
                );
                PRIORITY_NORMAL
            })
        }
    };
    RouteRules {
        limits,
        headers: r.rate_limit_headers,
        priority,
        cost: positive(
            errs,
            fi,
            &format!("{f}.limit_cost"),
            r.limit_cost.as_ref(),
            1,
        )
        .unwrap_or(NonZeroU32::MIN),
        ip_allow: list_names(errs, fi, &format!("{f}.ip_allow"), &r.ip_allow, names),
        ip_deny: list_names(errs, fi, &format!("{f}.ip_deny"), &r.ip_deny, names),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{self, PolicyError};

    fn load(files: &[(&str, &str)]) -> Result<policy::Snapshot, Vec<PolicyError>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("clusters.toml"),
            "[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n",
        )
        .unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        policy::load_dir(dir.path()).map_err(|e| e.0)
    }

    fn one_error(files: &[(&str, &str)]) -> PolicyError {
        let errs = load(files).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn a_valid_policy_with_every_option() {
        let s = load(&[
            ("ips.txt", ""),
            (
                "limits.toml",
                r#"
[rate_limits]
default = ["per_ip"]
redis_url = "redis://127.0.0.1:6379/"
redis_budget = "3ms"
on_redis_down = "allow"
instances = 4

[limit.per_ip]
key = "ip/24"
rate = 10
burst = 20
cost = { POST = 5 }

[limit.per_user]
key = "claim:sub"
rate = 100
per = "1m"
scope = "cluster"
mode = "shadow"
tier = "claim:plan"
lease = 4
[limit.per_user.tiers.pro]
rate = 1000
burst = 50

[ip_list.office]
cidrs = ["203.0.113.0/24", "2001:db8::/32"]

[ip_access]
deny = ["office"]

[load_shedding]
max_in_flight = 100

[[route]]
name = "r"
cluster = "api"
limits = ["per_ip", "per_user"]
priority = "bulk"
ip_allow = ["office"]
rate_limit_headers = false
limit_cost = 3
"#,
            ),
        ])
        .unwrap();
        let l = &s.limits;
        assert_eq!(l.limits.len(), 2);
        let per_user = l.limits.iter().find(|x| &*x.name == "per_user").unwrap();
        assert_eq!(
            per_user.base.interval,
            std::time::Duration::from_millis(600)
        );
        assert_eq!(per_user.tiers[0].1.burst.get(), 50);
        assert_eq!(per_user.lease, 4);
        let redis = l.settings.redis.as_ref().unwrap();
        assert_eq!((redis.instances, redis.budget.as_millis()), (4, 3));
        assert_eq!(s.routes[0].protection.priority, super::PRIORITY_BULK);
        assert!(!s.routes[0].protection.headers);
        assert_eq!(s.routes[0].protection.cost.get(), 3);
        assert_eq!(l.shedding.as_ref().unwrap().max_in_flight, 100);
    }

    #[test]
    fn bad_inputs_are_located() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[limit.a]\nkey = \"ip\"\nrate = 0\n",
                "limit.a.rate",
                "expected a positive whole number",
            ),
            (
                "[limit.a]\nkey = \"ip\"\nrate = -3\n",
                "limit.a.rate",
                "found `-3`",
            ),
            (
                "[limit.a]\nkey = \"ip\"\nrate = 5\nburst = 0\n",
                "limit.a.burst",
                "found `0`",
            ),
            (
                "[limit.a]\nkey = \"hedaer:x\"\nrate = 5\n",
                "limit.a.key",
                "unknown key source",
            ),
            (
                "[limit.a]\nkey = \"ip\"\nrate = 5\ncost = { POST = 6 }\n",
                "limit.a.cost.POST",
                "could never pass",
            ),
            (
                "[limit.a]\nkey = \"ip\"\nrate = 5\nscope = \"cluster\"\n",
                "limit.a.scope",
                "redis_url",
            ),
            (
                "[ip_list.x]\ncidrs = [\"10.0.0.0/33\"]\n",
                "ip_list.x.cidrs[0]",
                "10.0.0.0/33",
            ),
            (
                "[ip_list.x]\nfiles = [\"missing.txt\"]\n",
                "ip_list.x.files[0]",
                "cannot read",
            ),
            (
                "[limit.per_ip]\nkey = \"ip\"\nrate = 5\n[[route]]\nname = \"r\"\ncluster = \"api\"\nlimits = [\"per_ipp\"]\n",
                "route[0].limits[0]",
                "did you mean `per_ip`",
            ),
            (
                "[[route]]\nname = \"r\"\ncluster = \"api\"\npriority = \"urgent\"\n",
                "route[0].priority",
                "expected `critical`",
            ),
            (
                "[load_shedding]\nmax_in_flight = 0\n",
                "load_shedding.max_in_flight",
                "positive",
            ),
            (
                "[rate_limits]\nredis_url = \"http://nope\"\n",
                "rate_limits.redis_url",
                "not a Redis URL",
            ),
            (
                "[rate_limits]\nredis_url = \"redis://h/\"\nredis_ca_file = \"ca.pem\"\n",
                "rate_limits.redis_ca_file",
                "not a `rediss://`",
            ),
            (
                "[rate_limits]\nredis_url = \"rediss://h/\"\nredis_ca_file = \"ca.pem\"\n",
                "rate_limits.redis_ca_file",
                "cannot read",
            ),
        ];
        for (text, field, msg) in cases {
            let e = one_error(&[("limits.toml", text)]);
            assert_eq!(&e.field, field, "{e}");
            assert!(e.message.contains(msg), "{e}");
            assert!(e.file.ends_with("limits.toml") && e.line > 0, "{e}");
        }
    }

    #[test]
    fn a_redis_ca_file_must_hold_certificates() {
        let e = one_error(&[
            ("ca.pem", "not a certificate\n"),
            (
                "limits.toml",
                "[rate_limits]\nredis_url = \"rediss://h/\"\nredis_ca_file = \"ca.pem\"\n",
            ),
        ]);
        assert_eq!((e.field.as_str(), e.line), ("rate_limits.redis_ca_file", 3));
        assert!(e.message.contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn list_files_are_part_of_the_policy_version() {
        let files = |list: &'static str| {
            [
                ("l.txt", list),
                ("limits.toml", "[ip_list.x]\nfiles = [\"l.txt\"]\n"),
            ]
        };
        let a = load(&files("10.0.0.1\n")).unwrap().version;
        // Same content in another directory: the same version.
        assert_eq!(load(&files("10.0.0.1\n")).unwrap().version, a);
        assert_ne!(load(&files("10.0.0.2\n")).unwrap().version, a);
    }

    #[test]
    fn list_file_errors_name_the_line() {
        let e = one_error(&[
            ("bad.txt", "10.0.0.0/8\n# ok\nnot-an-ip\n"),
            ("limits.toml", "[ip_list.x]\nfiles = [\"bad.txt\"]\n"),
        ]);
        assert_eq!(e.field, "ip_list.x.files[0]");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("line 3"), "{e}");
    }
}
