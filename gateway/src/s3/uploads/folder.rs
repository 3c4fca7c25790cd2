//! Uploads staged in a folder of this node (`s3-uploads/<upload id>/` in
//! the state folder): one file per part, named by its number and MD5, and
//! the upload's description in `upload.json`. Used by a single node; a
//! cluster stages in its database ([`super::database`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{
    is_upload_id, new_upload_id, now_secs, random_hex, PartError, PartInfo, Stored, UploadInfo,
};
use crate::core::checksums::{Algorithm, ChecksumHasher};

/// The uploads folder.
#[derive(Debug, Clone)]
pub struct FolderUploads {
    dir: PathBuf,
}

impl FolderUploads {
    /// Uploads kept in `dir` (created when needed).
    pub fn new(dir: PathBuf) -> Self {
        FolderUploads { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn upload_dir(&self, id: &str) -> Option<PathBuf> {
        is_upload_id(id).then(|| self.dir.join(id))
    }

    /// Starts an upload; returns its id.
    pub async fn create(&self, info: &UploadInfo) -> io::Result<String> {
        let id = new_upload_id()?;
        let dir = self.dir.join(&id);
        tokio::fs::create_dir_all(&dir).await?;
        let json = serde_json::to_vec(info).map_err(io::Error::other)?;
        tokio::fs::write(dir.join("upload.json"), json).await?;
        Ok(id)
    }

    /// The upload `id`, if it exists.
    pub async fn info(&self, id: &str) -> io::Result<Option<UploadInfo>> {
        let Some(dir) = self.upload_dir(id) else {
            return Ok(None);
        };
        match tokio::fs::read(dir.join("upload.json")).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores part `number` of upload `id` from `body`, replacing an
    /// earlier copy of that part.
    pub async fn write_part<S, E>(
        &self,
        id: &str,
        number: i32,
        mut body: S,
    ) -> Result<PartInfo, PartError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: fmt::Display,
    {
        let dir = self
            .upload_dir(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        let tmp = dir.join(format!("incoming-{}", random_hex::<8>()?));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut md5 = ChecksumHasher::new(Algorithm::Md5);
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| PartError::Body(e.to_string()))?;
                md5.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok::<_, PartError>((size, md5.finish()))
        }
        .await;
        let (size, md5) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        for old in self.part_files(&dir, Some(number)).await? {
            if let Stored::File(file) = &old.stored {
                let _ = tokio::fs::remove_file(file).await;
            }
        }
        let file = dir.join(format!("part-{number:05}-{md5}"));
        tokio::fs::rename(&tmp, &file).await?;
        Ok(PartInfo {
            number,
            size,
            md5,
            modified: SystemTime::now(),
            stored: Stored::File(file),
        })
    }

    /// The parts of upload `id`, by number.
    pub async fn parts(&self, id: &str) -> io::Result<Vec<PartInfo>> {
        let dir = self
            .upload_dir(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such upload"))?;
        self.part_files(&dir, None).await
    }

    async fn part_files(&self, dir: &Path, only: Option<i32>) -> io::Result<Vec<PartInfo>> {
        let mut parts = Vec::new();
        let mut entries = tokio::fs::read_dir(dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("part-") else {
                continue;
            };
            let Some((number, md5)) = rest.split_once('-') else {
                continue;
            };
            let Ok(number) = number.parse::<i32>() else {
                continue;
            };
            if only.is_some_and(|n| n != number) {
                continue;
            }
            let meta = entry.metadata().await?;
            parts.push(PartInfo {
                number,
                size: meta.len(),
                md5: md5.to_string(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                stored: Stored::File(entry.path()),
            });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Removes upload `id` and its parts.
    pub async fn remove(&self, id: &str) -> io::Result<()> {
        match self.upload_dir(id) {
            Some(dir) => match tokio::fs::remove_dir_all(dir).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Removes uploads started more than `age` ago (a client that never
    /// completed nor aborted); returns how many.
    pub async fn remove_older_than(&self, age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let cutoff = now_secs().saturating_sub(age.as_secs());
        while let Some(entry) = entries.next_entry().await? {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let stale = match self.info(&id).await {
                Ok(Some(info)) => info.created < cutoff,
                Ok(None) => false,
                Err(_) => true,
            };
            if stale && is_upload_id(&id) {
                self.remove(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn parts_are_stored_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = FolderUploads::new(dir.path().join("u"));
        let info = UploadInfo {
            user: "alice".into(),
            key: "a/b".into(),
            created: super::super::created_now(),
            mtime: None,
        };
        let id = uploads.create(&info).await.unwrap();
        assert_eq!(uploads.info(&id).await.unwrap(), Some(info));
        assert_eq!(uploads.info("../../etc").await.unwrap(), None);
        uploads.write_part(&id, 2, body(&[b"world"])).await.unwrap();
        let p1 = uploads
            .write_part(&id, 1, body(&[b"hel", b"lo"]))
            .await
            .unwrap();
        assert_eq!(p1.md5, "5d41402abc4b2a76b9719d911017c592");
        uploads.write_part(&id, 2, body(&[b"there"])).await.unwrap();
        let parts = uploads.parts(&id).await.unwrap();
        assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
        let Stored::File(second) = &parts[1].stored else {
            panic!("a folder upload's part is a file")
        };
        assert_eq!(std::fs::read(second).unwrap(), b"there");
        assert!(super::super::multipart_etag(&parts).ends_with("-2"));
        uploads.remove(&id).await.unwrap();
        assert_eq!(uploads.info(&id).await.unwrap(), None);
        assert_eq!(uploads.remove_older_than(Duration::ZERO).await.unwrap(), 0);
    }
}
