//! `[[users.mounts]]`: validated into [`MountSettings`], each checked
//! against the remotes and the user's other mounts.

use super::*;

/// A validated mount.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// Where it appears in the user's tree.
    pub path: crate::virtual_path::VirtualPath,
    /// The remote's name.
    pub remote: String,
    /// The folder under the remote's root.
    pub remote_path: StoragePath,
}

pub(super) fn validate_mounts(
    by_user: &[(String, usize, Vec<file::MountSection>)],
    remotes: &[RemoteSettings],
    r: &mut Reporter<'_>,
) -> HashMap<String, Vec<MountSettings>> {
    let mut out: HashMap<String, Vec<MountSettings>> = HashMap::new();
    for (user, i, mounts) in by_user {
        let mut seen = HashSet::new();
        for (j, m) in mounts.iter().enumerate() {
            let at = |k: &str| format!("users[{i}].mounts[{j}].{k}");
            let path = match crate::virtual_path::VirtualPath::resolve(&m.path) {
                Ok(p) if m.path.starts_with('/') && !m.path.split('/').any(|n| n == "..") => p,
                Ok(_) => {
                    r.at_key(
                        &at("path"),
                        "a mount path must be absolute, like \"/partner\", without `..`",
                    );
                    continue;
                }
                Err(e) => {
                    r.at_key(&at("path"), e.to_string());
                    continue;
                }
            };
            if !seen.insert(path.clone()) {
                r.at_key(&at("path"), format!("{path} is mounted twice"));
            }
            if !remotes.iter().any(|rs| rs.name == m.remote) {
                r.at_key(
                    &at("remote"),
                    format!("no remote named `{}` (declare it in [[remotes]])", m.remote),
                );
            }
            let remote_path = match StoragePath::parse(&m.remote_path) {
                Ok(p) => p,
                Err(e) => {
                    r.at_key(&at("remote_path"), e.to_string());
                    continue;
                }
            };
            out.entry(user.clone()).or_default().push(MountSettings {
                path,
                remote: m.remote.clone(),
                remote_path,
            });
        }
    }
    out
}
