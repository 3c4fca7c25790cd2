//! Files and times: seeding trees on disk with chosen modification
//! times, reading them back, and comparing them with what a sync should
//! have left.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::*;

/// Relative path (with `/`) -> content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// `now - secs` seconds.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Sets the access and modification times of `path` (not following a
/// symlink), like `touch -h -d`.
pub fn set_mtime(path: &Path, when: SystemTime) -> Result<()> {
    let d = when
        .duration_since(UNIX_EPOCH)
        .context("time before 1970")?;
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    let times = [ts, ts];
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        bail!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The modification time of `path`.
pub fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

/// Writes `data` to `base/rel` (parents created) with modification time `when`.
pub fn write_at(base: &Path, rel: &str, data: &[u8], when: SystemTime) -> Result<PathBuf> {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("mkdir -p {}", parent.display()))?;
    }
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    set_mtime(&path, when)?;
    Ok(path)
}

/// Writes every file of `files` under `base` with modification time `when`.
pub fn write_files(base: &Path, files: &Files, when: SystemTime) -> Result<()> {
    for (rel, data) in files {
        write_at(base, rel, data, when)?;
    }
    Ok(())
}

/// A small, fast, seedable generator (xorshift64*), for random sizes, kill
/// points and contents that a failure message can reproduce (print the seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Seeded from `$SYNC_SEED` if set, else from the clock; returns the seed too.
    pub fn from_env_or_time() -> (Rng, u64) {
        let seed = std::env::var("SYNC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ u64::from(std::process::id()) << 32
            });
        (Rng::new(seed), seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `len` random bytes from /dev/urandom.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("reading /dev/urandom");
    v
}

/// The bytes at offsets `offset..offset+len` of an endless deterministic
/// stream (splitmix64 of each 8-byte block's index): any prefix of a file
/// written from it can be checked without keeping a copy.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    let end = offset + len as u64;
    while pos < end {
        let block = pos / 8;
        let mut z = block.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        let from = (pos % 8) as usize;
        let take = (8 - from).min((end - pos) as usize);
        out.extend_from_slice(&bytes[from..from + take]);
        pos += take as u64;
    }
    out
}

/// The files of the push and pull scenarios: nested folders, empty files,
/// names with spaces and non-ASCII characters, a few sizes.
pub fn sample_files() -> Files {
    let mut f = Files::new();
    f.insert("top.txt".into(), random_bytes(1000));
    f.insert("empty.txt".into(), vec![]);
    f.insert("with space.txt".into(), random_bytes(777));
    f.insert("naïve café.txt".into(), random_bytes(4321));
    f.insert("nested/a.bin".into(), random_bytes(300_000));
    f.insert("nested/deeper/b.txt".into(), random_bytes(12));
    f.insert("nested/deeper/empty inside".into(), vec![]);
    f.insert(
        "nested/deeper/still deeper/c.csv".into(),
        random_bytes(65_537),
    );
    f.insert("日本語/ファイル 1.txt".into(), random_bytes(2048));
    f.insert("Ordner mit Ümlaut/ßpecial ✓.dat".into(), random_bytes(99));
    f
}

/// Every file under `root` (relative path with `/` -> content), hidden
/// temporary uploads ([`TEMP_PREFIX`]) left out. A missing root is empty.
pub fn read_tree(root: &Path) -> Result<Files> {
    let mut out = Files::new();
    for rel in walk_files(root)? {
        if is_temp(&rel) {
            continue;
        }
        let p = root.join(&rel);
        out.insert(
            rel,
            fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        );
    }
    Ok(out)
}

/// True when the last component of `rel` is a hidden temporary upload.
pub fn is_temp(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

/// Relative paths of every file (not folder) under `root`, sorted.
pub fn walk_files(root: &Path) -> Result<Vec<String>> {
    Ok(walk(root)?.0.into_iter().collect())
}

/// Relative paths of every folder under `root` (not `root` itself).
pub fn walk_folders(root: &Path) -> Result<BTreeSet<String>> {
    Ok(walk(root)?.1)
}

/// Relative paths of every file and of every folder under `root` (not
/// `root` itself); both empty when `root` does not exist.
fn walk(root: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut files, mut folders) = (BTreeSet::new(), BTreeSet::new());
    if !root.exists() {
        return Ok((files, folders));
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
            if e.file_type()?.is_dir() {
                folders.insert(rel);
                stack.push(p);
            } else {
                files.insert(rel);
            }
        }
    }
    Ok((files, folders))
}

/// The hidden temporary uploads under `root`.
pub fn temp_leftovers(root: &Path) -> Vec<String> {
    walk_files(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| is_temp(r))
        .collect()
}

/// Differences between what `root` holds and `expected`, one line each
/// (empty when equal).
pub fn tree_diff(root: &Path, expected: &Files) -> Vec<String> {
    let actual = match read_tree(root) {
        Ok(a) => a,
        Err(e) => return vec![format!("cannot read {}: {e:#}", root.display())],
    };
    let mut diffs = vec![];
    for (rel, want) in expected {
        match actual.get(rel) {
            None => diffs.push(format!("missing: {rel:?} ({} bytes expected)", want.len())),
            Some(got) if got != want => {
                let first = got
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                diffs.push(format!(
                    "wrong content: {rel:?}: {} bytes, expected {}, first difference at byte {first}",
                    got.len(),
                    want.len()
                ))
            }
            Some(_) => {}
        }
    }
    for (rel, got) in &actual {
        if !expected.contains_key(rel) {
            diffs.push(format!("unexpected file: {rel:?} ({} bytes)", got.len()));
        }
    }
    diffs
}

/// Panics with every difference unless `root` holds exactly `expected`
/// (temporary uploads aside).
#[track_caller]
pub fn assert_tree(root: &Path, expected: &Files, what: &str, context: &str) {
    let diffs = tree_diff(root, expected);
    assert!(
        diffs.is_empty(),
        "{what}: {} does not hold the expected files:\n  {}\n{context}",
        root.display(),
        diffs.join("\n  ")
    );
}

/// `files` with `more` added (or replaced).
pub fn with(files: &Files, more: &[(&str, &[u8])]) -> Files {
    let mut f = files.clone();
    for (k, v) in more {
        f.insert(k.to_string(), v.to_vec());
    }
    f
}
