//! ListObjectsV2 over a tree of folders: keys in S3's order (bytes of the
//! whole key), with or without the `/` delimiter, resumable after any key.
//!
//! A folder's keys all start with `name/`, so walking each folder's
//! children sorted by `name` (files) or `name/` (folders) visits keys in
//! S3 order; a resumed page skips every folder whose keys all sort before
//! the resume point without listing it. An empty folder shows as its
//! zero-byte marker `name/`, as an empty folder made by an S3 client
//! would, so clients that find folders by listing (our own S3 remotes do)
//! see it.

use std::time::SystemTime;

use async_trait::async_trait;
use backends::{DirEntry, EntryKind};
use futures::future::BoxFuture;

use super::paths::{folder_key, split_prefix};
use crate::core::tree::VirtualPath;

/// Where a listing reads folders from.
#[async_trait]
pub trait Folders: Send + Sync {
    /// The error of a failed listing.
    type Error: Send;
    /// The entries of `folder`; `None` when it does not exist or the user
    /// may not list it (both look the same to the client: nothing there).
    async fn entries(&self, folder: &VirtualPath) -> Result<Option<Vec<DirEntry>>, Self::Error>;
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An object: a file, or an empty folder's marker.
    Object {
        /// Its key.
        key: String,
        /// Size in bytes.
        size: u64,
        /// Modification time, when known.
        modified: Option<SystemTime>,
    },
    /// A common prefix (a folder, in a listing with a delimiter).
    Prefix(String),
}

impl Item {
    /// The key or prefix.
    pub fn key(&self) -> &str {
        match self {
            Item::Object { key, .. } | Item::Prefix(key) => key,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Objects and prefixes in key order.
    pub items: Vec<Item>,
    /// Whether more follow (resume after the last item's key).
    pub truncated: bool,
}

/// Lists up to `max` items whose keys start with `prefix` and sort after
/// `after`; with `delimited`, folders below the prefix's own level are
/// shown as common prefixes instead of their contents.
pub async fn list<F: Folders>(
    folders: &F,
    prefix: &str,
    delimited: bool,
    after: Option<&str>,
    max: usize,
) -> Result<Page, F::Error> {
    let Some((folder, fkey, name_start)) = split_prefix(prefix) else {
        return Ok(Page::default());
    };
    let mut items = Vec::new();
    let limit = max.saturating_add(1);
    if delimited {
        if let Some(entries) = folders.entries(&folder).await? {
            if name_start.is_empty() && !fkey.is_empty() && entries.is_empty() {
                items.push(marker(&fkey, None));
            }
            for e in entries {
                if !e.name.starts_with(name_start) {
                    continue;
                }
                match e.metadata.kind {
                    EntryKind::File => items.push(Item::Object {
                        key: format!("{fkey}{}", e.name),
                        size: e.metadata.size,
                        modified: e.metadata.modified,
                    }),
                    EntryKind::Dir => items.push(Item::Prefix(format!("{fkey}{}/", e.name))),
                    EntryKind::Other => {}
                }
            }
        }
        items.sort_by(|a, b| a.key().cmp(b.key()));
        if let Some(after) = after {
            items.retain(|i| i.key() > after);
        }
        items.truncate(limit);
    } else {
        walk(folders, folder, fkey, name_start, after, &mut items, limit).await?;
    }
    let truncated = items.len() > max;
    items.truncate(max);
    Ok(Page { items, truncated })
}

fn marker(key: &str, modified: Option<SystemTime>) -> Item {
    Item::Object {
        key: key.to_string(),
        size: 0,
        modified,
    }
}

/// Depth-first, in key order, until `out` holds `limit` items.
fn walk<'a, F: Folders>(
    folders: &'a F,
    folder: VirtualPath,
    fkey: String,
    name_start: &'a str,
    after: Option<&'a str>,
    out: &'a mut Vec<Item>,
    limit: usize,
) -> BoxFuture<'a, Result<(), F::Error>> {
    Box::pin(async move {
        let Some(entries) = folders.entries(&folder).await? else {
            return Ok(());
        };
        let is_after = |key: &str| after.is_none_or(|a| key > a);
        if name_start.is_empty() && !fkey.is_empty() && entries.is_empty() {
            if is_after(&fkey) {
                out.push(marker(&fkey, None));
            }
            return Ok(());
        }
        let mut children: Vec<(String, DirEntry)> = entries
            .into_iter()
            .filter(|e| e.name.starts_with(name_start))
            .filter_map(|e| match e.metadata.kind {
                EntryKind::File => Some((e.name.clone(), e)),
                EntryKind::Dir => Some((format!("{}/", e.name), e)),
                EntryKind::Other => None,
            })
            .collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (sort_key, entry) in children {
            if out.len() >= limit {
                return Ok(());
            }
            let key = format!("{fkey}{sort_key}");
            match entry.metadata.kind {
                EntryKind::Dir => {
                    // Every key below starts with `key`: skip the folder
                    // when they all sort before the resume point.
                    if let Some(a) = after {
                        if key.as_str() < a && !a.starts_with(&key) {
                            continue;
                        }
                    }
                    let Ok(sub) = VirtualPath::resolve(&format!("{}/{}", folder, entry.name))
                    else {
                        continue;
                    };
                    let sub_key = folder_key(&sub);
                    let before = out.len();
                    walk(folders, sub, sub_key, "", after, out, limit).await?;
                    // The marker of an empty folder carries the folder's time.
                    if out.len() == before + 1 {
                        if let Some(Item::Object {
                            key: k, modified, ..
                        }) = out.last_mut()
                        {
                            if *k == key {
                                *modified = entry.metadata.modified;
                            }
                        }
                    }
                }
                _ => {
                    if is_after(&key) {
                        out.push(Item::Object {
                            key,
                            size: entry.metadata.size,
                            modified: entry.metadata.modified,
                        });
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use backends::Metadata;

    use super::*;

    /// Folders from a list of file paths and empty folder paths.
    struct Fake(BTreeMap<String, Vec<DirEntry>>);

    fn entry(name: &str, kind: EntryKind) -> DirEntry {
        DirEntry {
            name: name.to_string(),
            metadata: Metadata {
                kind,
                size: 1,
                modified: None,
                mode: None,
            },
        }
    }

    impl Fake {
        fn new(files: &[&str], empty_dirs: &[&str]) -> Self {
            let mut map: BTreeMap<String, Vec<DirEntry>> = BTreeMap::new();
            map.insert("/".into(), vec![]);
            let mut add = |path: &str, kind: EntryKind| {
                let p = VirtualPath::resolve(path).unwrap();
                let mut cur = p.clone();
                let mut kind = kind;
                while !cur.is_root() {
                    let parent = cur.parent();
                    let name = cur.as_str().rsplit('/').next().unwrap().to_string();
                    let list = map.entry(parent.as_str().to_string()).or_default();
                    if !list.iter().any(|e| e.name == name) {
                        list.push(entry(&name, kind));
                    }
                    if kind == EntryKind::Dir {
                        map.entry(cur.as_str().to_string()).or_default();
                    }
                    kind = EntryKind::Dir;
                    cur = parent;
                }
            };
            for f in files {
                add(f, EntryKind::File);
            }
            for d in empty_dirs {
                add(d, EntryKind::Dir);
            }
            Fake(map)
        }
    }

    #[async_trait]
    impl Folders for Fake {
        type Error = ();
        async fn entries(&self, folder: &VirtualPath) -> Result<Option<Vec<DirEntry>>, ()> {
            Ok(self.0.get(folder.as_str()).cloned())
        }
    }

    fn keys(page: &Page) -> Vec<String> {
        page.items
            .iter()
            .map(|i| match i {
                Item::Prefix(p) => format!("P:{p}"),
                Item::Object { key, .. } => key.clone(),
            })
            .collect()
    }

    fn tree() -> Fake {
        Fake::new(
            &["a-b", "a/x", "a/y/z", "a.txt", "b", "c/d/e"],
            &["empty", "c/f"],
        )
    }

    #[tokio::test]
    async fn recursive_listing_is_in_key_order() {
        let page = list(&tree(), "", false, None, 1000).await.unwrap();
        let got = keys(&page);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
        assert_eq!(
            got,
            ["a-b", "a.txt", "a/x", "a/y/z", "b", "c/d/e", "c/f/", "empty/"]
        );
        assert!(!page.truncated);
    }

    #[tokio::test]
    async fn pages_resume_after_the_last_key() {
        let fake = tree();
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = list(&fake, "", false, after.as_deref(), 3).await.unwrap();
            all.extend(keys(&page));
            if !page.truncated {
                break;
            }
            after = page.items.last().map(|i| i.key().to_string());
        }
        assert_eq!(
            all,
            ["a-b", "a.txt", "a/x", "a/y/z", "b", "c/d/e", "c/f/", "empty/"]
        );
    }

    #[tokio::test]
    async fn delimiter_shows_folders_as_prefixes() {
        let fake = tree();
        let page = list(&fake, "", true, None, 1000).await.unwrap();
        assert_eq!(
            keys(&page),
            ["a-b", "a.txt", "P:a/", "b", "P:c/", "P:empty/"]
        );
        let page = list(&fake, "a/", true, None, 1000).await.unwrap();
        assert_eq!(keys(&page), ["a/x", "P:a/y/"]);
        let page = list(&fake, "c/f/", true, None, 1000).await.unwrap();
        assert_eq!(keys(&page), ["c/f/"]);
        let page = list(&fake, "a", true, None, 2).await.unwrap();
        assert_eq!(keys(&page), ["a-b", "a.txt"]);
        assert!(page.truncated);
        let page = list(&fake, "nothing/", true, None, 10).await.unwrap();
        assert!(page.items.is_empty());
        let page = list(&fake, "../", false, None, 10).await.unwrap();
        assert!(page.items.is_empty());
    }

    #[tokio::test]
    async fn prefix_filters_recursive_listing() {
        let fake = tree();
        let page = list(&fake, "a/y", false, None, 10).await.unwrap();
        assert_eq!(keys(&page), ["a/y/z"]);
        let page = list(&fake, "c/", false, Some("c/d/e"), 10).await.unwrap();
        assert_eq!(keys(&page), ["c/f/"]);
        let page = list(&fake, "empty/", false, None, 10).await.unwrap();
        assert_eq!(keys(&page), ["empty/"]);
    }
}
