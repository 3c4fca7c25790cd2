//! The inbound sessions open now, and the limits on them: connections not
//! logged in yet, sessions overall and per user. Every open connection
//! holds a [`SessionGuard`]; dropping it (however the connection ends)
//! forgets it, so the counts cannot drift.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::SessionLimits;

use super::activity::Activity;

/// One open connection, as listed.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The gateway's id for it.
    pub id: u64,
    /// Who logged in (`None` until then).
    pub user: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// When it connected.
    pub since: SystemTime,
    /// Its protocol, bytes and transfers, updated as it works.
    pub activity: Arc<Activity>,
}

/// Why a connection or login is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitRefusal {
    /// `login.max_unauthenticated` connections are already waiting to log in.
    #[error("too many connections waiting to log in (limit {0}); try again later")]
    Unauthenticated(usize),
    /// `login.max_unauthenticated_per_address` connections from this
    /// address are already waiting to log in.
    #[error(
        "too many connections from your address waiting to log in (limit {0}); try again later"
    )]
    UnauthenticatedFromAddress(usize),
    /// `server.max_sessions` sessions are open.
    #[error("too many sessions on this gateway (limit {0}); try again later")]
    Total(usize),
    /// The user has `server.max_sessions_per_user` sessions open.
    #[error("too many sessions for user {user} (limit {limit}); close one and try again")]
    PerUser {
        /// The user.
        user: String,
        /// The limit.
        limit: usize,
    },
}

impl LimitRefusal {
    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            LimitRefusal::Unauthenticated(_) => "max_unauthenticated",
            LimitRefusal::UnauthenticatedFromAddress(_) => "max_unauthenticated_per_address",
            LimitRefusal::Total(_) => "max_sessions",
            LimitRefusal::PerUser { .. } => "max_sessions_per_user",
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, SessionInfo>,
    unauthenticated: usize,
    /// Connections not logged in yet, by source address.
    pending_by_address: HashMap<IpAddr, usize>,
    authenticated: usize,
    per_user: HashMap<String, usize>,
}

/// The registry of open connections.
#[derive(Clone, Default)]
pub struct Sessions {
    state: Arc<Mutex<State>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent: a poisoned lock is fine.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection that has not logged in, unless too many
    /// are waiting to.
    pub fn connect(
        &self,
        peer: SocketAddr,
        limits: &SessionLimits,
    ) -> Result<SessionGuard, LimitRefusal> {
        let mut st = self.lock();
        let ip = canonical(peer.ip());
        let from_here = st.pending_by_address.get(&ip).copied().unwrap_or(0);
        if limits.max_unauthenticated_per_address != 0
            && from_here >= limits.max_unauthenticated_per_address
        {
            return Err(LimitRefusal::UnauthenticatedFromAddress(
                limits.max_unauthenticated_per_address,
            ));
        }
        if limits.max_unauthenticated != 0 && st.unauthenticated >= limits.max_unauthenticated {
            return Err(LimitRefusal::Unauthenticated(limits.max_unauthenticated));
        }
        *st.pending_by_address.entry(ip).or_insert(0) += 1;
        st.next_id += 1;
        let id = st.next_id;
        st.unauthenticated += 1;
        let activity = Arc::new(Activity::default());
        st.open.insert(
            id,
            SessionInfo {
                id,
                user: None,
                peer,
                since: SystemTime::now(),
                activity: activity.clone(),
            },
        );
        publish(&st);
        Ok(SessionGuard {
            sessions: self.clone(),
            id,
            activity,
        })
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self.lock().open.values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Sessions of `user` open now.
    pub fn count_of(&self, user: &str) -> usize {
        self.lock().per_user.get(user).copied().unwrap_or(0)
    }
}

/// One open connection's place in the registry.
pub struct SessionGuard {
    sessions: Sessions,
    id: u64,
    activity: Arc<Activity>,
}

impl SessionGuard {
    /// The session's live figures, for its protocol handlers to update.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// The connection logged in as `user`: it now counts as one of the
    /// user's sessions, unless that is over a limit (then it stays
    /// unauthenticated and the caller ends it).
    pub fn login(&self, user: &str, limits: &SessionLimits) -> Result<(), LimitRefusal> {
        let mut st = self.sessions.lock();
        let Some(info) = st.open.get(&self.id) else {
            return Ok(());
        };
        if info.user.is_some() {
            return Ok(());
        }
        if limits.max_sessions != 0 && st.authenticated >= limits.max_sessions {
            return Err(LimitRefusal::Total(limits.max_sessions));
        }
        let mine = st.per_user.get(user).copied().unwrap_or(0);
        if limits.max_sessions_per_user != 0 && mine >= limits.max_sessions_per_user {
            return Err(LimitRefusal::PerUser {
                user: user.to_string(),
                limit: limits.max_sessions_per_user,
            });
        }
        let peer = match st.open.get_mut(&self.id) {
            Some(info) => {
                info.user = Some(user.to_string());
                info.peer
            }
            None => return Ok(()),
        };
        st.forget_pending(peer.ip());
        st.authenticated += 1;
        *st.per_user.entry(user.to_string()).or_insert(0) += 1;
        publish(&st);
        Ok(())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut st = self.sessions.lock();
        if let Some(info) = st.open.remove(&self.id) {
            match info.user {
                Some(user) => {
                    st.authenticated -= 1;
                    if let Some(n) = st.per_user.get_mut(&user) {
                        *n -= 1;
                        if *n == 0 {
                            st.per_user.remove(&user);
                        }
                    }
                }
                None => st.forget_pending(info.peer.ip()),
            }
        }
        publish(&st);
    }
}

impl State {
    /// One connection from `ip` no longer waits to log in.
    fn forget_pending(&mut self, ip: IpAddr) {
        self.unauthenticated -= 1;
        let ip = canonical(ip);
        if let Some(n) = self.pending_by_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.pending_by_address.remove(&ip);
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The session gauges (see the README's metrics list).
fn publish(st: &State) {
    metrics::gauge!("gateway_sessions").set(st.authenticated as f64);
    metrics::gauge!("gateway_connections_unauthenticated").set(st.unauthenticated as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(total: usize, per_user: usize, pending: usize) -> SessionLimits {
        SessionLimits {
            max_sessions: total,
            max_sessions_per_user: per_user,
            max_unauthenticated: pending,
            max_unauthenticated_per_address: 0,
            grace_time: Duration::from_secs(30),
        }
    }

    #[test]
    fn one_address_cannot_take_every_pending_place() {
        let s = Sessions::default();
        let l = SessionLimits {
            max_unauthenticated_per_address: 2,
            ..limits(0, 0, 4)
        };
        let flood: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:5001".parse().unwrap();
        let a = s.connect(flood, &l).unwrap();
        let _b = s.connect(mapped, &l).unwrap();
        assert_eq!(
            s.connect(flood, &l).err(),
            Some(LimitRefusal::UnauthenticatedFromAddress(2))
        );
        // Another address still gets in.
        let c = s.connect(peer(), &l).unwrap();
        // Logging in frees the place of its address.
        a.login("alice", &l).unwrap();
        let _d = s.connect(flood, &l).unwrap();
        drop(c);
        assert_eq!(s.list().len(), 3);
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn limits_refuse_and_dropped_guards_free_their_places() {
        let s = Sessions::default();
        let l = limits(3, 2, 2);
        let a = s.connect(peer(), &l).unwrap();
        let b = s.connect(peer(), &l).unwrap();
        assert_eq!(
            s.connect(peer(), &l).err(),
            Some(LimitRefusal::Unauthenticated(2))
        );
        a.login("alice", &l).unwrap();
        b.login("alice", &l).unwrap();
        let c = s.connect(peer(), &l).unwrap();
        assert!(matches!(
            c.login("alice", &l),
            Err(LimitRefusal::PerUser { limit: 2, .. })
        ));
        c.login("bob", &l).unwrap();
        let d = s.connect(peer(), &l).unwrap();
        assert_eq!(d.login("carol", &l), Err(LimitRefusal::Total(3)));
        assert_eq!(s.count_of("alice"), 2);
        drop(a);
        assert_eq!(s.count_of("alice"), 1);
        d.login("carol", &l).unwrap();
        drop((b, c, d));
        assert!(s.list().is_empty());
        assert_eq!(s.count_of("alice"), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let s = Sessions::default();
        let l = limits(0, 0, 0);
        let guards: Vec<_> = (0..50).map(|_| s.connect(peer(), &l).unwrap()).collect();
        for g in &guards {
            g.login("alice", &l).unwrap();
        }
        assert_eq!(s.list().len(), 50);
    }
}
