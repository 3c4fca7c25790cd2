//! A capped, fair connection pool shared by the remote backends.
//!
//! At most `max` connections to a remote are open at any instant, counting
//! those being set up, idle and being closed. Work beyond that waits in
//! FIFO order and fails with a temporary error after `wait`. A checked-out
//! connection ([`Pooled`]) returns itself when dropped, or is discarded
//! (freeing its slot once closed) if it was marked broken or its connector
//! says it is unusable, so no failure path can leak a slot; neither can a
//! request given up while it waits or connects. Idle connections close
//! after `idle`.
//!
//! The limits can change while the pool is in use ([`Pool::set_settings`],
//! for a config reload): a raised cap hands new slots to waiters at once,
//! oldest first; a lowered cap closes idle connections above it at once and
//! closes connections in use as they are returned (instead of reusing them)
//! until the pool is within the cap, so a transfer is never cut. New
//! connections are opened only while fewer than `max` are open.
//!
//! Every change of the pool's state is published as gauges, and waits,
//! timeouts and connect attempts and failures are counted
//! ([`crate::metrics`]).
//!
//! With a [`SlotGate`] ([`Pool::use_slot_gate`], for several gateway
//! nodes) the cap also holds across nodes: the pool holds one cluster-wide
//! lease for each slot it has open, taken before a connection is opened
//! and dropped when the slot is freed, and gives a connection back when
//! another node asks for one (see [`crate::slots`]).
//!
//! One operation must never hold two connections of one pool: with every
//! slot taken by such operations, all of them would wait forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{oneshot, Notify};

use crate::metrics::{PoolFigures, PoolMetrics};
use crate::slots::{SlotGate, SlotLease};
use crate::{BackendError, ErrorKind, Result};

/// Opens connections for a pool and tells whether one still works.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The connection type.
    type Connection: Send + 'static;
    /// Opens a new connection.
    async fn connect(&self) -> Result<Self::Connection>;
    /// Whether an idle or returned connection can be used again.
    fn is_usable(&self, connection: &Self::Connection) -> bool;
    /// Closes a connection that leaves the pool; its slot is freed only
    /// when this returns, so the remote never sees more than `max`.
    async fn close(&self, connection: Self::Connection) {
        drop(connection);
    }
}

/// Limits of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max: usize,
    /// How long work waits for a connection before failing.
    pub wait: Duration,
    /// How long an unused connection stays open.
    pub idle: Duration,
}

impl PoolSettings {
    /// The settings as the pool uses them: at least one connection.
    fn normalized(self) -> Self {
        PoolSettings {
            max: self.max.max(1),
            ..self
        }
    }
}

/// What a pool is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open (in use, idle, being set up or being closed).
    pub open: usize,
    /// Connections checked out by work.
    pub in_use: usize,
    /// Connections open and unused.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// The current cap.
    pub max: usize,
}

/// What a waiter is handed: a connection, or the right to open one.
enum Grant<T> {
    Connection(T),
    Slot,
}

struct State<T> {
    settings: PoolSettings,
    /// Slots taken: connections in use, idle, being set up or being closed.
    open: usize,
    /// Connections checked out (or handed to a waiter that will take them).
    in_use: usize,
    /// Connections being closed; their slots are freed when that is done.
    closing: usize,
    idle: VecDeque<(T, Instant)>,
    waiters: VecDeque<oneshot::Sender<Grant<T>>>,
    /// Cluster-wide leases held (with a gate): never more than `open`;
    /// fewer while slots wait for theirs (`leasing`).
    leases: Vec<SlotLease>,
    /// Slots whose lease is being asked for.
    leasing: usize,
    /// Requests waiting for their slot's lease; a connection returned
    /// meanwhile goes to them (after the queue), since waiting on the
    /// cluster for a new connection while one of ours idles could starve.
    lease_waiters: VecDeque<oneshot::Sender<T>>,
    /// Connections to give back to the cluster (another node waits) as
    /// they are returned, instead of reusing them.
    give_back: usize,
}

struct Inner<C: Connector> {
    name: String,
    connector: C,
    state: Mutex<State<C::Connection>>,
    metrics: PoolMetrics,
    /// Wakes the idle reaper when the settings change.
    reaper: Arc<Notify>,
    /// The cluster's slots, when several nodes share the cap.
    gate: OnceLock<Arc<dyn SlotGate>>,
}

/// A capped pool of connections to one remote.
pub struct Pool<C: Connector> {
    inner: Arc<Inner<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Connector> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<C: Connector> Pool<C> {
    /// A pool for remote `name` (for messages and the metrics' `remote`
    /// label) opening connections with `connector`. Must be created inside
    /// a tokio runtime (it starts the idle reaper).
    pub fn new(name: impl Into<String>, connector: C, settings: PoolSettings) -> Self {
        let name = name.into();
        let reaper = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            metrics: PoolMetrics::new(&name),
            name,
            connector,
            state: Mutex::new(State {
                settings: settings.normalized(),
                open: 0,
                in_use: 0,
                closing: 0,
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
                leases: Vec::new(),
                leasing: 0,
                lease_waiters: VecDeque::new(),
                give_back: 0,
            }),
            reaper: reaper.clone(),
            gate: OnceLock::new(),
        });
        inner.publish(&inner.lock());
        tokio::spawn(reap_idle(Arc::downgrade(&inner), reaper));
        Pool { inner }
    }

    /// Makes the cap cluster-wide: from now on every connection opened
    /// also holds a lease from `gate`, and a connection is given back when
    /// another node asks for one. Set once, before the pool is used.
    pub fn use_slot_gate(&self, gate: Arc<dyn SlotGate>) {
        let demand = gate.demand(&self.inner.name);
        if self.inner.gate.set(gate).is_ok() {
            tokio::spawn(give_back_on_demand(Arc::downgrade(&self.inner), demand));
        }
    }

    /// The connector (for settings it carries).
    pub fn connector(&self) -> &C {
        &self.inner.connector
    }

    /// Current use.
    pub fn stats(&self) -> PoolStats {
        let st = self.inner.lock();
        PoolStats {
            open: st.open,
            in_use: st.in_use,
            idle: st.idle.len(),
            waiting: st.waiters.len(),
            max: st.settings.max,
        }
    }

    /// The limits in force.
    pub fn settings(&self) -> PoolSettings {
        self.inner.lock().settings
    }

    /// Changes the limits while the pool is in use (a config reload).
    /// Raising `max` hands the new slots to waiters at once, oldest first.
    /// Lowering it never closes a connection in use: idle connections
    /// above the new cap are closed at once, and connections returned while
    /// more than `max` are open are closed instead of reused, until the
    /// pool is within the cap; meanwhile new requests wait. A new `wait`
    /// applies to requests from now on, a new `idle` to the next sweep.
    pub fn set_settings(&self, settings: PoolSettings) {
        let inner = &self.inner;
        let mut st = inner.lock();
        st.settings = settings.normalized();
        while st.open < st.settings.max {
            let Some(waiter) = st.waiters.pop_front() else {
                break;
            };
            if waiter.send(Grant::Slot).is_ok() {
                st.open += 1;
            }
        }
        while st.open - st.closing > st.settings.max {
            let Some((conn, _)) = st.idle.pop_front() else {
                break;
            };
            inner.retire(&mut st, conn);
        }
        inner.publish(&st);
        drop(st);
        inner.reaper.notify_one();
    }

    /// Checks out a connection, waiting for a free slot if all are taken.
    pub async fn get(&self) -> Result<Pooled<C>> {
        let inner = &self.inner;
        let (settings, receiver) = {
            let mut st = inner.lock();
            while let Some((conn, _)) = st.idle.pop_back() {
                if inner.connector.is_usable(&conn) {
                    st.in_use += 1;
                    inner.publish(&st);
                    drop(st);
                    return Ok(self.pooled(conn));
                }
                inner.retire(&mut st, conn);
            }
            let receiver = if st.open < st.settings.max {
                st.open += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.waiters.push_back(tx);
                Some(rx)
            };
            inner.publish(&st);
            (st.settings, receiver)
        };
        let grant = match receiver {
            None => Grant::Slot,
            Some(rx) => {
                let started = Instant::now();
                let mut waiter = Waiter {
                    rx: Some(rx),
                    pool: inner.clone(),
                    abandoned: false,
                };
                let granted = match tokio::time::timeout(settings.wait, waiter.recv()).await {
                    Ok(Some(grant)) => Some(grant),
                    // A grant may have come just as the wait ended: take it.
                    Ok(None) | Err(_) => waiter.cancel(),
                };
                drop(waiter);
                inner.metrics.waited(started.elapsed());
                match granted {
                    Some(grant) => grant,
                    None => {
                        inner.metrics.timed_out();
                        return Err(BackendError::new(
                            ErrorKind::Timeout,
                            "connect",
                            "",
                            format!(
                                "all {} connections to remote `{}` are busy; waited {}s",
                                settings.max,
                                inner.name,
                                settings.wait.as_secs()
                            ),
                        ));
                    }
                }
            }
        };
        match grant {
            Grant::Connection(conn) => Ok(self.pooled(conn)),
            Grant::Slot => {
                let mut slot = Connecting {
                    pool: inner.clone(),
                    armed: true,
                };
                match inner.lease_slot(settings.wait).await {
                    Ok(None) => {}
                    // A connection came back while we waited for the
                    // cluster: use it, and free the slot (dropping `slot`).
                    Ok(Some(conn)) => return Ok(self.pooled(conn)),
                    Err(e) => {
                        inner.metrics.connect.failed(&e);
                        // Dropping `slot` frees it.
                        return Err(e);
                    }
                }
                inner.metrics.connect.attempt();
                match inner.connector.connect().await {
                    Ok(conn) => {
                        slot.armed = false;
                        let mut st = inner.lock();
                        st.in_use += 1;
                        inner.publish(&st);
                        drop(st);
                        Ok(self.pooled(conn))
                    }
                    Err(e) => {
                        inner.metrics.connect.failed(&e);
                        // Dropping `slot` frees it.
                        Err(e)
                    }
                }
            }
        }
    }

    fn pooled(&self, conn: C::Connection) -> Pooled<C> {
        Pooled {
            connection: Some(conn),
            pool: self.inner.clone(),
            broken: false,
        }
    }
}

impl<C: Connector> Inner<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<C::Connection>> {
        // The state is consistent at every unlock; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the gauges from the state (called with the lock held).
    fn publish(&self, st: &State<C::Connection>) {
        self.metrics.publish(PoolFigures {
            open: st.open,
            in_use: st.in_use,
            idle: st.idle.len(),
            waiting: st.waiters.len(),
            max: st.settings.max,
        });
    }

    /// A slot is free (its connection closed, or a connect failed or was
    /// given up): it goes to the oldest waiter if the cap allows one more
    /// connection, else it is given up, and with it a cluster lease.
    fn release_slot(&self, st: &mut State<C::Connection>) {
        // `open` still counts this slot.
        if st.open <= st.settings.max {
            while let Some(waiter) = st.waiters.pop_front() {
                if waiter.send(Grant::Slot).is_ok() {
                    return;
                }
            }
        }
        st.open -= 1;
        if st.leases.len() > st.open {
            st.leases.pop();
        }
    }

    /// With a gate, makes sure the slot just granted (counted in `open`)
    /// is covered by a cluster lease before its connection is opened:
    /// one freed by a connection that closed meanwhile, or a new one.
    /// A connection of this pool returned while waiting is taken instead
    /// (`Some`: checked out; the caller frees the slot).
    async fn lease_slot(self: &Arc<Self>, wait: Duration) -> Result<Option<C::Connection>> {
        let Some(gate) = self.gate.get() else {
            return Ok(None);
        };
        let (max, mut returned) = {
            let mut st = self.lock();
            if st.leases.len() + st.leasing >= st.open {
                return Ok(None);
            }
            st.leasing += 1;
            let (tx, rx) = oneshot::channel();
            st.lease_waiters.push_back(tx);
            (st.settings.max, rx)
        };
        let leased = tokio::select! {
            leased = gate.acquire(&self.name, max, wait) => leased,
            Ok(conn) = &mut returned => {
                let mut st = self.lock();
                st.leasing -= 1;
                return Ok(Some(conn));
            }
        };
        // A connection sent just as the lease came is handed on.
        returned.close();
        let late = returned.try_recv().ok();
        let mut st = self.lock();
        st.leasing -= 1;
        st.lease_waiters.retain(|w| !w.is_closed());
        if let Some(conn) = late {
            self.check_in(&mut st, conn, true);
        }
        let lease = leased?;
        if st.leases.len() < st.open {
            st.leases.push(lease);
        }
        self.publish(&st);
        Ok(None)
    }

    /// Closes `conn` (in the background) and frees its slot afterwards.
    fn retire(self: &Arc<Self>, st: &mut State<C::Connection>, conn: C::Connection) {
        self.retire_as(st, conn, false);
    }

    /// [`Inner::retire`]; with `to_cluster`, the slot's cluster lease is
    /// given back too, so a waiter of this pool must take a new one and
    /// another node can get the slot first.
    fn retire_as(
        self: &Arc<Self>,
        st: &mut State<C::Connection>,
        conn: C::Connection,
        to_cluster: bool,
    ) {
        st.closing += 1;
        let freed = move |inner: &Self, st: &mut State<C::Connection>| {
            st.closing -= 1;
            if to_cluster {
                st.leases.pop();
            }
            inner.release_slot(st);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let inner = self.clone();
                rt.spawn(async move {
                    inner.connector.close(conn).await;
                    let mut st = inner.lock();
                    freed(&inner, &mut st);
                    inner.publish(&st);
                });
            }
            Err(_) => {
                drop(conn);
                freed(self, st);
            }
        }
    }

    /// Another node waits for a slot: give one connection back, an idle
    /// one at once, else the next one returned.
    fn give_back_one(self: &Arc<Self>) {
        let mut st = self.lock();
        if let Some((conn, _)) = st.idle.pop_front() {
            self.retire_as(&mut st, conn, true);
        } else if st.give_back < st.in_use {
            st.give_back += 1;
        }
        self.publish(&st);
    }

    /// A checked-out connection comes back: it goes to the oldest waiter,
    /// or idles; it is closed instead if it is not `usable` or the pool is
    /// above its cap (lowered while it was in use).
    fn check_in(
        self: &Arc<Self>,
        st: &mut State<C::Connection>,
        conn: C::Connection,
        usable: bool,
    ) {
        st.in_use -= 1;
        if !usable || st.open - st.closing > st.settings.max {
            self.retire(st, conn);
            return;
        }
        if st.give_back > 0 {
            st.give_back -= 1;
            self.retire_as(st, conn, true);
            return;
        }
        let mut grant = Grant::Connection(conn);
        while let Some(waiter) = st.waiters.pop_front() {
            match waiter.send(grant) {
                Ok(()) => {
                    st.in_use += 1;
                    return;
                }
                Err(back) => grant = back,
            }
        }
        let Grant::Connection(mut conn) = grant else {
            return;
        };
        while let Some(waiter) = st.lease_waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => {
                    st.in_use += 1;
                    return;
                }
                Err(back) => conn = back,
            }
        }
        st.idle.push_back((conn, Instant::now()));
    }
}

/// A request's place in the queue. Given up (timed out, or its request
/// dropped), it leaves the queue and hands on a grant that came too late,
/// so no slot or connection is lost.
struct Waiter<C: Connector> {
    rx: Option<oneshot::Receiver<Grant<C::Connection>>>,
    pool: Arc<Inner<C>>,
    abandoned: bool,
}

impl<C: Connector> Waiter<C> {
    /// Waits for a grant (`None` if the pool dropped the place).
    async fn recv(&mut self) -> Option<Grant<C::Connection>> {
        let rx = self.rx.as_mut()?;
        let grant = rx.await.ok();
        self.rx = None;
        grant
    }

    /// Stops waiting; returns a grant sent before that.
    fn cancel(&mut self) -> Option<Grant<C::Connection>> {
        let mut rx = self.rx.take()?;
        self.abandoned = true;
        rx.close();
        rx.try_recv().ok()
    }
}

impl<C: Connector> Drop for Waiter<C> {
    fn drop(&mut self) {
        let late = self.cancel();
        if !self.abandoned {
            return;
        }
        let pool = &self.pool;
        let mut st = pool.lock();
        st.waiters.retain(|w| !w.is_closed());
        match late {
            Some(Grant::Connection(conn)) => pool.check_in(&mut st, conn, true),
            Some(Grant::Slot) => pool.release_slot(&mut st),
            None => {}
        }
        pool.publish(&st);
    }
}

/// A slot being used to open a connection; freed if that fails or is
/// given up.
struct Connecting<C: Connector> {
    pool: Arc<Inner<C>>,
    armed: bool,
}

impl<C: Connector> Drop for Connecting<C> {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.pool.lock();
            self.pool.release_slot(&mut st);
            self.pool.publish(&st);
        }
    }
}

/// A checked-out connection; returns to its pool when dropped.
pub struct Pooled<C: Connector> {
    connection: Option<C::Connection>,
    pool: Arc<Inner<C>>,
    broken: bool,
}

impl<C: Connector> Pooled<C> {
    /// Marks the connection as broken: it is closed instead of reused.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether it was marked broken (then asking it anything more would
    /// only wait for the timeouts again).
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

impl<C: Connector> std::ops::Deref for Pooled<C> {
    type Target = C::Connection;
    fn deref(&self) -> &C::Connection {
        // Only `drop` takes the connection out.
        self.connection
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl<C: Connector> Drop for Pooled<C> {
    fn drop(&mut self) {
        let Some(conn) = self.connection.take() else {
            return;
        };
        let usable = !self.broken && self.pool.connector.is_usable(&conn);
        let mut st = self.pool.lock();
        self.pool.check_in(&mut st, conn, usable);
        self.pool.publish(&st);
    }
}

/// Gives a connection back each time the gate says another node waits.
async fn give_back_on_demand<C: Connector>(
    pool: Weak<Inner<C>>,
    mut demand: tokio::sync::watch::Receiver<u64>,
) {
    while demand.changed().await.is_ok() {
        let Some(inner) = pool.upgrade() else { return };
        inner.give_back_one();
    }
}

/// Closes connections idle for longer than the pool's `idle` setting,
/// checking every half of it (at once again when the settings change).
async fn reap_idle<C: Connector>(pool: Weak<Inner<C>>, wake: Arc<Notify>) {
    loop {
        let period = match pool.upgrade() {
            Some(p) => (p.lock().settings.idle / 2).max(Duration::from_millis(200)),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = wake.notified() => {}
        }
        let Some(inner) = pool.upgrade() else { return };
        let mut st = inner.lock();
        let now = Instant::now();
        let limit = st.settings.idle;
        let mut keep = VecDeque::new();
        while let Some((conn, since)) = st.idle.pop_front() {
            if now.duration_since(since) >= limit || !inner.connector.is_usable(&conn) {
                inner.retire(&mut st, conn);
            } else {
                keep.push_back((conn, since));
            }
        }
        st.idle = keep;
        inner.publish(&st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// Counts live connections; can be told to fail.
    struct Counting {
        live: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        fail: AtomicBool,
    }

    struct Conn {
        live: Arc<AtomicUsize>,
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Connector for Counting {
        type Connection = Conn;
        async fn connect(&self) -> Result<Conn> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(BackendError::new(
                    ErrorKind::ConnectionLost,
                    "connect",
                    "",
                    "refused",
                ));
            }
            let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(Conn {
                live: self.live.clone(),
            })
        }
        fn is_usable(&self, _: &Conn) -> bool {
            true
        }
    }

    /// Thirty tasks each take a connection, hold it for `hold` and give it back.
    async fn thirty_at_once(pool: &Pool<Counting>, hold: Duration) {
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let c = pool.get().await.unwrap();
                tokio::time::sleep(hold).await;
                drop(c);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    fn pool(
        max: usize,
        wait: Duration,
        idle: Duration,
    ) -> (Pool<Counting>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let c = Counting {
            live: live.clone(),
            peak: peak.clone(),
            fail: AtomicBool::new(false),
        };
        (
            Pool::new("test", c, PoolSettings { max, wait, idle }),
            live,
            peak,
        )
    }

    #[tokio::test]
    async fn never_exceeds_the_cap_and_serves_everyone() {
        let (pool, live, peak) = pool(3, Duration::from_secs(10), Duration::from_secs(60));
        thirty_at_once(&pool, Duration::from_millis(3)).await;
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        assert_eq!(
            pool.stats(),
            PoolStats {
                open: live.load(Ordering::SeqCst),
                in_use: 0,
                idle: live.load(Ordering::SeqCst),
                waiting: 0,
                max: 3,
            }
        );
    }

    #[tokio::test]
    async fn waiting_too_long_is_a_temporary_error() {
        let (pool, _, _) = pool(1, Duration::from_millis(50), Duration::from_secs(60));
        let held = pool.get().await.unwrap();
        let err = pool.get().await.err().expect("must time out");
        assert!(
            err.is_temporary() && err.message().contains("busy"),
            "{err}"
        );
        drop(held);
        assert!(pool.get().await.is_ok(), "the slot is free again");
        assert_eq!(pool.stats().waiting, 0);
    }

    #[tokio::test]
    async fn broken_connections_and_failed_connects_free_their_slot() {
        let (pool, live, _) = pool(1, Duration::from_secs(1), Duration::from_secs(60));
        let mut c = pool.get().await.unwrap();
        c.mark_broken();
        drop(c);
        // The broken connection is closed in the background, then its slot freed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(pool.stats().open, 0);
        pool.connector().fail.store(true, Ordering::SeqCst);
        assert!(pool.get().await.is_err());
        assert!(pool.get().await.is_err());
        assert_eq!(pool.stats().open, 0, "failed connects leak no slot");
        pool.connector().fail.store(false, Ordering::SeqCst);
        assert!(pool.get().await.is_ok());
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let (pool, live, _) = pool(2, Duration::from_secs(1), Duration::from_millis(100));
        drop(pool.get().await.unwrap());
        assert_eq!(live.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(pool.stats().open, 0);
    }

    fn settings(max: usize) -> PoolSettings {
        PoolSettings {
            max,
            wait: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }

    /// Polls `check` every 5 ms for up to 2 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts request number `i`, which holds its connection until told to
    /// let go, and waits until it is queued as the `i + 1`-th waiter;
    /// numbers are recorded in the order requests got a connection.
    async fn queue_holder(
        pool: &Pool<Counting>,
        i: usize,
        order: &Arc<Mutex<Vec<usize>>>,
        release: &Arc<Notify>,
    ) -> tokio::task::JoinHandle<()> {
        let task = {
            let (pool, order, release) = (pool.clone(), order.clone(), release.clone());
            tokio::spawn(async move {
                let c = pool.get().await.expect("a waiter got no connection");
                order.lock().unwrap().push(i);
                release.notified().await;
                drop(c);
            })
        };
        queued(pool, i + 1).await;
        task
    }

    async fn queued(pool: &Pool<Counting>, n: usize) {
        eventually(&format!("{n} requests wait"), || pool.stats().waiting == n).await;
    }

    fn sorted(v: &[usize]) -> Vec<usize> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    #[tokio::test]
    async fn raising_the_cap_serves_waiters_at_once_oldest_first() {
        let (pool, live, _) = pool(2, Duration::from_secs(10), Duration::from_secs(60));
        let held = [pool.get().await.unwrap(), pool.get().await.unwrap()];
        let order = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for i in 0..4 {
            tasks.push(queue_holder(&pool, i, &order, &release).await);
        }
        pool.set_settings(settings(4));
        eventually("two waiters got a connection", || {
            order.lock().unwrap().len() == 2
        })
        .await;
        assert_eq!(sorted(&order.lock().unwrap()), [0, 1], "the oldest first");
        assert_eq!(live.load(Ordering::SeqCst), 4);
        let stats = pool.stats();
        assert_eq!(
            (stats.open, stats.in_use, stats.waiting, stats.max),
            (4, 4, 2, 4)
        );
        drop(held);
        eventually("every waiter got a connection", || {
            order.lock().unwrap().len() == 4
        })
        .await;
        assert_eq!(sorted(&order.lock().unwrap()[2..]), [2, 3]);
        for t in tasks {
            release.notify_one();
            t.await.unwrap();
        }
        let stats = pool.stats();
        assert_eq!((stats.open, stats.in_use, stats.idle), (4, 0, 4));
    }

    #[tokio::test]
    async fn lowering_the_cap_closes_returned_connections_never_used_ones() {
        let (pool, live, peak) = pool(10, Duration::from_secs(10), Duration::from_secs(60));
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(pool.get().await.unwrap());
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let mut waiters = Vec::new();
        for i in 0..5 {
            waiters.push(queue_holder(&pool, i, &order, &release).await);
        }
        pool.set_settings(settings(3));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            live.load(Ordering::SeqCst),
            10,
            "a connection in use was closed"
        );
        assert_eq!(pool.stats().max, 3);
        // The first seven returned are closed, no new one is opened, and
        // the waiters keep waiting.
        for n in 1..=7 {
            drop(held.pop());
            eventually("the returned connection is closed", || {
                live.load(Ordering::SeqCst) == 10 - n && pool.stats().open == 10 - n
            })
            .await;
            assert!(
                order.lock().unwrap().is_empty(),
                "a waiter got a connection above the cap"
            );
            assert_eq!(pool.stats().waiting, 5);
        }
        peak.store(live.load(Ordering::SeqCst), Ordering::SeqCst);
        // Within the cap, returned connections go to the oldest waiters.
        drop(held);
        eventually("three waiters got a connection", || {
            order.lock().unwrap().len() == 3
        })
        .await;
        assert_eq!(sorted(&order.lock().unwrap()), [0, 1, 2]);
        for served in 4..=5 {
            release.notify_one();
            eventually("the next waiter got a connection", || {
                order.lock().unwrap().len() == served
            })
            .await;
        }
        assert_eq!(*order.lock().unwrap().get(3..).unwrap_or(&[]), [3, 4]);
        for t in waiters {
            release.notify_one();
            t.await.unwrap();
        }
        // Many requests at once afterwards: never above the new cap.
        thirty_at_once(&pool, Duration::from_millis(2)).await;
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        let stats = pool.stats();
        assert_eq!((stats.in_use, stats.waiting), (0, 0));
        assert!(stats.open <= 3, "{stats:?}");
    }

    #[tokio::test]
    async fn lowering_the_cap_closes_idle_connections_above_it_at_once() {
        let (pool, live, _) = pool(5, Duration::from_secs(10), Duration::from_secs(60));
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(pool.get().await.unwrap());
        }
        let kept = held.pop();
        drop(held);
        assert_eq!(pool.stats().idle, 4);
        pool.set_settings(settings(2));
        eventually("idle connections above the cap are closed", || {
            live.load(Ordering::SeqCst) == 2
        })
        .await;
        let stats = pool.stats();
        assert_eq!(
            (stats.open, stats.in_use, stats.idle),
            (2, 1, 1),
            "{stats:?}"
        );
        drop(kept);
        assert_eq!(pool.stats().idle, 2, "within the cap, returns are kept");
    }

    #[tokio::test]
    async fn a_shorter_idle_time_applies_at_once() {
        let (pool, live, _) = pool(2, Duration::from_secs(10), Duration::from_secs(3600));
        drop(pool.get().await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(live.load(Ordering::SeqCst), 1);
        pool.set_settings(PoolSettings {
            idle: Duration::from_millis(100),
            ..settings(2)
        });
        eventually("the idle connection is closed", || {
            live.load(Ordering::SeqCst) == 0
        })
        .await;
        assert_eq!(pool.stats().open, 0);
    }

    #[tokio::test]
    async fn requests_given_up_while_waiting_or_connecting_lose_no_slot() {
        let (pool, _, _) = pool(1, Duration::from_secs(10), Duration::from_secs(60));
        let held = pool.get().await.unwrap();
        // Given up while waiting.
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        };
        queued(&pool, 1).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(pool.stats().waiting, 0, "the abandoned place is gone");
        drop(held);
        assert_eq!(pool.stats().idle, 1, "no one took the returned connection");
        // Given up while connecting (the connector takes 5 ms).
        pool.set_settings(settings(2));
        let held = pool.get().await.unwrap();
        let connecting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pool.stats().open, 2, "the second request is connecting");
        connecting.abort();
        let _ = connecting.await;
        assert_eq!(pool.stats().open, 1, "the abandoned connect freed its slot");
        // Both slots are usable again, at once.
        let other = tokio::time::timeout(Duration::from_secs(1), pool.get())
            .await
            .expect("a slot was lost")
            .unwrap();
        drop((held, other));
        let stats = pool.stats();
        assert_eq!((stats.open, stats.in_use, stats.waiting), (2, 0, 0));
    }

    #[tokio::test]
    async fn pool_gauges_and_counters_follow_the_pool() {
        use crate::metrics::testing::TestRecorder;
        use crate::metrics::*;
        let rec = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&rec);
        let (pool, _, _) = pool(2, Duration::from_millis(300), Duration::from_secs(60));
        let r = [("remote", "test")];
        let gauge = |name| rec.gauge(name, &r).unwrap_or(-1.0);
        assert_eq!(gauge(CONNECTIONS_MAX), 2.0);
        assert_eq!(gauge(CONNECTIONS), 0.0);
        let a = pool.get().await.unwrap();
        let b = pool.get().await.unwrap();
        assert_eq!(gauge(CONNECTIONS_IN_USE), 2.0, "in use rises to the cap");
        assert_eq!(gauge(CONNECTIONS), 2.0);
        assert_eq!(rec.counter(CONNECT_ATTEMPTS, &r), 2);
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        };
        queued(&pool, 1).await;
        assert_eq!(gauge(WAITERS), 1.0);
        drop(a);
        waiter.await.unwrap().unwrap();
        assert_eq!(gauge(WAITERS), 0.0);
        assert_eq!(gauge(CONNECTIONS_IN_USE), 1.0);
        assert_eq!(gauge(CONNECTIONS_IDLE), 1.0);
        assert_eq!(rec.samples(POOL_WAIT_SECONDS, &r).len(), 1);
        // A wait that times out.
        let (c, d) = (pool.get().await.unwrap(), b);
        assert!(pool.get().await.is_err());
        assert_eq!(rec.counter(POOL_TIMEOUTS, &r), 1);
        assert_eq!(rec.samples(POOL_WAIT_SECONDS, &r).len(), 2);
        drop((c, d));
        pool.set_settings(settings(5));
        assert_eq!(gauge(CONNECTIONS_MAX), 5.0);
        assert_eq!(gauge(CONNECTIONS_IDLE), 2.0);
        // A failed connect, counted under its reason.
        pool.set_settings(settings(3));
        let _held = (pool.get().await.unwrap(), pool.get().await.unwrap());
        pool.connector().fail.store(true, Ordering::SeqCst);
        assert!(pool.get().await.is_err());
        assert_eq!(rec.counter(CONNECT_ATTEMPTS, &r), 3);
        assert_eq!(
            rec.counter(CONNECT_FAILURES, &[("remote", "test"), ("reason", "other")]),
            1
        );
        assert_eq!(gauge(CONNECTIONS), 2.0, "the failed connect freed its slot");
    }

    /// Slots shared by several pools, as a cluster's nodes share a cap.
    struct SharedSlots {
        free: Arc<Mutex<usize>>,
        demand: tokio::sync::watch::Sender<u64>,
        refuse: AtomicBool,
    }

    struct Release(Arc<Mutex<usize>>);

    impl Drop for Release {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }

    #[async_trait]
    impl SlotGate for SharedSlots {
        async fn acquire(&self, _: &str, _: usize, wait: Duration) -> Result<SlotLease> {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(BackendError::new(
                    ErrorKind::Other,
                    "connect",
                    "",
                    "gate down",
                ));
            }
            let deadline = Instant::now() + wait;
            loop {
                {
                    let mut free = self.free.lock().unwrap();
                    if *free > 0 {
                        *free -= 1;
                        return Ok(SlotLease::new(Release(self.free.clone())));
                    }
                }
                if Instant::now() >= deadline {
                    return Err(BackendError::new(ErrorKind::Timeout, "connect", "", "busy"));
                }
                self.demand.send_modify(|n| *n += 1);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }

        fn demand(&self, _: &str) -> tokio::sync::watch::Receiver<u64> {
            self.demand.subscribe()
        }
    }

    fn shared_slots(n: usize) -> Arc<SharedSlots> {
        Arc::new(SharedSlots {
            free: Arc::new(Mutex::new(n)),
            demand: tokio::sync::watch::Sender::new(0),
            refuse: AtomicBool::new(false),
        })
    }

    /// Two pools (two nodes) of one remote, each allowed 3 connections
    /// locally, sharing 3 slots: never more than 3 connections together,
    /// everyone is served, both pools get work done, and every slot not
    /// held by an open connection is free afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gate_holds_the_cap_across_pools() {
        let gate = shared_slots(3);
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let make = || {
            let pool = Pool::new(
                "shared",
                Counting {
                    live: live.clone(),
                    peak: peak.clone(),
                    fail: AtomicBool::new(false),
                },
                settings(3),
            );
            pool.use_slot_gate(gate.clone());
            pool
        };
        let (a, b) = (make(), make());
        let served = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let pool = if i % 2 == 0 { a.clone() } else { b.clone() };
            let served = served.clone();
            tasks.push(tokio::spawn(async move {
                let c = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(c);
                served.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst), 60);
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        eventually("leases match open connections", || {
            let open = a.stats().open + b.stats().open;
            *gate.free.lock().unwrap() + open == 3 && a.stats().in_use + b.stats().in_use == 0
        })
        .await;
    }

    /// A pool that holds every slot gives one back (an idle one at once)
    /// when another node asks for one.
    #[tokio::test]
    async fn a_pool_gives_a_connection_back_on_demand() {
        let gate = shared_slots(2);
        let (pool, live, _) = pool(2, Duration::from_secs(5), Duration::from_secs(60));
        pool.use_slot_gate(gate.clone());
        let (c1, c2) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        drop(c1);
        drop(c2);
        assert_eq!(*gate.free.lock().unwrap(), 0);
        // Another node's waiter: the idle connections go back one by one.
        let lease = gate
            .acquire("shared", 2, Duration::from_secs(5))
            .await
            .unwrap();
        eventually("one connection given back", || {
            live.load(Ordering::SeqCst) == 1
        })
        .await;
        drop(lease);
    }

    /// When the gate cannot grant a slot, the request fails with its
    /// reason and the local slot is free again.
    #[tokio::test]
    async fn a_refused_lease_frees_the_local_slot() {
        let gate = shared_slots(2);
        gate.refuse.store(true, Ordering::SeqCst);
        let (pool, live, _) = pool(2, Duration::from_secs(5), Duration::from_secs(60));
        pool.use_slot_gate(gate.clone());
        let err = pool.get().await.err().unwrap();
        assert!(err.to_string().contains("gate down"), "{err}");
        assert_eq!(pool.stats().open, 0);
        assert_eq!(live.load(Ordering::SeqCst), 0);
        gate.refuse.store(false, Ordering::SeqCst);
        let c = pool.get().await.unwrap();
        assert_eq!(*gate.free.lock().unwrap(), 1);
        drop(c);
    }

    /// A request waiting for the cluster's lease takes a connection of its
    /// own pool that comes back meanwhile, instead of waiting on.
    #[tokio::test]
    async fn a_returned_connection_serves_a_request_waiting_for_a_lease() {
        let gate = shared_slots(1);
        let (pool, live, _) = pool(2, Duration::from_secs(30), Duration::from_secs(60));
        pool.use_slot_gate(gate.clone());
        let first = pool.get().await.unwrap();
        let second = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        };
        eventually("the second request waits for a lease", || {
            pool.inner.lock().leasing == 1
        })
        .await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .expect("the waiting request was not served by the returned connection")
            .unwrap()
            .unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 1);
        eventually("one slot, one lease", || {
            pool.stats().open == 1 && *gate.free.lock().unwrap() == 0
        })
        .await;
    }
}
