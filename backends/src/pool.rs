//! A capped, fair connection pool shared by the remote backends.
//!
//! At most `max` connections to a remote are open at any instant, counting
//! those being set up and those idle. Work beyond that waits in FIFO order
//! and fails with a temporary error after `wait`. A checked-out connection
//! ([`Pooled`]) returns itself when dropped, or is discarded (freeing its
//! slot) if it was marked broken or its connector says it is unusable, so
//! no failure path can leak a slot. Idle connections close after `idle`.
//!
//! One operation must never hold two connections of one pool: with every
//! slot taken by such operations, all of them would wait forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;

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
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max: usize,
    /// How long work waits for a connection before failing.
    pub wait: Duration,
    /// How long an unused connection stays open.
    pub idle: Duration,
}

/// What a pool is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open (in use, idle or being set up).
    pub open: usize,
    /// Connections open and unused.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// What a waiter is handed: a connection, or the right to open one.
enum Grant<T> {
    Connection(T),
    Slot,
}

struct State<T> {
    open: usize,
    idle: VecDeque<(T, Instant)>,
    waiters: VecDeque<oneshot::Sender<Grant<T>>>,
}

struct Inner<C: Connector> {
    name: String,
    connector: C,
    settings: PoolSettings,
    state: Mutex<State<C::Connection>>,
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
    /// A pool named `name` (for messages) opening connections with `connector`.
    /// Must be created inside a tokio runtime (it starts the idle reaper).
    pub fn new(name: impl Into<String>, connector: C, settings: PoolSettings) -> Self {
        let settings = PoolSettings {
            max: settings.max.max(1),
            ..settings
        };
        let inner = Arc::new(Inner {
            name: name.into(),
            connector,
            settings,
            state: Mutex::new(State {
                open: 0,
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
            }),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&inner)));
        Pool { inner }
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
            idle: st.idle.len(),
            waiting: st.waiters.len(),
        }
    }

    /// Checks out a connection, waiting for a free slot if all are taken.
    pub async fn get(&self) -> Result<Pooled<C>> {
        let deadline = tokio::time::Instant::now() + self.inner.settings.wait;
        let receiver = {
            let mut st = self.inner.lock();
            while let Some((conn, _)) = st.idle.pop_back() {
                if self.inner.connector.is_usable(&conn) {
                    drop(st);
                    return Ok(self.pooled(conn));
                }
                Inner::discard(&self.inner, conn);
            }
            if st.open < self.inner.settings.max {
                st.open += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.waiters.push_back(tx);
                Some(rx)
            }
        };
        let grant = match receiver {
            None => Grant::Slot,
            Some(rx) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(grant)) => grant,
                Ok(Err(_)) | Err(_) => {
                    return Err(BackendError::new(
                        ErrorKind::Timeout,
                        "connect",
                        "",
                        format!(
                            "all {} connections to remote `{}` are busy; waited {}s",
                            self.inner.settings.max,
                            self.inner.name,
                            self.inner.settings.wait.as_secs()
                        ),
                    ))
                }
            },
        };
        match grant {
            Grant::Connection(conn) => Ok(self.pooled(conn)),
            Grant::Slot => match self.inner.connector.connect().await {
                Ok(conn) => Ok(self.pooled(conn)),
                Err(e) => {
                    self.inner.free_slot();
                    Err(e)
                }
            },
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
    /// Closes `conn` in the background and frees its slot afterwards.
    fn discard(inner: &Arc<Self>, conn: C::Connection) {
        let inner = inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    inner.connector.close(conn).await;
                    inner.free_slot();
                });
            }
            Err(_) => {
                drop(conn);
                inner.free_slot();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<C::Connection>> {
        // The state is consistent at every unlock; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection's slot is free: hand it to a waiter or close it.
    fn free_slot(&self) {
        let mut st = self.lock();
        while let Some(waiter) = st.waiters.pop_front() {
            if waiter.send(Grant::Slot).is_ok() {
                return;
            }
        }
        st.open -= 1;
    }

    /// A connection comes back in working order.
    fn give_back(&self, conn: C::Connection) {
        let mut st = self.lock();
        let mut grant = Grant::Connection(conn);
        while let Some(waiter) = st.waiters.pop_front() {
            match waiter.send(grant) {
                Ok(()) => return,
                Err(back) => grant = back,
            }
        }
        match grant {
            Grant::Connection(conn) => st.idle.push_back((conn, Instant::now())),
            Grant::Slot => st.open -= 1,
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
        if self.broken || !self.pool.connector.is_usable(&conn) {
            Inner::discard(&self.pool, conn);
        } else {
            self.pool.give_back(conn);
        }
    }
}

/// Closes connections idle for longer than the pool's `idle` setting.
async fn reap_idle<C: Connector>(pool: Weak<Inner<C>>) {
    let period = match pool.upgrade() {
        Some(p) => (p.settings.idle / 2).max(Duration::from_millis(200)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = pool.upgrade() else { return };
        let expired: Vec<C::Connection> = {
            let mut st = inner.lock();
            let now = Instant::now();
            let mut keep = VecDeque::new();
            let mut gone = Vec::new();
            while let Some((conn, since)) = st.idle.pop_front() {
                if now.duration_since(since) >= inner.settings.idle
                    || !inner.connector.is_usable(&conn)
                {
                    gone.push(conn);
                } else {
                    keep.push_back((conn, since));
                }
            }
            st.idle = keep;
            st.open -= gone.len();
            gone
        };
        drop(expired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let c = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(c);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
        assert_eq!(
            pool.stats(),
            PoolStats {
                open: live.load(Ordering::SeqCst),
                idle: live.load(Ordering::SeqCst),
                waiting: 0
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
}
