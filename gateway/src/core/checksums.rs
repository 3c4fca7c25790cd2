//! Checksums of files in a user's tree, for the SSH checksum commands
//! (`md5sum` and friends, see [`crate::ssh::exec`]) and the S3 endpoint's ETags.
//!
//! Where a checksum comes from:
//! - a file in the gateway's own storage is read through once and its
//!   checksum kept in the state store ([`Table::Checksums`]), valid while
//!   the file's size and modification time stay the same;
//! - a file on a remote is asked of the remote first
//!   ([`backends::Backend::checksum`]: an S3 ETag that is an MD5, `md5sum` run by an
//!   SFTP server, an FTP server's `HASH`), and read through the gateway
//!   when the remote has no answer.
//!
//! Reading keeps several reads in flight and hashes each piece on the
//! blocking pool, so a large file never holds up the async workers.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use backends::hash::{hex, Hasher as BackendHasher};
use backends::{BackendError, ErrorKind, FileReader, HashKind, Metadata};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::core::tree::Location;
use crate::state::{StateStore, Table};

/// How much one read takes while streaming a file.
const CHUNK: usize = 256 * 1024;

/// How many reads of one file are in flight at once.
const IN_FLIGHT: usize = 8;

/// A checksum algorithm the gateway computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (`md5sum`).
    Md5,
    /// SHA-1 (`sha1sum`).
    Sha1,
    /// SHA-256 (`sha256sum`).
    Sha256,
    /// CRC-32 as zlib computes it (`crc32` from Archive::Zip).
    Crc32,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Md5,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Crc32,
    ];

    /// The lowercase name (`md5`, `sha1`, `sha256`, `crc32`), as cache keys
    /// and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Crc32 => "crc32",
        }
    }

    /// The command that prints it (`md5sum`, ..., `crc32`).
    pub fn command(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5sum",
            Algorithm::Sha1 => "sha1sum",
            Algorithm::Sha256 => "sha256sum",
            Algorithm::Crc32 => "crc32",
        }
    }

    /// The algorithm a command name asks for (`md5sum` gives MD5); `None`
    /// for any other command.
    pub fn from_command(command: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.command() == command)
    }

    /// How many hex digits its checksum has.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
            Algorithm::Crc32 => 8,
        }
    }

    /// The same algorithm as the backends know it, when they do (remotes
    /// can only be asked for these).
    fn hash_kind(self) -> Option<HashKind> {
        match self {
            Algorithm::Md5 => Some(HashKind::Md5),
            Algorithm::Crc32 => Some(HashKind::Crc32),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }
}

/// A running checksum of one [`Algorithm`], fed piece by piece.
#[derive(Clone)]
pub struct ChecksumHasher(State);

#[derive(Clone)]
enum State {
    /// MD5 and CRC-32: the backends' own hasher.
    Backend(BackendHasher),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl std::fmt::Debug for ChecksumHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChecksumHasher")
    }
}

impl ChecksumHasher {
    /// A hasher that has seen no bytes yet.
    pub fn new(algorithm: Algorithm) -> Self {
        ChecksumHasher(match algorithm {
            Algorithm::Md5 => State::Backend(BackendHasher::new(HashKind::Md5)),
            Algorithm::Crc32 => State::Backend(BackendHasher::new(HashKind::Crc32)),
            Algorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
        })
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Backend(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The checksum of every byte added, as lowercase hex.
    pub fn finish(self) -> String {
        match self.0 {
            State::Backend(h) => h.finish(),
            State::Sha1(h) => hex(&h.finalize()),
            State::Sha256(h) => hex(&h.finalize()),
        }
    }

    /// Adds `data` on the blocking pool (hashing a large piece would
    /// otherwise hold an async worker) and gives the hasher back.
    pub async fn update_off_thread(mut self, data: bytes::Bytes) -> Result<Self, ChecksumError> {
        tokio::task::spawn_blocking(move || {
            self.update(&data);
            self
        })
        .await
        .map_err(|e| ChecksumError::Task(e.to_string()))
    }
}

/// The checksum of `data` as lowercase hex.
pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> String {
    let mut h = ChecksumHasher::new(algorithm);
    h.update(data);
    h.finish()
}

/// Why a checksum could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// The storage refused or failed (missing file, a folder, a lost
    /// connection); its kind says which.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The hashing task died (a panic on the blocking pool).
    #[error("checksum computation failed: {0}")]
    Task(String),
}

/// A cached checksum as stored: valid for exactly this size and time.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Cached {
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
    hex: String,
}

/// Computes checksums and keeps those of the gateway's own files.
pub struct Checksums {
    store: Arc<dyn StateStore>,
}

impl std::fmt::Debug for Checksums {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checksums").finish_non_exhaustive()
    }
}

impl Checksums {
    /// Checksums cached in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Checksums { store }
    }

    /// Computes (or takes from the cache / the remote) the checksum of the
    /// file at `loc`, as lowercase hex.
    pub async fn of(&self, loc: &Location, algorithm: Algorithm) -> Result<String, ChecksumError> {
        if let Some(file) = loc.backend.local_file(&loc.path) {
            return self.of_local(loc, &file, algorithm).await;
        }
        if let Some(kind) = algorithm.hash_kind() {
            if let Some(hex) = loc.backend.checksum(&loc.path, kind).await? {
                return Ok(hex);
            }
        }
        let reader = loc.backend.open_read(&loc.path).await?;
        let meta = reader.metadata().await?;
        if meta.is_dir() {
            // Some servers (OpenSSH) open a folder and fail only on reading.
            return Err(BackendError::new(
                ErrorKind::IsADirectory,
                "checksum",
                loc.path.as_str(),
                "is a folder",
            )
            .into());
        }
        stream(reader.as_ref(), meta.size, algorithm).await
    }

    /// Only a cached value valid for `meta` (no I/O beyond the store).
    pub fn cached(&self, loc: &Location, meta: &Metadata, algorithm: Algorithm) -> Option<String> {
        let file = loc.backend.local_file(&loc.path)?;
        self.lookup(&key(&file, algorithm), meta)
    }

    /// Records a checksum computed elsewhere (e.g. while an upload
    /// streamed) for the file as `meta` describes it. Only files in the
    /// gateway's own storage are kept; a store failure is logged, as the
    /// value can always be computed again.
    pub fn remember(&self, loc: &Location, meta: &Metadata, algorithm: Algorithm, hex: &str) {
        let Some(file) = loc.backend.local_file(&loc.path) else {
            return;
        };
        self.store_value(&key(&file, algorithm), meta, hex);
    }

    async fn of_local(
        &self,
        loc: &Location,
        file: &std::path::Path,
        algorithm: Algorithm,
    ) -> Result<String, ChecksumError> {
        let key = key(file, algorithm);
        let reader = loc.backend.open_read(&loc.path).await?;
        let before = reader.metadata().await?;
        if let Some(hex) = self.lookup_off_thread(&key, &before).await {
            return Ok(hex);
        }
        let hex = stream(reader.as_ref(), before.size, algorithm).await?;
        // Keep it only if the file did not change while it was read.
        let after = loc.backend.stat(&loc.path).await?;
        if same_version(&before, &after) {
            let store = self.store.clone();
            let value = hex.clone();
            let _ = tokio::task::spawn_blocking(move || {
                Checksums { store }.store_value(&key, &after, &value)
            })
            .await;
        }
        Ok(hex)
    }

    async fn lookup_off_thread(&self, key: &str, meta: &Metadata) -> Option<String> {
        let store = self.store.clone();
        let (key, meta) = (key.to_string(), meta.clone());
        tokio::task::spawn_blocking(move || Checksums { store }.lookup(&key, &meta))
            .await
            .ok()
            .flatten()
    }

    fn lookup(&self, key: &str, meta: &Metadata) -> Option<String> {
        let (secs, nanos) = mtime(meta)?;
        let raw = match self.store.get(Table::Checksums, key) {
            Ok(raw) => raw?,
            Err(e) => {
                tracing::warn!("checksum cache: {e}");
                return None;
            }
        };
        let cached: Cached = serde_json::from_slice(&raw).ok()?;
        (cached.size == meta.size && cached.mtime_secs == secs && cached.mtime_nanos == nanos)
            .then_some(cached.hex)
    }

    fn store_value(&self, key: &str, meta: &Metadata, hex: &str) {
        let Some((mtime_secs, mtime_nanos)) = mtime(meta) else {
            return;
        };
        let value = Cached {
            size: meta.size,
            mtime_secs,
            mtime_nanos,
            hex: hex.to_string(),
        };
        let Ok(bytes) = serde_json::to_vec(&value) else {
            return;
        };
        if let Err(e) = self.store.put(Table::Checksums, key, &bytes) {
            tracing::warn!("checksum cache: {e}");
        }
    }
}

/// The cache key: algorithm and the file's path on disk.
fn key(file: &std::path::Path, algorithm: Algorithm) -> String {
    format!("{}:{}", algorithm.name(), file.display())
}

/// A file's modification time as seconds and nanoseconds since 1970;
/// `None` when it has none (nothing is cached then).
fn mtime(meta: &Metadata) -> Option<(u64, u32)> {
    let since = meta
        .modified?
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Some((since.as_secs(), since.subsec_nanos()))
}

/// Whether two looks at a file saw the same content (same size and time).
fn same_version(a: &Metadata, b: &Metadata) -> bool {
    a.size == b.size && a.modified.is_some() && a.modified == b.modified
}

/// Reads the first `size` bytes of `reader` with several reads in flight
/// and hashes them in order on the blocking pool. A read may return fewer
/// bytes than asked; the gap is read again before the next piece. Stops
/// early if the file turns out shorter.
async fn stream(
    reader: &dyn FileReader,
    size: u64,
    algorithm: Algorithm,
) -> Result<String, ChecksumError> {
    let mut hasher = ChecksumHasher::new(algorithm);
    let mut pos = 0u64;
    let chunk = CHUNK as u64;
    let mut reads = futures::stream::iter((0..size.div_ceil(chunk)).map(|i| i * chunk))
        .map(|offset| async move { (offset, reader.read_at(offset, CHUNK).await) })
        .buffered(IN_FLIGHT);
    while let Some((offset, data)) = reads.next().await {
        let data = data?;
        if !fill_gap(reader, &mut hasher, &mut pos, offset).await? {
            return Ok(hasher.finish());
        }
        if data.is_empty() {
            return Ok(hasher.finish());
        }
        pos += data.len() as u64;
        hasher = hasher.update_off_thread(data).await?;
    }
    fill_gap(reader, &mut hasher, &mut pos, size).await?;
    Ok(hasher.finish())
}

/// Reads and hashes from `pos` up to `until` (what short reads left out);
/// false if the file ended first.
async fn fill_gap(
    reader: &dyn FileReader,
    hasher: &mut ChecksumHasher,
    pos: &mut u64,
    until: u64,
) -> Result<bool, ChecksumError> {
    while *pos < until {
        let want = usize::try_from(until - *pos).unwrap_or(CHUNK).min(CHUNK);
        let data = reader.read_at(*pos, want).await?;
        if data.is_empty() {
            return Ok(false);
        }
        *pos += data.len() as u64;
        let h = std::mem::replace(hasher, ChecksumHasher::new(Algorithm::Crc32));
        *hasher = h.update_off_thread(data).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::{Backend, LocalBackend, StoragePath};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn known_values() {
        let cases = [
            (Algorithm::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (Algorithm::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (
                Algorithm::Sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (Algorithm::Crc32, "00000000"),
        ];
        for (a, empty) in cases {
            assert_eq!(of_bytes(a, b""), empty, "{a:?}");
            assert_eq!(of_bytes(a, b"").len(), a.hex_len());
        }
        assert_eq!(
            of_bytes(Algorithm::Sha1, b"hello\n"),
            "f572d396fae9206628714fb2ce00f72e94f2258f"
        );
        assert_eq!(
            of_bytes(Algorithm::Sha256, b"hello\n"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(of_bytes(Algorithm::Crc32, b"hello\n"), "363a3020");
        let mut h = ChecksumHasher::new(Algorithm::Sha256);
        h.update(b"hel");
        h.update(b"lo\n");
        assert_eq!(h.finish(), of_bytes(Algorithm::Sha256, b"hello\n"));
    }

    #[test]
    fn command_names() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_command(a.command()), Some(a));
        }
        assert_eq!(Algorithm::from_command("md5"), None);
        assert_eq!(Algorithm::from_command("MD5SUM"), None);
        assert_eq!(Algorithm::from_command("sha512sum"), None);
    }

    /// A store that counts its reads and writes.
    #[derive(Default)]
    struct Counting {
        inner: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
        puts: AtomicUsize,
    }

    impl StateStore for Counting {
        fn get(
            &self,
            table: Table,
            key: &str,
        ) -> Result<Option<Vec<u8>>, crate::state::StateError> {
            assert_eq!(table, Table::Checksums);
            Ok(self.inner.lock().unwrap().get(key).cloned())
        }
        fn put(&self, _: Table, key: &str, value: &[u8]) -> Result<(), crate::state::StateError> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            self.inner
                .lock()
                .unwrap()
                .insert(key.to_string(), value.to_vec());
            Ok(())
        }
        fn put_if_absent(
            &self,
            t: Table,
            key: &str,
            value: &[u8],
        ) -> Result<bool, crate::state::StateError> {
            self.put(t, key, value).map(|()| true)
        }
        fn list(&self, _: Table) -> Result<Vec<(String, Vec<u8>)>, crate::state::StateError> {
            Ok(Vec::new())
        }
        fn delete(&self, _: Table, key: &str) -> Result<bool, crate::state::StateError> {
            Ok(self.inner.lock().unwrap().remove(key).is_some())
        }
    }

    fn location(backend: Arc<dyn Backend>, path: &str) -> Location {
        Location {
            backend,
            path: StoragePath::parse(path).unwrap(),
            mount: 0,
        }
    }

    #[tokio::test]
    async fn local_checksums_are_cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        let content: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::open(dir.path()).unwrap());
        let store = Arc::new(Counting::default());
        let sums = Checksums::new(store.clone());
        let loc = location(backend.clone(), "f.bin");

        let first = sums.of(&loc, Algorithm::Md5).await.unwrap();
        assert_eq!(first, of_bytes(Algorithm::Md5, &content));
        assert_eq!(store.puts.load(Ordering::SeqCst), 1);
        let meta = backend.stat(&loc.path).await.unwrap();
        assert_eq!(
            sums.cached(&loc, &meta, Algorithm::Md5).as_deref(),
            Some(first.as_str())
        );
        assert_eq!(sums.cached(&loc, &meta, Algorithm::Sha1), None);

        // Served from the cache: a planted value shows it was not recomputed.
        sums.remember(
            &loc,
            &meta,
            Algorithm::Md5,
            "0123456789abcdef0123456789abcdef",
        );
        assert_eq!(
            sums.of(&loc, Algorithm::Md5).await.unwrap(),
            "0123456789abcdef0123456789abcdef"
        );

        // Same size, another modification time: computed again.
        let later = meta.modified.unwrap() + Duration::from_secs(5);
        backend.set_modified(&loc.path, later).await.unwrap();
        assert_eq!(sums.of(&loc, Algorithm::Md5).await.unwrap(), first);

        // Another size (same time): computed again.
        let mut longer = content.clone();
        longer.push(1);
        std::fs::write(&file, &longer).unwrap();
        backend.set_modified(&loc.path, later).await.unwrap();
        let meta = backend.stat(&loc.path).await.unwrap();
        assert_eq!(sums.cached(&loc, &meta, Algorithm::Md5), None);
        assert_eq!(
            sums.of(&loc, Algorithm::Md5).await.unwrap(),
            of_bytes(Algorithm::Md5, &longer)
        );
        // Every algorithm agrees with hashing the bytes at once.
        for a in Algorithm::ALL {
            assert_eq!(
                sums.of(&loc, a).await.unwrap(),
                of_bytes(a, &longer),
                "{a:?}"
            );
        }
    }

    #[tokio::test]
    async fn missing_files_and_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::open(dir.path()).unwrap());
        let sums = Checksums::new(Arc::new(Counting::default()));
        let kind = |r: Result<String, ChecksumError>| match r {
            Err(ChecksumError::Backend(e)) => e.kind(),
            other => panic!("expected a backend error, got {other:?}"),
        };
        assert_eq!(
            kind(
                sums.of(&location(backend.clone(), "nope"), Algorithm::Md5)
                    .await
            ),
            backends::ErrorKind::NotFound
        );
        assert_eq!(
            kind(sums.of(&location(backend, "d"), Algorithm::Md5).await),
            backends::ErrorKind::IsADirectory
        );
    }

    /// A reader that gives at most 1000 bytes per read, to exercise the
    /// gap filling.
    struct Stingy(Vec<u8>);

    #[async_trait::async_trait]
    impl FileReader for Stingy {
        async fn read_at(&self, offset: u64, len: usize) -> backends::Result<bytes::Bytes> {
            let start = (offset as usize).min(self.0.len());
            let end = (start + len.min(1000)).min(self.0.len());
            Ok(bytes::Bytes::copy_from_slice(&self.0[start..end]))
        }
        async fn metadata(&self) -> backends::Result<Metadata> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn short_reads_are_filled_in() {
        let content: Vec<u8> = (0..(CHUNK * 2 + 5)).map(|i| (i % 13) as u8).collect();
        let reader = Stingy(content.clone());
        assert_eq!(
            stream(&reader, content.len() as u64, Algorithm::Sha1)
                .await
                .unwrap(),
            of_bytes(Algorithm::Sha1, &content)
        );
        // A file shorter than it was said to be: its bytes, no error.
        assert_eq!(
            stream(&reader, content.len() as u64 + 10_000, Algorithm::Crc32)
                .await
                .unwrap(),
            of_bytes(Algorithm::Crc32, &content)
        );
    }
}
