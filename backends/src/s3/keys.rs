//! Storage paths as object keys under the remote's root prefix, and keys
//! back as names: the one place that knows how the tree is laid out in
//! the bucket.

use crate::StoragePath;

/// The key layout of one remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The root prefix: "" (the bucket's root) or `a/b/` (always ending in `/`).
    root: String,
}

impl Keys {
    /// The layout for a `root` prefix as configured; empty, leading,
    /// trailing and repeated slashes are ignored.
    pub fn new(root: &str) -> Self {
        let names: Vec<&str> = root.split('/').filter(|n| !n.is_empty()).collect();
        let mut root = names.join("/");
        if !root.is_empty() {
            root.push('/');
        }
        Keys { root }
    }

    /// The key of the object at `path` (the root prefix without its slash
    /// for the root itself, which is never an object).
    pub fn object(&self, path: &StoragePath) -> String {
        if path.is_root() {
            return self.root.trim_end_matches('/').to_string();
        }
        format!("{}{}", self.root, path.as_str())
    }

    /// The prefix of everything inside the folder `path`, which is also the
    /// key of its marker object: `root/path/` (the root prefix for the root).
    pub fn folder(&self, path: &StoragePath) -> String {
        if path.is_root() {
            return self.root.clone();
        }
        format!("{}{}/", self.root, path.as_str())
    }

    /// The root prefix ("" or ending in `/`).
    pub fn root(&self) -> &str {
        &self.root
    }
}

/// The name of a listed key or common prefix directly inside the folder
/// with prefix `prefix`: `None` for the folder's own marker, for keys
/// outside it, and for names that are not valid storage names (`.`, `..`,
/// empty, NUL bytes, too long), which the tree cannot show.
pub fn child_name<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    let name = rest.strip_suffix('/').unwrap_or(rest);
    if name.is_empty() || name.contains('/') {
        return None;
    }
    StoragePath::from_names([name]).ok()?;
    Some(name)
}

/// The `x-amz-copy-source` value for `key` in `bucket`: `bucket/key`,
/// percent-encoded except for unreserved characters and `/`.
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    for b in bucket
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(key.bytes())
    {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StoragePath {
        StoragePath::parse(s).unwrap()
    }

    #[test]
    fn root_prefix_is_normalised() {
        assert_eq!(Keys::new("").root(), "");
        assert_eq!(Keys::new("/").root(), "");
        assert_eq!(Keys::new("//a//b/").root(), "a/b/");
        assert_eq!(Keys::new("a").root(), "a/");
    }

    #[test]
    fn paths_map_to_keys_and_folder_prefixes() {
        let bare = Keys::new("");
        assert_eq!(bare.object(&p("a/B c")), "a/B c");
        assert_eq!(bare.folder(&p("a")), "a/");
        assert_eq!(bare.folder(&StoragePath::root()), "");
        let under = Keys::new("/base/x/");
        assert_eq!(under.object(&p("f.txt")), "base/x/f.txt");
        assert_eq!(under.folder(&p("d/e")), "base/x/d/e/");
        assert_eq!(under.folder(&StoragePath::root()), "base/x/");
        assert_eq!(under.object(&StoragePath::root()), "base/x");
    }

    #[test]
    fn child_names_skip_the_own_marker_and_bad_names() {
        assert_eq!(child_name("d/", "d/f"), Some("f"));
        assert_eq!(child_name("d/", "d/sub/"), Some("sub"));
        assert_eq!(child_name("", "top"), Some("top"));
        assert_eq!(child_name("d/", "d/"), None, "own marker");
        assert_eq!(child_name("d/", "d//"), None, "empty name");
        assert_eq!(child_name("d/", "d/../"), None);
        assert_eq!(child_name("d/", "d/."), None);
        assert_eq!(child_name("d/", "e/f"), None);
        assert_eq!(child_name("d/", "d/a/b"), None);
        assert_eq!(child_name("d/", "d/Case"), Some("Case"));
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(copy_source("bkt", "a/b c+d.txt"), "bkt/a/b%20c%2Bd.txt");
        assert_eq!(copy_source("bkt", "é"), "bkt/%C3%A9");
        assert_eq!(copy_source("bkt", "x~_-.y"), "bkt/x~_-.y");
    }
}
