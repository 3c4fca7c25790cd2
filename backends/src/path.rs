//! Validated paths inside a backend: the only path type a backend accepts,
//! so no implementation has to re-check for `..`, NUL bytes or empty parts.

use std::fmt;

/// Longest single name accepted (the common file-system limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest whole path accepted.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A part is `..` or `.`, which could step outside the root.
    #[error("`{0}` is not allowed in a path")]
    DotSegment(String),
    /// The path contains a NUL byte.
    #[error("a path cannot contain a NUL byte")]
    NulByte,
    /// One name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("a name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// The whole path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    PathTooLong,
}

/// A normalised path relative to a backend's root: names joined by `/`,
/// no leading or trailing slash, no empty, `.` or `..` parts. The root
/// itself is the empty path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StoragePath(String);

impl StoragePath {
    /// The backend's root folder.
    pub fn root() -> Self {
        StoragePath(String::new())
    }

    /// Builds a path from names, refusing anything that could escape the
    /// root. Empty names (from `a//b` or a trailing `/`) are skipped.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, PathError> {
        let mut out = String::new();
        for name in names {
            if name.is_empty() {
                continue;
            }
            if name == "." || name == ".." {
                return Err(PathError::DotSegment(name.to_string()));
            }
            if name.contains('\0') {
                return Err(PathError::NulByte);
            }
            if name.len() > MAX_NAME_LEN {
                return Err(PathError::NameTooLong);
            }
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(name);
            if out.len() > MAX_PATH_LEN {
                return Err(PathError::PathTooLong);
            }
        }
        Ok(StoragePath(out))
    }

    /// Parses a `/`-separated relative path (leading slashes are ignored).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        Self::from_names(path.split('/'))
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as `a/b/c` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names, outermost first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|n| !n.is_empty())
    }

    /// The last name, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The containing folder, or `None` for the root.
    pub fn parent(&self) -> Option<StoragePath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => StoragePath(self.0[..i].to_string()),
            None => StoragePath::root(),
        })
    }

    /// This path with `other` appended.
    pub fn join(&self, other: &StoragePath) -> StoragePath {
        match (self.is_root(), other.is_root()) {
            (true, _) => other.clone(),
            (_, true) => self.clone(),
            _ => StoragePath(format!("{}/{}", self.0, other.0)),
        }
    }

    /// This path with one more name, validated.
    pub fn child(&self, name: &str) -> Result<StoragePath, PathError> {
        self.join_checked(name)
    }

    fn join_checked(&self, name: &str) -> Result<StoragePath, PathError> {
        let extra = StoragePath::from_names([name])?;
        Ok(self.join(&extra))
    }

    /// Whether `self` is `ancestor` or lies beneath it.
    pub fn starts_with(&self, ancestor: &StoragePath) -> bool {
        ancestor.is_root()
            || self.0 == ancestor.0
            || (self.0.starts_with(&ancestor.0)
                && self.0.as_bytes().get(ancestor.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoragePath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_slashes() {
        assert_eq!(StoragePath::parse("/a//b/").unwrap().as_str(), "a/b");
        assert!(StoragePath::parse("/").unwrap().is_root());
    }

    #[test]
    fn refuses_escapes_and_nul() {
        assert_eq!(
            StoragePath::parse("a/../b"),
            Err(PathError::DotSegment("..".into()))
        );
        assert!(StoragePath::parse("./a").is_err());
        assert_eq!(StoragePath::parse("a\0b"), Err(PathError::NulByte));
        assert_eq!(
            StoragePath::parse(&"x".repeat(256)),
            Err(PathError::NameTooLong)
        );
        let long = vec!["y".repeat(200); 30].join("/");
        assert_eq!(StoragePath::parse(&long), Err(PathError::PathTooLong));
    }

    #[test]
    fn parent_name_and_prefix() {
        let p = StoragePath::parse("a/b/c").unwrap();
        assert_eq!(p.file_name(), Some("c"));
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(
            StoragePath::parse("a").unwrap().parent(),
            Some(StoragePath::root())
        );
        assert!(p.starts_with(&StoragePath::parse("a/b").unwrap()));
        assert!(!p.starts_with(&StoragePath::parse("a/bc").unwrap()));
        assert!(!StoragePath::parse("a/bc")
            .unwrap()
            .starts_with(&StoragePath::parse("a/b").unwrap()));
        assert_eq!(p.to_string(), "/a/b/c");
    }
}
