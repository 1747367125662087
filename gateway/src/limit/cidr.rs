//! A set of IP networks with O(log n) membership: the blocks are turned into sorted, merged
//! address ranges (one vector per family) and looked up by binary search. For membership this
//! answers what a longest-prefix trie answers (is the address inside any block?) in a fraction
//! of the memory: 100,000 IPv4 blocks take 800 KB and a lookup is ~17 comparisons.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> CidrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        CidrSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Merged ranges held (after overlapping and adjacent blocks were joined).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every address in `self` is also in `other` (merged ranges: each of ours must
    /// lie inside one of theirs).
    pub fn is_subset_of(&self, other: &CidrSet) -> bool {
        fn within<T: Ord + Copy>(ours: &[(T, T)], theirs: &[(T, T)]) -> bool {
            ours.iter().all(|&(lo, hi)| {
                let i = theirs.partition_point(|r| r.0 <= lo);
                i > 0 && theirs[i - 1].1 >= hi
            })
        }
        within(&self.v4, &other.v4) && within(&self.v6, &other.v6)
    }

    /// The merged ranges as text (`10.0.0.0/8`, or `first-last` when not one block), for
    /// review tools.
    pub fn ranges(&self) -> Vec<String> {
        let v4 = self.v4.iter().map(|&(lo, hi)| {
            range_text(
                std::net::Ipv4Addr::from(lo).into(),
                std::net::Ipv4Addr::from(hi).into(),
                (hi - lo).checked_add(1).map(u128::from),
                32,
            )
        });
        let v6 = self.v6.iter().map(|&(lo, hi)| {
            range_text(
                std::net::Ipv6Addr::from(lo).into(),
                std::net::Ipv6Addr::from(hi).into(),
                (hi - lo).checked_add(1),
                128,
            )
        });
        v4.chain(v6).collect()
    }
}

/// `lo/len` when `lo..=hi` is one aligned block of `size` addresses, else `lo-hi`.
fn range_text(lo: IpAddr, hi: IpAddr, size: Option<u128>, bits: u32) -> String {
    let prefix = match size {
        Some(n) if n.is_power_of_two() => bits.checked_sub(n.trailing_zeros()),
        None => Some(0),
        _ => None,
    };
    match prefix.and_then(|p| ipnet::IpNet::new(lo, p as u8).ok()) {
        Some(net) if net.network() == lo && net.broadcast() == hi => net.to_string(),
        _ => format!("{lo}-{hi}"),
    }
}

fn merge<T: Ord + Copy + num::One>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1 || last.1.checked_next() == Some(lo) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The first range starting after x; the one before it is the only candidate.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

mod num {
    pub trait One: Sized {
        fn checked_next(self) -> Option<Self>;
    }
    impl One for u32 {
        fn checked_next(self) -> Option<u32> {
            self.checked_add(1)
        }
    }
    impl One for u128 {
        fn checked_next(self) -> Option<u128> {
            self.checked_add(1)
        }
    }
}

/// Parse a list file: one address or block per line; blank lines and `#` comments (whole
/// line or trailing) are skipped. Errors carry the 1-based line number.
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        out.push(crate::policy::validate::parse_cidr(entry).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> CidrSet {
        CidrSet::new(
            items
                .iter()
                .map(|s| crate::policy::validate::parse_cidr(s).unwrap()),
        )
    }

    #[test]
    fn membership_by_family_with_merged_ranges() {
        let s = set(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.168.1.0/24",
            "192.168.2.0/24",
            "203.0.113.7",
            "2001:db8::/32",
            "0.0.0.0/32",
            "255.255.255.255/32",
        ]);
        // Nested and adjacent blocks merge.
        assert_eq!(s.len(), 6);
        for ip in [
            "10.255.255.255",
            "192.168.2.9",
            "203.0.113.7",
            "2001:db8:ffff::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert!(s.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "11.0.0.0",
            "192.168.3.1",
            "203.0.113.8",
            "2001:db9::1",
            "::1",
        ] {
            assert!(!s.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!CidrSet::default().contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn list_files_allow_comments_and_report_lines() {
        let nets = parse_list("# blocked\n\n198.51.100.0/24  # abuse\n2001:db8::1\n").unwrap();
        assert_eq!(nets.len(), 2);
        let (line, msg) = parse_list("10.0.0.0/8\n\n10.0.0.300\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("10.0.0.300"), "{msg}");
    }

    #[test]
    fn a_hundred_thousand_blocks_match_exactly() {
        // Every other /24 in 10.0.0.0/8 .. (100k blocks, none adjacent).
        let nets: Vec<IpNet> = (0..100_000u32)
            .map(|i| {
                let base = (10u32 << 24) + i * 2 * 256;
                IpNet::V4(ipnet::Ipv4Net::new(base.into(), 24).unwrap())
            })
            .collect();
        let s = CidrSet::new(nets);
        assert_eq!(s.len(), 100_000);
        for i in [0u32, 1, 4_999, 99_999] {
            let inside = (10u32 << 24) + i * 512 + 17;
            let gap = (10u32 << 24) + i * 512 + 256 + 17;
            assert!(s.contains(IpAddr::V4(inside.into())), "{i}");
            assert!(!s.contains(IpAddr::V4(gap.into())), "{i}");
        }
    }

    proptest::proptest! {
        /// Membership over merged ranges is exactly "inside any of the blocks".
        #[test]
        fn same_answer_as_a_linear_scan(
            v4 in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 0..60),
            v6 in proptest::collection::vec((proptest::prelude::any::<u128>(), 0u8..=128), 0..30),
            probes4 in proptest::collection::vec(proptest::prelude::any::<u32>(), 50),
            probes6 in proptest::collection::vec(proptest::prelude::any::<u128>(), 20),
        ) {
            let nets: Vec<IpNet> = v4
                .iter()
                .map(|&(a, l)| IpNet::V4(ipnet::Ipv4Net::new(a.into(), l).unwrap()))
                .chain(v6.iter().map(|&(a, l)| IpNet::V6(ipnet::Ipv6Net::new(a.into(), l).unwrap())))
                .collect();
            let set = CidrSet::new(nets.iter().copied());
            // Probe the edges of every block too, where an off-by-one would show.
            let mut probes: Vec<IpAddr> = probes4.iter().map(|&a| IpAddr::V4(a.into())).collect();
            probes.extend(probes6.iter().map(|&a| IpAddr::V6(a.into())));
            for n in &nets {
                probes.push(n.network());
                probes.push(n.broadcast());
                if let IpNet::V4(n4) = n {
                    let hi = u32::from(n4.broadcast());
                    probes.push(IpAddr::V4(hi.wrapping_add(1).into()));
                    probes.push(IpAddr::V4(u32::from(n4.network()).wrapping_sub(1).into()));
                }
            }
            for ip in probes {
                let linear = nets.iter().any(|n| n.contains(&ip));
                proptest::prop_assert_eq!(set.contains(ip), linear, "{}", ip);
            }
        }
    }
}
