//! Loopback ports for networks started on one machine (tests, the development network, the
//! cluster benchmark).
//!
//! A port the kernel hands out for `bind(port 0)` comes from its ephemeral range, the same
//! range it draws the local ports of outgoing connections from. Between the moment such a
//! port is chosen and the moment a node binds it, any connection on the machine (the nodes
//! dialling each other, a client calling an API) may take it, and the node then fails with
//! "address in use". The ports handed out here lie outside the ephemeral range, so no
//! outgoing connection can take them; each is checked free by binding it, and a process
//! never hands out the same port twice (it walks the range from a random start).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The lowest port handed out: below it lie the well-known and commonly configured ports.
pub const LOCAL_PORTS_LOW: u16 = 10_000;

/// Where Linux reports its ephemeral range.
const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The range assumed where the kernel does not report one (Linux's default).
const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);

/// The ranges of ports that are not ephemeral, from `LOCAL_PORTS_LOW` to 65535, given the
/// ephemeral range's text ("LOW HIGH"; the default if it does not parse).
fn non_ephemeral_ranges(ephemeral: Option<&str>) -> Vec<(u16, u16)> {
    let (low, high) = ephemeral
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            match (parts.next(), parts.next()) {
                (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_EPHEMERAL);
    let mut ranges = Vec::new();
    if low > LOCAL_PORTS_LOW {
        ranges.push((LOCAL_PORTS_LOW, low - 1));
    }
    if high < u16::MAX {
        ranges.push((high.saturating_add(1).max(LOCAL_PORTS_LOW), u16::MAX));
    }
    ranges.retain(|(a, b)| a <= b);
    ranges
}

/// How many ports `ranges` hold.
fn port_count(ranges: &[(u16, u16)]) -> usize {
    ranges.iter().map(|(a, b)| usize::from(b - a) + 1).sum()
}

/// The `index`-th port of `ranges`, counted modulo their total size (which must not be 0).
fn nth_port(ranges: &[(u16, u16)], index: usize) -> u16 {
    let mut index = index % port_count(ranges);
    for (a, b) in ranges {
        let size = usize::from(b - a) + 1;
        if index < size {
            return a + index as u16;
        }
        index -= size;
    }
    unreachable!("the index is reduced modulo the total")
}

/// Picks `n` ports of `ranges` for which `take` succeeds, walking from `*next` (advanced past
/// every port tried); `None` if the ranges run out first.
fn pick<T>(
    ranges: &[(u16, u16)],
    next: &AtomicUsize,
    n: usize,
    mut take: impl FnMut(u16) -> Option<T>,
) -> Option<Vec<(u16, T)>> {
    let total = port_count(ranges);
    let mut picked = Vec::with_capacity(n);
    let mut tried = 0;
    while picked.len() < n {
        if tried == total {
            return None;
        }
        tried += 1;
        let port = nth_port(ranges, next.fetch_add(1, Ordering::Relaxed));
        if let Some(held) = take(port) {
            picked.push((port, held));
        }
    }
    Some(picked)
}

/// `n` distinct loopback TCP ports, free now and outside the kernel's ephemeral range; where
/// no such range exists, ports the kernel picks (`bind` port 0).
pub fn unused_local_ports(n: usize) -> std::io::Result<Vec<u16>> {
    static RANGES: OnceLock<Vec<(u16, u16)>> = OnceLock::new();
    static NEXT: OnceLock<AtomicUsize> = OnceLock::new();
    let ranges = RANGES.get_or_init(|| {
        non_ephemeral_ranges(
            std::fs::read_to_string(EPHEMERAL_RANGE_FILE)
                .ok()
                .as_deref(),
        )
    });
    if !ranges.is_empty() {
        let next = NEXT.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            // A random start (std's per-process hash keys), so that processes choosing at
            // once rarely walk the same ports.
            let start = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            AtomicUsize::new(start as usize)
        });
        // Every listener is held until all are chosen, then released for the node to bind.
        if let Some(picked) = pick(ranges, next, n, |port| {
            TcpListener::bind(("127.0.0.1", port)).ok()
        }) {
            return Ok(picked.into_iter().map(|(port, _listener)| port).collect());
        }
    }
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_are_those_outside_the_ephemeral_range() {
        assert_eq!(
            non_ephemeral_ranges(Some("32768\t60999\n")),
            vec![(10_000, 32_767), (61_000, 65_535)]
        );
        assert_eq!(
            non_ephemeral_ranges(Some("1024 65535")),
            Vec::<(u16, u16)>::new()
        );
        assert_eq!(
            non_ephemeral_ranges(Some("5000 40000")),
            vec![(40_001, 65_535)]
        );
        assert_eq!(
            non_ephemeral_ranges(Some("not a range")),
            vec![(10_000, 32_767), (61_000, 65_535)]
        );
        assert_eq!(
            non_ephemeral_ranges(None),
            non_ephemeral_ranges(Some("32768 60999"))
        );
    }

    #[test]
    fn ports_are_counted_across_ranges_and_wrap_around() {
        let ranges = [(10, 12), (20, 21)];
        let ports: Vec<u16> = (0..7).map(|i| nth_port(&ranges, i)).collect();
        assert_eq!(ports, vec![10, 11, 12, 20, 21, 10, 11]);
    }

    #[test]
    fn busy_ports_are_skipped_and_an_exhausted_range_is_reported() {
        let ranges = [(10, 14)];
        let next = AtomicUsize::new(1);
        let picked = pick(&ranges, &next, 2, |p| (p != 12).then_some(())).expect("two free");
        assert_eq!(
            picked.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![11, 13]
        );
        // The walk goes on where it stopped: 14, then 10.
        let picked = pick(&ranges, &next, 2, |_| Some(())).expect("two more");
        assert_eq!(
            picked.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![14, 10]
        );
        assert!(pick(&ranges, &next, 5, |p| (p != 12).then_some(())).is_none());
    }

    #[test]
    fn ports_handed_out_are_distinct_bindable_and_not_ephemeral() {
        let ranges = non_ephemeral_ranges(
            std::fs::read_to_string(EPHEMERAL_RANGE_FILE)
                .ok()
                .as_deref(),
        );
        let first = unused_local_ports(6).expect("ports");
        let second = unused_local_ports(6).expect("ports");
        let all: std::collections::BTreeSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 12, "{first:?} {second:?}");
        for port in &all {
            if !ranges.is_empty() {
                assert!(
                    ranges.iter().any(|(a, b)| (a..=b).contains(&port)),
                    "{port} is in the ephemeral range"
                );
            }
            TcpListener::bind(("127.0.0.1", *port)).expect("the port is free");
        }
    }
}
