//! Test peers that the test command puts under `<target>/peers/` instead
//! of installing them (pure-ftpd, which conflicts with vsftpd; s3s-fs,
//! built from crates.io): where to find their binaries.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The cargo target dirs to look in for `peers/...`.
fn target_dirs() -> Vec<PathBuf> {
    let mut out = vec![];
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(d));
    }
    // <target>/<profile>/deps/<test exe>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(t) = exe.ancestors().nth(3) {
            out.push(t.to_path_buf());
        }
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    out
}

/// A peer's binary: the path in `env_var` if set (it must exist), else
/// `<target>/<under_target>` in the first target dir that has it. `how`
/// says how scripts/test.sh provides it, for the error.
pub fn peer_binary(env_var: &str, under_target: &str, how: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "{env_var}={} does not exist: run scripts/test.sh, which {how}",
                p.display()
            );
        }
        return Ok(p);
    }
    let candidates: Vec<PathBuf> = target_dirs()
        .into_iter()
        .map(|t| t.join(under_target))
        .collect();
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    bail!(
        "not found: {env_var} is unset and none of {candidates:?} exists. \
         Run scripts/test.sh once: it {how}"
    )
}
