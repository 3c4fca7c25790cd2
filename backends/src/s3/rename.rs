//! Operations that S3 can only do by copying on the server: renames
//! (CopyObject, or UploadPartCopy above 5 GiB, then DeleteObject) and
//! setting a modification time (copying an object onto itself with new
//! metadata). None of them is atomic: a rename that fails after the copy
//! leaves both names, and "no replace" checks the target before copying,
//! so a writer in between is not noticed.

use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use super::mtime::{self, MTIME_KEY};
use super::objects::{Bucket, ContentHeaders, Found, ObjectInfo};
use crate::backend::RenameMode;
use crate::{ErrorKind, Result, StoragePath};

/// Keys copied (and then deleted) at once in a folder rename.
const KEYS_IN_FLIGHT: usize = 8;

/// Renames a file or, when allowed, a folder.
pub async fn rename(
    bucket: &Bucket,
    from: &StoragePath,
    to: &StoragePath,
    mode: RenameMode,
) -> Result<()> {
    const OP: &str = "rename";
    if from.is_root() || to.is_root() {
        return Err(bucket.info.error(
            ErrorKind::PermissionDenied,
            OP,
            from.as_str(),
            "the root folder cannot be renamed or replaced",
        ));
    }
    let source = bucket.lookup(from, OP).await?;
    let Some(source) = source else {
        return Err(bucket.info.error(
            ErrorKind::NotFound,
            OP,
            from.as_str(),
            "no such file or folder",
        ));
    };
    if from == to {
        return Ok(());
    }
    match source {
        Found::File(info) => rename_file(bucket, &info, from, to, mode).await,
        Found::Dir(_) => rename_folder(bucket, from, to).await,
    }
}

async fn rename_file(
    bucket: &Bucket,
    info: &ObjectInfo,
    from: &StoragePath,
    to: &StoragePath,
    mode: RenameMode,
) -> Result<()> {
    const OP: &str = "rename";
    match mode {
        RenameMode::NoReplace => {
            if bucket.lookup(to, OP).await?.is_some() {
                return Err(bucket.info.error(
                    ErrorKind::AlreadyExists,
                    OP,
                    to.as_str(),
                    "the target already exists",
                ));
            }
        }
        RenameMode::Replace => {
            if bucket.folder(to, OP).await?.is_some() {
                return Err(bucket.info.error(
                    ErrorKind::IsADirectory,
                    OP,
                    to.as_str(),
                    "the target is a folder",
                ));
            }
        }
    }
    bucket
        .copy(info, &bucket.keys.object(to), None, OP, to)
        .await?;
    bucket.delete(&info.key, OP, from).await
}

/// Copies every key under the folder, then deletes the originals; refused
/// unless `recursive_folder_rename` is on.
async fn rename_folder(bucket: &Bucket, from: &StoragePath, to: &StoragePath) -> Result<()> {
    const OP: &str = "rename";
    if !bucket.recursive_folder_rename {
        return Err(bucket.info.error(
            ErrorKind::Unsupported,
            OP,
            from.as_str(),
            "renaming a folder is not supported on this S3 remote: it means copying every \
             file in it (set recursive_folder_rename = true to allow that)",
        ));
    }
    if to.starts_with(from) {
        return Err(bucket.info.error(
            ErrorKind::InvalidPath,
            OP,
            to.as_str(),
            "a folder cannot be moved into itself",
        ));
    }
    if bucket.lookup(to, OP).await?.is_some() {
        return Err(bucket.info.error(
            ErrorKind::AlreadyExists,
            OP,
            to.as_str(),
            "the target already exists",
        ));
    }
    let src_prefix = bucket.keys.folder(from);
    let dst_prefix = bucket.keys.folder(to);
    let keys = bucket.all_under(&src_prefix, OP, from).await?;
    let copies: Vec<(String, u64, String)> = keys
        .iter()
        .map(|(key, size)| {
            let target = format!("{dst_prefix}{}", &key[src_prefix.len()..]);
            (key.clone(), *size, target)
        })
        .collect();
    futures::stream::iter(copies)
        .map(|(key, size, target)| async move {
            let info = if size > 5 * 1024 * 1024 * 1024 {
                // A copy in parts needs the content headers and metadata.
                match bucket.head(&key, OP, from).await? {
                    Some(info) => info,
                    None => return Ok(()),
                }
            } else {
                ObjectInfo {
                    key,
                    size,
                    modified: None,
                    etag: None,
                    metadata: Default::default(),
                    headers: ContentHeaders::default(),
                    md5: None,
                    crc32: None,
                }
            };
            bucket.copy(&info, &target, None, OP, to).await
        })
        .buffer_unordered(KEYS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    futures::stream::iter(keys.into_iter().map(|(key, _)| key))
        .map(|key| async move { bucket.delete(&key, OP, from).await })
        .buffer_unordered(KEYS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Stores `when` as the `mtime` of a file. A folder keeps no time of its
/// own (stat shows its marker's `LastModified`): nothing is done for it.
pub async fn set_modified(bucket: &Bucket, path: &StoragePath, when: SystemTime) -> Result<()> {
    const OP: &str = "set modification time";
    let info = match bucket.lookup(path, OP).await? {
        Some(Found::File(info)) => *info,
        Some(Found::Dir(_)) => return Ok(()),
        None => {
            return Err(bucket.info.error(
                ErrorKind::NotFound,
                OP,
                path.as_str(),
                "no such file or folder",
            ))
        }
    };
    let mut metadata = info.metadata.clone();
    metadata.insert(MTIME_KEY.to_string(), mtime::format(when));
    bucket
        .copy(&info, &info.key, Some(metadata), OP, path)
        .await
}
