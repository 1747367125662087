//! Bounded fuzz targets (proptest, stable toolchain, part of `cargo test`) over what hostile
//! clients and hasty policy edits feed the gateway: request hosts, request paths, routing, and
//! the policy loader. Each property is checked on a few thousand generated inputs per run.

use std::path::Path;
use std::sync::Arc;

use http::Method;
use proptest::prelude::*;

use crate::host::checked_host;
use crate::policy::{self, attach::Attachments, validate, Source};
use crate::route::path::normalize;
use crate::route::{Route, Router};

/// Characters that matter to authority and path parsing, plus a few ordinary ones.
macro_rules! tricky {
    () => {
        "[a-z0-9./:@%#?\\[\\] _\\-~;=&+\u{0}\u{7f}\u{e9}]"
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// A host the gateway accepts is a DNS name or an IP literal without port or junk.
    #[test]
    fn accepted_hosts_are_clean(authority in concat!(tricky!(), "{0,80}")) {
        if let Some(h) = checked_host(&authority) {
            prop_assert!(!h.contains(['/', '@', ' ', '#', '?', '%', '\\']), "{h:?} from {authority:?}");
            prop_assert!(h.is_empty() || h.parse::<std::net::IpAddr>().is_ok()
                || crate::host::valid_hostname(h), "{h:?} from {authority:?}");
        }
    }

    /// A canonical path has no dot segments, no empty segments, and is its own canonical form.
    #[test]
    fn canonical_paths_are_canonical(path in concat!("/", tricky!(), "{0,120}")) {
        if let Ok(p) = normalize(&path) {
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"), "{p:?} from {path:?}");
            for seg in p.split('/').skip(1) {
                prop_assert!(seg != "." && seg != "..", "{p:?} from {path:?}");
            }
            let again = normalize(&p).map(|q| q.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(&*p), "not idempotent for {:?}", path);
        }
    }

    /// Routing never panics, and a route it picks really matches the host and the path.
    #[test]
    fn routing_picks_only_matching_routes(
        host in "[a-zA-Z0-9.\\-]{0,30}",
        path in concat!("/", tricky!(), "{0,60}"),
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PATCH", "OPTIONS"]),
    ) {
        let router = example_router();
        let Ok(path) = normalize(&path) else { return Ok(()) };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        if let Some(route) = router.find(&host, &path, &method).found() {
            prop_assert!(route.matches_path(&path), "{} does not match {path:?}", route.name);
            let host_l = host.to_ascii_lowercase();
            let host_l = host_l.strip_suffix('.').unwrap_or(&host_l);
            prop_assert!(route.hosts.is_empty() || route.hosts.iter().any(|h| match h {
                crate::route::HostMatch::Exact(e) => e == host_l,
                crate::route::HostMatch::Suffix(s) => host_l.ends_with(s.as_str()),
            }), "{} does not serve host {host:?}", route.name);
        }
    }

    /// Any edit of the example policies is either accepted or refused with located errors;
    /// the loader never panics.
    #[test]
    fn policy_loader_survives_any_edit(
        file in 0usize..16,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, "[\\[\\]{}=\"',.#\n a-z0-9_\\-]{0,6}"), 1..6),
    ) {
        let mut sources = example_sources();
        let n = file % sources.len();
        let mut text = sources[n].text.clone().into_bytes();
        for (at, kind, s) in edits {
            let i = at.index(text.len() + 1);
            match kind {
                0 => { text.splice(i..i, s.bytes()); }
                1 => { let end = (i + s.len()).min(text.len()); text.drain(i..end); }
                _ => { let end = (i + s.len()).min(text.len()); text.splice(i..end, s.bytes()); }
            }
        }
        sources[n].text = String::from_utf8_lossy(&text).into_owned();
        let mut errs = validate::Errors::new(&sources);
        let files = validate::parse(&mut errs, &sources);
        let attachments = Attachments::load(&files, &examples_dir());
        if let Err(e) = validate::validate(&files, &attachments, &examples_dir(), errs) {
            for err in e.0 {
                prop_assert!(!err.field.is_empty());
                prop_assert!(!err.message.is_empty(), "{err}");
            }
        }
    }
}

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn example_sources() -> Vec<Source> {
    policy::read_dir(&examples_dir()).unwrap()
}

fn example_router() -> &'static Router<Route> {
    static R: std::sync::OnceLock<Router<Route>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let snapshot = policy::load_dir(&examples_dir()).unwrap();
        let routes: Vec<Arc<Route>> = snapshot.routes.clone();
        Router::new(&routes)
    })
}
