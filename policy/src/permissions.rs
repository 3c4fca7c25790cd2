//! Per-path permissions: what a user may do in which virtual folder.
//!
//! A user's rules map absolute virtual folder paths to a [`PermissionSet`].
//! The rule with the longest folder prefix (on whole path components) wins,
//! so `/upload` can be write-only while `/` is read-only. A path no rule
//! covers gets no permissions at all (fail closed).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// One operation a user may be allowed to perform on a virtual path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// List a folder's entries and stat paths.
    List,
    /// Open files for reading (download).
    Read,
    /// Create or overwrite files (upload).
    Write,
    /// Remove files and empty folders.
    Delete,
    /// Rename or move entries.
    Rename,
    /// Create folders.
    Mkdir,
}

impl Permission {
    /// Every permission, in a fixed order (used for parsing and display).
    pub const ALL: [Permission; 6] = [
        Permission::List,
        Permission::Read,
        Permission::Write,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
    ];

    /// The lowercase word used in configuration files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
        }
    }

    /// The bit this permission occupies in a [`PermissionSet`].
    fn bit(self) -> u8 {
        match self {
            Permission::List => 1 << 0,
            Permission::Read => 1 << 1,
            Permission::Write => 1 << 2,
            Permission::Delete => 1 << 3,
            Permission::Rename => 1 << 4,
            Permission::Mkdir => 1 << 5,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a permission name; names the bad word and the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{word}` (allowed: list, read, write, delete, rename, mkdir)")]
pub struct PermissionParseError {
    /// The word that could not be parsed.
    pub word: String,
}

impl FromStr for Permission {
    type Err = PermissionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PermissionParseError { word: s.to_owned() })
    }
}

/// A small copyable set of [`Permission`]s (a bit set).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// Every permission.
    pub const ALL: PermissionSet = PermissionSet(0b11_1111);

    /// No permission at all.
    pub const fn empty() -> Self {
        PermissionSet(0)
    }

    /// Whether `perm` is in the set.
    pub fn contains(self, perm: Permission) -> bool {
        self.0 & perm.bit() != 0
    }

    /// Adds `perm` to the set.
    pub fn insert(&mut self, perm: Permission) {
        self.0 |= perm.bit();
    }

    /// Whether the set holds no permission.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in [`Permission::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::empty();
        for perm in iter {
            set.insert(perm);
        }
        set
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A permission rule's folder path that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRuleError {
    /// The path does not start with `/`.
    #[error("permission rule path `{path}` must be absolute (start with `/`)")]
    NotAbsolute {
        /// The path as configured.
        path: String,
    },
    /// The path contains a `.` or `..` component.
    #[error("permission rule path `{path}` must not contain `.` or `..` components")]
    DotComponent {
        /// The path as configured.
        path: String,
    },
    /// Two rules name the same folder (after normalisation).
    #[error("permission rule path `{path}` is given more than once")]
    Duplicate {
        /// The normalised path.
        path: String,
    },
}

/// A user's permission rules: virtual folder path -> permissions there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPermissions {
    /// Normalised folder path ("/" or "/a/b", no trailing slash) -> set.
    rules: HashMap<String, PermissionSet>,
}

impl PathPermissions {
    /// Builds the rules from (virtual folder path, set) pairs.
    ///
    /// Paths are absolute virtual paths like "/", "/upload", "/a/b"; a
    /// trailing slash is normalised away ("/upload/" == "/upload") and so are
    /// repeated slashes. A path not starting with '/', a path with `.` or
    /// `..` components, or the same folder given twice is an error.
    pub fn new(
        rules: impl IntoIterator<Item = (String, PermissionSet)>,
    ) -> Result<Self, PathRuleError> {
        let mut map = HashMap::new();
        for (path, set) in rules {
            let normalised = normalise_rule_path(&path)?;
            if map.insert(normalised.clone(), set).is_some() {
                return Err(PathRuleError::Duplicate { path: normalised });
            }
        }
        Ok(PathPermissions { rules: map })
    }

    /// Full access everywhere (used when a user has no rules).
    pub fn full() -> Self {
        PathPermissions {
            rules: HashMap::from([("/".to_owned(), PermissionSet::ALL)]),
        }
    }

    /// The permissions that apply at `path` (an absolute, normalised virtual
    /// path such as "/a/b.txt"): those of the rule with the longest folder
    /// prefix matching on whole path components ("/up" does not match
    /// "/upload/x"). If no rule matches, or `path` is not absolute, the
    /// empty set.
    pub fn at(&self, path: &str) -> PermissionSet {
        if !path.starts_with('/') {
            return PermissionSet::empty();
        }
        let mut candidate = path.trim_end_matches('/');
        loop {
            if candidate.is_empty() {
                return self
                    .rules
                    .get("/")
                    .copied()
                    .unwrap_or(PermissionSet::empty());
            }
            if let Some(set) = self.rules.get(candidate) {
                return *set;
            }
            // Drop the last component: "/a/b" -> "/a" -> "".
            candidate = match candidate.rfind('/') {
                Some(idx) => candidate[..idx].trim_end_matches('/'),
                None => "",
            };
        }
    }

    /// Whether `perm` is allowed at `path` (see [`PathPermissions::at`]).
    pub fn allows(&self, path: &str, perm: Permission) -> bool {
        self.at(path).contains(perm)
    }
}

/// Turns a configured rule path into the canonical "/a/b" form.
fn normalise_rule_path(path: &str) -> Result<String, PathRuleError> {
    if !path.starts_with('/') {
        return Err(PathRuleError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if component == "." || component == ".." {
            return Err(PathRuleError::DotComponent {
                path: path.to_owned(),
            });
        }
        out.push('/');
        out.push_str(component);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(perms: &[Permission]) -> PermissionSet {
        perms.iter().copied().collect()
    }

    #[test]
    fn permission_display_and_parse_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.to_string().parse::<Permission>().unwrap(), p);
        }
        assert_eq!(Permission::Mkdir.to_string(), "mkdir");
        assert_eq!("list".parse::<Permission>().unwrap(), Permission::List);
    }

    #[test]
    fn permission_parse_error_names_word_and_allowed() {
        let err = "upload".parse::<Permission>().unwrap_err();
        assert_eq!(err.word, "upload");
        let msg = err.to_string();
        assert!(msg.contains("`upload`"), "{msg}");
        for p in Permission::ALL {
            assert!(msg.contains(p.as_str()), "{msg}");
        }
        // Parsing is exact: no case folding, no whitespace trimming.
        assert!("Read".parse::<Permission>().is_err());
        assert!(" read".parse::<Permission>().is_err());
    }

    #[test]
    fn permission_serde_uses_lowercase_words() {
        // Round-trip through the serde data model via a tiny deserializer.
        use serde::de::value::{Error as DeError, StrDeserializer};
        use serde::de::IntoDeserializer;
        use serde::Deserialize;
        let de: StrDeserializer<'_, DeError> = "rename".into_deserializer();
        assert_eq!(Permission::deserialize(de).unwrap(), Permission::Rename);
        let de: StrDeserializer<'_, DeError> = "Rename".into_deserializer();
        assert!(Permission::deserialize(de).is_err());
    }

    #[test]
    fn permission_set_basics() {
        let mut s = PermissionSet::empty();
        assert!(s.is_empty());
        for p in Permission::ALL {
            assert!(!s.contains(p));
        }
        s.insert(Permission::Read);
        s.insert(Permission::Read);
        assert!(s.contains(Permission::Read));
        assert!(!s.contains(Permission::Write));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Permission::Read]);

        for p in Permission::ALL {
            assert!(PermissionSet::ALL.contains(p));
        }
        assert_eq!(PermissionSet::ALL, Permission::ALL.into_iter().collect());
        assert_eq!(PermissionSet::default(), PermissionSet::empty());
    }

    #[test]
    fn permission_set_debug_shows_names() {
        let s = set(&[Permission::Write, Permission::List]);
        assert_eq!(format!("{s:?}"), "{List, Write}");
        assert_eq!(format!("{:?}", PermissionSet::empty()), "{}");
    }

    #[test]
    fn rule_paths_are_normalised() {
        let p = PathPermissions::new([
            ("/upload/".to_owned(), set(&[Permission::Write])),
            ("//a//b/".to_owned(), set(&[Permission::Read])),
        ])
        .unwrap();
        assert_eq!(p.at("/upload/x"), set(&[Permission::Write]));
        assert_eq!(p.at("/a/b/c"), set(&[Permission::Read]));
        assert_eq!(normalise_rule_path("/").unwrap(), "/", "root stays root");
        assert_eq!(normalise_rule_path("///").unwrap(), "/");
    }

    #[test]
    fn rule_path_errors() {
        let err = PathPermissions::new([("upload".to_owned(), PermissionSet::ALL)]).unwrap_err();
        assert_eq!(
            err,
            PathRuleError::NotAbsolute {
                path: "upload".into()
            }
        );
        assert!(err.to_string().contains("start with `/`"));

        let err = PathPermissions::new([("".to_owned(), PermissionSet::ALL)]).unwrap_err();
        assert!(matches!(err, PathRuleError::NotAbsolute { .. }));

        let err = PathPermissions::new([("/a/../b".to_owned(), PermissionSet::ALL)]).unwrap_err();
        assert!(matches!(err, PathRuleError::DotComponent { .. }));

        let err = PathPermissions::new([
            ("/upload".to_owned(), PermissionSet::ALL),
            ("/upload/".to_owned(), PermissionSet::empty()),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            PathRuleError::Duplicate {
                path: "/upload".into()
            }
        );
    }

    #[test]
    fn longest_prefix_wins_on_whole_components() {
        let read = set(&[Permission::List, Permission::Read]);
        let write = set(&[Permission::List, Permission::Write, Permission::Mkdir]);
        let none = PermissionSet::empty();
        let p = PathPermissions::new([
            ("/".to_owned(), read),
            ("/upload".to_owned(), write),
            ("/upload/private".to_owned(), none),
            ("/up".to_owned(), PermissionSet::ALL),
        ])
        .unwrap();

        assert_eq!(p.at("/"), read);
        assert_eq!(p.at("/file.txt"), read);
        assert_eq!(p.at("/upload"), write);
        assert_eq!(p.at("/upload/"), write);
        assert_eq!(p.at("/upload/x"), write);
        assert_eq!(p.at("/upload/sub/deeper/x"), write);
        assert_eq!(p.at("/upload/private"), none);
        assert_eq!(p.at("/upload/private/secret"), none);
        assert_eq!(p.at("/upload/privateer"), write);
        assert_eq!(p.at("/up"), PermissionSet::ALL);
        assert_eq!(p.at("/up/x"), PermissionSet::ALL);
        assert_eq!(p.at("/uploads"), read, "/upload must not match /uploads");

        assert!(p.allows("/upload/x", Permission::Write));
        assert!(!p.allows("/upload/x", Permission::Read));
        assert!(!p.allows("/upload/private/x", Permission::List));
    }

    #[test]
    fn no_matching_rule_means_no_permission() {
        let p = PathPermissions::new([("/upload".to_owned(), PermissionSet::ALL)]).unwrap();
        assert_eq!(p.at("/"), PermissionSet::empty());
        assert_eq!(p.at("/other/x"), PermissionSet::empty());
        assert_eq!(p.at("/up"), PermissionSet::empty());
        assert!(p.allows("/upload/x", Permission::Delete));

        let nothing = PathPermissions::new(Vec::new()).unwrap();
        assert_eq!(nothing.at("/"), PermissionSet::empty());
    }

    #[test]
    fn relative_query_paths_are_denied() {
        let p = PathPermissions::full();
        assert_eq!(p.at("a/b"), PermissionSet::empty());
        assert_eq!(p.at(""), PermissionSet::empty());
    }

    #[test]
    fn full_allows_everything_everywhere() {
        let p = PathPermissions::full();
        for path in ["/", "/a", "/a/b/c.txt", "//x"] {
            assert_eq!(p.at(path), PermissionSet::ALL, "{path}");
        }
    }
}
