//! Folders mounted on S3 buckets, end to end: OpenSSH's `sftp` → the real
//! `gateway` binary → a real S3-compatible server on loopback
//! (`e2e::s3d`: s3s-fs, which checks SigV4 and keeps objects as files, or
//! moto, which stores folder markers), each test with its own server,
//! port, folders and gateway.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::mount::MountedGateway;
use e2e::peers::ip_set;
use e2e::s3d::{S3Server, S3ServerKind};
use e2e::sshd::{assert_all_ok, remote_list, remote_list_line, sftp_in_parallel};
use e2e::*;

/// Name of the remote in [`S3Mount`]'s config.
const REMOTE: &str = "bucket";

/// Folder of alice's tree mounted on the remote's root.
const MOUNT: &str = "/bucket";

const MIB: usize = 1 << 20;

/// A test's gateway (user `alice`, key auth, [`MOUNT`] on remote
/// [`REMOTE`]) in front of its own S3 server. Tweak `cfg` (e.g.
/// [`MountedGateway::remote`], `cfg.dedicated_ips`) before
/// [`MountedGateway::start_gateway`]. Dropping it stops the gateway, then the
/// server (both print their logs if the test is panicking).
struct S3Mount {
    /// The gateway half (first, so it stops before the server).
    mount: MountedGateway,
    s3: S3Server,
}

impl std::ops::Deref for S3Mount {
    type Target = MountedGateway;
    fn deref(&self) -> &MountedGateway {
        &self.mount
    }
}

impl std::ops::DerefMut for S3Mount {
    fn deref_mut(&mut self) -> &mut MountedGateway {
        &mut self.mount
    }
}

impl S3Mount {
    /// The S3 server started, the config prepared, the gateway NOT started.
    fn new(kind: S3ServerKind) -> Result<S3Mount> {
        let s3 = S3Server::start(kind).context("starting the S3 server")?;
        let mount = MountedGateway::new(s3.remote_config(REMOTE), MOUNT)?;
        Ok(S3Mount { mount, s3 })
    }

    /// The gateway's and the server's logs, for failure messages.
    fn logs(&self) -> String {
        self.mount.logs_with(&self.s3.logs())
    }

    /// s3s-fs: the file holding object `key`.
    fn object_file(&self, key: &str) -> PathBuf {
        self.s3
            .bucket_dir()
            .expect("s3s-fs keeps objects on disk")
            .join(key)
    }

    /// Multipart uploads started and not completed or aborted.
    fn uploads_in_progress(&self) -> usize {
        self.s3
            .multipart_uploads_in_progress()
            .unwrap_or_else(|e| panic!("counting multipart uploads: {e:#}\n{}", self.logs()))
    }

    /// Every key in the bucket.
    fn keys(&self) -> Vec<String> {
        self.s3
            .object_keys()
            .unwrap_or_else(|e| panic!("listing the bucket: {e:#}\n{}", self.logs()))
    }
}

/// Panics unless the gateway's log is free of ERROR lines (such as the
/// SDK's complaints about connections it cannot manage).
#[track_caller]
fn assert_no_errors_logged(s: &S3Mount) {
    let log = s.gateway_log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "the gateway logged errors during ordinary operations:\n{}\n{}",
        errors.join("\n"),
        s.logs()
    );
}

/// Runs `sftp -b` and fails (with the gateway's and server's logs) if the
/// client could not even be run.
fn sftp(s: &S3Mount, c: &Client, batch: &str) -> CmdOutput {
    c.sftp(batch)
        .unwrap_or_else(|e| panic!("running sftp: {e:#}\n{}", s.logs()))
}

/// The `ls -l` row (non-echo stdout line) ending with `name`.
fn ls_row(out: &CmdOutput, name: &str) -> Option<String> {
    out.listing()
        .into_iter()
        .find(|l| l.ends_with(&format!(" {name}")) || l.ends_with(&format!("/{name}")))
}

/// The peak resident set size (`VmHWM`) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("cannot parse {line:?}"))?;
    Ok(kib * 1024)
}

/// Sets the modification time of a local file (`touch -m -d`).
fn touch(path: &Path, when: &str) {
    let mut cmd = Command::new("touch");
    cmd.args(["-m", "-d", when]).arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(10)).expect("touch");
    assert_ok(&out, &format!("touch -m -d {when:?}"));
}

// ---------------------------------------------------------------------------
// 1. A 1 GiB file up and down in little memory
// ---------------------------------------------------------------------------

/// 1 GiB of random bytes up through the mount (a multipart upload) and
/// back down: byte-identical in the bucket (s3s-fs's file) and locally,
/// no multipart upload left, nothing in the gateway's own storage, and the
/// gateway's peak RSS (`VmHWM`) stays under 128 MiB.
#[test]
fn s3_one_gib_up_and_down_in_under_128_mib_of_gateway_memory() {
    const SIZE: usize = 1 << 30;
    const RSS_LIMIT: u64 = 128 << 20;
    let mut s = S3Mount::new(S3ServerKind::S3sFs).expect("set-up");
    s.start_gateway().expect("gateway start");
    let pid = s.gw().pid().expect("gateway pid");
    let rss_idle = peak_rss(pid).expect("peak RSS at start");
    let src = s.env.path("big.bin");
    write_random_file(&src, SIZE).expect("writing the 1 GiB source");
    let back = s.env.path("big-back.bin");
    let mut c = s.client();
    c.timeout = Duration::from_secs(600);

    let out = sftp(&s, &c, &format!("put {} {MOUNT}/big.bin\n", p(&src)));
    assert!(
        out.success(),
        "put 1 GiB through the S3 mount failed\n{out}\n{}",
        s.logs()
    );
    let up = out.elapsed;
    let rss_up = peak_rss(pid).expect("peak RSS after the upload");
    assert!(
        !s.env.data.join("alice/bucket/big.bin").exists(),
        "the upload landed in the gateway's own storage, not in the bucket\n{out}"
    );
    assert_same_large_file(&src, &s.object_file("big.bin"));
    assert_eq!(
        s.uploads_in_progress(),
        0,
        "a multipart upload was left behind"
    );

    let out = sftp(&s, &c, &format!("get {MOUNT}/big.bin {}\n", p(&back)));
    assert!(
        out.success(),
        "get 1 GiB through the S3 mount failed\n{out}\n{}",
        s.logs()
    );
    let down = out.elapsed;
    assert_same_large_file(&src, &back);
    let rss = peak_rss(pid).expect("peak RSS after the download");
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "1 GiB: put {up:?}, get {down:?}; gateway peak RSS {:.1} MiB at start, {:.1} MiB after the upload, {:.1} MiB after both",
        mib(rss_idle),
        mib(rss_up),
        mib(rss)
    );
    assert!(
        rss < RSS_LIMIT,
        "the gateway's peak RSS was {:.1} MiB (limit {} MiB)\n{}",
        mib(rss),
        RSS_LIMIT >> 20,
        s.logs()
    );
    assert_eq!(s.keys(), ["big.bin"], "{}", s.logs());
    assert_no_errors_logged(&s);
    let _ = fs::remove_file(&back);
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(s.object_file("big.bin"));
}

// ---------------------------------------------------------------------------
// 2. Ordinary operations, on a server that keeps folder markers
// ---------------------------------------------------------------------------

/// On moto, with the remote's `root` a key prefix of the bucket: mkdir of
/// an empty folder is seen by the next session; `put -p` keeps a file's
/// time, which `ls -l FILE` (a stat) and `get -p` show (a folder listing
/// shows the objects' LastModified: listings carry no user metadata);
/// `ls -l` shows sizes; rename and rm of files work; rmdir of a folder that is
/// not empty is refused and removes nothing; rmdir of an empty one works.
/// The bucket shows each batch's effect right after it, every key under
/// the prefix.
#[test]
fn s3_ordinary_operations_on_moto() {
    const PREFIX: &str = "tenant/a/";
    let mut s = S3Mount::new(S3ServerKind::Moto).expect("set-up");
    s.remote().root = Some("/tenant/a/".into());
    s.start_gateway().expect("gateway start");
    // Keys as expected, under the prefix.
    let under =
        |keys: &[&str]| -> Vec<String> { keys.iter().map(|k| format!("{PREFIX}{k}")).collect() };
    let c = s.client();
    let old = s.env.path("old.txt");
    fs::write(&old, b"kept its time\n").expect("source file");
    touch(&old, "2021-03-04 12:00:00 UTC");
    let src = s.env.path("a.bin");
    write_random_file(&src, 300_000).expect("source file");

    let out = sftp(
        &s,
        &c,
        &format!(
            "mkdir {MOUNT}/empty\nmkdir {MOUNT}/full\nput -p {old} {MOUNT}/full/old.txt\n\
             put {src} {MOUNT}/a.bin\n",
            old = p(&old),
            src = p(&src),
        ),
    );
    assert!(
        out.success(),
        "mkdir + put through the mount\n{out}\n{}",
        s.logs()
    );
    let keys = s.keys();
    for want in under(&["empty/", "full/", "full/old.txt", "a.bin"]) {
        assert!(
            keys.contains(&want),
            "key {want:?} is not in the bucket: {keys:?}\n{out}\n{}",
            s.logs()
        );
    }
    assert_eq!(
        s.s3.get_object(&format!("{PREFIX}a.bin"))
            .expect("GET a.bin")
            .as_deref(),
        Some(&fs::read(&src).expect("reading the source")[..]),
        "the bucket holds other bytes than were put"
    );
    assert!(
        !s.env.data.join("alice/bucket/a.bin").exists(),
        "the upload landed in the gateway's own storage\n{out}"
    );

    // A new session sees the empty folder, sizes and the preserved time.
    let back = s.env.path("old-back.txt");
    let out = sftp(
        &s,
        &c,
        &format!(
            "ls -l {MOUNT}\nls -l {MOUNT}/full/old.txt\nget -p {MOUNT}/full/old.txt {}\n",
            p(&back)
        ),
    );
    assert!(out.success(), "ls -l + get -p\n{out}\n{}", s.logs());
    let row = ls_row(&out, "empty").unwrap_or_else(|| {
        panic!(
            "`ls -l` does not list the empty folder\n{out}\n{}",
            s.logs()
        )
    });
    assert!(
        row.starts_with('d'),
        "`empty` is not a folder: {row:?}\n{out}"
    );
    let row = ls_row(&out, "full")
        .unwrap_or_else(|| panic!("`ls -l` does not list `full`\n{out}\n{}", s.logs()));
    assert!(
        row.starts_with('d'),
        "`full` is not a folder: {row:?}\n{out}"
    );
    let row = ls_row(&out, "a.bin")
        .unwrap_or_else(|| panic!("`ls -l` does not list a.bin\n{out}\n{}", s.logs()));
    assert!(
        row.starts_with('-') && row.split_whitespace().any(|w| w == "300000"),
        "`ls -l` does not show a.bin as a file of 300000 bytes: {row:?}\n{out}"
    );
    assert!(
        !row.contains("1970"),
        "`ls -l` shows no modification time for a.bin: {row:?}\n{out}"
    );
    let row = ls_row(&out, "old.txt")
        .unwrap_or_else(|| panic!("`ls -l` does not list old.txt\n{out}\n{}", s.logs()));
    assert!(
        regex::Regex::new(r"\bMar\s+0?4\s+2021\b")
            .expect("regex")
            .is_match(&row),
        "`ls -l` does not show the time 2021-03-04 that `put -p` set: {row:?}\n{out}\n{}",
        s.logs()
    );
    assert!(
        row.split_whitespace().any(|w| w == "14"),
        "`ls -l` does not show the size 14 of old.txt: {row:?}\n{out}"
    );
    assert_same_file(&old, &back);
    assert_eq!(
        fs::metadata(&back).and_then(|m| m.modified()).ok(),
        fs::metadata(&old).and_then(|m| m.modified()).ok().map(|t| {
            // SFTP v3 carries whole seconds.
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            std::time::UNIX_EPOCH + Duration::from_secs(secs)
        }),
        "`get -p` did not bring back the time `put -p` set\n{out}"
    );

    // Rename and remove files.
    let out = sftp(
        &s,
        &c,
        &format!(
            "rename {MOUNT}/a.bin {MOUNT}/full/moved.bin\nrm {MOUNT}/full/old.txt\nls -l {MOUNT}/full\n"
        ),
    );
    assert!(out.success(), "rename + rm\n{out}\n{}", s.logs());
    let keys = s.keys();
    assert_eq!(
        keys,
        under(&["empty/", "full/", "full/moved.bin"]),
        "the bucket after rename and rm\n{out}\n{}",
        s.logs()
    );
    assert_eq!(
        s.s3.get_object(&format!("{PREFIX}full/moved.bin"))
            .expect("GET full/moved.bin")
            .as_deref(),
        Some(&fs::read(&src).expect("reading the source")[..]),
        "the renamed object holds other bytes"
    );
    assert!(
        ls_row(&out, "moved.bin").is_some() && ls_row(&out, "old.txt").is_none(),
        "`ls -l` after rename and rm\n{out}"
    );

    // rmdir: refused while the folder holds a file, then fine when empty.
    let out = sftp(&s, &c, &format!("rmdir {MOUNT}/full\n"));
    assert_failed(&out, "rmdir of a folder that is not empty");
    assert_eq!(
        s.keys(),
        under(&["empty/", "full/", "full/moved.bin"]),
        "a refused rmdir removed something\n{out}\n{}",
        s.logs()
    );
    let out = sftp(&s, &c, &format!("rmdir {MOUNT}/empty\nls -l {MOUNT}\n"));
    assert!(
        out.success(),
        "rmdir of an empty folder\n{out}\n{}",
        s.logs()
    );
    assert!(!out.lists_name("empty"), "`ls` still shows `empty`\n{out}");
    assert_eq!(
        s.keys(),
        under(&["full/", "full/moved.bin"]),
        "the bucket after rmdir\n{out}\n{}",
        s.logs()
    );
    assert_no_errors_logged(&s);
}

// ---------------------------------------------------------------------------
// 3. Dedicated source addresses
// ---------------------------------------------------------------------------

/// With `dedicated_ips = ["127.0.0.2", "127.0.0.3"]`, every connection the
/// server sees during parallel uploads, downloads and listings comes from
/// one of them, and both are used; `remote test` names one of them.
#[test]
fn s3_dedicated_ips_are_the_only_sources() {
    let mut s = S3Mount::new(S3ServerKind::S3sFs).expect("set-up");
    s.cfg.dedicated_ips = Some(vec!["127.0.0.2".into(), "127.0.0.3".into()]);
    s.start_gateway().expect("gateway start");
    let n = 4;
    let srcs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let src = s.env.path(&format!("dip-{i}.bin"));
            write_random_file(&src, 12 * MIB).expect("source file");
            src
        })
        .collect();
    let jobs = (0..n)
        .map(|i| {
            (
                s.client_n(i),
                format!(
                    "put {} {MOUNT}/dip/dip-{i}.bin\nget {MOUNT}/dip/dip-{i}.bin {}\n\
                     ls -l {MOUNT}/dip\nls -l {MOUNT}\n",
                    p(&srcs[i]),
                    p(&s.env.path(&format!("dip-back-{i}.bin")))
                ),
            )
        })
        .collect();
    let sampler = s.s3.connection_sampler();
    let outs = sftp_in_parallel(jobs);
    let seen = sampler.finish().expect("connection sampler");
    assert_all_ok(&outs, "parallel transfers from dedicated IPs", &s.logs());
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.object_file(&format!("dip/dip-{i}.bin")));
        assert_same_file(src, &s.env.path(&format!("dip-back-{i}.bin")));
    }
    // `ls -l /bucket/dip` looked the folder up with a HEAD of `dip`, which
    // s3s-fs answers with 500 (a directory on its disk): a transient error
    // for the SDK, which then closes the connection, without complaint.
    assert_no_errors_logged(&s);
    let allowed = ip_set(&["127.0.0.2", "127.0.0.3"]);
    eprintln!("connections to the S3 server: {seen:?}");
    assert_eq!(
        seen.peers,
        allowed,
        "the S3 server saw connections from {:?}: not exactly both dedicated IPs ({} samples, at most {} at once)\n{}",
        seen.peers,
        seen.samples,
        seen.max,
        s.logs()
    );

    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, "remote test with dedicated IPs");
    let re = regex::Regex::new(r"source address: 127\.0\.0\.[23]\b").expect("regex");
    assert!(
        re.is_match(&out.stdout),
        "remote test does not name a dedicated IP as the source address\n{out}"
    );
}

/// The only dedicated IP is not on this machine: the client's operations
/// fail, the server sees no connection at all, and the gateway's log and
/// `remote test` name the bind failure and the address.
#[test]
fn s3_unbindable_dedicated_ip_fails_without_connecting() {
    let mut s = S3Mount::new(S3ServerKind::S3sFs).expect("set-up");
    s.cfg.dedicated_ips = Some(vec!["192.0.2.10".into()]);
    s.start_gateway().expect("gateway start");
    let src = s.env.path("x.txt");
    fs::write(&src, b"x\n").expect("source file");
    let sampler = s.s3.connection_sampler();
    let mut c = s.client();
    c.timeout = Duration::from_secs(60);
    let out = sftp(&s, &c, &format!("put {} {MOUNT}/x.txt\n", p(&src)));
    assert_failed(
        &out,
        "put through a mount whose only source address cannot be bound",
    );
    let out_ls = sftp(&s, &c, &format!("ls {MOUNT}\n"));
    assert_failed(
        &out_ls,
        "ls through a mount whose only source address cannot be bound",
    );
    let log = s.gateway_log();
    assert!(
        log.contains("cannot bind source address") && log.contains("192.0.2.10"),
        "the gateway's log does not say `cannot bind source address` with 192.0.2.10\n{out}\n{}",
        s.logs()
    );

    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, "remote test with an unbindable dedicated IP");
    let err = strip_ansi(&out.stderr);
    assert!(
        err.contains("remote `bucket`: FAILED")
            && err.contains("cannot bind source address")
            && err.contains("192.0.2.10"),
        "remote test's stderr should say `cannot bind source address` and 192.0.2.10\n{out}"
    );
    let seen = sampler.finish().expect("sampler");
    assert_eq!(
        seen.max,
        0,
        "the S3 server saw a connection although no source address could be bound: {seen:?}\n{}",
        s.logs()
    );
    assert!(s.keys().is_empty(), "{}", s.logs());
}

// ---------------------------------------------------------------------------
// 4. The server goes away during an upload
// ---------------------------------------------------------------------------

/// A 64 MiB upload (a multipart upload of 8 MiB parts, throttled by the
/// client to ~5 MB/s) when s3s-fs is killed: the client gets an error
/// within the configured timeouts, not a hang. The gateway cannot abort
/// the multipart upload while the server is down; s3s-fs keeps it across
/// its restart, and the gateway aborts it through the first request that
/// works once the server is back. Nothing appears under the final name,
/// and new transfers through the same gateway work.
#[test]
fn s3_server_killed_mid_upload_leaves_no_object_and_no_multipart_upload() {
    let mut s = S3Mount::new(S3ServerKind::S3sFs).expect("set-up");
    {
        let r = s.remote();
        r.connect_timeout = Some("3s".into());
        r.io_timeout = Some("5s".into());
    }
    s.start_gateway().expect("gateway start");
    let big = s.env.path("big.bin");
    write_random_file(&big, 64 * MIB).expect("source file");
    let parts_on_disk = |s: &S3Mount| -> usize {
        fs::read_dir(s.s3.data_dir().expect("s3s-fs"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
                    .count()
            })
            .unwrap_or(0)
    };

    let mut c = s.client_n(1);
    // sftp -l: at most 40000 Kbit/s (~5 MB/s), so the upload is still
    // running when the server is killed.
    c.extra.extend(["-l".to_string(), "40000".to_string()]);
    c.timeout = Duration::from_secs(90);
    let batch = format!("put {} {MOUNT}/big.bin\n", p(&big));
    let (out, stopped_at, ended) = thread::scope(|sc| {
        let handle = sc.spawn(|| c.sftp(&batch));
        // The multipart upload visibly under way: a part on the server's disk.
        let deadline = Instant::now() + Duration::from_secs(30);
        let under_way = loop {
            if parts_on_disk(&s) >= 1 || Instant::now() > deadline {
                break parts_on_disk(&s) >= 1;
            }
            thread::sleep(Duration::from_millis(20));
        };
        if under_way {
            s.s3.stop().expect("killing the S3 server");
        }
        let stopped_at = Instant::now();
        let out = handle.join().expect("client thread panicked");
        let ended = Instant::now();
        assert!(
            under_way,
            "the multipart upload did not get under way within 30 s\n{}",
            s.logs()
        );
        (out, stopped_at, ended)
    });
    let after = ended.saturating_duration_since(stopped_at);
    let out = out.unwrap_or_else(|e| {
        panic!(
            "the client still hung {after:?} after the server was killed: {e:#}\n{}",
            s.logs()
        )
    });
    assert_failed(&out, "upload while the S3 server was killed");
    // io_timeout 5 s, connect_timeout 3 s.
    assert!(
        after <= Duration::from_secs(20),
        "the client ended {after:?} after the server was killed\n{out}\n{}",
        s.logs()
    );
    eprintln!("the client failed {after:?} after the kill");

    // While the server is down, operations fail quickly.
    let c = s.client();
    let out = sftp(&s, &c, &format!("ls {MOUNT}\n"));
    assert_failed(&out, "ls through the mount while the server is down");
    assert!(
        out.elapsed < Duration::from_secs(20),
        "ls while the server is down took {:?}\n{out}",
        out.elapsed
    );

    s.s3.start_again().expect("starting the S3 server again");
    assert!(
        !s.object_file("big.bin").exists(),
        "the broken upload appeared under its final name\n{}",
        s.logs()
    );
    let left_over = s.uploads_in_progress();
    eprintln!("multipart uploads on the server when it is back: {left_over}");

    // The first request that works lets the gateway abort what it could not.
    let out = sftp(&s, &c, &format!("ls -l {MOUNT}\n"));
    assert!(
        out.success(),
        "ls after the server came back\n{out}\n{}",
        s.logs()
    );
    assert!(!out.lists_name("big.bin"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.uploads_in_progress() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.uploads_in_progress(),
        0,
        "the broken multipart upload is still on the server {} s after the server came back\n{}",
        15,
        s.logs()
    );
    let log = s.gateway_log();
    assert!(
        log.contains("will be aborted through the next request")
            && log.contains("aborted the multipart upload"),
        "the gateway's log does not tell about the broken upload and its abort\n{}",
        s.logs()
    );

    // New transfers through the same gateway work.
    let after_src = s.env.path("after.bin");
    write_random_file(&after_src, 20 * MIB).expect("source file");
    let back = s.env.path("after-back.bin");
    let out = sftp(
        &s,
        &c,
        &format!(
            "put {src} {MOUNT}/after.bin\nget {MOUNT}/after.bin {back}\nls -l {MOUNT}\n",
            src = p(&after_src),
            back = p(&back),
        ),
    );
    assert!(
        out.success(),
        "transfers after the server came back\n{out}\n{}",
        s.logs()
    );
    assert_same_file(&after_src, &s.object_file("after.bin"));
    assert_same_file(&after_src, &back);
    assert_eq!(s.keys(), ["after.bin"], "{}", s.logs());
    assert_eq!(s.uploads_in_progress(), 0, "{}", s.logs());
}

// ---------------------------------------------------------------------------
// 5. `gateway remote test` and `remote list`
// ---------------------------------------------------------------------------

/// `remote test` of an S3 remote prints the dedicated source address, the
/// endpoint, the region and the bucket; `remote list` shows the endpoint,
/// bucket and region; with a wrong secret `remote test` fails with one
/// clear reason, and so do operations through the mount.
#[test]
fn s3_remote_test_prints_endpoint_region_bucket_and_source() {
    let mut s = S3Mount::new(S3ServerKind::S3sFs).expect("set-up");
    s.cfg.dedicated_ips = Some(vec!["127.0.0.3".into()]);
    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, &format!("remote test\n{}", s.s3.logs()));
    let endpoint = s.s3.endpoint();
    for needle in [
        "remote `bucket`: ok (s3)".to_string(),
        "source address: 127.0.0.3".to_string(),
        format!("endpoint: {endpoint}"),
        "region: us-east-1".to_string(),
        "bucket: gw-test (listed: ok)".to_string(),
    ] {
        assert!(
            out.stdout.contains(&needle),
            "remote test does not print {needle:?}\n{out}"
        );
    }
    let out = remote_list(&s.config_path).expect("running remote list");
    assert_ok(&out, "remote list");
    let line = remote_list_line(&out, REMOTE).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("s3")
            && line.contains(&endpoint)
            && line.contains("gw-test")
            && line.contains("us-east-1"),
        "remote list line: {line:?}\n{out}"
    );

    s.remote().secret_access_key = Some("not-the-secret".into());
    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, "remote test with a wrong secret");
    let err = strip_ansi(&out.stderr);
    assert!(
        err.contains("remote `bucket`: FAILED")
            && err.contains("authentication failed")
            && err.contains("secret access key does not match"),
        "remote test should say FAILED: authentication failed (secret)\n{out}"
    );
    assert!(
        err.trim().lines().count() <= 3,
        "remote test should give one clear reason\n{out}"
    );
    assert!(
        !err.contains("not-the-secret") && !out.stdout.contains("not-the-secret"),
        "remote test shows the secret\n{out}"
    );

    s.start_gateway().expect("gateway start");
    let src = s.env.path("x.txt");
    fs::write(&src, b"must not arrive\n").expect("source file");
    let c = s.client();
    let out = sftp(&s, &c, &format!("put {} {MOUNT}/x.txt\n", p(&src)));
    assert_failed(&out, "put with a wrong secret");
    assert!(s.keys().is_empty(), "{}", s.logs());
    let log = s.gateway_log();
    assert!(
        log.contains("secret access key does not match") && !log.contains("not-the-secret"),
        "the gateway's log does not name the wrong secret as the reason (or shows it)\n{}",
        s.logs()
    );
}

/// A mount on a folder of the bucket that does not exist yet is an
/// ordinary empty folder: the gateway writes its marker at start, so it
/// lists and accepts `mkdir` before anything was uploaded.
#[test]
fn s3_mount_on_a_fresh_prefix_is_an_empty_folder() {
    let mut s = S3Mount::new(S3ServerKind::Moto).expect("set-up");
    s.cfg.users[0].mounts[0].remote_path = "inbox/deep".into();
    s.start_gateway().expect("gateway start");
    let log = s
        .gw()
        .stderr
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("created the mounted folder") && l.contains("inbox/deep")
                || l.contains("cannot create the mounted folder")
        })
        .unwrap_or_else(|| panic!("no mounted-folder line\n{}", s.logs()));
    assert!(
        log.contains("created the mounted folder"),
        "{log}\n{}",
        s.logs()
    );
    let c = s.client();
    let out = sftp(
        &s,
        &c,
        &format!("ls -l {MOUNT}\nmkdir {MOUNT}/sub\nls {MOUNT}\n"),
    );
    assert!(out.success(), "{}\n{}", out.text(), s.logs());
    assert!(out.lists_name("sub"), "{}\n{}", out.text(), s.logs());
    let keys = s.keys();
    assert!(
        keys.contains(&"inbox/".to_string())
            && keys.contains(&"inbox/deep/".to_string())
            && keys.contains(&"inbox/deep/sub/".to_string()),
        "markers: {keys:?}\n{}",
        s.logs()
    );
}
