//! Memory and cost of the gateway's rate-limit state, measured in-process: resident memory
//! per million keys of a local limit (governor's keyed GCRA, as the gateway builds it), the
//! time a sweep of idle keys takes, and the same for a 100,000-block IP list. bench/run
//! runs it and writes the figures to BENCHMARKS.md; memory does not depend on the build
//! profile, times do (run it from a release build).

use std::hint::black_box;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use edgeway_record::clock::ManualClock;
use gateway::limit::{Buckets, CidrSet, GovClock, Rate};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rate-limit state: memory per key, check and sweep cost, IP list size and lookup cost.
#[derive(Parser)]
struct Args {
    /// Distinct keys to insert.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let args = Args::parse();
    let clock = ManualClock::new(0);
    let per = Duration::from_secs(1);
    let rate = Rate {
        rate: NonZeroU32::new(10).unwrap(),
        per,
        burst: NonZeroU32::new(20).unwrap(),
        interval: per / 10,
    };
    let one = NonZeroU32::MIN;
    let before = rss_bytes();
    let buckets = Buckets::new(rate, GovClock(Arc::new(clock.clone())));
    let hasher = std::hash::RandomState::new();
    use std::hash::BuildHasher;
    let t = Instant::now();
    for k in 0..args.keys {
        // Keys as the gateway makes them: a SipHash of the key bytes (here an IPv4 address).
        let ip = (k as u32).to_be_bytes();
        black_box(buckets.check(hasher.hash_one(ip), one));
    }
    let insert = t.elapsed();
    let after = rss_bytes();
    let per_key = (after.saturating_sub(before)) as f64 / args.keys as f64;
    // Checks on existing keys.
    let rounds = args.keys.min(2_000_000);
    let t = Instant::now();
    for k in 0..rounds {
        let ip = (k as u32).to_be_bytes();
        black_box(buckets.check(hasher.hash_one(ip), one));
    }
    let check_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    // All keys idle after their bucket refilled: one sweep empties the map.
    clock.advance(Duration::from_secs(10));
    let t = Instant::now();
    buckets.sweep();
    let sweep = t.elapsed();
    let left = buckets.len();

    // A 100,000-block list (every other /24).
    let t = Instant::now();
    let nets = (0..100_000u32).map(|i| {
        let base = (10u32 << 24) + i * 512;
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(base.into(), 24).unwrap())
    });
    let set = CidrSet::new(nets);
    let list_build = t.elapsed();
    let lookups = 1_000_000u32;
    let t = Instant::now();
    let mut hits = 0u32;
    for i in 0..lookups {
        let ip =
            IpAddr::V4(((10u32 << 24) + i.wrapping_mul(2_654_435_761) % (100_000 * 512)).into());
        hits += u32::from(black_box(&set).contains(ip));
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / f64::from(lookups);

    if args.json {
        println!(
            "{}",
            serde_json_lite(&[
                ("keys", args.keys as f64),
                ("bytes_per_key", per_key),
                ("mib_per_million_keys", per_key * 1e6 / 1048576.0),
                ("insert_ns", insert.as_nanos() as f64 / args.keys as f64),
                ("check_ns", check_ns),
                ("sweep_ms", sweep.as_secs_f64() * 1000.0),
                ("left_after_sweep", left as f64),
                ("list_build_ms", list_build.as_secs_f64() * 1000.0),
                ("list_lookup_ns", lookup_ns),
                ("list_hit_ratio", f64::from(hits) / f64::from(lookups)),
            ])
        );
    } else {
        println!(
            "{} keys: {per_key:.1} bytes/key ({:.1} MiB per 1M keys), insert {:.0} ns/key, check {check_ns:.0} ns, sweep of all idle keys {:.1} ms ({left} left)",
            args.keys,
            per_key * 1e6 / 1048576.0,
            insert.as_nanos() as f64 / args.keys as f64,
            sweep.as_secs_f64() * 1000.0
        );
        println!(
            "100,000-block IP list: built in {:.1} ms, lookup {lookup_ns:.0} ns ({:.0}% hits)",
            list_build.as_secs_f64() * 1000.0,
            f64::from(hits) * 100.0 / f64::from(lookups)
        );
    }
}

fn serde_json_lite(fields: &[(&str, f64)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}
