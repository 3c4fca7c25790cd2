//! Helpers for the tests that build a backend (`backends::sftp`, `ftp`,
//! `s3`) directly against a real server, without the gateway: the runtime
//! they run on, storage paths, test data, uploads and what an upload may
//! leave behind. The settings for each server are made by its harness
//! ([`crate::sshd::Sshd::backend_settings`],
//! [`crate::ftpd::FtpServer::backend_settings`],
//! [`crate::s3d::S3Server::backend_settings`]).

use std::path::Path;
use std::time::Duration;

use backends::pool::PoolSettings;
use backends::{Backend, StoragePath, WriteMode};
use bytes::Bytes;

use crate::sync::TEMP_PREFIX;

/// A multi-threaded tokio runtime with two workers (the test machines have
/// two cores), timers and I/O enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `s` as a storage path (panics if it is not one).
pub fn storage_path(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

/// `len` bytes that depend on `seed` and on their offset, so a piece read
/// from the wrong place or another file's content is seen.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// A connection pool of at most `max` connections; 30 s to wait for one,
/// 30 s idle before one is closed.
pub fn pool_settings(max: usize) -> PoolSettings {
    PoolSettings {
        max,
        wait: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    }
}

/// Writes `data` to `path` (replacing it) in writes of at most `piece`
/// bytes; panics naming the path if opening or closing fails.
pub async fn put_in_pieces(b: &dyn Backend, path: &str, data: &[u8], piece: usize) {
    let mut w = b
        .open_write(&storage_path(path), WriteMode::Replace { exclusive: false })
        .await
        .unwrap_or_else(|e| panic!("open_write {path}: {e}"));
    for chunk in data.chunks(piece) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.close()
        .await
        .unwrap_or_else(|e| panic!("close {path}: {e}"));
}

/// Writes `data` to `path` (replacing it) in writes of at most 1 MiB.
pub async fn put(b: &dyn Backend, path: &str, data: &[u8]) {
    put_in_pieces(b, path, data, 1 << 20).await;
}

/// Every file and folder under `root` (full paths) whose path contains
/// [`TEMP_PREFIX`]: the hidden temporary uploads a backend left behind.
/// Panics if a folder cannot be read.
pub fn upload_leftovers(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.display().to_string());
            if path.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut all = vec![];
    walk(root, &mut all);
    all.retain(|p| p.contains(TEMP_PREFIX));
    all
}
