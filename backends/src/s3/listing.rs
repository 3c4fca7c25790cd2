//! Folder listings: `ListObjectsV2` with the `/` delimiter, page by page.
//! Common prefixes and marker objects become folders (each once), other
//! keys files; the folder's own marker is never listed, and neither are
//! names the tree cannot show.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;

use super::keys::child_name;
use super::objects::Bucket;
use crate::backend::{DirEntry, EntryKind, ListStream, Metadata};
use crate::{Result, StoragePath};

/// One listed object, as far as a listing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its `LastModified`.
    pub modified: Option<SystemTime>,
}

/// The entries of one page of the folder with prefix `prefix`.
pub fn assemble(prefix: &str, objects: &[Listed], prefixes: &[String]) -> Vec<DirEntry> {
    let mut folders: HashSet<&str> = HashSet::new();
    let mut entries = Vec::with_capacity(objects.len() + prefixes.len());
    for p in prefixes {
        if let Some(name) = child_name(prefix, p) {
            if folders.insert(name) {
                entries.push(folder(name, None));
            }
        }
    }
    for o in objects {
        let Some(name) = child_name(prefix, &o.key) else {
            continue;
        };
        if o.key.ends_with('/') {
            // A subfolder's marker (servers that do not roll it into a prefix).
            if folders.insert(name) {
                entries.push(folder(name, o.modified));
            }
            continue;
        }
        entries.push(DirEntry {
            name: name.to_string(),
            metadata: Metadata {
                kind: EntryKind::File,
                size: o.size,
                modified: o.modified,
                mode: None,
            },
        });
    }
    entries
}

fn folder(name: &str, modified: Option<SystemTime>) -> DirEntry {
    DirEntry {
        name: name.to_string(),
        metadata: Metadata {
            kind: EntryKind::Dir,
            size: 0,
            modified,
            mode: None,
        },
    }
}

/// One fetched page.
pub struct Page {
    /// Its entries.
    pub entries: Vec<DirEntry>,
    /// Keys and prefixes the server returned (the own marker included), to
    /// tell an empty folder from a missing one.
    pub returned: usize,
    /// The token of the next page.
    pub next: Option<String>,
}

/// Fetches the page after `token` of the folder with prefix `prefix`.
pub async fn fetch(
    bucket: &Bucket,
    path: &StoragePath,
    prefix: &str,
    token: Option<String>,
) -> Result<Page> {
    let mut request = bucket
        .client
        .list_objects_v2()
        .bucket(&bucket.info.bucket)
        .delimiter("/")
        .set_continuation_token(token);
    if !prefix.is_empty() {
        request = request.prefix(prefix);
    }
    let out = request
        .send()
        .await
        .map_err(|e| bucket.info.sdk("list", path.as_str(), e))?;
    let objects: Vec<Listed> = out
        .contents()
        .iter()
        .filter_map(|o| {
            Some(Listed {
                key: o.key()?.to_string(),
                size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                modified: o
                    .last_modified()
                    .and_then(|d| SystemTime::try_from(*d).ok()),
            })
        })
        .collect();
    let prefixes: Vec<String> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix().map(str::to_string))
        .collect();
    let next = match out.next_continuation_token() {
        Some(t) if out.is_truncated() == Some(true) => Some(t.to_string()),
        _ => None,
    };
    Ok(Page {
        entries: assemble(prefix, &objects, &prefixes),
        returned: objects.len() + prefixes.len(),
        next,
    })
}

/// The listing as a stream of non-empty pages, starting with `first`.
pub fn pages(bucket: Arc<Bucket>, path: StoragePath, prefix: String, first: Page) -> ListStream {
    struct State {
        bucket: Arc<Bucket>,
        path: StoragePath,
        prefix: String,
        ready: Option<Vec<DirEntry>>,
        next: Option<String>,
    }
    let state = State {
        bucket,
        path,
        prefix,
        ready: Some(first.entries),
        next: first.next,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            if let Some(entries) = st.ready.take() {
                if !entries.is_empty() {
                    return Some((Ok(entries), Some(st)));
                }
            }
            let token = st.next.take()?;
            match fetch(&st.bucket, &st.path, &st.prefix, Some(token)).await {
                Ok(page) => {
                    st.ready = Some(page.entries);
                    st.next = page.next;
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> Listed {
        Listed {
            key: key.to_string(),
            size,
            modified: None,
        }
    }

    fn names(entries: &[DirEntry]) -> Vec<(String, EntryKind, u64)> {
        let mut v: Vec<_> = entries
            .iter()
            .map(|e| (e.name.clone(), e.metadata.kind, e.metadata.size))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn prefixes_and_markers_are_folders_once_and_the_own_marker_is_hidden() {
        let objects = [
            obj("d/", 0),
            obj("d/a.txt", 5),
            obj("d/empty", 0),
            obj("d/m/", 0),
            obj("d/sub/", 0),
        ];
        let prefixes = ["d/sub/".to_string(), "d/x/".to_string()];
        let got = names(&assemble("d/", &objects, &prefixes));
        assert_eq!(
            got,
            [
                ("a.txt".to_string(), EntryKind::File, 5),
                ("empty".to_string(), EntryKind::File, 0),
                ("m".to_string(), EntryKind::Dir, 0),
                ("sub".to_string(), EntryKind::Dir, 0),
                ("x".to_string(), EntryKind::Dir, 0),
            ]
        );
    }

    #[test]
    fn the_root_and_unshowable_names() {
        let objects = [obj("top", 1), obj("./", 0), obj("..", 2), obj("a//", 0)];
        let prefixes = ["dir/".to_string(), "/".to_string()];
        let got = names(&assemble("", &objects, &prefixes));
        assert_eq!(
            got,
            [
                ("dir".to_string(), EntryKind::Dir, 0),
                ("top".to_string(), EntryKind::File, 1),
            ]
        );
    }

    #[test]
    fn an_empty_folder_lists_nothing() {
        assert!(assemble("d/", &[obj("d/", 0)], &[]).is_empty());
    }
}
