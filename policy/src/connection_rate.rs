//! New connections per source address, as a token bucket: a burst at once,
//! then a steady rate. A connection over it is refused before the SSH
//! version exchange, so a flood from one address (the DHEat attack,
//! CVE-2002-20001: key exchanges that cost the server far more than the
//! client) costs the gateway almost nothing and leaves room for others.
//!
//! A connection that logs in gives its token back ([`ConnectionRate::refund`]):
//! the limit falls on connections that never log in (scanners, floods,
//! key-exchange hammering), not on users opening session after session.
//!
//! IPv6 addresses count by their /64, the block one host or site usually
//! holds, so an attacker cannot step through its own addresses; IPv4
//! addresses (and IPv4-mapped IPv6) count alone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Map size from which an admission prunes full buckets.
const MIN_PRUNE_THRESHOLD: usize = 1024;

/// How many new connections one address may open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionRateSettings {
    /// Connections per second, sustained; 0 disables the limit.
    pub per_second: f64,
    /// Connections at once before the rate applies (the bucket's size).
    pub burst: u32,
}

impl Default for ConnectionRateSettings {
    /// 32 at once, then 2 a second for connections that do not log in:
    /// an office behind one NAT address (or rclone with many transfers)
    /// can open 32 connections together, and every login gives its place
    /// back; a flood that never logs in gets 2 a second, and ssh-audit's
    /// 38 quick connections take 3 s (under 13 a second, below the 20 it
    /// deems unsafe).
    fn default() -> Self {
        ConnectionRateSettings {
            per_second: 2.0,
            burst: 32,
        }
    }
}

/// A connection over its address's rate.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("too many new connections from this address (at most {burst} at once, then {per_second} a second); try again shortly")]
pub struct RateExceeded {
    /// The configured burst.
    pub burst: u32,
    /// The configured rate.
    pub per_second: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key (an address, an access key); thread-safe.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    settings: ConnectionRateSettings,
    buckets: Mutex<(HashMap<K, Bucket>, usize)>,
}

impl<K: std::hash::Hash + Eq + Clone> TokenBuckets<K> {
    /// Buckets of `settings.burst` tokens refilled at `settings.per_second`.
    pub fn new(settings: ConnectionRateSettings) -> Self {
        TokenBuckets {
            settings,
            buckets: Mutex::new((HashMap::new(), MIN_PRUNE_THRESHOLD)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (HashMap<K, Bucket>, usize)> {
        // Each update leaves the map consistent: a poisoned lock is fine.
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token from `key`'s bucket at `now`, or says it is empty.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), RateExceeded> {
        let s = self.settings;
        if s.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(s.burst.max(1));
        let refill = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + elapsed * s.per_second).min(burst)
        };
        let mut guard = self.lock();
        let (buckets, prune_at) = &mut *guard;
        if buckets.len() >= *prune_at {
            buckets.retain(|_, b| refill(b) < burst);
            *prune_at = (buckets.len() * 2).max(MIN_PRUNE_THRESHOLD);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refill(bucket);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(RateExceeded {
                burst: s.burst,
                per_second: s.per_second,
            })
        }
    }

    /// Whether `key`'s bucket holds a token at `now` (nothing is taken).
    pub fn has_token(&self, key: &K, now: Instant) -> bool {
        let s = self.settings;
        if s.per_second <= 0.0 {
            return true;
        }
        match self.lock().0.get(key) {
            Some(b) => {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * s.per_second >= 1.0
            }
            None => true,
        }
    }

    /// Puts a token back into `key`'s bucket.
    pub fn refund(&self, key: &K) {
        let burst = f64::from(self.settings.burst.max(1));
        if let Some(b) = self.lock().0.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().0.len()
    }
}

/// Per-address token buckets for new connections; thread-safe.
#[derive(Debug)]
pub struct ConnectionRate {
    buckets: TokenBuckets<IpAddr>,
}

impl ConnectionRate {
    /// A limiter with `settings`.
    pub fn new(settings: ConnectionRateSettings) -> Self {
        ConnectionRate {
            buckets: TokenBuckets::new(settings),
        }
    }

    /// Takes one connection from `ip`'s allowance at `now`, or says it is
    /// over.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), RateExceeded> {
        self.buckets.take(&key(ip), now)
    }

    /// Gives back the token of a connection from `ip` that logged in.
    pub fn refund(&self, ip: IpAddr) {
        self.buckets.refund(&key(ip));
    }
}

/// The address a bucket belongs to: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let r = ConnectionRate::new(ConnectionRateSettings {
            per_second: 5.0,
            burst: 20,
        });
        let t0 = Instant::now();
        let flood = ip("127.0.0.2");
        for i in 0..20 {
            assert!(r.admit(flood, t0).is_ok(), "connection {i} of the burst");
        }
        assert!(r.admit(flood, t0).is_err());
        // Another address is not affected.
        assert!(r.admit(ip("127.0.0.1"), t0).is_ok());
        // 5 a second come back.
        let later = t0 + Duration::from_millis(1000);
        let admitted = (0..10).filter(|_| r.admit(flood, later).is_ok()).count();
        assert_eq!(admitted, 5);
        // A connection that logged in gives its place back.
        assert!(r.admit(flood, later).is_err());
        r.refund(flood);
        assert!(r.admit(flood, later).is_ok());
        // What ssh-audit does: 38 banners as fast as it can get them.
        let r = ConnectionRate::new(ConnectionRateSettings::default());
        let mut t = t0;
        let mut got = 0;
        while got < 38 {
            if r.admit(flood, t).is_ok() {
                got += 1;
            }
            t += Duration::from_millis(2);
        }
        let rate = 38.0 / t.duration_since(t0).as_secs_f64();
        assert!(rate < 20.0, "{rate} connections a second");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let r = ConnectionRate::new(ConnectionRateSettings {
            per_second: 1.0,
            burst: 1,
        });
        let t = Instant::now();
        assert!(r.admit(ip("2001:db8:1:2::1"), t).is_ok());
        assert!(r.admit(ip("2001:db8:1:2::ffff"), t).is_err(), "same /64");
        assert!(r.admit(ip("2001:db8:1:3::1"), t).is_ok(), "another /64");
        assert!(r.admit(ip("192.0.2.7"), t).is_ok());
        assert!(r.admit(ip("::ffff:192.0.2.7"), t).is_err(), "the same IPv4");
    }

    #[test]
    fn zero_disables_and_full_buckets_are_pruned() {
        let off = ConnectionRate::new(ConnectionRateSettings {
            per_second: 0.0,
            burst: 1,
        });
        let t = Instant::now();
        for _ in 0..100 {
            assert!(off.admit(ip("10.0.0.1"), t).is_ok());
        }
        let r = ConnectionRate::new(ConnectionRateSettings::default());
        for i in 0..5000u32 {
            let a = IpAddr::from(i.to_be_bytes());
            let _ = r.admit(a, t);
        }
        for i in 5000..9000u32 {
            let a = IpAddr::from(i.to_be_bytes());
            let _ = r.admit(a, t + Duration::from_secs(10));
        }
        assert!(r.buckets.len() < 5000, "buckets full again are dropped");
    }
}
