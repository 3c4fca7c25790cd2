//! Live pool limits against a real OpenSSH sshd (an SFTP backend built
//! directly): lowering the cap while transfers hold every connection cuts
//! none of them, and the server sees the connections fall to the new cap
//! as they are returned and never rise above it again; raising the cap
//! serves the requests waiting at once.

use std::time::{Duration, Instant};

use backends::pool::PoolSettings;
use backends::sftp::{SftpBackend, SftpSettings};
use backends::{Backend, FileReader};
use e2e::direct::{pattern, put, runtime, storage_path};
use e2e::sshd::Sshd;

const SIZE: usize = 4 << 20;
const PIECE: usize = 256 * 1024;

fn settings(max: usize) -> PoolSettings {
    PoolSettings {
        max,
        wait: Duration::from_secs(60),
        idle: Duration::from_secs(60),
    }
}

/// Polls `check` every 20 ms for up to 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `len` bytes from `offset` and checks them against the pattern.
async fn read_and_check(r: &dyn FileReader, offset: usize, len: usize, seed: u8) {
    let want = pattern(SIZE, seed);
    let mut at = offset;
    while at < offset + len {
        let got = r
            .read_at(at as u64, PIECE.min(offset + len - at))
            .await
            .unwrap_or_else(|e| panic!("read at {at}: {e}"));
        assert!(!got.is_empty(), "early end of file at {at}");
        assert_eq!(&got[..], &want[at..at + got.len()], "content at {at}");
        at += got.len();
    }
}

#[test]
fn pool_limits_change_without_cutting_a_transfer() {
    let sshd = Sshd::start_default().unwrap();
    let root = sshd.remote_dir("reload").unwrap();
    runtime().block_on(async {
        let backend = SftpBackend::new(SftpSettings {
            pool: settings(6),
            ssh: Default::default(),
            atomic_uploads: true,
            ..sshd.backend_settings("reload", &root.display().to_string())
        });
        put(&backend, "f.bin", &pattern(SIZE, 7)).await;
        let file = storage_path("f.bin");

        // Six transfers, each holding a connection, half done.
        let mut readers = Vec::new();
        for _ in 0..6 {
            let r = backend.open_read(&file).await.unwrap();
            read_and_check(r.as_ref(), 0, SIZE / 2, 7).await;
            readers.push(r);
        }
        assert_eq!(backend.pool_stats().in_use, 6);
        // Two more requests wait for a connection.
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let b = backend.clone();
                let file = file.clone();
                tokio::spawn(async move {
                    let r = b.open_read(&file).await.expect("a waiting request failed");
                    read_and_check(r.as_ref(), 0, SIZE, 7).await;
                })
            })
            .collect();
        eventually("two requests wait", || backend.pool_stats().waiting == 2).await;

        backend.set_pool_settings(settings(2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            sshd.established_connections().unwrap(),
            6,
            "a connection in use was closed\n{}",
            sshd.logs()
        );
        // Every transfer finishes intact on its own connection.
        for r in &readers {
            read_and_check(r.as_ref(), SIZE / 2, SIZE / 2, 7).await;
        }
        // Returned connections are closed until two are left; meanwhile
        // the waiting requests keep waiting.
        for left in (2..6).rev() {
            drop(readers.pop());
            eventually(&format!("{left} connections are left"), || {
                backend.pool_stats().open == left
                    && sshd.established_connections().ok() == Some(left)
            })
            .await;
            assert_eq!(backend.pool_stats().waiting, 2);
        }
        let sampler = sshd.sampler();
        drop(readers);
        for w in waiting {
            w.await.unwrap();
        }
        // Many transfers at once: never more than two connections.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let b = backend.clone();
                let file = file.clone();
                tokio::spawn(async move {
                    let r = b.open_read(&file).await.unwrap();
                    read_and_check(r.as_ref(), 0, SIZE / 4, 7).await;
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let report = sampler.finish().unwrap();
        assert!(
            report.max <= 2,
            "sshd saw {} connections after the cap fell to 2\n{}",
            report.max,
            sshd.logs()
        );

        // Raised again: waiting requests get new connections at once.
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(backend.open_read(&file).await.unwrap());
        }
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let b = backend.clone();
                let file = file.clone();
                tokio::spawn(async move { b.open_read(&file).await.map(|_| ()) })
            })
            .collect();
        eventually("three requests wait", || backend.pool_stats().waiting == 3).await;
        backend.set_pool_settings(settings(5));
        for w in waiting {
            tokio::time::timeout(Duration::from_secs(20), w)
                .await
                .expect("a raised cap did not serve the waiting request")
                .unwrap()
                .unwrap();
        }
        assert_eq!(backend.pool_stats().open, 5);
        drop(held);
        eventually("every connection is returned", || {
            backend.pool_stats().in_use == 0
        })
        .await;
        let stats = backend.pool_stats();
        assert_eq!((stats.open, stats.waiting, stats.max), (5, 0, 5));
    });
}
