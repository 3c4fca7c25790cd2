//! Object keys as paths of the user's tree: `a/b.txt` is the file
//! `/a/b.txt`, `a/b/` is the folder `/a/b` (its zero-byte marker).
//!
//! Keys that a file system path would read differently are refused rather
//! than normalised, so one object never has two names: `..` and `.`
//! segments, empty segments (`a//b`), a leading `/`, NUL.

use crate::core::tree::VirtualPath;

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// A file.
    File(VirtualPath),
    /// A folder, named by its marker key `name/`.
    Folder(VirtualPath),
}

impl KeyTarget {
    /// The path, file or folder.
    pub fn path(&self) -> &VirtualPath {
        match self {
            KeyTarget::File(p) | KeyTarget::Folder(p) => p,
        }
    }
}

/// Why a key cannot name anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key `{key}` cannot name a file: {reason}")]
pub struct BadKey {
    /// The key (truncated for the message).
    pub key: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Maps an object key to the path it names.
pub fn parse_key(key: &str) -> Result<KeyTarget, BadKey> {
    let bad = |reason| BadKey {
        key: key.chars().take(200).collect(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.starts_with('/') {
        return Err(bad("it starts with `/`"));
    }
    if key.contains('\0') {
        return Err(bad("it contains a NUL character"));
    }
    let (body, folder) = match key.strip_suffix('/') {
        Some(b) => (b, true),
        None => (key, false),
    };
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad("it has an empty segment (`//`)")),
            "." | ".." => return Err(bad("it has a `.` or `..` segment")),
            _ => {}
        }
    }
    let path = VirtualPath::resolve(body).map_err(|_| bad("a name in it is too long"))?;
    Ok(if folder {
        KeyTarget::Folder(path)
    } else {
        KeyTarget::File(path)
    })
}

/// The folder part of a listing prefix and the start of names in it:
/// `a/b/c` is names starting with `c` in `/a/b`. `None` when the folder
/// part is not a valid path (so nothing can match).
pub fn split_prefix(prefix: &str) -> Option<(VirtualPath, String, &str)> {
    let (folder_key, name_start) = match prefix.rfind('/') {
        Some(i) => (&prefix[..=i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    let folder = if folder_key.is_empty() {
        VirtualPath::root()
    } else {
        match parse_key(folder_key).ok()? {
            KeyTarget::Folder(p) => p,
            KeyTarget::File(_) => return None,
        }
    };
    Some((folder, folder_key.to_string(), name_start))
}

/// The key prefix of everything inside `folder` (`""` for the root).
pub fn folder_key(folder: &VirtualPath) -> String {
    if folder.is_root() {
        String::new()
    } else {
        format!("{}/", &folder.as_str()[1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths() {
        assert_eq!(
            parse_key("a/b.txt").unwrap(),
            KeyTarget::File(VirtualPath::resolve("/a/b.txt").unwrap())
        );
        assert_eq!(
            parse_key("a/b/").unwrap(),
            KeyTarget::Folder(VirtualPath::resolve("/a/b").unwrap())
        );
        assert_eq!(
            parse_key("name with spaces ü").unwrap().path().as_str(),
            "/name with spaces ü"
        );
    }

    #[test]
    fn ambiguous_keys_are_refused() {
        for key in [
            "",
            "/a",
            "a//b",
            "../etc/passwd",
            "a/../../b",
            "a/./b",
            "a/..",
            "./",
            "/",
            "a\0b",
        ] {
            assert!(parse_key(key).is_err(), "{key:?} accepted");
        }
    }

    #[test]
    fn prefixes_split_into_folder_and_name_start() {
        let (f, k, n) = split_prefix("a/b/c").unwrap();
        assert_eq!((f.as_str(), k.as_str(), n), ("/a/b", "a/b/", "c"));
        let (f, k, n) = split_prefix("abc").unwrap();
        assert_eq!((f.as_str(), k.as_str(), n), ("/", "", "abc"));
        let (f, k, n) = split_prefix("a/").unwrap();
        assert_eq!((f.as_str(), k.as_str(), n), ("/a", "a/", ""));
        assert!(split_prefix("../x").is_none());
        assert_eq!(folder_key(&VirtualPath::resolve("/a/b").unwrap()), "a/b/");
        assert_eq!(folder_key(&VirtualPath::root()), "");
    }
}
