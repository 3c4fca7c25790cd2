//! [`VirtualPath`]: a path in a user's tree, resolved from what a client
//! sent. A value type of its own, so that the configuration (mount paths)
//! and the running gateway's trees both use it without depending on each
//! other.

use std::fmt;

use backends::{PathError, StoragePath};

/// A normalised absolute path in a user's tree: `/`, `/a`, `/a/b`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

impl VirtualPath {
    /// The user's root.
    pub fn root() -> Self {
        VirtualPath("/".to_string())
    }

    /// Resolves a path sent by a client (absolute, or relative to `/`).
    pub fn resolve(client_path: &str) -> Result<Self, PathError> {
        if client_path.contains('\0') {
            return Err(PathError::NulByte);
        }
        let mut names: Vec<&str> = Vec::new();
        for name in client_path.split('/') {
            match name {
                "" | "." => {}
                ".." => {
                    names.pop();
                }
                n => names.push(n),
            }
        }
        // Length and per-name limits are checked by StoragePath's rules.
        let checked = StoragePath::from_names(names.iter().copied())?;
        Ok(VirtualPath(format!("/{}", checked.as_str())))
    }

    /// The path as text, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the user's root.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The containing folder (the root's parent is the root).
    pub fn parent(&self) -> VirtualPath {
        match self.0.rfind('/') {
            Some(0) | None => VirtualPath::root(),
            Some(i) => VirtualPath(self.0[..i].to_string()),
        }
    }

    /// The path relative to `/`, as backend names.
    pub(crate) fn relative(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtualPath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_never_leaves_the_root() {
        assert_eq!(
            VirtualPath::resolve("/../../etc/passwd").unwrap().as_str(),
            "/etc/passwd"
        );
        assert_eq!(VirtualPath::resolve("a/./b/../c").unwrap().as_str(), "/a/c");
        assert_eq!(VirtualPath::resolve("..").unwrap().as_str(), "/");
        assert_eq!(VirtualPath::resolve("").unwrap().as_str(), "/");
        assert!(VirtualPath::resolve("a\0b").is_err());
        assert!(VirtualPath::resolve(&"n".repeat(300)).is_err());
    }
}
