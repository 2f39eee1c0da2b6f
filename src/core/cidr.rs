//! CIDR arithmetic: parsing with the rules Calico enforces, overlap, and a
//! prefix index that maps an IP to its pool or block without scanning.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Parse a CIDR the way Calico wants it: strictly masked ("canonical"),
/// so `10.0.0.1/16` is refused with the canonical form suggested.
pub fn parse_canonical(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a CIDR (expected e.g. 10.0.0.0/16 or fd00:10::/64)"))?;
    let canonical = net.trunc();
    if canonical != net {
        return Err(format!("{text:?} has host bits set; the canonical form is {canonical}"));
    }
    // Compare the text too: "fd00:0::/64" parses fine but Calico stores the
    // normalised form and non-canonical text has caused operator loops.
    if canonical.to_string() != text.trim() {
        return Err(format!("{text:?} is not written canonically; use {canonical}"));
    }
    Ok(canonical)
}

/// Number of addresses, saturating at u128::MAX for huge IPv6 nets.
pub fn size(net: &IpNet) -> u128 {
    let host_bits = (net.max_prefix_len() - net.prefix_len()) as u32;
    if host_bits >= 128 {
        u128::MAX
    } else {
        1u128 << host_bits
    }
}

/// The old pools' CIDRs of one migration (one per IP family migrated):
/// a pod must move while it holds an address in any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrSet(pub Vec<IpNet>);

impl CidrSet {
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

impl std::fmt::Display for CidrSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&shown.join(" and "))
    }
}

pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `inner` lies entirely within `outer`.
pub fn within(inner: &IpNet, outer: &IpNet) -> bool {
    outer.contains(inner)
}

pub fn is_link_local(net: &IpNet) -> bool {
    let ll: IpNet = if net.addr().is_ipv4() { "169.254.0.0/16".parse().unwrap() } else { "fe80::/10".parse().unwrap() };
    overlaps(net, &ll)
}

/// Valid blockSize range per family (Calico's validation).
pub fn block_size_range(is_v4: bool) -> (u8, u8) {
    if is_v4 {
        (20, 32)
    } else {
        (116, 128)
    }
}

/// Maps addresses to the smallest-prefix network that contains them, by
/// masking the address with each distinct prefix length present. With P
/// distinct prefix lengths (a handful in practice) a lookup is P hash probes.
#[derive(Debug, Clone)]
pub struct PrefixIndex<T> {
    /// Distinct prefix lengths, longest first, so nested nets resolve to the most specific.
    lens: Vec<(bool, u8)>,
    map: HashMap<IpNet, T>,
}

impl<T: Clone> PrefixIndex<T> {
    pub fn new(entries: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut map = HashMap::new();
        let mut lens = Vec::new();
        for (net, v) in entries {
            let net = net.trunc();
            let key = (net.addr().is_ipv4(), net.prefix_len());
            if !lens.contains(&key) {
                lens.push(key);
            }
            map.entry(net).or_insert(v);
        }
        lens.sort_by_key(|l| std::cmp::Reverse(l.1));
        PrefixIndex { lens, map }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        for &(v4, len) in &self.lens {
            if v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, len) {
                if let Some(v) = self.map.get(&net.trunc()) {
                    return Some(v);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_cidrs_are_accepted() {
        assert_eq!(parse_canonical("10.0.0.0/16").unwrap(), net("10.0.0.0/16"));
        assert_eq!(parse_canonical("fd00:10::/64").unwrap(), net("fd00:10::/64"));
    }

    #[test]
    fn host_bits_and_odd_spellings_are_refused_with_the_fix() {
        let e = parse_canonical("10.0.0.1/16").unwrap_err();
        assert!(e.contains("10.0.0.0/16"), "{e}");
        let e = parse_canonical("fd00:10:0::/64").unwrap_err();
        assert!(e.contains("fd00:10::/64"), "{e}");
        assert!(parse_canonical("10.0.0.0").is_err());
        assert!(parse_canonical("banana").is_err());
        assert!(parse_canonical("10.0.0.0/33").is_err());
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(overlaps(&net("100.64.0.0/10"), &net("100.64.0.0/13")));
        assert!(overlaps(&net("100.64.0.0/13"), &net("100.64.0.0/10")));
        assert!(!overlaps(&net("10.0.0.0/16"), &net("10.1.0.0/16")));
        assert!(!overlaps(&net("10.0.0.0/16"), &net("fd00::/64")));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(&net("10.0.0.0/16")), 65536);
        assert_eq!(size(&net("10.0.0.1/32")), 1);
        assert_eq!(size(&net("::/0")), u128::MAX);
    }

    #[test]
    fn prefix_index_finds_most_specific() {
        let idx =
            PrefixIndex::new([(net("10.0.0.0/8"), "big"), (net("10.1.0.0/16"), "small"), (net("fd00::/64"), "v6")]);
        assert_eq!(idx.lookup("10.1.2.3".parse().unwrap()), Some(&"small"));
        assert_eq!(idx.lookup("10.2.2.3".parse().unwrap()), Some(&"big"));
        assert_eq!(idx.lookup("fd00::5".parse().unwrap()), Some(&"v6"));
        assert_eq!(idx.lookup("192.168.0.1".parse().unwrap()), None);
    }

    #[test]
    fn link_local_detected() {
        assert!(is_link_local(&net("169.254.1.0/24")));
        assert!(!is_link_local(&net("10.0.0.0/8")));
    }
}
