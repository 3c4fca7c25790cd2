//! One verified copy: a file goes from one backend to another so that the
//! destination never shows a partial file under its final name, a source
//! that changes while it is read is not copied, and the copy counts only
//! once the destination's size (and, where it can give one, checksum)
//! matches the bytes read.

use std::time::SystemTime;

use backends::hash::Hasher;
use backends::local::hidden_upload_path;
use backends::{
    Backend, BackendError, ErrorKind, FileReader, FileWriter, HashKind, Metadata, RenameMode,
    StoragePath, WriteMode,
};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};

/// Bytes asked for by one read.
const CHUNK: usize = 256 * 1024;
/// Reads in flight at once (hides the round trip of remote readers).
const READS_IN_FLIGHT: usize = 4;

/// What to copy.
pub struct CopyRequest<'a> {
    /// Where the file is.
    pub from: &'a dyn Backend,
    /// Its path there.
    pub from_path: &'a StoragePath,
    /// Where it goes.
    pub to: &'a dyn Backend,
    /// Its path there.
    pub to_path: &'a StoragePath,
    /// Its size when the run listed it.
    pub planned_size: u64,
    /// The modification time to give the copy (the source's, as listed).
    pub modified: Option<SystemTime>,
    /// Told the number of bytes each time more reach the destination.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

/// How a copy was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The destination gave this checksum and it matched.
    Checksum(HashKind),
    /// No checksum both sides could give: the sizes matched.
    Size,
}

/// How a copy ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// The file is at the destination, verified.
    Copied {
        /// Its size.
        bytes: u64,
        /// How it was verified.
        verified: Verified,
        /// The source as it was when the copy was published (what a later
        /// delete must still find).
        source: Metadata,
    },
    /// The source changed while it was copied (still being written):
    /// nothing was published; a later run copies it.
    SourceChanged(String),
    /// The source was gone before its copy began (listed, then renamed or
    /// removed by its writer): nothing was written.
    SourceVanished,
}

/// Copies one file; see the module documentation for the guarantees.
pub async fn copy_file(req: &CopyRequest<'_>) -> Result<CopyOutcome, BackendError> {
    let before = match req.from.stat(req.from_path).await {
        Ok(before) => before,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(CopyOutcome::SourceVanished),
        Err(e) => return Err(e),
    };
    if before.size != req.planned_size {
        return Ok(CopyOutcome::SourceChanged(format!(
            "its size changed from {} to {} bytes since it was listed",
            req.planned_size, before.size
        )));
    }
    let target = Target::open(req.to, req.to_path).await?;
    let reader = match req.from.open_read(req.from_path).await {
        Ok(reader) => reader,
        Err(e) => {
            let _ = target.writer.abort().await;
            if e.kind() == ErrorKind::NotFound {
                return Ok(CopyOutcome::SourceVanished);
            }
            return Err(e);
        }
    };
    let mut writer = target.writer;
    let mut hashes = Hashes::default();
    let streamed = stream(
        reader.as_ref(),
        writer.as_mut(),
        before.size,
        &mut hashes,
        req.progress,
    )
    .await;
    drop(reader);
    let read = match streamed {
        Ok(n) => n,
        Err(e) => {
            let _ = writer.abort().await;
            return Err(e);
        }
    };
    let after = match req.from.stat(req.from_path).await {
        Ok(after) => after,
        Err(e) => {
            let _ = writer.abort().await;
            if e.kind() == ErrorKind::NotFound {
                return Ok(CopyOutcome::SourceChanged("it was removed".to_string()));
            }
            return Err(e);
        }
    };
    if let Some(why) = changed(&before, &after, read) {
        let _ = writer.abort().await;
        return Ok(CopyOutcome::SourceChanged(why));
    }
    writer.close().await?;
    if let Some(temp) = &target.temp {
        if let Err(e) = req.to.rename(temp, req.to_path, RenameMode::Replace).await {
            let _ = req.to.remove(temp).await;
            return Err(e);
        }
    }
    let verified = match verify(req.to, req.to_path, read, &hashes).await? {
        Ok(v) => v,
        Err(mismatch) => {
            // A copy that does not match must not pass for one: remove it
            // so the next run copies the file again.
            let _ = req.to.remove(req.to_path).await;
            return Err(BackendError::new(
                ErrorKind::Other,
                "verify",
                req.to_path.as_str(),
                mismatch,
            ));
        }
    };
    if let Some(modified) = req.modified {
        if req.to.capabilities().set_modified {
            if let Err(e) = req.to.set_modified(req.to_path, modified).await {
                tracing::warn!(
                    path = req.to_path.as_str(),
                    "copied, but its modification time could not be set: {e}"
                );
            }
        }
    }
    Ok(CopyOutcome::Copied {
        bytes: read,
        verified,
        source: after,
    })
}

/// Where a copy is written: straight to the final name when the backend
/// publishes on close, else a hidden name renamed into place.
struct Target {
    writer: Box<dyn FileWriter>,
    temp: Option<StoragePath>,
}

impl Target {
    async fn open(to: &dyn Backend, path: &StoragePath) -> Result<Target, BackendError> {
        let mode = WriteMode::Replace { exclusive: false };
        if to.capabilities().atomic_replace {
            return Ok(Target {
                writer: to.open_write(path, mode).await?,
                temp: None,
            });
        }
        let temp = hidden_upload_path(path)?;
        Ok(Target {
            writer: to.open_write(&temp, mode).await?,
            temp: Some(temp),
        })
    }
}

/// Reads the whole source into the writer, a few reads ahead; returns the
/// bytes read. Reading past `expected` stops at once (the file grows).
async fn stream(
    reader: &dyn FileReader,
    writer: &mut dyn FileWriter,
    expected: u64,
    hashes: &mut Hashes,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<u64, BackendError> {
    let mut in_flight = FuturesOrdered::new();
    let mut next_offset = 0u64;
    let mut done = 0u64;
    // One read past the expected end must come back empty.
    let limit = expected + 1;
    loop {
        while in_flight.len() < READS_IN_FLIGHT && next_offset < limit {
            let offset = next_offset;
            let len = (limit - offset).min(CHUNK as u64) as usize;
            in_flight.push_back(async move { (offset, reader.read_at(offset, len).await) });
            next_offset += len as u64;
        }
        let Some((offset, result)) = in_flight.next().await else {
            return Ok(done);
        };
        let data: Bytes = result?;
        if offset != done {
            // A short read earlier: the file ended (or shrank) before here.
            return Ok(done);
        }
        if data.is_empty() {
            return Ok(done);
        }
        done += data.len() as u64;
        if done > expected {
            return Ok(done);
        }
        hashes.update(&data);
        let len = data.len() as u64;
        writer.write(data).await?;
        if let Some(progress) = progress {
            progress(len);
        }
        if done < offset + CHUNK as u64 && done < expected {
            // Short read inside the file: ask for the rest from here.
            in_flight.clear();
            next_offset = done;
        }
    }
}

/// Why the source counts as changed, comparing its stat before and after.
fn changed(before: &Metadata, after: &Metadata, read: u64) -> Option<String> {
    if read != before.size {
        return Some(format!(
            "it was {} bytes when the copy started and {read} bytes were read",
            before.size
        ));
    }
    if after.size != before.size {
        return Some(format!(
            "its size changed from {} to {} bytes during the copy",
            before.size, after.size
        ));
    }
    if after.modified != before.modified {
        return Some("it was modified during the copy".to_string());
    }
    None
}

/// Checks the published copy against what was read: `Ok(Err(why))` when
/// it does not match.
async fn verify(
    to: &dyn Backend,
    path: &StoragePath,
    bytes: u64,
    hashes: &Hashes,
) -> Result<Result<Verified, String>, BackendError> {
    let meta = to.stat(path).await?;
    if meta.size != bytes {
        return Ok(Err(format!(
            "the copy is {} bytes where {bytes} were sent",
            meta.size
        )));
    }
    for kind in HashKind::ALL {
        let Some(theirs) = to.checksum(path, kind).await? else {
            continue;
        };
        let ours = hashes.hex(kind);
        if theirs.eq_ignore_ascii_case(&ours) {
            return Ok(Ok(Verified::Checksum(kind)));
        }
        return Ok(Err(format!(
            "the copy's {} is {theirs} where the bytes sent give {ours}",
            kind.name()
        )));
    }
    Ok(Ok(Verified::Size))
}

/// MD5 and CRC-32 of the bytes sent, so any checksum the destination
/// offers can be compared without reading the copy back.
struct Hashes([Hasher; 2]);

impl Default for Hashes {
    fn default() -> Self {
        Hashes(HashKind::ALL.map(Hasher::new))
    }
}

impl Hashes {
    fn update(&mut self, data: &[u8]) {
        for h in &mut self.0 {
            h.update(data);
        }
    }

    fn hex(&self, kind: HashKind) -> String {
        self.0
            .iter()
            .find(|h| h.kind() == kind)
            .map_or_else(String::new, |h| h.clone().finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::LocalBackend;

    fn path(p: &str) -> StoragePath {
        StoragePath::parse(p).unwrap()
    }

    #[tokio::test]
    async fn copies_verifies_and_sets_the_time() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(a.path().join("f"), &content).unwrap();
        let from = LocalBackend::open(a.path()).unwrap();
        let to = LocalBackend::open(b.path()).unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let moved = std::sync::atomic::AtomicU64::new(0);
        let progress = |n| {
            moved.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let outcome = copy_file(&CopyRequest {
            from: &from,
            from_path: &path("f"),
            to: &to,
            to_path: &path("g"),
            planned_size: content.len() as u64,
            modified: Some(t),
            progress: Some(&progress),
        })
        .await
        .unwrap();
        assert_eq!(
            moved.load(std::sync::atomic::Ordering::Relaxed),
            content.len() as u64,
            "progress reports every byte"
        );
        let CopyOutcome::Copied {
            bytes, verified, ..
        } = outcome
        else {
            panic!("not copied: {outcome:?}");
        };
        assert_eq!(bytes, content.len() as u64);
        assert_eq!(verified, Verified::Checksum(HashKind::Md5));
        assert_eq!(std::fs::read(b.path().join("g")).unwrap(), content);
        assert_eq!(to.stat(&path("g")).await.unwrap().modified, Some(t));
    }

    #[tokio::test]
    async fn a_file_that_grew_since_listing_is_not_copied() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("f"), b"0123456789").unwrap();
        let from = LocalBackend::open(a.path()).unwrap();
        let to = LocalBackend::open(b.path()).unwrap();
        let outcome = copy_file(&CopyRequest {
            from: &from,
            from_path: &path("f"),
            to: &to,
            to_path: &path("f"),
            planned_size: 5,
            modified: None,
            progress: None,
        })
        .await
        .unwrap();
        assert!(matches!(outcome, CopyOutcome::SourceChanged(_)));
        assert_eq!(std::fs::read_dir(b.path()).unwrap().count(), 0);
    }

    #[test]
    fn hashes_match_the_usual_tools() {
        let mut h = Hashes::default();
        h.update(b"hello\n");
        assert_eq!(h.hex(HashKind::Md5), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(h.hex(HashKind::Crc32), "363a3020");
        let empty = Hashes::default();
        assert_eq!(empty.hex(HashKind::Md5), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(empty.hex(HashKind::Crc32), "00000000");
    }
}
