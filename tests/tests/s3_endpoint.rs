//! The gateway's own S3 endpoint end to end: the real `gateway serve` with
//! an `[s3]` section, access keys from `gateway user s3-key`, and two real
//! S3 clients, Debian's AWS CLI (`/usr/bin/aws`) and rclone's s3 backend
//! (`provider = Other`), plus curl for signed requests the CLIs would
//! never send (keys with `..`). What S3 writes is checked on the
//! gateway's storage folder, byte for byte.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::s3_endpoint::{aws, create_key, endpoint_addr, s3_key_command, S3Key};
use e2e::*;
use serde_json::Value;

/// Every permission.
const ALL: &[&str] = &["list", "read", "write", "delete", "rename", "mkdir"];
/// 100 MiB: well above the multipart thresholds of both clients.
const BIG: usize = 100 << 20;

/// One gateway with its S3 endpoint on, and a key for one user.
struct S3Gw {
    env: TestEnv,
    gw: Gateway,
    config: PathBuf,
    /// `http://127.0.0.1:PORT` (or `https://`).
    url: String,
    key: S3Key,
    /// The user's home on disk.
    home: PathBuf,
    /// Scratch folder for the clients (their HOME, downloads).
    scratch: PathBuf,
    /// Extra arguments of every `aws` call (`--ca-bundle`).
    aws_extra: Vec<String>,
}

impl S3Gw {
    /// A gateway with `user` (home `home` under storage), `prepare`
    /// run on the storage folder before it starts, and `tls` (certificate,
    /// key) when given.
    fn start(
        user: UserConfig,
        home: &str,
        prepare: impl FnOnce(&Path),
        tls: Option<(&Path, &Path)>,
    ) -> S3Gw {
        Self::start_with(user, home, prepare, tls, &[])
    }

    /// The same with extra `[s3]` lines.
    fn start_with(
        user: UserConfig,
        home: &str,
        prepare: impl FnOnce(&Path),
        tls: Option<(&Path, &Path)>,
        s3_lines: &[&str],
    ) -> S3Gw {
        let env = TestEnv::new().expect("test env");
        let pubkey = client_key(&env.path("id_ed25519")).expect("client key");
        let name = user.name.clone();
        let mut cfg = env.config();
        cfg.s3_listen = Some("127.0.0.1:0".into());
        cfg.users.push(user.key(&pubkey));
        let home_dir = env.data.join(home);
        fs::create_dir_all(&home_dir).unwrap();
        prepare(&env.data);
        let config = env.path("config.toml");
        let mut text = cfg.to_toml();
        if !s3_lines.is_empty() {
            text = text.replacen("[s3]\n", &format!("[s3]\n{}\n", s3_lines.join("\n")), 1);
        }
        if let Some((cert, key)) = tls {
            text = text.replacen(
                "[s3]\n",
                &format!(
                    "[s3]\ncertificate = {}\nprivate_key = {}\n",
                    toml_str(&cert.display().to_string()),
                    toml_str(&key.display().to_string())
                ),
                1,
            );
        }
        fs::write(&config, text).unwrap();
        let key = create_key(&config, &name).expect("s3-key create");
        let gw = Gateway::start(&GatewayCommand::serve_config(&config)).expect("gateway starts");
        let url = if tls.is_some() {
            let line = gw
                .stderr
                .wait_for(Duration::from_secs(30), |l| {
                    l.contains("S3 endpoint on https://")
                })
                .unwrap_or_else(|| panic!("no `S3 endpoint on https://` line\n{}", gw.logs()));
            let addr = line.split("https://").nth(1).unwrap().trim();
            format!("https://{}", addr.trim_end_matches('/'))
        } else {
            let addr = endpoint_addr(&gw).unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));
            format!("http://{addr}")
        };
        let scratch = env.path("scratch");
        fs::create_dir_all(&scratch).unwrap();
        S3Gw {
            env,
            gw,
            config,
            url,
            key,
            home: home_dir,
            scratch,
            aws_extra: vec![],
        }
    }

    /// A user `alice` with every permission, home `alice`.
    fn alice() -> S3Gw {
        S3Gw::start(
            UserConfig::new("alice").perm("/", ALL),
            "alice",
            |_| {},
            None,
        )
    }

    fn logs(&self) -> String {
        self.gw.logs()
    }

    /// `aws ARGS` with the gateway's key (or `key`).
    fn aws_with(&self, key: &S3Key, args: &[&str]) -> CmdOutput {
        let mut all: Vec<&str> = self.aws_extra.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        aws(&self.url, key, &all, &self.scratch).expect("running aws")
    }

    /// `aws ARGS`, which must succeed.
    #[track_caller]
    fn aws_ok(&self, args: &[&str]) -> CmdOutput {
        let out = self.aws_with(&self.key, args);
        assert!(
            out.success(),
            "aws {args:?} failed:\n{out}\n{}",
            self.logs()
        );
        out
    }

    /// `aws ARGS`, which must fail; its output.
    #[track_caller]
    fn aws_err(&self, args: &[&str]) -> String {
        let out = self.aws_with(&self.key, args);
        assert!(
            !out.success(),
            "aws {args:?} succeeded, expected a failure:\n{out}\n{}",
            self.logs()
        );
        out.text()
    }

    /// `rclone ARGS` with remote `gw:` on the endpoint (s3, provider
    /// Other), no environment of the machine's user involved.
    fn rclone(&self, args: &[&str]) -> CmdOutput {
        let conf = self.scratch.join("rclone.conf");
        if !conf.exists() {
            fs::write(&conf, "").unwrap();
        }
        let mut cmd = Command::new("/usr/bin/rclone");
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.scratch)
            .env("RCLONE_CONFIG", &conf)
            .env("RCLONE_CONFIG_GW_TYPE", "s3")
            .env("RCLONE_CONFIG_GW_PROVIDER", "Other")
            .env("RCLONE_CONFIG_GW_ENDPOINT", &self.url)
            .env("RCLONE_CONFIG_GW_ACCESS_KEY_ID", &self.key.id)
            .env("RCLONE_CONFIG_GW_SECRET_ACCESS_KEY", &self.key.secret)
            .env("RCLONE_CONFIG_GW_REGION", "us-east-1")
            .env("RCLONE_RETRIES", "1")
            .env("RCLONE_LOW_LEVEL_RETRIES", "1");
        run_with_timeout(cmd, Duration::from_secs(300)).expect("running rclone")
    }

    #[track_caller]
    fn rclone_ok(&self, args: &[&str]) -> CmdOutput {
        let out = self.rclone(args);
        assert!(
            out.success(),
            "rclone {args:?} failed:\n{out}\n{}",
            self.logs()
        );
        out
    }

    #[track_caller]
    fn rclone_err(&self, args: &[&str]) -> String {
        let out = self.rclone(args);
        assert!(
            !out.success(),
            "rclone {args:?} succeeded, expected a failure:\n{out}\n{}",
            self.logs()
        );
        out.text()
    }

    /// Every key under `prefix` through `list-objects-v2` (the CLI pages
    /// with `page_size` keys a page), objects and common prefixes.
    fn aws_list(
        &self,
        prefix: &str,
        delimiter: bool,
        page_size: Option<usize>,
    ) -> (Vec<String>, Vec<String>) {
        let mut args = vec![
            "s3api".to_string(),
            "list-objects-v2".into(),
            "--bucket".into(),
            "default".into(),
            "--output".into(),
            "json".into(),
        ];
        if !prefix.is_empty() {
            args.extend(["--prefix".into(), prefix.into()]);
        }
        if delimiter {
            args.extend(["--delimiter".into(), "/".into()]);
        }
        if let Some(n) = page_size {
            args.extend(["--page-size".into(), n.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.aws_ok(&args);
        parse_listing(&out.stdout)
    }

    /// A signed request with curl (path as is: `..` is sent, not
    /// resolved); (status, body).
    fn signed(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        signed_request(
            &self.url,
            method,
            path,
            body,
            &self.key.id,
            &self.key.secret,
            &self.scratch,
        )
    }
}

/// (keys, common prefixes) of `list-objects-v2 --output json`.
fn parse_listing(stdout: &str) -> (Vec<String>, Vec<String>) {
    if stdout.trim().is_empty() {
        return (vec![], vec![]);
    }
    let v: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("listing is not JSON ({e}):\n{stdout}"));
    let strings = |field: &str, inner: &str| -> Vec<String> {
        v[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o[inner].as_str().expect("string").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        strings("Contents", "Key"),
        strings("CommonPrefixes", "Prefix"),
    )
}

/// A SigV4-signed request with curl: `path` starts with `/default/` and
/// is sent exactly as given (`--path-as-is`); (status, body).
fn signed_request(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    id: &str,
    secret: &str,
    scratch: &Path,
) -> (u16, String) {
    let out_path = scratch.join("curl.out");
    let _ = fs::remove_file(&out_path);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-g", "--path-as-is", "--max-time", "60"]);
    if method == "HEAD" {
        // `-X HEAD` would wait for the body Content-Length announces.
        cmd.arg("--head");
    } else {
        cmd.args(["-X", method]);
    }
    cmd.args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
        .arg("--user")
        .arg(format!("{id}:{secret}"))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg("-o")
        .arg(&out_path)
        .args(["-w", "%{http_code}"]);
    if let Some(b) = body {
        let in_path = scratch.join("curl.in");
        fs::write(&in_path, b).unwrap();
        cmd.arg("--data-binary")
            .arg(format!("@{}", in_path.display()));
    }
    cmd.arg(format!("{url}{path}"));
    let out = run_with_timeout(cmd, Duration::from_secs(90)).expect("curl");
    let status = out.stdout.trim().parse().unwrap_or(0);
    assert_ne!(status, 0, "curl got no answer:\n{out}");
    (status, fs::read_to_string(&out_path).unwrap_or_default())
}

/// SHA-256 of a file, by `sha256sum`.
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The `<Code>` of an S3 error body.
fn error_code(body: &str) -> String {
    body.split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}

#[track_caller]
fn assert_sorted_unique(keys: &[String], what: &str) {
    for w in keys.windows(2) {
        assert!(
            w[0].as_bytes() < w[1].as_bytes(),
            "{what}: keys out of order or repeated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// Names that URL and XML encodings must carry intact.
const ODD_NAMES: &[&str] = &["with space.txt", "plus+sign.txt", "ünïcødé €.txt"];

#[test]
fn aws_put_get_range_list_copy_delete() {
    let s = S3Gw::alice();
    let src = s.scratch.join("src.bin");
    write_random_file(&src, 300_000).unwrap();
    let src_s = src.to_str().unwrap();
    let data = fs::read(&src).unwrap();

    // put, with odd names, in a folder that does not exist yet.
    for name in ODD_NAMES {
        s.aws_ok(&["s3", "cp", src_s, &format!("s3://default/dir/{name}")]);
        assert_same_file(&src, &s.home.join("dir").join(name));
    }
    s.aws_ok(&["s3", "cp", src_s, "s3://default/top.bin"]);
    assert_same_file(&src, &s.home.join("top.bin"));

    // get of the whole file, byte-identical.
    for name in ODD_NAMES {
        let got = s.scratch.join("got.bin");
        s.aws_ok(&[
            "s3",
            "cp",
            &format!("s3://default/dir/{name}"),
            got.to_str().unwrap(),
        ]);
        assert_eq!(sha256_file(&got), sha256_file(&src), "{name}");
    }

    // get with a range.
    let part = s.scratch.join("part.bin");
    let out = s.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "default",
        "--key",
        "dir/plus+sign.txt",
        "--range",
        "bytes=1000-1999",
        part.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(&part).unwrap(), &data[1000..2000], "{out}");
    assert!(out.stdout.contains("bytes 1000-1999/300000"), "{out}");
    s.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "default",
        "--key",
        "top.bin",
        "--range",
        "bytes=-100",
        part.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(&part).unwrap(), &data[data.len() - 100..]);

    // a folder: `name/` with no body, listed as its marker while empty.
    s.aws_ok(&[
        "s3api",
        "put-object",
        "--bucket",
        "default",
        "--key",
        "empty/",
    ]);
    assert!(s.home.join("empty").is_dir(), "no folder made for `empty/`");
    s.aws_ok(&[
        "s3api",
        "put-object",
        "--bucket",
        "default",
        "--key",
        "a/b/c/",
    ]);
    assert!(s.home.join("a/b/c").is_dir());

    // a file put on disk shows through S3.
    fs::write(s.home.join("dir/from disk.txt"), b"written on disk").unwrap();
    let got = s.scratch.join("disk.txt");
    s.aws_ok(&[
        "s3",
        "cp",
        "s3://default/dir/from disk.txt",
        got.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(&got).unwrap(), b"written on disk");

    // listings: without delimiter, with it, with a prefix.
    let (keys, prefixes) = s.aws_list("", false, None);
    let expect: Vec<String> = [
        "a/b/c/",
        "dir/from disk.txt",
        "dir/plus+sign.txt",
        "dir/with space.txt",
        "dir/ünïcødé €.txt",
        "empty/",
        "top.bin",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    assert_eq!(keys, expect, "recursive listing");
    assert!(prefixes.is_empty());
    let (keys, prefixes) = s.aws_list("", true, None);
    assert_eq!(keys, vec!["top.bin".to_string()]);
    assert_eq!(prefixes, vec!["a/", "dir/", "empty/"]);
    let (keys, prefixes) = s.aws_list("dir/", true, None);
    assert_eq!(keys, expect[1..5].to_vec());
    assert!(prefixes.is_empty());
    let (keys, _) = s.aws_list("dir/p", false, None);
    assert_eq!(keys, vec!["dir/plus+sign.txt".to_string()]);
    let (keys, _) = s.aws_list("empty/", true, None);
    assert_eq!(keys, vec!["empty/".to_string()]);
    let (keys, prefixes) = s.aws_list("a/", true, None);
    assert!(keys.is_empty());
    assert_eq!(prefixes, vec!["a/b/"]);
    let ls = s.aws_ok(&["s3", "ls", "s3://default/dir/"]);
    for name in ODD_NAMES {
        assert!(ls.stdout.contains(name), "`aws s3 ls` lacks {name}:\n{ls}");
    }

    // server-side copy, small.
    s.aws_ok(&[
        "s3",
        "cp",
        "s3://default/dir/with space.txt",
        "s3://default/copies/ü copy+1.txt",
    ]);
    assert_same_file(&src, &s.home.join("copies/ü copy+1.txt"));

    // delete one, then many with DeleteObjects, then a whole prefix.
    s.aws_ok(&["s3", "rm", "s3://default/dir/plus+sign.txt"]);
    assert!(!s.home.join("dir/plus+sign.txt").exists());
    assert!(s.home.join("dir/with space.txt").exists());
    for i in 0..25 {
        fs::create_dir_all(s.home.join("many")).unwrap();
        fs::write(s.home.join(format!("many/f{i:02}")), format!("{i}")).unwrap();
    }
    let objects: Vec<Value> = (0..20)
        .map(|i| serde_json::json!({ "Key": format!("many/f{i:02}") }))
        .collect();
    let request = serde_json::json!({ "Objects": objects, "Quiet": false }).to_string();
    let del = s.aws_ok(&[
        "s3api",
        "delete-objects",
        "--bucket",
        "default",
        "--delete",
        &request,
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_str(&del.stdout).expect("delete-objects JSON");
    assert_eq!(v["Deleted"].as_array().map(Vec::len), Some(20), "{del}");
    assert!(v.get("Errors").is_none(), "{del}");
    let left: BTreeSet<String> = fs::read_dir(s.home.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        (20..25)
            .map(|i| format!("f{i:02}"))
            .collect::<BTreeSet<_>>()
    );
    s.aws_ok(&["s3", "rm", "--recursive", "s3://default/dir/"]);
    assert_eq!(
        fs::read_dir(s.home.join("dir"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "aws s3 rm --recursive left files in dir/"
    );
    let (keys, _) = s.aws_list("dir/", false, None);
    assert!(keys.iter().all(|k| k == "dir/"), "{keys:?}");

    // a deleted key is gone: NoSuchKey (404).
    let err = s.aws_err(&[
        "s3api",
        "get-object",
        "--bucket",
        "default",
        "--key",
        "dir/plus+sign.txt",
        part.to_str().unwrap(),
    ]);
    assert!(err.contains("NoSuchKey"), "{err}");
}

#[test]
fn aws_multipart_100mib_and_part_copy() {
    let s = S3Gw::alice();
    let src = s.scratch.join("big.bin");
    write_random_file(&src, BIG).unwrap();
    let want = sha256_file(&src);
    let out = s.aws_ok(&[
        "s3",
        "cp",
        src.to_str().unwrap(),
        "s3://default/in/big file+ü.bin",
        "--debug",
    ]);
    assert!(
        out.stderr.contains("UploadPart"),
        "aws s3 cp of 100 MiB did not upload in parts"
    );
    let on_disk = s.home.join("in/big file+ü.bin");
    assert_eq!(
        sha256_file(&on_disk),
        want,
        "multipart upload differs on disk"
    );
    let uploads = s.env.state.join("s3-uploads");
    let leftovers = tree_snapshot(&uploads).unwrap();
    assert!(
        leftovers.values().all(Option::is_none),
        "part files left after the upload completed: {leftovers:?}"
    );

    // get of the whole file.
    let got = s.scratch.join("got.bin");
    s.aws_ok(&[
        "s3",
        "cp",
        "s3://default/in/big file+ü.bin",
        got.to_str().unwrap(),
    ]);
    assert_eq!(sha256_file(&got), want, "download differs");
    fs::remove_file(&got).unwrap();

    // a range across the 8 MiB part boundary.
    let range = s.scratch.join("range.bin");
    s.aws_ok(&[
        "s3api",
        "get-object",
        "--bucket",
        "default",
        "--key",
        "in/big file+ü.bin",
        "--range",
        "bytes=8388000-8389999",
        range.to_str().unwrap(),
    ]);
    let data = fs::read(&src).unwrap();
    assert_eq!(fs::read(&range).unwrap(), &data[8_388_000..8_390_000]);
    drop(data);

    // server-side copy over 8 MiB: UploadPartCopy.
    let out = s.aws_ok(&[
        "s3",
        "cp",
        "s3://default/in/big file+ü.bin",
        "s3://default/copy/big copy.bin",
        "--debug",
    ]);
    assert!(
        out.stderr.contains("UploadPartCopy"),
        "the copy did not use UploadPartCopy"
    );
    assert_eq!(
        sha256_file(&s.home.join("copy/big copy.bin")),
        want,
        "server-side multipart copy differs"
    );
}

#[test]
fn aws_listing_pages() {
    // 1203 files in nested folders, made on disk, plus an empty folder.
    let s = S3Gw::alice();
    let mut want = Vec::new();
    for d in 0..3 {
        for i in 0..400 {
            let key = format!("d{d}/sub {}/f+{i:04}", i % 4);
            want.push(key.clone());
        }
    }
    want.extend(["a.txt".into(), "z/ü.txt".into(), "zz.txt".into()]);
    for key in &want {
        let p = s.home.join(key);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, key.as_bytes()).unwrap();
    }
    fs::create_dir_all(s.home.join("m empty")).unwrap();
    want.push("m empty/".into());
    want.sort();

    // the CLI's own paging: 1000 keys a page, then 97.
    for page in [None, Some(97)] {
        let (keys, prefixes) = s.aws_list("", false, page);
        assert!(prefixes.is_empty());
        assert_eq!(keys.len(), want.len(), "page size {page:?}");
        assert_sorted_unique(&keys, "recursive listing");
        assert_eq!(keys, want, "page size {page:?}");
    }
    let ls = s.aws_ok(&["s3", "ls", "--recursive", "s3://default/"]);
    assert_eq!(
        ls.stdout.lines().count(),
        want.len(),
        "aws s3 ls --recursive"
    );

    // with a prefix, in pages of 33.
    let (keys, _) = s.aws_list("d1/sub 2/", false, Some(33));
    let expect: Vec<String> = want
        .iter()
        .filter(|k| k.starts_with("d1/sub 2/"))
        .cloned()
        .collect();
    assert_eq!(expect.len(), 100);
    assert_eq!(keys, expect);

    // with a delimiter, pages of 2: prefixes and objects, each once.
    let (keys, prefixes) = s.aws_list("", true, Some(2));
    assert_eq!(keys, vec!["a.txt", "zz.txt"]);
    assert_eq!(prefixes, vec!["d0/", "d1/", "d2/", "m empty/", "z/"]);

    // by hand: max-keys and continuation tokens.
    let mut token: Option<String> = None;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = vec![
            "s3api",
            "list-objects-v2",
            "--bucket",
            "default",
            "--prefix",
            "d2/",
            "--max-keys",
            "150",
            "--output",
            "json",
        ];
        if let Some(t) = &token {
            args.extend(["--continuation-token", t.as_str()]);
        }
        let out = s.aws_ok(&args);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let (keys, _) = parse_listing(&out.stdout);
        assert!(keys.len() <= 150, "a page of {} keys", keys.len());
        got.extend(keys);
        pages += 1;
        if v["IsTruncated"].as_bool() != Some(true) {
            break;
        }
        token = Some(
            v["NextContinuationToken"]
                .as_str()
                .expect("a truncated page has a NextContinuationToken")
                .to_string(),
        );
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    let expect: Vec<String> = want
        .iter()
        .filter(|k| k.starts_with("d2/"))
        .cloned()
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn rclone_operations() {
    let s = S3Gw::alice();
    let src = s.scratch.join("src.bin");
    write_random_file(&src, 200_000).unwrap();
    let src_s = src.to_str().unwrap();
    let data = fs::read(&src).unwrap();

    // put, odd names.
    for name in ODD_NAMES {
        s.rclone_ok(&["copyto", src_s, &format!("gw:default/r dir/{name}")]);
        assert_same_file(&src, &s.home.join("r dir").join(name));
    }
    // get, whole and ranges.
    let got = s.scratch.join("got.bin");
    for name in ODD_NAMES {
        s.rclone_ok(&[
            "copyto",
            &format!("gw:default/r dir/{name}"),
            got.to_str().unwrap(),
        ]);
        assert_eq!(sha256_file(&got), sha256_file(&src), "{name}");
    }
    // a range: a text file, so the bytes survive as text.
    let text: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    fs::write(s.home.join("r dir/letters ü.txt"), &text).unwrap();
    let cat = s.rclone_ok(&[
        "cat",
        "--offset",
        "5001",
        "--count",
        "64",
        "gw:default/r dir/letters ü.txt",
    ]);
    assert_eq!(cat.stdout, &text[5001..5065], "rclone cat --offset --count");
    let cat = s.rclone_ok(&["cat", "--tail", "10", "gw:default/r dir/letters ü.txt"]);
    assert_eq!(cat.stdout, &text[text.len() - 10..], "rclone cat --tail");
    drop(data);

    // a file put on disk shows through S3.
    fs::write(s.home.join("r dir/disk ü.txt"), b"from the disk").unwrap();
    let out = s.rclone_ok(&["cat", "gw:default/r dir/disk ü.txt"]);
    assert_eq!(out.stdout, "from the disk");

    // listings: delimiter (lsf), recursive with (lsf -R) and without
    // (--fast-list) it, paged 7 keys at a time.
    fs::create_dir_all(s.home.join("r dir/empty")).unwrap();
    for i in 0..40 {
        fs::create_dir_all(s.home.join("pages/sub")).unwrap();
        fs::write(s.home.join(format!("pages/sub/p+ü {i:03}")), b"x").unwrap();
        fs::write(s.home.join(format!("pages/q {i:03}+")), b"y").unwrap();
    }
    let top = s.rclone_ok(&["lsf", "gw:default"]);
    assert_eq!(
        top.stdout.lines().collect::<Vec<_>>(),
        vec!["pages/", "r dir/"]
    );
    let dir = s.rclone_ok(&["lsf", "gw:default/r dir"]);
    let mut expect_dir: Vec<&str> = vec!["disk ü.txt", "empty/", "letters ü.txt"];
    expect_dir.extend(ODD_NAMES);
    expect_dir.sort();
    let mut got_dir: Vec<&str> = dir.stdout.lines().collect();
    got_dir.sort();
    assert_eq!(got_dir, expect_dir);
    let mut want: Vec<String> = (0..40)
        .flat_map(|i| [format!("sub/p+ü {i:03}"), format!("q {i:03}+")])
        .collect();
    want.sort();
    for extra in [&["--fast-list"][..], &[][..]] {
        let mut args = vec![
            "lsf",
            "-R",
            "--files-only",
            "--s3-list-chunk",
            "7",
            "gw:default/pages",
        ];
        args.extend_from_slice(extra);
        let out = s.rclone_ok(&args);
        let mut got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        let n = got.len();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), n, "rclone {args:?} listed a key twice");
        assert_eq!(got, want, "rclone {args:?}");
    }
    // the same with ListObjectsV2.
    let out = s.rclone_ok(&[
        "lsf",
        "-R",
        "--files-only",
        "--fast-list",
        "--s3-list-version",
        "2",
        "--s3-list-chunk",
        "9",
        "gw:default/pages",
    ]);
    let mut got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want, "list version 2");

    // server-side copy, small.
    s.rclone_ok(&[
        "copyto",
        "gw:default/r dir/with space.txt",
        "gw:default/copies/c+ü.txt",
    ]);
    assert_same_file(&src, &s.home.join("copies/c+ü.txt"));

    // delete one, then many.
    s.rclone_ok(&["deletefile", "gw:default/r dir/plus+sign.txt"]);
    assert!(!s.home.join("r dir/plus+sign.txt").exists());
    s.rclone_ok(&["delete", "gw:default/pages"]);
    let left = tree_snapshot(&s.home.join("pages")).unwrap();
    assert!(
        left.values().all(Option::is_none),
        "rclone delete left files: {left:?}"
    );
    let ls = s.rclone_ok(&["lsf", "gw:default/r dir"]);
    assert!(!ls.stdout.contains("plus+sign.txt"), "{ls}");
    let got = s.scratch.join("deleted.txt");
    s.rclone_err(&[
        "copyto",
        "--error-on-no-transfer",
        "gw:default/r dir/plus+sign.txt",
        got.to_str().unwrap(),
    ]);
    assert!(!got.exists());
}

#[test]
fn rclone_multipart_100mib_and_part_copy() {
    let s = S3Gw::alice();
    let src = s.scratch.join("big.bin");
    write_random_file(&src, BIG).unwrap();
    let want = sha256_file(&src);
    let out = s.rclone_ok(&[
        "copyto",
        "-vv",
        "--s3-upload-cutoff",
        "8M",
        "--s3-chunk-size",
        "16M",
        src.to_str().unwrap(),
        "gw:default/in/big ü+.bin",
    ]);
    assert!(
        out.stderr.contains("multipart upload") || out.stderr.contains("Multipart"),
        "rclone did not upload in parts:\n{}",
        out.stderr
    );
    assert_eq!(sha256_file(&s.home.join("in/big ü+.bin")), want);

    let got = s.scratch.join("got.bin");
    s.rclone_ok(&["copyto", "gw:default/in/big ü+.bin", got.to_str().unwrap()]);
    assert_eq!(sha256_file(&got), want, "download differs");
    fs::remove_file(&got).unwrap();

    // a range with cat, across a chunk boundary.
    let out = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" cat --offset 16777200 --count 40 \"gw:default/in/big ü+.bin\" | sha256sum")
        .arg("/usr/bin/rclone")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &s.scratch)
        .env("RCLONE_CONFIG", s.scratch.join("rclone.conf"))
        .env("RCLONE_CONFIG_GW_TYPE", "s3")
        .env("RCLONE_CONFIG_GW_PROVIDER", "Other")
        .env("RCLONE_CONFIG_GW_ENDPOINT", &s.url)
        .env("RCLONE_CONFIG_GW_ACCESS_KEY_ID", &s.key.id)
        .env("RCLONE_CONFIG_GW_SECRET_ACCESS_KEY", &s.key.secret)
        .output()
        .unwrap();
    let data = fs::read(&src).unwrap();
    let expect = sha256_hex(&data[16_777_200..16_777_240]);
    drop(data);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some(expect.as_str()),
        "rclone cat --offset --count: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // server-side copy in parts (UploadPartCopy above the copy cutoff).
    let out = s.rclone_ok(&[
        "copyto",
        "-vv",
        "--dump",
        "headers",
        "--s3-copy-cutoff",
        "16M",
        "gw:default/in/big ü+.bin",
        "gw:default/copy/big copy.bin",
    ]);
    assert!(
        out.stderr.contains("x-amz-copy-source-range")
            || out.stderr.contains("X-Amz-Copy-Source-Range"),
        "rclone did not copy in parts"
    );
    assert_eq!(sha256_file(&s.home.join("copy/big copy.bin")), want);
}

/// A partner confined to their home: `/` list-only, `/incoming`
/// everything, `/secret` nothing; the storage has other users' files.
fn partner() -> S3Gw {
    S3Gw::start(
        UserConfig::new("partner")
            .home("partner")
            .perm("/", &["list"])
            .perm("/incoming", ALL)
            .perm("/secret", &[]),
        "partner",
        |data| {
            for (p, body) in [
                ("other/private.txt", "other user's"),
                ("partner/top.txt", "listed, not readable"),
                ("partner/secret/x", "TOP SECRET CONTENT"),
                ("partner/incoming/old.txt", "old"),
                ("partnerx/neighbour.txt", "next door"),
            ] {
                let path = data.join(p);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, body).unwrap();
            }
        },
        None,
    )
}

#[test]
fn confinement() {
    let s = partner();
    let before = tree_snapshot(&s.env.data).unwrap();
    let outside = |snap: &std::collections::BTreeMap<PathBuf, Option<u64>>| {
        snap.iter()
            .filter(|(p, _)| !p.starts_with("partner/incoming"))
            .map(|(p, s)| (p.clone(), *s))
            .collect::<Vec<_>>()
    };

    // the bucket shows only the partner's tree, and nothing in `secret`.
    let (keys, _) = s.aws_list("", false, None);
    assert_eq!(keys, vec!["incoming/old.txt", "top.txt"]);
    let (keys, prefixes) = s.aws_list("", true, None);
    assert_eq!(keys, vec!["top.txt"]);
    assert_eq!(prefixes, vec!["incoming/", "secret/"]);
    let (keys, prefixes) = s.aws_list("secret/", false, None);
    assert!(
        keys.is_empty() && prefixes.is_empty(),
        "{keys:?} {prefixes:?}"
    );
    let ls = s.rclone_ok(&["lsf", "-R", "--files-only", "gw:default"]);
    let mut got: Vec<&str> = ls.stdout.lines().collect();
    got.sort();
    assert_eq!(got, vec!["incoming/old.txt", "top.txt"], "rclone lsf -R");
    let ls = s.rclone_ok(&["lsf", "-R", "--fast-list", "--files-only", "gw:default"]);
    assert_eq!(
        ls.stdout.lines().collect::<Vec<_>>(),
        vec!["incoming/old.txt", "top.txt"]
    );

    // hidden keys answer exactly like missing ones.
    let (st_hidden, body_hidden) = s.signed("GET", "/default/secret/x", None);
    let (st_hidden2, body_hidden2) = s.signed("GET", "/default/secret/nothing", None);
    let (st_missing, body_missing) = s.signed("GET", "/default/incoming/nothing", None);
    assert_eq!(
        (st_hidden, error_code(&body_hidden).as_str()),
        (404, "NoSuchKey"),
        "{body_hidden}"
    );
    assert_eq!(
        (st_hidden, &body_hidden),
        (st_hidden2, &body_hidden2.replace("nothing", "x"))
    );
    assert_eq!(
        (st_missing, error_code(&body_missing).as_str()),
        (404, "NoSuchKey")
    );
    let (st, body) = s.signed("HEAD", "/default/secret/x", None);
    assert_eq!(st, 404, "{body}");
    let (st, body) = s.signed("GET", "/default/top.txt", None);
    assert_eq!(
        (st, error_code(&body).as_str()),
        (404, "NoSuchKey"),
        "top.txt has no read: {body}"
    );
    let got = s.scratch.join("got");
    for key in ["secret/x", "top.txt"] {
        let err = s.aws_err(&[
            "s3api",
            "get-object",
            "--bucket",
            "default",
            "--key",
            key,
            got.to_str().unwrap(),
        ]);
        assert!(err.contains("NoSuchKey"), "{key}: {err}");
    }
    assert!(!got.exists() || fs::read(&got).unwrap().is_empty());
    let got = s.scratch.join("rclone-got");
    s.rclone_err(&[
        "copyto",
        "--error-on-no-transfer",
        "gw:default/secret/x",
        got.to_str().unwrap(),
    ]);
    assert!(!got.exists(), "rclone fetched a hidden file");
    // a hidden file cannot be copied out either.
    let err = s.aws_err(&[
        "s3",
        "cp",
        "s3://default/secret/x",
        "s3://default/incoming/stolen",
    ]);
    assert!(err.contains("(404)"), "{err}");
    let err = s.aws_err(&[
        "s3api",
        "copy-object",
        "--bucket",
        "default",
        "--key",
        "incoming/stolen",
        "--copy-source",
        "default/secret/x",
    ]);
    assert!(err.contains("NoSuchKey"), "{err}");
    assert!(!s.env.data.join("partner/incoming/stolen").exists());

    // writing outside incoming: AccessDenied.
    let small = s.scratch.join("small.txt");
    fs::write(&small, b"partner data").unwrap();
    let small_s = small.to_str().unwrap();
    for dest in [
        "s3://default/new.txt",
        "s3://default/top.txt",
        "s3://default/newdir/f.txt",
    ] {
        let err = s.aws_err(&["s3", "cp", small_s, dest]);
        assert!(err.contains("AccessDenied"), "{dest}: {err}");
    }
    let err = s.aws_err(&[
        "s3api",
        "put-object",
        "--bucket",
        "default",
        "--key",
        "newdir/",
    ]);
    assert!(err.contains("AccessDenied"), "{err}");
    let err = s.aws_err(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "default",
        "--key",
        "big.bin",
    ]);
    assert!(err.contains("AccessDenied"), "{err}");
    let err = s.aws_err(&["s3", "rm", "s3://default/top.txt"]);
    assert!(err.contains("AccessDenied"), "{err}");
    let err = s.aws_err(&[
        "s3",
        "cp",
        "s3://default/incoming/old.txt",
        "s3://default/copied.txt",
    ]);
    assert!(err.contains("AccessDenied"), "{err}");
    let err = s.rclone_err(&["copyto", small_s, "gw:default/rclone.txt"]);
    assert!(err.contains("AccessDenied"), "{err}");
    // deleting a hidden file does nothing.
    let _ = s.aws_with(&s.key, &["s3", "rm", "s3://default/secret/x"]);
    assert!(s.env.data.join("partner/secret/x").exists());

    // inside incoming everything works.
    s.aws_ok(&["s3", "cp", small_s, "s3://default/incoming/ok ü.txt"]);
    assert_eq!(
        fs::read(s.env.data.join("partner/incoming/ok ü.txt")).unwrap(),
        b"partner data"
    );
    s.rclone_ok(&["copyto", small_s, "gw:default/incoming/sub/r+.txt"]);
    assert_eq!(
        fs::read(s.env.data.join("partner/incoming/sub/r+.txt")).unwrap(),
        b"partner data"
    );

    // keys that would leave the home, or name one thing two ways: refused.
    for (method, path) in [
        ("PUT", "/default/incoming/../../other/pwned.txt"),
        ("PUT", "/default/incoming/../../partnerx/pwned.txt"),
        ("PUT", "/default/incoming/../top.txt"),
        ("PUT", "/default/../other/pwned.txt"),
        ("PUT", "/default/incoming/./x.txt"),
        ("PUT", "/default/incoming//x.txt"),
        ("PUT", "/default//incoming/x.txt"),
        ("PUT", "/default/incoming/sub/.."),
        ("GET", "/default/incoming/../../other/private.txt"),
        ("GET", "/default/incoming/../secret/x"),
        ("DELETE", "/default/incoming/../../other/private.txt"),
        ("DELETE", "/default/incoming/../top.txt"),
    ] {
        let body = (method == "PUT").then_some(&b"pwned"[..]);
        let (status, reply) = s.signed(method, path, body);
        assert!(
            status == 400 && error_code(&reply) == "InvalidArgument",
            "{method} {path}: HTTP {status} {reply}\n{}",
            s.logs()
        );
        assert!(
            !reply.contains("other user's") && !reply.contains("TOP SECRET"),
            "{reply}"
        );
    }
    // the same through CopyObject's source.
    let out = s.aws_with(
        &s.key,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "default",
            "--key",
            "incoming/copied2.txt",
            "--copy-source",
            "default/incoming/../../other/private.txt",
        ],
    );
    assert!(!out.success(), "copy from ../../other succeeded:\n{out}");
    assert!(out.text().contains("InvalidArgument"), "{out}");
    assert!(!s.env.data.join("partner/incoming/copied2.txt").exists());

    // nothing outside incoming changed on disk.
    let after = tree_snapshot(&s.env.data).unwrap();
    assert_eq!(
        outside(&before),
        outside(&after),
        "files outside partner/incoming changed"
    );
    assert_eq!(
        fs::read_to_string(s.env.data.join("other/private.txt")).unwrap(),
        "other user's"
    );
    assert_eq!(
        fs::read_to_string(s.env.data.join("partner/secret/x")).unwrap(),
        "TOP SECRET CONTENT"
    );
}

#[test]
fn keys_wrong_unknown_revoked_listed() {
    let s = S3Gw::alice();
    fs::write(s.home.join("f.txt"), b"hello").unwrap();
    s.aws_ok(&["s3", "ls", "s3://default/"]);

    let wrong = S3Key {
        id: s.key.id.clone(),
        secret: format!("{}x", &s.key.secret[..39]),
    };
    let out = s.aws_with(&wrong, &["s3", "ls", "s3://default/"]);
    assert!(
        !out.success() && out.text().contains("SignatureDoesNotMatch"),
        "{out}"
    );
    let unknown = S3Key {
        id: "GWAAAAAAAAAAAAAAAAAA".into(),
        secret: s.key.secret.clone(),
    };
    let out = s.aws_with(&unknown, &["s3", "ls", "s3://default/"]);
    assert!(
        !out.success() && out.text().contains("InvalidAccessKeyId"),
        "{out}"
    );
    let (status, body) = signed_request(
        &s.url,
        "GET",
        "/default/f.txt",
        None,
        &unknown.id,
        &unknown.secret,
        &s.scratch,
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "InvalidAccessKeyId"),
        "{body}"
    );
    let (status, body) = signed_request(
        &s.url,
        "GET",
        "/default/f.txt",
        None,
        &wrong.id,
        &wrong.secret,
        &s.scratch,
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    // unsigned: refused.
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .arg(format!("{}/default/f.txt", s.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("403"), "anonymous GET: {text}");
    assert!(!text.contains("hello"));

    // a second key, while the gateway runs; list shows both, no secret.
    let second = create_key(&s.config, "alice").expect("second key");
    let list = s3_key_command(&s.config, &["list"]).unwrap();
    assert!(list.success(), "{list}");
    for k in [&s.key, &second] {
        assert!(list.stdout.contains(&k.id), "list lacks {}:\n{list}", k.id);
        assert!(
            !list.text().contains(&k.secret),
            "list shows a secret:\n{list}"
        );
    }
    assert!(list.stdout.contains("alice"), "{list}");
    let got = s.scratch.join("got.txt");
    let out = s.aws_with(
        &second,
        &["s3", "cp", "s3://default/f.txt", got.to_str().unwrap()],
    );
    assert!(out.success(), "{out}");
    assert_eq!(fs::read(&got).unwrap(), b"hello");

    // revoke the first while the gateway runs: its next request fails.
    let out = s3_key_command(&s.config, &["revoke", &s.key.id]).unwrap();
    assert!(out.success(), "{out}");
    let out = s.aws_with(&s.key, &["s3", "ls", "s3://default/"]);
    assert!(
        !out.success() && out.text().contains("InvalidAccessKeyId"),
        "{out}"
    );
    let (status, body) = s.signed("PUT", "/default/after-revoke.txt", Some(b"x"));
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "InvalidAccessKeyId"),
        "{body}"
    );
    assert!(!s.home.join("after-revoke.txt").exists());
    let out = s.aws_with(&second, &["s3", "ls", "s3://default/"]);
    assert!(out.success() && out.stdout.contains("f.txt"), "{out}");
    let list = s3_key_command(&s.config, &["list"]).unwrap();
    assert!(
        !list.stdout.contains(&s.key.id),
        "revoked key still listed:\n{list}"
    );
    assert!(list.stdout.contains(&second.id));
    let out = s3_key_command(&s.config, &["revoke", &s.key.id]).unwrap();
    assert!(!out.success(), "revoking twice succeeded: {out}");
    // a key for a user that does not exist is not issued.
    let out = s3_key_command(&s.config, &["create", "nobody"]).unwrap();
    assert!(!out.success(), "{out}");

    // An API the endpoint does not offer (bucket ACLs) is the client's
    // business too.
    let (status, body) = signed_request(
        &s.url,
        "GET",
        "/default?acl=",
        None,
        &second.id,
        &second.secret,
        &s.scratch,
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (501, "NotImplemented"),
        "{body}"
    );
    // The client's mistakes above (wrong, unknown and revoked keys, an
    // unsigned request, an API not offered) are logged as refusals at
    // INFO, never as the gateway's errors.
    let logs = s.gw.logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .filter(|l| l.to_lowercase().contains("s3"))
        .collect();
    assert!(
        errors.is_empty(),
        "client mistakes logged as errors: {errors:#?}"
    );
    assert!(
        logs.lines().any(|l| l.contains(" INFO ")
            && l.contains("S3 request refused")
            && l.contains("status=403")),
        "no INFO line for the refused requests\n{logs}"
    );
}

#[test]
fn tls_endpoint_with_aws_ca_bundle() {
    let certs = tempfile::tempdir().unwrap();
    e2e::ftpd::make_certs(certs.path()).expect("test certificates");
    let (cert, key, ca) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
        certs.path().join("ca.pem"),
    );
    let mut s = S3Gw::start(
        UserConfig::new("alice").perm("/", ALL),
        "alice",
        |_| {},
        Some((&cert, &key)),
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    // without the CA the certificate is not trusted.
    let out = s.aws_with(&s.key, &["s3", "ls", "s3://default/"]);
    assert!(!out.success(), "aws trusted an unknown CA:\n{out}");
    // plain HTTP on the TLS port gets no S3 answer.
    let plain = s.url.replace("https://", "http://");
    let out = aws(&plain, &s.key, &["s3", "ls", "s3://default/"], &s.scratch).unwrap();
    assert!(!out.success(), "plain HTTP answered:\n{out}");

    s.aws_extra = vec!["--ca-bundle".into(), ca.display().to_string()];
    let src = s.scratch.join("src.bin");
    write_random_file(&src, 3 << 20).unwrap();
    s.aws_ok(&[
        "s3",
        "cp",
        src.to_str().unwrap(),
        "s3://default/tls/f ü.bin",
    ]);
    assert_same_file(&src, &s.home.join("tls/f ü.bin"));
    let ls = s.aws_ok(&["s3", "ls", "--recursive", "s3://default/"]);
    assert!(ls.stdout.contains("tls/f ü.bin"), "{ls}");
    let got = s.scratch.join("got.bin");
    s.aws_ok(&[
        "s3",
        "cp",
        "s3://default/tls/f ü.bin",
        got.to_str().unwrap(),
    ]);
    assert_same_file(&src, &got);
}

#[test]
fn non_loopback_s3_without_certificate_is_refused() {
    let env = TestEnv::new().unwrap();
    let pubkey = client_key(&env.path("id_ed25519")).unwrap();
    let mut cfg = env.config();
    cfg.users.push(UserConfig::new("alice").key(&pubkey));
    let check = |text: &str| {
        let path = env.path("check.toml");
        fs::write(&path, text).unwrap();
        let mut cmd = Command::new(gateway_bin().unwrap());
        cmd.args(["config", "check", "-c"]).arg(&path);
        run_with_timeout(cmd, Duration::from_secs(60)).unwrap()
    };
    cfg.s3_listen = Some("0.0.0.0:0".into());
    let out = check(&cfg.to_toml());
    assert!(!out.success(), "0.0.0.0 without TLS accepted:\n{out}");
    assert!(out.text().contains("s3.listen"), "{out}");

    cfg.s3_listen = Some("127.0.0.1:0".into());
    let out = check(&cfg.to_toml());
    assert!(out.success(), "loopback without TLS refused:\n{out}");

    // with a certificate, any address.
    let certs = tempfile::tempdir().unwrap();
    e2e::ftpd::make_certs(certs.path()).unwrap();
    cfg.s3_listen = Some("0.0.0.0:0".into());
    let text = cfg.to_toml().replacen(
        "[s3]\n",
        &format!(
            "[s3]\ncertificate = {}\nprivate_key = {}\n",
            toml_str(&certs.path().join("server.pem").display().to_string()),
            toml_str(&certs.path().join("server.key").display().to_string())
        ),
        1,
    );
    let out = check(&text);
    assert!(out.success(), "0.0.0.0 with TLS refused:\n{out}");
    // a certificate without its key is named.
    let text = cfg.to_toml().replacen(
        "[s3]\n",
        &format!(
            "[s3]\ncertificate = {}\n",
            toml_str(&certs.path().join("server.pem").display().to_string())
        ),
        1,
    );
    let out = check(&text);
    assert!(
        !out.success() && out.text().contains("s3.private_key"),
        "{out}"
    );
}

/// The endpoint's guards: an access key over its rate gets 503 SlowDown
/// and recovers; a download the client stops reading is abandoned after
/// `write_timeout`; a 70 KiB header gets 431; an address that keeps
/// failing signatures is refused (503 SlowDown) while another address is
/// served.
#[test]
fn guards_rate_stall_headers_and_failed_signatures() {
    const SIZE: usize = 64 << 20;
    let s = S3Gw::start_with(
        UserConfig::new("alice"),
        "alice",
        |_| {},
        None,
        &["write_timeout = \"2s\"", "requests_per_second_per_key = 5"],
    );
    write_random_file(&s.home.join("big.bin"), SIZE).unwrap();
    fs::write(s.home.join("f.txt"), b"hello").unwrap();

    // A key over its rate (5 a second, 10 at once).
    let mut codes = Vec::new();
    for _ in 0..30 {
        let (status, body) = s.signed("GET", "/default/f.txt", None);
        codes.push((status, error_code(&body)));
    }
    assert!(
        codes.iter().any(|(st, c)| *st == 503 && c == "SlowDown"),
        "no SlowDown in 30 quick requests: {codes:?}"
    );
    assert!(
        codes.iter().filter(|(st, _)| *st == 200).count() >= 10,
        "{codes:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.signed("GET", "/default/f.txt", None).0, 200);

    // A download nobody reads: abandoned after write_timeout.
    let out = s.aws_ok(&["s3", "presign", "s3://default/big.bin"]);
    let url = out.stdout.trim().to_string();
    let target = url.splitn(4, '/').nth(3).map(|t| format!("/{t}")).unwrap();
    let addr: std::net::SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let got = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(c, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        // Read nothing while the gateway fills the buffers and waits.
        std::thread::sleep(Duration::from_secs(6));
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut total = 0usize;
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if head.len() < 64 {
                        head.extend_from_slice(&buf[..n.min(64)]);
                    }
                    total += n;
                }
            }
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "the presigned GET was not answered 200: {:?}",
            String::from_utf8_lossy(&head)
        );
        total
    };
    assert!(
        got > 1 << 20 && got < SIZE,
        "the stalled download was not abandoned: {got} bytes of {SIZE} arrived\n{}",
        s.logs()
    );

    // Headers beyond 64 KiB.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("X-Big: {}", "a".repeat(70 * 1024)))
        .arg(format!("{}/default/f.txt", s.url));
    let out = run_with_timeout(cmd, Duration::from_secs(30)).unwrap();
    assert_eq!(out.stdout.trim(), "431", "a 70 KiB header: {}", out.stderr);

    // Wrong signatures from 127.0.0.1: after 20, even the right key is
    // refused from there; 127.0.0.2 is served.
    let wrong = format!("{}x", &s.key.secret[..39]);
    for _ in 0..20 {
        let (status, body) = signed_request(
            &s.url,
            "GET",
            "/default/f.txt",
            None,
            &s.key.id,
            &wrong,
            &s.scratch,
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "SignatureDoesNotMatch")
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let (status, body) = s.signed("GET", "/default/f.txt", None);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, "SlowDown"),
        "{body}"
    );
    assert!(body.contains("wrong credentials"), "{body}");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--interface",
        "127.0.0.2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
    .arg(format!("{}:{}", s.key.id, s.key.secret))
    .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
    .arg(format!("{}/default/f.txt", s.url));
    let out = run_with_timeout(cmd, Duration::from_secs(30)).unwrap();
    assert_eq!(out.stdout.trim(), "200", "another address: {out}");
}
