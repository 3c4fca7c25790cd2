//! Which files of a sync are synced: `include` and `exclude` globs on the
//! path relative to the sync's folder (`reports/2026/a.csv`).
//!
//! `*` and `?` never cross a `/`, `**` does (`reports/**` is everything
//! under `reports`). A pattern without `/` matches the file name in any
//! folder (`*.tmp` excludes `a.tmp` and `x/y/a.tmp`); a pattern with `/` is
//! matched against the whole relative path. A file is synced when it
//! matches some include (no include means every file) and no exclude.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The compiled `include` and `exclude` patterns of a sync. The default
/// lets every file through.
#[derive(Clone, Default)]
pub struct PathFilter {
    /// The include patterns as written (empty: every file).
    include_patterns: Vec<String>,
    /// The exclude patterns as written.
    exclude_patterns: Vec<String>,
    include: GlobSet,
    exclude: GlobSet,
}

impl fmt::Debug for PathFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathFilter")
            .field("include", &self.include_patterns)
            .field("exclude", &self.exclude_patterns)
            .finish()
    }
}

impl PartialEq for PathFilter {
    fn eq(&self, other: &Self) -> bool {
        self.include_patterns == other.include_patterns
            && self.exclude_patterns == other.exclude_patterns
    }
}

impl Eq for PathFilter {}

impl PathFilter {
    /// Compiles the patterns. The error names the first bad pattern and
    /// says what is wrong with it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<PathFilter, String> {
        Ok(PathFilter {
            include_patterns: include.to_vec(),
            exclude_patterns: exclude.to_vec(),
            include: compile("include", include)?,
            exclude: compile("exclude", exclude)?,
        })
    }

    /// Whether the file at `relative_path` (relative to the sync's folder,
    /// `/`-separated; a leading `/` is ignored) is synced.
    pub fn matches(&self, relative_path: &str) -> bool {
        let path = relative_path.trim_start_matches('/');
        (self.include_patterns.is_empty() || self.include.is_match(path))
            && !self.exclude.is_match(path)
    }

    /// Whether the filter lets every file through (no patterns at all).
    pub fn is_everything(&self) -> bool {
        self.include_patterns.is_empty() && self.exclude_patterns.is_empty()
    }

    /// The include patterns as written.
    pub fn include_patterns(&self) -> &[String] {
        &self.include_patterns
    }

    /// The exclude patterns as written.
    pub fn exclude_patterns(&self) -> &[String] {
        &self.exclude_patterns
    }
}

/// Compiles one list; `which` (`include`/`exclude`) names it in errors.
fn compile(which: &str, patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let bad = |why: &str| format!("{which} pattern `{pattern}` {why}");
        if pattern.is_empty() {
            return Err(bad("is empty"));
        }
        if pattern.starts_with('/') {
            return Err(bad(&format!(
                "starts with `/`: patterns are relative to the sync's folder (write `{}`)",
                pattern.trim_start_matches('/')
            )));
        }
        if pattern.ends_with('/') {
            return Err(bad(&format!(
                "ends with `/`: patterns match files (write `{pattern}**` for everything under the folder)"
            )));
        }
        // Without `/`, the pattern is a file name in any folder; `**/`
        // also matches no folder at all.
        let full = if pattern.contains('/') {
            pattern.clone()
        } else {
            format!("**/{pattern}")
        };
        let glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| bad(&format!("is not a valid glob: {}", e.kind())))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| format!("the {which} patterns cannot be compiled: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> PathFilter {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PathFilter::new(&own(include), &own(exclude)).unwrap()
    }

    fn error(include: &[&str], exclude: &[&str]) -> String {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PathFilter::new(&own(include), &own(exclude)).unwrap_err()
    }

    #[test]
    fn default_and_empty_let_everything_through() {
        for f in [PathFilter::default(), filter(&[], &[])] {
            assert!(f.is_everything());
            assert!(f.matches("a.csv"));
            assert!(f.matches("x/y/.hidden"));
        }
    }

    #[test]
    fn a_name_pattern_matches_in_any_folder() {
        let f = filter(&["*.csv"], &[]);
        assert!(f.matches("a.csv"));
        assert!(f.matches("reports/2026/a.csv"));
        assert!(f.matches("/reports/a.csv"));
        assert!(!f.matches("a.csv.tmp"));
        assert!(!f.matches("reports.csv/a.txt"));
        let f = filter(&["data?.txt"], &[]);
        assert!(f.matches("x/data1.txt"));
        assert!(!f.matches("x/data12.txt"));
    }

    #[test]
    fn star_never_crosses_a_slash_but_double_star_does() {
        let f = filter(&["reports/*.csv"], &[]);
        assert!(f.matches("reports/a.csv"));
        assert!(!f.matches("reports/2026/a.csv"));
        assert!(!f.matches("old/reports/a.csv"));
        let f = filter(&["reports/**"], &[]);
        assert!(f.matches("reports/a.csv"));
        assert!(f.matches("reports/2026/q1/a.csv"));
        assert!(!f.matches("reportsX/a.csv"));
        assert!(!f.matches("a.csv"));
        let f = filter(&["**/q?/*.csv"], &[]);
        assert!(f.matches("q1/a.csv"));
        assert!(f.matches("reports/2026/q1/a.csv"));
        assert!(!f.matches("reports/2026/q10/a.csv"));
    }

    #[test]
    fn include_and_exclude_combine() {
        let f = filter(&["*.csv", "reports/**"], &["*.tmp", "reports/private/**"]);
        assert!(f.matches("a.csv"));
        assert!(f.matches("reports/summary.pdf"));
        assert!(!f.matches("a.txt"));
        assert!(!f.matches("reports/x.tmp"));
        assert!(!f.matches("reports/private/a.csv"));
        assert!(f.matches("other/private/a.csv"));
        // Exclude only: everything but the excluded.
        let f = filter(&[], &["*.tmp", ".*"]);
        assert!(f.matches("a.csv"));
        assert!(!f.matches("x/a.tmp"));
        assert!(!f.matches("x/.partial"));
    }

    #[test]
    fn classes_and_alternatives() {
        let f = filter(&["*.{csv,xml}", "[ab]*.txt"], &[]);
        assert!(f.matches("x/a.xml"));
        assert!(f.matches("b1.txt"));
        assert!(!f.matches("c1.txt"));
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = error(&["*.csv"], &["[a"]);
        assert!(
            e.starts_with("exclude pattern `[a` is not a valid glob: "),
            "{e}"
        );
        let e = error(&["{a,b"], &[]);
        assert!(
            e.starts_with("include pattern `{a,b` is not a valid glob"),
            "{e}"
        );
        assert_eq!(error(&[""], &[]), "include pattern `` is empty");
        assert!(error(&["/reports/**"], &[]).contains("write `reports/**`"));
        assert!(error(&[], &["tmp/"]).contains("write `tmp/**`"));
    }

    #[test]
    fn debug_shows_the_patterns() {
        let f = filter(&["*.csv"], &["*.tmp"]);
        assert_eq!(
            format!("{f:?}"),
            r#"PathFilter { include: ["*.csv"], exclude: ["*.tmp"] }"#
        );
        assert_eq!(f, filter(&["*.csv"], &["*.tmp"]));
    }
}
