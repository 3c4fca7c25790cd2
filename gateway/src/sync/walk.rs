//! Listing one side of a sync: every file under a folder, recursively, by
//! path relative to that folder, as the planner wants it.

use std::collections::BTreeSet;

use backends::{Backend, BackendError, EntryKind, StoragePath};
use futures::StreamExt;

use super::filter::PathFilter;
use super::plan::{FileState, Listing};

/// The files and folders under a sync's folder on one side.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Files the filter lets through, by relative path.
    pub files: Listing,
    /// Every folder below the top one, by relative path.
    pub folders: BTreeSet<String>,
}

/// What to leave out of a walk besides the filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions<'a> {
    /// A file name at the top folder that is not synced (the trigger file).
    pub skip_top_file: Option<&'a str>,
}

/// Lists `top` on `backend` recursively. A `top` that does not exist is
/// an error (the caller decides whether that is fine).
pub async fn walk(
    backend: &dyn Backend,
    top: &StoragePath,
    filter: &PathFilter,
    options: WalkOptions<'_>,
) -> Result<Snapshot, BackendError> {
    let mut tree = Snapshot::default();
    let mut pending = vec![(top.clone(), String::new())];
    while let Some((folder, relative)) = pending.pop() {
        let mut pages = backend.list(&folder).await?;
        while let Some(page) = pages.next().await {
            for entry in page? {
                let rel = if relative.is_empty() {
                    entry.name.clone()
                } else {
                    format!("{relative}/{}", entry.name)
                };
                match entry.metadata.kind {
                    EntryKind::Dir => {
                        let child = folder.child(&entry.name).map_err(|e| {
                            BackendError::new(
                                backends::ErrorKind::InvalidPath,
                                "list",
                                rel.clone(),
                                e.to_string(),
                            )
                        })?;
                        tree.folders.insert(rel.clone());
                        pending.push((child, rel));
                    }
                    EntryKind::File => {
                        if relative.is_empty() && options.skip_top_file == Some(entry.name.as_str())
                        {
                            continue;
                        }
                        if filter.matches(&rel) {
                            tree.files.insert(
                                rel,
                                FileState {
                                    size: entry.metadata.size,
                                    modified: entry.metadata.modified,
                                },
                            );
                        }
                    }
                    // Symlinks, devices: never followed, never synced.
                    EntryKind::Other => {}
                }
            }
        }
    }
    Ok(tree)
}

/// `top` joined with a relative path (`a/b.txt`) from a walk.
pub fn join(top: &StoragePath, relative: &str) -> Result<StoragePath, BackendError> {
    let rel = StoragePath::parse(relative).map_err(|e| {
        BackendError::new(
            backends::ErrorKind::InvalidPath,
            "sync",
            relative,
            e.to_string(),
        )
    })?;
    Ok(top.join(&rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backends::{LocalBackend, WriteMode};

    #[tokio::test]
    async fn lists_nested_files_and_folders_with_filter_and_skipped_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("top/a b/ü")).unwrap();
        std::fs::create_dir_all(root.join("top/empty")).unwrap();
        std::fs::write(root.join("top/x.csv"), b"12").unwrap();
        std::fs::write(root.join("top/DONE"), b"").unwrap();
        std::fs::write(root.join("top/a b/ü/y.csv"), b"123").unwrap();
        std::fs::write(root.join("top/a b/skip.tmp"), b"1").unwrap();
        let backend = LocalBackend::open(root).unwrap();
        // A hidden upload in progress is never listed.
        let _w = backend
            .open_write(
                &StoragePath::parse("top/z.csv").unwrap(),
                WriteMode::Replace { exclusive: false },
            )
            .await
            .unwrap();
        let filter = PathFilter::new(&[], &["*.tmp".to_string()]).unwrap();
        let tree = walk(
            &backend,
            &StoragePath::parse("top").unwrap(),
            &filter,
            WalkOptions {
                skip_top_file: Some("DONE"),
            },
        )
        .await
        .unwrap();
        let files: Vec<(&str, u64)> = tree
            .files
            .iter()
            .map(|(k, v)| (k.as_str(), v.size))
            .collect();
        assert_eq!(files, vec![("a b/ü/y.csv", 3), ("x.csv", 2)]);
        let folders: Vec<&str> = tree.folders.iter().map(String::as_str).collect();
        assert_eq!(folders, vec!["a b", "a b/ü", "empty"]);
        assert!(tree.files.values().all(|f| f.modified.is_some()));
    }
}
