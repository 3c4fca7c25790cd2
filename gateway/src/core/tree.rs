//! A user's virtual tree: the one place where a path sent by a client is
//! resolved, and the mount table that says which storage serves it.
//!
//! Client paths are resolved lexically against the user's root: `.` is
//! dropped, `..` steps up but never above `/`, so `/../../etc` is the
//! user's own `/etc`. The result is a [`VirtualPath`]; the mount table then
//! maps it to a backend and a validated [`StoragePath`].

use std::sync::Arc;

use backends::{Backend, StoragePath};

pub use crate::virtual_path::VirtualPath;

/// One folder of the tree served by a storage.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Where it appears in the user's tree.
    pub at: VirtualPath,
    /// The storage serving it.
    pub backend: Arc<dyn Backend>,
    /// The folder of that storage that appears at `at`.
    pub base: StoragePath,
}

/// Where a virtual path lives.
#[derive(Debug, Clone)]
pub struct Location {
    /// The storage.
    pub backend: Arc<dyn Backend>,
    /// The path within it.
    pub path: StoragePath,
    /// Index of the mount in the tree (two paths on one mount share it).
    pub mount: usize,
}

/// A user's tree: mounts, the longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct Tree {
    mounts: Vec<Mount>,
}

impl Tree {
    /// A tree where `base` of `backend` is the user's whole `/`.
    pub fn single(backend: Arc<dyn Backend>, base: StoragePath) -> Self {
        Tree {
            mounts: vec![Mount {
                at: VirtualPath::root(),
                backend,
                base,
            }],
        }
    }

    /// `root` serves `/`, and each of `mounts` the folder it is mounted at.
    pub fn with_mounts(root: Arc<dyn Backend>, mounts: Vec<Mount>) -> Self {
        let mut all = vec![Mount {
            at: VirtualPath::root(),
            backend: root,
            base: StoragePath::root(),
        }];
        all.extend(mounts);
        Tree { mounts: all }
    }

    /// Finds the storage and path serving `path`.
    pub fn locate(&self, path: &VirtualPath) -> Location {
        let (index, mount) = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| is_under(path, &m.at))
            .max_by_key(|(_, m)| m.at.as_str().len())
            .unwrap_or((0, &self.mounts[0]));
        let rest = &path.relative()[mount.at.relative().len()..];
        // `path` was validated by VirtualPath::resolve, so this cannot fail;
        // fall back to the mount's base rather than panic.
        let sub = StoragePath::parse(rest).unwrap_or_default();
        Location {
            backend: mount.backend.clone(),
            path: mount.base.join(&sub),
            mount: index,
        }
    }
}

fn is_under(path: &VirtualPath, at: &VirtualPath) -> bool {
    at.is_root()
        || path.as_str() == at.as_str()
        || (path.as_str().starts_with(at.as_str())
            && path.as_str().as_bytes().get(at.as_str().len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(
            VirtualPath::resolve("/a/b").unwrap().parent().as_str(),
            "/a"
        );
        assert_eq!(VirtualPath::resolve("/a").unwrap().parent().as_str(), "/");
        assert!(VirtualPath::root().parent().is_root());
    }

    #[test]
    fn locates_under_home() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
        let tree = Tree::single(backend, StoragePath::parse("alice").unwrap());
        let loc = tree.locate(&VirtualPath::resolve("/../x/y").unwrap());
        assert_eq!(loc.path.as_str(), "alice/x/y");
        assert_eq!(tree.locate(&VirtualPath::root()).path.as_str(), "alice");
    }

    #[test]
    fn the_longest_mount_wins() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn Backend> = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
        let mount = |at: &str, base: &str| Mount {
            at: VirtualPath::resolve(at).unwrap(),
            backend: local.clone(),
            base: StoragePath::parse(base).unwrap(),
        };
        let tree = Tree::with_mounts(
            local.clone(),
            vec![mount("/p", "remote"), mount("/p/deep", "other")],
        );
        assert_eq!(
            tree.locate(&VirtualPath::resolve("/p/x").unwrap())
                .path
                .as_str(),
            "remote/x"
        );
        assert_eq!(tree.locate(&VirtualPath::resolve("/p/x").unwrap()).mount, 1);
        assert_eq!(
            tree.locate(&VirtualPath::resolve("/p").unwrap())
                .path
                .as_str(),
            "remote"
        );
        assert_eq!(
            tree.locate(&VirtualPath::resolve("/p/deep/y").unwrap())
                .path
                .as_str(),
            "other/y"
        );
        assert_eq!(tree.locate(&VirtualPath::resolve("/px").unwrap()).mount, 0);
    }
}
