//! Keys, password hashes and files: what tests make before they start
//! the gateway, and how they compare what came out.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::*;

/// Runs `gateway user hash-password` with `password` on stdin; returns the hash.
pub fn hash_password(password: &str) -> Result<String> {
    let mut cmd = GatewayCommand {
        args: vec!["user".into(), "hash-password".into()],
        ..Default::default()
    }
    .command()?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawning gateway user hash-password")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "gateway user hash-password failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let hash = String::from_utf8(out.stdout)?.trim().to_string();
    if hash.is_empty() {
        bail!("gateway user hash-password printed nothing");
    }
    Ok(hash)
}

fn ssh_keygen(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(60))?;
    if !out.success() {
        bail!("ssh-keygen failed:\n{out}");
    }
    Ok(())
}

/// Pre-creates the gateway's host keys under `<state>/host_keys/` (saves the
/// RSA-4096 generation time in tests that do not test first start).
pub fn pregenerate_host_keys(state: &Path) -> Result<()> {
    let dir = state.join("host_keys");
    fs::create_dir_all(&dir)?;
    let ed = dir.join("ssh_host_ed25519_key");
    let rsa = dir.join("ssh_host_rsa_key");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "e2e-host",
        "-f",
        ed.to_str().unwrap(),
    ])?;
    ssh_keygen(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-N",
        "",
        "-C",
        "e2e-host",
        "-f",
        rsa.to_str().unwrap(),
    ])?;
    Ok(())
}

/// Generates an ed25519 client key at `path`; returns its public key line.
pub fn client_key(path: &Path) -> Result<String> {
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "e2e-client",
        "-f",
        path.to_str().unwrap(),
    ])?;
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    Ok(fs::read_to_string(&pub_path)?.trim().to_string())
}

/// Writes `len` random bytes (from /dev/urandom) to `path`.
pub fn write_random_file(path: &Path, len: usize) -> Result<()> {
    let mut src = fs::File::open("/dev/urandom")?;
    let mut dst = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        src.read_exact(&mut buf[..n])?;
        dst.write_all(&buf[..n])?;
        left -= n;
    }
    dst.sync_all()?;
    Ok(())
}

/// Panics with a clear message unless both files exist and hold the same bytes.
#[track_caller]
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let a = fs::read(expected)
        .unwrap_or_else(|e| panic!("cannot read expected file {}: {e}", expected.display()));
    let b = fs::read(actual).unwrap_or_else(|e| {
        panic!(
            "cannot read file {} (expected a copy of {}): {e}",
            actual.display(),
            expected.display()
        )
    });
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{} differs from {}: sizes {} vs {}, first difference at byte {first}",
            actual.display(),
            expected.display(),
            b.len(),
            a.len()
        );
    }
}

/// Like [`assert_same_file`] but compares 1 MiB at a time (for files of
/// hundreds of MiB).
#[track_caller]
pub fn assert_same_large_file(expected: &Path, actual: &Path) {
    let open =
        |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()));
    let (la, lb) = (
        fs::metadata(expected).map(|m| m.len()).unwrap_or(0),
        fs::metadata(actual)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot stat {} (expected a copy of {}): {e}",
                    actual.display(),
                    expected.display()
                )
            })
            .len(),
    );
    assert_eq!(
        lb,
        la,
        "{} has {lb} bytes, expected {la} like {}",
        actual.display(),
        expected.display()
    );
    let (mut a, mut b) = (open(expected), open(actual));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = a.read(&mut ba).expect("read expected");
        if n == 0 {
            break;
        }
        b.read_exact(&mut bb[..n]).expect("read actual");
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!(
                "{} differs from {}: first difference at byte {}",
                actual.display(),
                expected.display(),
                offset + i as u64
            );
        }
        offset += n as u64;
    }
}

/// Every path under `root` (relative) with its size (`None` for folders):
/// used to prove that nothing on disk changed.
pub fn tree_snapshot(root: &Path) -> Result<BTreeMap<PathBuf, Option<u64>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<u64>>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let md = fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.to_path_buf();
            if md.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out)?;
            } else {
                out.insert(rel, Some(md.len()));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out)?;
    }
    Ok(out)
}
