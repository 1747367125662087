//! `[shard_map.<name>]` and the route's shard fields → specs: pure, every error located.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HeaderName;
use toml::Spanned;

use super::file::{CanaryFile, RangeFile, ShardMapFile};
use super::{CanarySpec, Kind, RangeSpec, RouteShardSpec, ShardMapSpec, ShardPolicy, ShardSpec};
use crate::key::KeySpec;
use crate::policy::validate::{define_name, lookup, valid_name, Errors, Files, Names};
use crate::route::file::RouteFile;

/// Every `[shard_map.<name>]` across files; records their names for routes.
pub fn validate(errs: &mut Errors, files: &Files, names: &mut Names) -> ShardPolicy {
    let mut out = ShardPolicy::default();
    for (fi, f) in files {
        for (name, m) in &f.shard_maps {
            let field = format!("shard_map.{name}");
            if !define_name(
                errs,
                &mut names.shard_maps,
                *fi,
                name,
                m.span(),
                &field,
                "shard map",
            ) {
                continue;
            }
            if let Some(spec) = map(errs, *fi, &field, name, m, &names.clusters) {
                out.maps.push(Arc::new(spec));
            }
        }
    }
    out
}

fn map(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    name: &str,
    m: &Spanned<ShardMapFile>,
    clusters: &HashMap<String, usize>,
) -> Option<ShardMapSpec> {
    let before = errs.count();
    let f = m.get_ref();
    let kind = match f.kind.get_ref().as_str() {
        "range" => Some(Kind::Range),
        "hash" => Some(Kind::Hash),
        other => {
            errs.at(
                fi,
                f.kind.span(),
                &format!("{field}.kind"),
                format!("found `{other}`, expected `range` or `hash`"),
            );
            None
        }
    };
    if f.shards.is_empty() {
        errs.at(
            fi,
            m.span(),
            &format!("{field}.shards"),
            "found no shards, expected at least one `[shard_map.<name>.shards.<shard>]`".into(),
        );
    }
    let mut shards = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (sname, s) in &f.shards {
        let sfield = format!("{field}.shards.{sname}");
        if !valid_name(sname) {
            errs.at(
                fi,
                s.span(),
                &sfield,
                format!("found `{sname}`, expected a name of letters, digits, `-`, `_` and `.`"),
            );
        }
        let s = s.get_ref();
        lookup(
            errs,
            fi,
            &s.primary,
            &format!("{sfield}.primary"),
            "clusters",
            clusters,
        );
        for (k, r) in s.replicas.iter().enumerate() {
            lookup(
                errs,
                fi,
                r,
                &format!("{sfield}.replicas[{k}]"),
                "clusters",
                clusters,
            );
        }
        index.insert(sname.clone(), shards.len());
        shards.push(ShardSpec {
            name: Arc::from(sname.as_str()),
            primary: Arc::from(s.primary.get_ref().as_str()),
            replicas: s
                .replicas
                .iter()
                .map(|r| Arc::from(r.get_ref().as_str()))
                .collect(),
        });
    }
    let shard_ref = |errs: &mut Errors, v: &Spanned<String>, at: &str| -> Option<usize> {
        let found = lookup(errs, fi, v, at, "shards of this map", &index);
        index.get(v.get_ref()).copied().filter(|_| found)
    };
    let mut ranges: Vec<(RangeSpec, &Spanned<RangeFile>)> = Vec::new();
    for (k, r) in f.range.iter().enumerate() {
        let rf = r.get_ref();
        let at = format!("{field}.range[{k}]");
        if kind == Some(Kind::Hash) {
            errs.at(
                fi,
                r.span(),
                &at,
                "found a range in a `kind = \"hash\"` map, expected ranges only with `kind = \"range\"`".into(),
            );
            continue;
        }
        let (from, to) = (*rf.from.get_ref(), *rf.to.get_ref());
        if from < 0 {
            errs.at(
                fi,
                rf.from.span(),
                &format!("{at}.from"),
                format!("found `{from}`, expected 0 or more"),
            );
            continue;
        }
        if to < from {
            errs.at(
                fi,
                rf.to.span(),
                &format!("{at}.to"),
                format!("found `{to}`, expected at least `from` ({from})"),
            );
            continue;
        }
        let Some(shard) = shard_ref(errs, &rf.shard, &format!("{at}.shard")) else {
            continue;
        };
        ranges.push((
            RangeSpec {
                from: from as u64,
                to: to as u64,
                shard,
            },
            r,
        ));
    }
    ranges.sort_by_key(|(r, _)| r.from);
    for pair in ranges.windows(2) {
        let [(a, af), (b, bf)] = pair else { continue };
        let here = errs.place(fi, af.span());
        let k = f
            .range
            .iter()
            .position(|r| std::ptr::eq(r, *bf))
            .unwrap_or(0);
        if b.from <= a.to {
            errs.at(
                fi,
                bf.span(),
                &format!("{field}.range[{k}]"),
                format!(
                    "range {}..={} overlaps range {}..={} at {here}, expected ranges that do not overlap",
                    b.from, b.to, a.from, a.to
                ),
            );
        } else if b.from > a.to + 1 {
            errs.at(
                fi,
                bf.span(),
                &format!("{field}.range[{k}]"),
                format!(
                    "gap: keys {}..={} are in no range (between this range and range {}..={} at {here}), expected contiguous ranges (write `catch_all` to route keys outside every range)",
                    a.to + 1,
                    b.from - 1,
                    a.from,
                    a.to
                ),
            );
        }
    }
    if kind == Some(Kind::Range) && f.range.is_empty() {
        errs.at(
            fi,
            m.span(),
            &format!("{field}.range"),
            "found no ranges, expected at least one `[[shard_map.<name>.range]]` in a `kind = \"range\"` map".into(),
        );
    }
    let catch_all = match (&f.catch_all, kind) {
        (Some(c), Some(Kind::Hash)) => {
            errs.at(
                fi,
                c.span(),
                &format!("{field}.catch_all"),
                "found `catch_all` in a `kind = \"hash\"` map (every key has a shard), expected it only with `kind = \"range\"`".into(),
            );
            None
        }
        (Some(c), _) => shard_ref(errs, c, &format!("{field}.catch_all")),
        (None, _) => None,
    };
    let mut pins = Vec::new();
    for (key, s) in &f.pin {
        if let Some(i) = shard_ref(errs, s, &format!("{field}.pin.{key}")) {
            pins.push((key.clone(), i));
        }
    }
    if errs.count() > before {
        return None;
    }
    Some(ShardMapSpec {
        name: Arc::from(name),
        kind: kind?,
        shards,
        ranges: ranges.into_iter().map(|(r, _)| r).collect(),
        catch_all,
        pins,
    })
}

/// Where a route sends its requests: one cluster, or a shard map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Cluster(Arc<str>),
    Shard(RouteShardSpec),
}

/// The route's `cluster` or `shard_map` (exactly one), its `shard_key`, `read_split` and
/// `canary`. `None` target when something is wrong (reported).
pub fn route_rules(
    errs: &mut Errors,
    fi: usize,
    ri: usize,
    r: &RouteFile,
    names: &Names,
) -> (Option<RouteTarget>, Option<CanarySpec>) {
    let f = format!("route[{ri}]");
    let target = match (&r.cluster, &r.shard_map) {
        (Some(c), None) => {
            if let Some(k) = &r.shard_key {
                errs.at(
                    fi,
                    k.span(),
                    &format!("{f}.shard_key"),
                    "found `shard_key` on a route with `cluster`, expected it only with `shard_map`".into(),
                );
            }
            lookup(
                errs,
                fi,
                c,
                &format!("{f}.cluster"),
                "clusters",
                &names.clusters,
            )
            .then(|| RouteTarget::Cluster(Arc::from(c.get_ref().as_str())))
        }
        (None, Some(m)) => {
            let known = lookup(
                errs,
                fi,
                m,
                &format!("{f}.shard_map"),
                "shard maps",
                &names.shard_maps,
            );
            let key = match &r.shard_key {
                Some(k) => key_spec(errs, fi, &format!("{f}.shard_key"), k).filter(|key| {
                    let unverifiable = key.uses_claims() && r.auth.is_none();
                    if unverifiable {
                        errs.at(
                            fi,
                            k.span(),
                            &format!("{f}.shard_key"),
                            format!("found `{key}` on a route without `auth`, expected an `auth` rule to verify the token the claim comes from (without one every request would answer 400)"),
                        );
                    }
                    !unverifiable
                }),
                None => {
                    errs.at(
                        fi,
                        m.span(),
                        &format!("{f}.shard_key"),
                        "found `shard_map` without `shard_key`, expected the key a shard is chosen by (`header:x-user-id`, `path:2`, `query:user`, `claim:sub`...)".into(),
                    );
                    None
                }
            };
            match (known, key) {
                (true, Some(key)) => Some(RouteTarget::Shard(RouteShardSpec {
                    map: Arc::from(m.get_ref().as_str()),
                    key,
                    read_split: r.read_split,
                })),
                _ => None,
            }
        }
        (Some(c), Some(_)) => {
            errs.at(
                fi,
                c.span(),
                &format!("{f}.cluster"),
                "found both `cluster` and `shard_map`, expected one of them".into(),
            );
            None
        }
        (None, None) => {
            errs.at(
                fi,
                r.name.span(),
                &format!("{f}.cluster"),
                "found neither `cluster` nor `shard_map`, expected one of them".into(),
            );
            None
        }
    };
    let canary = r
        .canary
        .as_ref()
        .and_then(|c| canary(errs, fi, &format!("{f}.canary"), c, names));
    if let (Some(c), Some(file)) = (&canary, &r.canary) {
        if c.key.uses_claims() && r.auth.is_none() {
            errs.warn(
                fi,
                file.get_ref().key.span(),
                &format!("{f}.canary.key"),
                format!("`{}` on a route without `auth`: no request has a verified claim, so every request goes to the stable side", c.key),
            );
        }
    }
    (target, canary)
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

fn canary(
    errs: &mut Errors,
    fi: usize,
    field: &str,
    c: &Spanned<CanaryFile>,
    names: &Names,
) -> Option<CanarySpec> {
    let before = errs.count();
    let cf = c.get_ref();
    lookup(
        errs,
        fi,
        &cf.cluster,
        &format!("{field}.cluster"),
        "clusters",
        &names.clusters,
    );
    let percent = match cf.percent.get_ref() {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    };
    let per_10k = match percent {
        Some(p) if (0.0..=100.0).contains(&p) => Some((p * 100.0).round() as u32),
        _ => {
            errs.at(
                fi,
                cf.percent.span(),
                &format!("{field}.percent"),
                match percent {
                    Some(p) => format!("found `{p}`, expected a number from 0 to 100"),
                    None => format!(
                        "found a {}, expected a number from 0 to 100",
                        cf.percent.get_ref().type_str()
                    ),
                },
            );
            None
        }
    };
    let key = key_spec(errs, fi, &format!("{field}.key"), &cf.key);
    let force_header = match &cf.force_header {
        Some(h) => match HeaderName::from_bytes(h.get_ref().to_ascii_lowercase().as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                errs.at(
                    fi,
                    h.span(),
                    &format!("{field}.force_header"),
                    format!("found `{}`, expected a header name", h.get_ref()),
                );
                None
            }
        },
        None => None,
    };
    if errs.count() > before {
        return None;
    }
    Some(CanarySpec {
        cluster: Arc::from(cf.cluster.get_ref().as_str()),
        per_10k: per_10k?,
        key: key?,
        force_header,
    })
}
