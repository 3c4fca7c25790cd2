//! Login throttle: temporarily bans source addresses after repeated failed
//! logins, to slow down password guessing.
//!
//! Failures are counted per address from the first failure on; once
//! `max_failures` have happened within `failure_window` of that first one,
//! the address is banned for `ban_duration`. After the ban, or when the
//! window passes without a ban, the address starts fresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Map size from which an insert always runs a pruning pass.
const MIN_PRUNE_THRESHOLD: usize = 1024;

/// Below the size threshold, an insert prunes if the last pass is this old.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How strict the login throttle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures within the window that start a ban; 0 disables throttling.
    pub max_failures: u32,
    /// How long after an address's first failure its failures are counted.
    pub failure_window: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
}

impl Default for ThrottleSettings {
    /// 5 failures within 5 minutes ban the address for 15 minutes.
    fn default() -> Self {
        ThrottleSettings {
            max_failures: 5,
            failure_window: Duration::from_secs(5 * 60),
            ban_duration: Duration::from_secs(15 * 60),
        }
    }
}

/// The address is banned; it may try again after `remaining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins from this address; banned for another {}s", remaining.as_secs().max(1))]
pub struct Banned {
    /// Time left until the ban ends.
    pub remaining: Duration,
}

/// Failure record for one address.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the first failure of the current window happened.
    first_failure: Instant,
    /// Failures counted since `first_failure`.
    failures: u32,
    /// When the ban started, if the address is (or was) banned.
    banned_since: Option<Instant>,
}

impl Entry {
    /// A record holding one failure at `now`.
    fn fresh(now: Instant) -> Self {
        Entry {
            first_failure: now,
            failures: 1,
            banned_since: None,
        }
    }

    /// Time left of an active ban at `now`, or `None` if not banned.
    fn ban_remaining(&self, settings: &ThrottleSettings, now: Instant) -> Option<Duration> {
        let since = self.banned_since?;
        let elapsed = now.saturating_duration_since(since);
        settings
            .ban_duration
            .checked_sub(elapsed)
            .filter(|d| !d.is_zero())
    }

    /// Whether the record no longer affects anything at `now` (ban over, or
    /// no ban and the failure window has passed).
    fn expired(&self, settings: &ThrottleSettings, now: Instant) -> bool {
        match self.banned_since {
            Some(_) => self.ban_remaining(settings, now).is_none(),
            None => now.saturating_duration_since(self.first_failure) >= settings.failure_window,
        }
    }
}

/// Mutable throttle state behind the mutex.
#[derive(Debug)]
struct State {
    /// Records by (canonical) address.
    entries: HashMap<IpAddr, Entry>,
    /// Map size at which the next pruning pass runs (keeps pruning
    /// amortised O(1) per insert even under a many-address attack).
    prune_at: usize,
    /// When the last pruning pass ran (`None`: never).
    last_prune: Option<Instant>,
}

impl State {
    /// Drops expired records before an insert, when the map has grown past
    /// the threshold or the last pass is older than [`PRUNE_INTERVAL`].
    fn prune_if_due(&mut self, settings: &ThrottleSettings, now: Instant) {
        let stale = self
            .last_prune
            .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_INTERVAL);
        let due = self.entries.len() >= self.prune_at || (stale && !self.entries.is_empty());
        if !due {
            return;
        }
        self.entries.retain(|_, e| !e.expired(settings, now));
        self.prune_at = (self.entries.len() * 2).max(MIN_PRUNE_THRESHOLD);
        self.last_prune = Some(now);
    }
}

/// Per-address failed-login counter and ban list; thread-safe.
#[derive(Debug)]
pub struct LoginThrottle {
    /// Configured limits.
    settings: ThrottleSettings,
    /// Shared state.
    state: Mutex<State>,
}

impl LoginThrottle {
    /// A throttle with the given limits and no recorded failures.
    pub fn new(settings: ThrottleSettings) -> Self {
        LoginThrottle {
            settings,
            state: Mutex::new(State {
                entries: HashMap::new(),
                prune_at: MIN_PRUNE_THRESHOLD,
                last_prune: None,
            }),
        }
    }

    /// `Ok(())` if `addr` may try to log in now; `Err(Banned)` while banned.
    pub fn check(&self, addr: IpAddr) -> Result<(), Banned> {
        self.check_at(addr, Instant::now())
    }

    /// Records one failed attempt; returns true if this failure started a ban.
    pub fn record_failure(&self, addr: IpAddr) -> bool {
        self.record_failure_at(addr, Instant::now())
    }

    /// A successful login clears the address's failure count. An active
    /// ban is kept (a login racing with a ban must not lift it).
    pub fn record_success(&self, addr: IpAddr) {
        self.record_success_at(addr, Instant::now());
    }

    /// Number of addresses currently banned (for metrics).
    pub fn banned_count(&self) -> usize {
        self.banned_count_at(Instant::now())
    }

    /// Locks the state; a poisoned lock is still usable (the state is
    /// always consistent between statements).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`LoginThrottle::check`] at a given time.
    fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Banned> {
        let addr = addr.to_canonical();
        let mut state = self.lock();
        let Some(entry) = state.entries.get(&addr) else {
            return Ok(());
        };
        if let Some(remaining) = entry.ban_remaining(&self.settings, now) {
            return Err(Banned { remaining });
        }
        if entry.banned_since.is_some() {
            // The ban is over: start fresh.
            state.entries.remove(&addr);
        }
        Ok(())
    }

    /// [`LoginThrottle::record_failure`] at a given time.
    fn record_failure_at(&self, addr: IpAddr, now: Instant) -> bool {
        let settings = self.settings;
        if settings.max_failures == 0 {
            return false;
        }
        let addr = addr.to_canonical();
        let mut state = self.lock();

        if !state.entries.contains_key(&addr) {
            state.prune_if_due(&settings, now);
        }

        let entry = state.entries.entry(addr).or_insert_with(|| Entry {
            failures: 0,
            ..Entry::fresh(now)
        });
        if entry.ban_remaining(&settings, now).is_some() {
            // Already banned: the ban is neither extended nor restarted.
            return false;
        }
        if entry.expired(&settings, now) {
            *entry = Entry::fresh(now);
        } else {
            entry.failures = entry.failures.saturating_add(1);
        }
        if entry.failures >= settings.max_failures {
            entry.banned_since = Some(now);
            return true;
        }
        false
    }

    /// [`LoginThrottle::record_success`] at a given time.
    fn record_success_at(&self, addr: IpAddr, now: Instant) {
        let addr = addr.to_canonical();
        let mut state = self.lock();
        let banned = state
            .entries
            .get(&addr)
            .is_some_and(|e| e.ban_remaining(&self.settings, now).is_some());
        if !banned {
            state.entries.remove(&addr);
        }
    }

    /// [`LoginThrottle::banned_count`] at a given time.
    fn banned_count_at(&self, now: Instant) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.ban_remaining(&self.settings, now).is_some())
            .count()
    }

    /// Number of records held (for tests of pruning).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn settings(max: u32) -> ThrottleSettings {
        ThrottleSettings {
            max_failures: max,
            failure_window: 5 * MIN,
            ban_duration: 15 * MIN,
        }
    }

    #[test]
    fn default_settings() {
        let s = ThrottleSettings::default();
        assert_eq!(s.max_failures, 5);
        assert_eq!(s.failure_window, 5 * MIN);
        assert_eq!(s.ban_duration, 15 * MIN);
    }

    #[test]
    fn ban_starts_on_max_failure() {
        let t = LoginThrottle::new(settings(3));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert!(t.check_at(a, t0).is_ok());
        assert!(!t.record_failure_at(a, t0));
        assert!(!t.record_failure_at(a, t0 + MIN));
        assert!(t.check_at(a, t0 + MIN).is_ok());
        assert_eq!(t.banned_count_at(t0 + MIN), 0);
        assert!(t.record_failure_at(a, t0 + 2 * MIN), "third failure bans");
        assert_eq!(
            t.check_at(a, t0 + 2 * MIN),
            Err(Banned {
                remaining: 15 * MIN
            })
        );
        assert_eq!(
            t.check_at(a, t0 + 12 * MIN),
            Err(Banned { remaining: 5 * MIN })
        );
        assert_eq!(t.banned_count_at(t0 + 2 * MIN), 1);
        // Other addresses are unaffected.
        assert!(t.check_at(ip("192.0.2.2"), t0 + 2 * MIN).is_ok());
    }

    #[test]
    fn failures_while_banned_do_not_extend_the_ban() {
        let t = LoginThrottle::new(settings(1));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert!(t.record_failure_at(a, t0));
        assert!(!t.record_failure_at(a, t0 + 10 * MIN));
        assert!(t.check_at(a, t0 + 15 * MIN).is_ok());
    }

    #[test]
    fn ban_expires_and_address_starts_fresh() {
        let t = LoginThrottle::new(settings(2));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        t.record_failure_at(a, t0);
        assert!(t.record_failure_at(a, t0));
        assert!(t
            .check_at(a, t0 + 15 * MIN - Duration::from_millis(1))
            .is_err());
        let after = t0 + 15 * MIN;
        assert!(t.check_at(a, after).is_ok());
        assert_eq!(t.banned_count_at(after), 0);
        // Fresh start: one failure is not enough for a new ban.
        assert!(!t.record_failure_at(a, after));
        assert!(t.check_at(a, after).is_ok());
        assert!(t.record_failure_at(a, after + MIN));
        assert!(t.check_at(a, after + MIN).is_err());
    }

    #[test]
    fn ban_expiry_without_check_also_starts_fresh() {
        let t = LoginThrottle::new(settings(2));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        t.record_failure_at(a, t0);
        assert!(t.record_failure_at(a, t0));
        // No check() in between: the next failure after the ban counts as 1.
        assert!(!t.record_failure_at(a, t0 + 20 * MIN));
        assert!(t.check_at(a, t0 + 20 * MIN).is_ok());
    }

    #[test]
    fn window_expiry_resets_the_count() {
        let t = LoginThrottle::new(settings(3));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert!(!t.record_failure_at(a, t0));
        assert!(!t.record_failure_at(a, t0 + 4 * MIN));
        // The window (5 min from the first failure) has passed: start over.
        assert!(!t.record_failure_at(a, t0 + 5 * MIN));
        assert!(!t.record_failure_at(a, t0 + 6 * MIN));
        assert!(t.check_at(a, t0 + 6 * MIN).is_ok());
        assert!(t.record_failure_at(a, t0 + 9 * MIN));
        assert!(t.check_at(a, t0 + 9 * MIN).is_err());
    }

    #[test]
    fn success_clears_failures() {
        let t = LoginThrottle::new(settings(2));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert!(!t.record_failure_at(a, t0));
        t.record_success(a);
        assert!(!t.record_failure_at(a, t0));
        assert!(t.record_failure_at(a, t0));
        // ...but not an active ban.
        t.record_success_at(a, t0 + MIN);
        assert!(t.check_at(a, t0 + MIN).is_err());
        // After the ban, success removes the stale record.
        t.record_success_at(a, t0 + 16 * MIN);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn zero_max_failures_disables_throttling() {
        let t = LoginThrottle::new(settings(0));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(!t.record_failure_at(a, t0 + Duration::from_secs(i)));
        }
        assert!(t.check_at(a, t0).is_ok());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn ipv4_mapped_addresses_share_a_record() {
        let t = LoginThrottle::new(settings(2));
        let t0 = Instant::now();
        t.record_failure_at(ip("192.0.2.1"), t0);
        assert!(t.record_failure_at(ip("::ffff:192.0.2.1"), t0));
        assert!(t.check_at(ip("192.0.2.1"), t0).is_err());
        assert!(t.check_at(ip("::ffff:192.0.2.1"), t0).is_err());
    }

    #[test]
    fn expired_entries_are_pruned() {
        let t = LoginThrottle::new(settings(2));
        let t0 = Instant::now();
        let addr = |i: usize| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let n = MIN_PRUNE_THRESHOLD * 3;
        for i in 0..n {
            t.record_failure_at(addr(i), t0);
        }
        assert_eq!(t.len(), n);
        // Long after the window, new failures trigger pruning of the old ones.
        let later = t0 + 10 * MIN;
        for i in 0..10 {
            t.record_failure_at(IpAddr::from([172, 16, 0, i]), later);
        }
        assert!(t.len() <= 10, "old entries pruned, len {}", t.len());

        // Active bans survive pruning.
        let t = LoginThrottle::new(settings(1));
        t.record_failure_at(ip("192.0.2.1"), t0);
        for i in 0..MIN_PRUNE_THRESHOLD * 2 {
            t.record_failure_at(addr(i), t0 + MIN);
        }
        t.record_failure_at(ip("192.0.2.2"), t0 + 2 * MIN);
        assert!(t.check_at(ip("192.0.2.1"), t0 + 2 * MIN).is_err());
    }

    #[test]
    fn map_stays_bounded_under_a_stream_of_addresses() {
        let t = LoginThrottle::new(settings(5));
        let t0 = Instant::now();
        // One new address per second for a long time: only ~window's worth
        // (300) are live at once, so the map must stay small.
        for i in 0..20_000u32 {
            t.record_failure_at(
                IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_secs(i.into()),
            );
        }
        assert!(t.len() <= 2 * MIN_PRUNE_THRESHOLD, "len {}", t.len());
    }

    #[test]
    fn public_wrappers_use_the_real_clock() {
        let t = LoginThrottle::new(settings(1));
        let a = ip("2001:db8::1");
        assert!(t.check(a).is_ok());
        assert!(t.record_failure(a));
        let banned = t.check(a).unwrap_err();
        assert!(banned.remaining <= 15 * MIN && banned.remaining > 14 * MIN);
        assert_eq!(t.banned_count(), 1);
        t.record_success(a);
        assert!(t.check(a).is_err(), "success does not lift a ban");
        assert_eq!(t.banned_count(), 1);
        let b = ip("2001:db8::2");
        t.record_success(b);
        assert!(t.check(b).is_ok());
    }

    #[test]
    fn banned_display() {
        let b = Banned {
            remaining: Duration::from_secs(90),
        };
        assert_eq!(
            b.to_string(),
            "too many failed logins from this address; banned for another 90s"
        );
    }

    #[test]
    fn throttle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LoginThrottle>();
    }

    #[test]
    fn concurrent_failures_ban_exactly_once() {
        let t = std::sync::Arc::new(LoginThrottle::new(settings(50)));
        let a = ip("192.0.2.1");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let t = std::sync::Arc::clone(&t);
                std::thread::spawn(move || (0..10).filter(|_| t.record_failure(a)).count())
            })
            .collect();
        let bans: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(bans, 1);
        assert!(t.check(a).is_err());
    }
}
