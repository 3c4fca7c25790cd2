//! Metrics of every remote, through the `metrics` crate's facade: the
//! gateway installs a Prometheus recorder; without one every call here is a
//! no-op. Handles are registered once (when a pool, connector or
//! [`Instrumented`] wrapper is built, so the recorder must be installed
//! before the backends are) and reused, so updating them costs an atomic
//! operation, never an allocation. [`describe`] adds help texts and units.
//!
//! Every metric has the label `remote` (the remote's name in the config).
//!
//! Connection pools (SFTP and FTP remotes; S3 has none), gauges updated on
//! every change of the pool:
//! - `gateway_remote_connections`: connections open (in use, idle, being
//!   set up or being closed).
//! - `gateway_remote_connections_in_use`: connections checked out by work.
//! - `gateway_remote_connections_idle`: connections open and unused.
//! - `gateway_remote_waiters`: requests waiting for a connection.
//! - `gateway_remote_connections_max`: the pool's current cap
//!   (`max_connections`, which a reload can change).
//! - `gateway_remote_pool_wait_seconds` (histogram): how long a request
//!   waited for a connection, recorded only for those that had to wait.
//! - `gateway_remote_pool_timeouts_total` (counter): requests that gave up
//!   waiting (`pool_wait` passed with every connection busy).
//!
//! S3 remotes have no pool of their own (the HTTP client keeps connections
//! alive): for them `gateway_remote_connections_in_use` counts requests in
//! flight (each holds one HTTP connection until its body ends) and
//! `gateway_remote_connections_max` is their cap.
//!
//! Connecting (SFTP, FTP and S3 remotes), counters:
//! - `gateway_remote_connect_attempts_total`: connections the gateway
//!   tried to open.
//! - `gateway_remote_connect_failures_total`, with the label `reason`:
//!   `refused` (the TCP connection was refused), `timeout` (no answer in
//!   time: name lookup, TCP, TLS, SSH or login), `bind_failed` (no
//!   dedicated source address could be bound), `host_key_mismatch` (the SFTP
//!   server's key is not the pinned one, or the remote is disabled for
//!   that), `auth_failed` (the server refused the login), `tls` (handshake,
//!   certificate or a server without TLS), `other` (name resolution, resets,
//!   protocol errors).
//! - `gateway_remote_connect_retries_total`, with the label `reason`:
//!   connections tried again within `connect_timeout`; `closed_before_login`
//!   (the SFTP server closed it before the login completed, as a stock
//!   sshd does past `MaxStartups`).
//!
//! Operations (every remote, through [`Instrumented`]):
//! - `gateway_remote_bytes_read_total` / `gateway_remote_bytes_written_total`
//!   (counters): file content read from / written to the remote.
//! - `gateway_remote_operation_seconds` (histogram), with the label
//!   `operation`: `stat`, `list`, `open_read`, `open_write`, `read`,
//!   `write`, `close`, `mkdir`, `remove`, `rmdir`, `rename`, `set_modified`,
//!   `truncate`, `checksum` (for `list`, the time until the listing
//!   starts; for `read` and `write`, one call each).
//! - `gateway_remote_operation_errors_total` (counter), with the labels
//!   `operation` (as above) and `kind`, the error's kind in snake_case:
//!   `not_found`, `permission_denied`, `already_exists`,
//!   `directory_not_empty`, `not_a_directory`, `is_a_directory`,
//!   `invalid_path`, `unsupported`, `no_space`, `connection_lost`,
//!   `timeout`, `other`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ::metrics::{Counter, Gauge, Histogram, SharedString, Unit};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{
    Backend, Capabilities, FileReader, FileWriter, HashKind, ListStream, Metadata, RenameMode,
    SpaceInfo, WriteMode,
};
use crate::{BackendError, ConnectFailure, ErrorKind, Result, StoragePath};

/// Gauge: connections open (in use, idle, being set up or closed).
pub const CONNECTIONS: &str = "gateway_remote_connections";
/// Gauge: connections checked out by work.
pub const CONNECTIONS_IN_USE: &str = "gateway_remote_connections_in_use";
/// Gauge: connections open and unused.
pub const CONNECTIONS_IDLE: &str = "gateway_remote_connections_idle";
/// Gauge: requests waiting for a connection.
pub const WAITERS: &str = "gateway_remote_waiters";
/// Gauge: the pool's current cap.
pub const CONNECTIONS_MAX: &str = "gateway_remote_connections_max";
/// Counter: connections the gateway tried to open.
pub const CONNECT_ATTEMPTS: &str = "gateway_remote_connect_attempts_total";
/// Counter (label `reason`): connections that could not be opened.
pub const CONNECT_FAILURES: &str = "gateway_remote_connect_failures_total";
/// Counter (label `reason`): connections tried again after the server
/// closed them early.
pub const CONNECT_RETRIES: &str = "gateway_remote_connect_retries_total";
/// Histogram: seconds a request waited for a pooled connection.
pub const POOL_WAIT_SECONDS: &str = "gateway_remote_pool_wait_seconds";
/// Counter: requests that gave up waiting for a pooled connection.
pub const POOL_TIMEOUTS: &str = "gateway_remote_pool_timeouts_total";
/// Counter: bytes of file content read from the remote.
pub const BYTES_READ: &str = "gateway_remote_bytes_read_total";
/// Counter: bytes of file content written to the remote.
pub const BYTES_WRITTEN: &str = "gateway_remote_bytes_written_total";
/// Histogram (label `operation`): seconds one operation took.
pub const OPERATION_SECONDS: &str = "gateway_remote_operation_seconds";
/// Counter (labels `operation`, `kind`): operations that failed.
pub const OPERATION_ERRORS: &str = "gateway_remote_operation_errors_total";

/// Every metric above, by name.
pub const NAMES: &[&str] = &[
    CONNECTIONS,
    CONNECTIONS_IN_USE,
    CONNECTIONS_IDLE,
    WAITERS,
    CONNECTIONS_MAX,
    CONNECT_ATTEMPTS,
    CONNECT_FAILURES,
    CONNECT_RETRIES,
    POOL_WAIT_SECONDS,
    POOL_TIMEOUTS,
    BYTES_READ,
    BYTES_WRITTEN,
    OPERATION_SECONDS,
    OPERATION_ERRORS,
];

/// Registers the help text and unit of every metric above with the
/// installed recorder (call once, after installing it).
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        CONNECTIONS,
        "Connections open to the remote (in use, idle, being set up or closed)."
    );
    describe_gauge!(
        CONNECTIONS_IN_USE,
        "Connections to the remote checked out by work."
    );
    describe_gauge!(
        CONNECTIONS_IDLE,
        "Connections to the remote open and unused."
    );
    describe_gauge!(WAITERS, "Requests waiting for a connection to the remote.");
    describe_gauge!(
        CONNECTIONS_MAX,
        "The current cap on connections to the remote (max_connections)."
    );
    describe_counter!(
        CONNECT_RETRIES,
        "Connections to the remote tried again within connect_timeout, by reason (closed_before_login)."
    );
    describe_counter!(
        CONNECT_ATTEMPTS,
        "Connections to the remote the gateway tried to open."
    );
    describe_counter!(
        CONNECT_FAILURES,
        "Connections to the remote that could not be opened, by reason."
    );
    describe_histogram!(
        POOL_WAIT_SECONDS,
        Unit::Seconds,
        "How long a request waited for a connection to the remote (only those that waited)."
    );
    describe_counter!(
        POOL_TIMEOUTS,
        "Requests that gave up waiting for a connection to the remote."
    );
    describe_counter!(
        BYTES_READ,
        Unit::Bytes,
        "File content read from the remote."
    );
    describe_counter!(
        BYTES_WRITTEN,
        Unit::Bytes,
        "File content written to the remote."
    );
    describe_histogram!(
        OPERATION_SECONDS,
        Unit::Seconds,
        "How long one operation on the remote took, by operation."
    );
    describe_counter!(
        OPERATION_ERRORS,
        "Operations on the remote that failed, by operation and error kind."
    );
}

/// A remote's name as a label value (cheap to clone).
fn remote_label(remote: &str) -> SharedString {
    SharedString::from(Arc::<str>::from(remote))
}

/// Connect attempts and failures of one remote (pools and the S3 client).
#[derive(Debug)]
pub(crate) struct ConnectMetrics {
    remote: SharedString,
    attempts: Counter,
}

impl ConnectMetrics {
    /// The counters of `remote`.
    pub(crate) fn new(remote: &str) -> Self {
        let remote = remote_label(remote);
        // Every reason from the start, at 0, so that an alert on
        // `increase()` sees a remote's first failure.
        for reason in ConnectFailure::ALL {
            ::metrics::counter!(CONNECT_FAILURES, "remote" => remote.clone(), "reason" => reason.as_str())
                .increment(0);
        }
        ConnectMetrics {
            attempts: ::metrics::counter!(CONNECT_ATTEMPTS, "remote" => remote.clone()),
            remote,
        }
    }

    /// A connection is about to be opened.
    pub(crate) fn attempt(&self) {
        self.attempts.increment(1);
    }

    /// Opening a connection failed with `err` (counted under its reason;
    /// registered on first use, as failures are rare).
    pub(crate) fn failed(&self, err: &BackendError) {
        ::metrics::counter!(
            CONNECT_FAILURES,
            "remote" => self.remote.clone(),
            "reason" => err.connect_failure_reason().as_str()
        )
        .increment(1);
    }
}

/// The figures a pool publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolFigures {
    /// Connections open (in use, idle, being set up or closed).
    pub open: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Connections open and unused.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// The current cap.
    pub max: usize,
}

/// The metrics of one connection pool.
#[derive(Debug)]
pub(crate) struct PoolMetrics {
    connections: Gauge,
    in_use: Gauge,
    idle: Gauge,
    waiters: Gauge,
    max: Gauge,
    wait_seconds: Histogram,
    timeouts: Counter,
    pub(crate) connect: ConnectMetrics,
}

impl PoolMetrics {
    /// The metrics of the pool of `remote`.
    pub(crate) fn new(remote: &str) -> Self {
        let connect = ConnectMetrics::new(remote);
        let r = &connect.remote;
        PoolMetrics {
            connections: ::metrics::gauge!(CONNECTIONS, "remote" => r.clone()),
            in_use: ::metrics::gauge!(CONNECTIONS_IN_USE, "remote" => r.clone()),
            idle: ::metrics::gauge!(CONNECTIONS_IDLE, "remote" => r.clone()),
            waiters: ::metrics::gauge!(WAITERS, "remote" => r.clone()),
            max: ::metrics::gauge!(CONNECTIONS_MAX, "remote" => r.clone()),
            wait_seconds: ::metrics::histogram!(POOL_WAIT_SECONDS, "remote" => r.clone()),
            timeouts: ::metrics::counter!(POOL_TIMEOUTS, "remote" => r.clone()),
            connect,
        }
    }

    /// Publishes the pool's state (called with the pool locked, so the
    /// gauges follow its changes in order).
    pub(crate) fn publish(&self, f: PoolFigures) {
        self.connections.set(f.open as f64);
        self.in_use.set(f.in_use as f64);
        self.idle.set(f.idle as f64);
        self.waiters.set(f.waiting as f64);
        self.max.set(f.max as f64);
    }

    /// A request waited `waited` for a connection (and got one or not).
    pub(crate) fn waited(&self, waited: std::time::Duration) {
        self.wait_seconds.record(waited);
    }

    /// A request gave up waiting.
    pub(crate) fn timed_out(&self) {
        self.timeouts.increment(1);
    }
}

/// An operation on a remote, as `gateway_remote_operation_seconds` and
/// `gateway_remote_operation_errors_total` label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Backend::stat`].
    Stat,
    /// [`Backend::list`] (until the listing starts) and its pages' errors.
    List,
    /// [`Backend::open_read`].
    OpenRead,
    /// [`Backend::open_write`].
    OpenWrite,
    /// One [`FileReader::read_at`].
    Read,
    /// One [`FileWriter::write`].
    Write,
    /// [`FileWriter::close`].
    Close,
    /// [`Backend::mkdir`].
    Mkdir,
    /// [`Backend::remove`].
    Remove,
    /// [`Backend::rmdir`].
    Rmdir,
    /// [`Backend::rename`].
    Rename,
    /// [`Backend::set_modified`].
    SetModified,
    /// [`Backend::truncate`].
    Truncate,
    /// [`Backend::checksum`].
    Checksum,
}

impl Operation {
    /// Every operation, in label order.
    pub const ALL: [Operation; 14] = [
        Operation::Stat,
        Operation::List,
        Operation::OpenRead,
        Operation::OpenWrite,
        Operation::Read,
        Operation::Write,
        Operation::Close,
        Operation::Mkdir,
        Operation::Remove,
        Operation::Rmdir,
        Operation::Rename,
        Operation::SetModified,
        Operation::Truncate,
        Operation::Checksum,
    ];

    /// The label value (`open_read`, `set_modified`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Stat => "stat",
            Operation::List => "list",
            Operation::OpenRead => "open_read",
            Operation::OpenWrite => "open_write",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Close => "close",
            Operation::Mkdir => "mkdir",
            Operation::Remove => "remove",
            Operation::Rmdir => "rmdir",
            Operation::Rename => "rename",
            Operation::SetModified => "set_modified",
            Operation::Truncate => "truncate",
            Operation::Checksum => "checksum",
        }
    }
}

/// The handles of one instrumented remote, shared with its open files.
struct OperationMetrics {
    /// The remote's name, given to its errors ([`BackendError::in_remote`]).
    name: Arc<str>,
    remote: SharedString,
    bytes_read: Counter,
    bytes_written: Counter,
    /// One histogram per [`Operation`], in [`Operation::ALL`] order.
    seconds: [Histogram; Operation::ALL.len()],
}

impl OperationMetrics {
    fn new(name: &str) -> Self {
        let remote = remote_label(name);
        OperationMetrics {
            bytes_read: ::metrics::counter!(BYTES_READ, "remote" => remote.clone()),
            bytes_written: ::metrics::counter!(BYTES_WRITTEN, "remote" => remote.clone()),
            seconds: Operation::ALL.map(|op| {
                ::metrics::histogram!(
                    OPERATION_SECONDS,
                    "remote" => remote.clone(),
                    "operation" => op.as_str()
                )
            }),
            remote,
            name: Arc::from(name),
        }
    }

    /// Records how long `op` took since `started` and, if it failed, its
    /// error (error counters are registered on first use: errors are rare,
    /// and 14 operations × 12 kinds of empty series would be noise); an
    /// error comes back naming this remote.
    fn finish<T>(&self, op: Operation, started: Instant, result: Result<T>) -> Result<T> {
        self.seconds[op as usize].record(started.elapsed());
        result.map_err(|e| {
            self.error(op, e.kind());
            e.in_remote(&self.name)
        })
    }

    fn error(&self, op: Operation, kind: ErrorKind) {
        ::metrics::counter!(
            OPERATION_ERRORS,
            "remote" => self.remote.clone(),
            "operation" => op.as_str(),
            "kind" => kind.as_str()
        )
        .increment(1);
    }
}

/// A [`Backend`] that forwards everything to another one and measures it
/// for one remote: bytes read and written, the duration of each operation
/// and its errors (see the [module docs](self) for the metrics).
pub struct Instrumented {
    inner: Arc<dyn Backend>,
    metrics: Arc<OperationMetrics>,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("remote", &&*self.metrics.remote)
            .field("inner", &self.inner)
            .finish()
    }
}

impl Instrumented {
    /// Measures `inner` under the label `remote = <remote>`. Registers its
    /// handles with the recorder installed now.
    pub fn new(remote: &str, inner: Arc<dyn Backend>) -> Self {
        Instrumented {
            inner,
            metrics: Arc::new(OperationMetrics::new(remote)),
        }
    }

    /// The backend being measured.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    async fn timed<T>(&self, op: Operation, work: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        self.metrics.finish(op, started, work.await)
    }
}

#[async_trait]
impl Backend for Instrumented {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, path: &StoragePath) -> Result<Metadata> {
        self.timed(Operation::Stat, self.inner.stat(path)).await
    }

    async fn list(&self, path: &StoragePath) -> Result<ListStream> {
        let pages = self.timed(Operation::List, self.inner.list(path)).await?;
        let metrics = self.metrics.clone();
        Ok(pages
            .map(move |page| {
                page.map_err(|e| {
                    metrics.error(Operation::List, e.kind());
                    e.in_remote(&metrics.name)
                })
            })
            .boxed())
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let reader = self
            .timed(Operation::OpenRead, self.inner.open_read(path))
            .await?;
        Ok(Box::new(InstrumentedReader {
            inner: reader,
            metrics: self.metrics.clone(),
        }))
    }

    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>> {
        let writer = self
            .timed(Operation::OpenWrite, self.inner.open_write(path, mode))
            .await?;
        Ok(Box::new(InstrumentedWriter {
            inner: writer,
            metrics: self.metrics.clone(),
        }))
    }

    async fn mkdir(&self, path: &StoragePath) -> Result<()> {
        self.timed(Operation::Mkdir, self.inner.mkdir(path)).await
    }

    async fn remove(&self, path: &StoragePath) -> Result<()> {
        self.timed(Operation::Remove, self.inner.remove(path)).await
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        self.timed(Operation::Rmdir, self.inner.rmdir(path)).await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()> {
        self.timed(Operation::Rename, self.inner.rename(from, to, mode))
            .await
    }

    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        self.timed(
            Operation::SetModified,
            self.inner.set_modified(path, modified),
        )
        .await
    }

    async fn truncate(&self, path: &StoragePath, size: u64) -> Result<()> {
        self.timed(Operation::Truncate, self.inner.truncate(path, size))
            .await
    }

    /// Forwarded unmeasured (not a remote operation worth a series).
    async fn space(&self, path: &StoragePath) -> Result<SpaceInfo> {
        let metrics = &self.metrics;
        self.inner
            .space(path)
            .await
            .map_err(|e| e.in_remote(&metrics.name))
    }

    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        self.timed(Operation::Checksum, self.inner.checksum(path, kind))
            .await
    }

    fn local_file(&self, path: &StoragePath) -> Option<std::path::PathBuf> {
        self.inner.local_file(path)
    }
}

/// A reader that counts the bytes it delivers and times each read.
struct InstrumentedReader {
    inner: Box<dyn FileReader>,
    metrics: Arc<OperationMetrics>,
}

#[async_trait]
impl FileReader for InstrumentedReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let started = Instant::now();
        let result = self.metrics.finish(
            Operation::Read,
            started,
            self.inner.read_at(offset, len).await,
        );
        if let Ok(data) = &result {
            self.metrics.bytes_read.increment(data.len() as u64);
        }
        result
    }

    async fn metadata(&self) -> Result<Metadata> {
        let metrics = &self.metrics;
        self.inner
            .metadata()
            .await
            .map_err(|e| e.in_remote(&metrics.name))
    }
}

/// A writer that counts the bytes it accepts and times writes and close.
struct InstrumentedWriter {
    inner: Box<dyn FileWriter>,
    metrics: Arc<OperationMetrics>,
}

#[async_trait]
impl FileWriter for InstrumentedWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let started = Instant::now();
        let result = self
            .metrics
            .finish(Operation::Write, started, self.inner.write(data).await);
        if result.is_ok() {
            self.metrics.bytes_written.increment(len);
        }
        result
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let InstrumentedWriter { inner, metrics } = *self;
        let started = Instant::now();
        metrics.finish(Operation::Close, started, inner.close().await)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A recorder for tests that keeps every value readable (the
    //! `metrics-util` debugging recorder resets values on each snapshot).

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use ::metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    /// Samples of one histogram.
    #[derive(Debug, Default)]
    pub struct Samples(Mutex<Vec<f64>>);

    impl HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(value);
        }
    }

    /// Counters, gauges and histograms by `name{label=value,...}` (labels
    /// sorted by name).
    #[derive(Debug, Default)]
    pub struct TestRecorder {
        counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
    }

    fn render(name: &str, labels: &[(&str, &str)]) -> String {
        let mut labels = labels.to_vec();
        labels.sort();
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{name}{{{}}}", shown.join(","))
    }

    fn render_key(key: &Key) -> String {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        render(key.name(), &labels)
    }

    impl TestRecorder {
        /// A counter's value (0 if never registered).
        pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
            let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&render(name, labels))
                .map_or(0, |c| c.load(Ordering::SeqCst))
        }

        /// A gauge's value (`None` if never registered).
        pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let map = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&render(name, labels))
                .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
        }

        /// A histogram's samples (empty if never registered).
        pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
            let map = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&render(name, labels))
                .map(|h| h.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .unwrap_or_default()
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            Counter::from_arc(map.entry(render_key(key)).or_default().clone())
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut map = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
            Gauge::from_arc(map.entry(render_key(key)).or_default().clone())
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut map = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
            Histogram::from_arc(map.entry(render_key(key)).or_default().clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::TryStreamExt;

    use super::testing::TestRecorder;
    use super::*;
    use crate::dial::SourceAddresses;
    use crate::pool::PoolSettings;
    use crate::LocalBackend;

    fn p(s: &str) -> StoragePath {
        StoragePath::parse(s).unwrap()
    }

    fn local() -> (tempfile::TempDir, Instrumented) {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::open(dir.path()).unwrap());
        (dir, Instrumented::new("local", inner))
    }

    #[tokio::test]
    async fn the_wrapper_passes_the_conformance_suite() {
        let (_dir, backend) = local();
        crate::conformance::run_all(&backend).await;
        assert_eq!(backend.capabilities(), backend.inner().capabilities());
    }

    #[tokio::test]
    async fn bytes_durations_and_errors_are_counted() {
        let rec = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&rec);
        let (_dir, b) = local();
        let r = [("remote", "local")];
        let op = |name: &'static str| [("remote", "local"), ("operation", name)];

        let mut w = b
            .open_write(&p("f"), WriteMode::Replace { exclusive: false })
            .await
            .unwrap();
        w.write(Bytes::from(vec![7u8; 1000])).await.unwrap();
        w.write(Bytes::from(vec![8u8; 500])).await.unwrap();
        assert_eq!(w.position(), 1500);
        w.close().await.unwrap();
        assert_eq!(rec.counter(BYTES_WRITTEN, &r), 1500);
        assert_eq!(rec.samples(OPERATION_SECONDS, &op("write")).len(), 2);
        assert_eq!(rec.samples(OPERATION_SECONDS, &op("open_write")).len(), 1);
        assert_eq!(rec.samples(OPERATION_SECONDS, &op("close")).len(), 1);

        let reader = b.open_read(&p("f")).await.unwrap();
        assert_eq!(reader.read_at(0, 1024).await.unwrap().len(), 1024);
        assert_eq!(reader.read_at(1024, 1024).await.unwrap().len(), 476);
        assert!(reader.read_at(1500, 1024).await.unwrap().is_empty());
        assert_eq!(reader.metadata().await.unwrap().size, 1500);
        assert_eq!(rec.counter(BYTES_READ, &r), 1500);
        assert_eq!(rec.samples(OPERATION_SECONDS, &op("read")).len(), 3);

        let pages: Vec<_> = b
            .list(&StoragePath::root())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(pages.concat().len(), 1);
        assert_eq!(b.stat(&p("f")).await.unwrap().size, 1500);
        assert!(b.checksum(&p("f"), HashKind::Md5).await.unwrap().is_some());
        b.truncate(&p("f"), 10).await.unwrap();
        b.set_modified(&p("f"), SystemTime::UNIX_EPOCH)
            .await
            .unwrap();
        b.mkdir(&p("d")).await.unwrap();
        b.rename(&p("f"), &p("d/g"), RenameMode::NoReplace)
            .await
            .unwrap();
        b.remove(&p("d/g")).await.unwrap();
        b.rmdir(&p("d")).await.unwrap();
        assert!(b.space(&StoragePath::root()).await.is_ok());
        for name in Operation::ALL.map(Operation::as_str) {
            assert!(
                !rec.samples(OPERATION_SECONDS, &op(name)).is_empty(),
                "{name} was not timed"
            );
        }

        let err = b.stat(&p("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(b.open_read(&p("missing")).await.is_err());
        let errors = |operation, kind| {
            rec.counter(
                OPERATION_ERRORS,
                &[
                    ("remote", "local"),
                    ("operation", operation),
                    ("kind", kind),
                ],
            )
        };
        assert_eq!(errors("stat", "not_found"), 1);
        assert_eq!(errors("open_read", "not_found"), 1);
        assert!(b.list(&p("missing")).await.is_err());
        assert_eq!(errors("list", "not_found"), 1);
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn pool_settings() -> PoolSettings {
        PoolSettings {
            max: 2,
            wait: Duration::from_secs(5),
            idle: Duration::from_secs(30),
        }
    }

    #[derive(Debug)]
    struct AcceptAnyKey;

    impl crate::sftp::HostKeyPolicy for AcceptAnyKey {
        fn check_enabled(&self) -> Result<()> {
            Ok(())
        }
        fn verify(&self, _: &russh::keys::PublicKey) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn refused_connects_are_counted_as_refused() {
        let rec = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&rec);
        let sftp = crate::sftp::SftpBackend::new(crate::sftp::SftpSettings {
            name: "sftp-remote".into(),
            host: "127.0.0.1".into(),
            port: closed_port().await,
            username: "u".into(),
            password: Some("p".into()),
            private_key: None,
            root: String::new(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            host_keys: Arc::new(AcceptAnyKey),
            pool: pool_settings(),
            ssh: Default::default(),
            atomic_uploads: true,
        });
        let ftp = crate::ftp::FtpBackend::new(crate::ftp::FtpSettings {
            name: "ftp-remote".into(),
            host: "127.0.0.1".into(),
            port: closed_port().await,
            username: "u".into(),
            password: "p".into(),
            tls: crate::ftp::FtpTls::Never,
            certificate: crate::ftp::CertificateCheck::AllowAny,
            root: String::new(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            atomic_uploads: true,
            pool: pool_settings(),
        })
        .unwrap();
        for (remote, backend) in [
            ("sftp-remote", &sftp as &dyn Backend),
            ("ftp-remote", &ftp as &dyn Backend),
        ] {
            let err = backend.stat(&p("f")).await.unwrap_err();
            assert_eq!(
                err.connect_failure(),
                Some(crate::ConnectFailure::Refused),
                "{err}"
            );
            assert_eq!(rec.counter(CONNECT_ATTEMPTS, &[("remote", remote)]), 1);
            assert_eq!(
                rec.counter(
                    CONNECT_FAILURES,
                    &[("remote", remote), ("reason", "refused")]
                ),
                1,
                "{remote}"
            );
            assert_eq!(
                rec.gauge(CONNECTIONS, &[("remote", remote)]),
                Some(0.0),
                "{remote}: the failed connect freed its slot"
            );
        }
    }

    #[test]
    fn kinds_are_labelled_in_snake_case() {
        assert_eq!(ErrorKind::DirectoryNotEmpty.as_str(), "directory_not_empty");
        assert_eq!(ErrorKind::NotADirectory.as_str(), "not_a_directory");
        assert_eq!(Operation::OpenRead.as_str(), "open_read");
        assert_eq!(
            Operation::ALL[Operation::Checksum as usize],
            Operation::Checksum
        );
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "Operation::ALL is in declaration order");
        }
    }
}
