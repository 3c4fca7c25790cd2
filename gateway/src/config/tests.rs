//! The configuration's unit tests: loading, every validation rule and
//! the way problems are reported.

use super::remotes::endpoint_has_userinfo;
use super::*;
use crate::sync::schedule::Schedule;

fn load_text(text: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, text).unwrap();
    load_with_env(Some(&path), vec![])
}

#[test]
fn defaults_without_file() {
    let s = load_with_env(None, vec![]).unwrap();
    assert_eq!(s.listen, vec!["127.0.0.1:2222".parse().unwrap()]);
    assert_eq!(s.storage, PathBuf::from("./gateway-data"));
    assert!(s.users.is_empty());
}

#[test]
fn environment_overrides() {
    let env = vec![(
        "GATEWAY__SERVER__LISTEN".to_string(),
        "127.0.0.1:0".to_string(),
    )];
    let s = load_with_env(None, env).unwrap();
    assert_eq!(s.listen, vec!["127.0.0.1:0".parse().unwrap()]);
}

#[test]
fn typo_names_file_line_and_key() {
    let err = load_text("[server]\n\nlisen = [\"127.0.0.1:0\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gw.toml:3:"), "{err}");
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn bad_cidr_names_the_key() {
    let text = "[[users]]\nname = \"a\"\nauthorized_keys = []\npassword_hash = \"x\"\nallowed_networks = [\"10.0.0.300/8\"]\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(err.contains("gw.toml:5:"), "{err}");
    assert!(err.contains("users[0].allowed_networks"), "{err}");
}

#[test]
fn proxy_protocol_from_is_read_and_checked() {
    let s = load_text("[server]\nproxy_protocol_from = [\"10.0.0.0/8\", \"::1/128\"]\n").unwrap();
    assert_eq!(
        s.proxy_protocol_from,
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    );
    assert!(load_with_env(None, vec![])
        .unwrap()
        .proxy_protocol_from
        .is_empty());
    let err = load_text("[server]\nproxy_protocol_from = [\"10.0.0.0/33\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gw.toml:2:"), "{err}");
    assert!(err.contains("server.proxy_protocol_from"), "{err}");
    let env = vec![(
        "GATEWAY__SERVER__PROXY_PROTOCOL_FROM".to_string(),
        "10.1.0.0/16,10.2.0.0/16".to_string(),
    )];
    assert_eq!(
        load_with_env(None, env).unwrap().proxy_protocol_from.len(),
        2
    );
}

#[test]
fn semantic_problems_are_all_reported() {
    let text = "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\nauthorized_keys_file = \"/nonexistent/keys\"\n[users.permissions]\n\"/\" = [\"read\"]\n\"up\" = [\"write\"]\n";
    let err = load_text(text).unwrap_err();
    let all = err.to_string();
    assert_eq!(err.0.len(), 3, "{all}");
    assert!(
        all.contains("gw.toml:3: key `users[0].password_hash`"),
        "{all}"
    );
    assert!(all.contains("/nonexistent/keys"), "{all}");
    assert!(all.contains("users[0].permissions"), "{all}");
}

#[test]
fn missing_file_is_named() {
    let err = load_with_env(Some(Path::new("/no/such/gw.toml")), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/no/such/gw.toml") && err.contains("no such file"),
        "{err}"
    );
}

#[test]
fn ftp_remote_defaults() {
    let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\n\n[[remotes]]\nname = \"implicit\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\ntls = \"require_implicit\"\ncertificate = \"allow_any\"\natomic_uploads = true\n";
    let s = load_text(text).unwrap();
    let explicit = s.remote("partner").unwrap();
    assert_eq!(explicit.kind(), RemoteKind::Ftp);
    assert_eq!(explicit.port, 21);
    assert_eq!(explicit.max_connections, 25);
    let ProtocolSettings::Ftp(f) = &explicit.protocol else {
        panic!("not ftp: {explicit:?}")
    };
    assert_eq!(f.tls, FtpTlsMode::Require);
    assert_eq!(f.certificate, CertificatePolicy::RequireMatch);
    assert!(!f.atomic_uploads);
    let implicit = s.remote("implicit").unwrap();
    assert_eq!(implicit.port, 990);
    let ProtocolSettings::Ftp(f) = &implicit.protocol else {
        panic!("not ftp: {implicit:?}")
    };
    assert_eq!(f.certificate, CertificatePolicy::AllowAny);
    assert!(f.atomic_uploads);
}

#[test]
fn keys_of_another_protocol_are_named() {
    let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"ftp.example\"\nusername = \"u\"\npassword = \"p\"\nhost_key = \"ssh-ed25519 AAAA\"\n\n[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls = \"never\"\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:7: key `remotes[0].host_key`"),
        "{err}"
    );
    assert!(err.contains("applies only to sftp remotes"), "{err}");
    assert!(err.contains("gw.toml:15: key `remotes[1].tls`"), "{err}");
    assert!(err.contains("applies only to ftp remotes"), "{err}");
}

#[test]
fn unknown_tls_mode_is_named() {
    let text = "[[remotes]]\nname = \"partner\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ntls = \"sometimes\"\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(err.contains("gw.toml:7"), "{err}");
    assert!(err.contains("sometimes"), "{err}");
}

#[test]
fn s3_remote_needs_its_keys_and_refuses_sftp_keys() {
    let text = "[[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nhost_key = \"ssh-ed25519 AAAA\"\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:4: key `remotes[0].endpoint`"),
        "{err}"
    );
    assert!(err.contains("is not a URL"), "{err}");
    assert!(err.contains("needs `secret_access_key`"), "{err}");
    assert!(
        err.contains("gw.toml:7: key `remotes[0].host_key`")
            && err.contains("applies only to sftp remotes"),
        "{err}"
    );
}

#[test]
fn s3_remote_defaults() {
    let text = "[[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
    let s = load_text(text).unwrap();
    let r = s.remote("bucket").unwrap();
    let ProtocolSettings::S3(s3) = &r.protocol else {
        panic!("not s3: {r:?}")
    };
    assert_eq!(s3.region, "us-east-1");
    assert!(s3.path_style);
    assert!(!s3.recursive_folder_rename);
    assert!(s3.folder_markers, "markers are on by default");
    assert_eq!(r.max_connections, backends::s3::DEFAULT_MAX_REQUESTS);
    assert!(!format!("{r:?}").contains("SK"), "secret in Debug: {r:?}");
    // A cap of its own: requests in flight at once.
    let capped = load_text(&format!("{text}max_connections = 4\n")).unwrap();
    assert_eq!(capped.remote("bucket").unwrap().max_connections, 4);
}

/// Writes `files` (name, content, mode) and `config` into a fresh
/// folder and loads the config with `env`.
fn load_in_dir(
    config: &str,
    files: &[(&str, &str, u32)],
    env: &[(&str, &str)],
) -> (tempfile::TempDir, Result<Settings, ConfigError>) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, content, mode) in files {
        let f = dir.path().join(name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, content).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = load_with_env(Some(&path), env);
    (dir, loaded)
}

const ED25519_ENCRYPTED: &str =
    include_str!("../../../certs/tests/data/test_ed25519_openssh_encrypted");

#[test]
fn secrets_come_from_files_and_the_environment() {
    let config = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"secrets/box.pw\"\n\n\
        [[remotes]]\nname = \"keyed\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\nprivate_key_env = \"GWT_KEY\"\nprivate_key_passphrase_file = \"phrase\"\n\n\
        [[remotes]]\nname = \"legacy\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_FTP_PW\"\n\n\
        [[remotes]]\nname = \"bucket\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key_env = \"GWT_S3\"\n";
    let (_dir, loaded) = load_in_dir(
        config,
        &[
            ("secrets/box.pw", "Zq-file-pw-1187\n", 0o600),
            ("phrase", "test-passphrase\r\n", 0o600),
        ],
        &[
            ("GWT_KEY", ED25519_ENCRYPTED),
            ("GWT_FTP_PW", "Zq-env-pw-5521"),
            ("GWT_S3", "Zq-s3-secret-9034"),
        ],
    );
    let s = loaded.unwrap();
    let pw = |name: &str| {
        s.remote(name)
            .unwrap()
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
    };
    assert_eq!(pw("box").as_deref(), Some("Zq-file-pw-1187"));
    assert_eq!(pw("legacy").as_deref(), Some("Zq-env-pw-5521"));
    let keyed = s.remote("keyed").unwrap();
    let ProtocolSettings::Sftp(sftp) = &keyed.protocol else {
        panic!("not sftp")
    };
    assert!(sftp.private_key.is_some(), "the key from GWT_KEY");
    let bucket = s.remote("bucket").unwrap();
    let ProtocolSettings::S3(s3) = &bucket.protocol else {
        panic!("not s3")
    };
    assert_eq!(s3.secret_access_key.expose(), "Zq-s3-secret-9034");
    // Not one secret in any Debug output.
    let shown = format!("{s:?} {s:#?}");
    for secret in [
        "Zq-file-pw-1187",
        "Zq-env-pw-5521",
        "Zq-s3-secret-9034",
        "test-passphrase",
    ] {
        assert!(!shown.contains(secret), "{secret} in Debug: {shown}");
    }
    assert!(shown.contains(REDACTED), "{shown}");
}

#[test]
fn secret_mistakes_name_file_line_and_key() {
    let remote = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\n";
    // Inline and from a file at once.
    let (_d, r) = load_in_dir(
        &format!("{remote}password = \"Zq-inline-4410\"\npassword_file = \"pw\"\n"),
        &[("pw", "x", 0o600)],
        &[],
    );
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:7: key `remotes[0].password_file`"),
        "{err}"
    );
    assert!(err.contains("give only one"), "{err}");
    assert!(!err.contains("Zq-inline-4410"), "{err}");
    // A missing file, an unset and an empty variable.
    let (_d, r) = load_in_dir(
        &format!("{remote}password_file = \"missing.pw\"\n\n[[remotes]]\nname = \"b2\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_UNSET\"\n\n[[remotes]]\nname = \"b3\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"GWT_EMPTY\"\n"),
        &[],
        &[("GWT_EMPTY", "")],
    );
    let err = r.unwrap_err();
    let all = err.to_string();
    assert_eq!(err.0.len(), 3, "{all}");
    assert!(
        all.contains("gw.toml:6: key `remotes[0].password_file`: cannot read"),
        "{all}"
    );
    assert!(
        all.contains("missing.pw") && all.contains("no such file"),
        "{all}"
    );
    assert!(
        all.contains("gw.toml:13: key `remotes[1].password_env`"),
        "{all}"
    );
    assert!(all.contains("`GWT_UNSET` is not set"), "{all}");
    assert!(
        all.contains("gw.toml:20: key `remotes[2].password_env`"),
        "{all}"
    );
    assert!(all.contains("`GWT_EMPTY` is empty"), "{all}");
    // The key file and the key variable at once; a secret of another protocol.
    let (_d, r) = load_in_dir(
        &format!("{remote}private_key_file = \"k\"\nprivate_key_env = \"GWT_K\"\nsecret_access_key_file = \"s\"\n"),
        &[],
        &[],
    );
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("key `remotes[0].private_key_env`") && err.contains("give only one"),
        "{err}"
    );
    assert!(
        err.contains("key `remotes[0].secret_access_key_file`")
            && err.contains("applies only to s3"),
        "{err}"
    );
    // A key variable that holds no key names the variable, not its value.
    let (_d, r) = load_in_dir(
        &format!("{remote}private_key_env = \"GWT_K\"\n"),
        &[],
        &[("GWT_K", "Zq-not-a-key-3321")],
    );
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:6: key `remotes[0].private_key_env`"),
        "{err}"
    );
    assert!(
        err.contains("`GWT_K`") && !err.contains("Zq-not-a-key"),
        "{err}"
    );
}

#[test]
fn type_errors_on_secrets_do_not_echo_them() {
    let remote = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\n";
    for (line, secret) in [
        ("password = 86753091", "86753091"),
        ("private_key_passphrase = 7731.5", "7731.5"),
        // (What is searched for must not fit in the temporary folder's
        // random name, which messages include: "Zq" once did.)
        ("password = \"Zq\\qsecret-8812\"", "secret-8812"),
        ("password = [\"Zq-in-array-2290\"]", "Zq-in-array-2290"),
    ] {
        let err = load_text(&format!("{remote}{line}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gw.toml:6"), "{err}");
        assert!(!err.contains(secret), "{line}: the value is quoted: {err}");
    }
    let s3 = "[[remotes]]\nname = \"b\"\nkind = \"s3\"\nendpoint = \"https://s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = 555123999\n";
    let err = load_text(s3).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:7: key `remotes[0].secret_access_key`"),
        "{err}"
    );
    assert!(!err.contains("555123999"), "{err}");
    // Other keys still show what was found.
    let err = load_text(&format!("{remote}port = \"twenty-two\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("twenty-two"), "{err}");
}

#[test]
fn secret_looking_overrides_are_not_echoed() {
    let env = vec![(
        "GATEWAY__ADMIN__KEYS".to_string(),
        "Zq-override-6612".to_string(),
    )];
    let err = load_with_env(None, env).unwrap_err().to_string();
    assert!(err.contains("environment overrides"), "{err}");
    assert!(!err.contains("Zq-override-6612"), "{err}");
}

#[test]
fn s3_endpoint_with_credentials_is_refused_without_echo() {
    let text = "[[remotes]]\nname = \"b\"\nkind = \"s3\"\nendpoint = \"https://AK:Zq-userinfo-8812@s3.example\"\nbucket = \"b\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:4: key `remotes[0].endpoint`"),
        "{err}"
    );
    assert!(err.contains("must not carry credentials"), "{err}");
    assert!(!err.contains("Zq-userinfo-8812"), "{err}");
    assert!(endpoint_has_userinfo("http://u@h:9000/x"));
    assert!(!endpoint_has_userinfo("http://h:9000/a@b"));
}

#[test]
fn files_holding_secrets_open_to_others_are_warned_about() {
    let config = "[[remotes]]\nname = \"box\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"open.pw\"\n\n[[remotes]]\nname = \"tight\"\nkind = \"ftp\"\nhost = \"h\"\nusername = \"u\"\npassword_file = \"tight.pw\"\n";
    let (dir, r) = load_in_dir(
        config,
        &[("open.pw", "a\n", 0o644), ("tight.pw", "b\n", 0o600)],
        &[],
    );
    let s = r.unwrap();
    let open = dir.path().join("open.pw");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    let w = &s.warnings[0];
    assert!(w.contains(&open.display().to_string()), "{w}");
    assert!(
        w.contains("remotes[0].password_file") && w.contains("mode 0644"),
        "{w}"
    );
    assert!(w.contains(&format!("chmod 600 {}", open.display())), "{w}");
    // The config file itself.
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join("gw.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let s = load_with_env(Some(&path), vec![]).unwrap();
    assert!(
        s.warnings.iter().any(|w| w.contains("the config file")
            && w.contains("mode 0664")
            && w.contains("writable by group")),
        "{:?}",
        s.warnings
    );
}

const SFTP_REMOTE: &str = "[[remotes]]\nname = \"partner\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nmax_connections = 3\n";

#[test]
fn sync_defaults_and_parallel_capped_by_the_remote() {
    let text = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"out\"\nfolder = \"/outbound/\"\nremote = \"partner\"\nremote_path = \"inbox\"\ndirection = \"push\"\nevery = \"15m\"\n");
    let s = load_text(&text).unwrap();
    let sync = &s.syncs[0];
    assert_eq!(sync.folder.as_str(), "outbound");
    assert_eq!(sync.remote_path.as_str(), "inbox");
    assert_eq!(sync.direction, SyncDirection::Push);
    assert_eq!(sync.after_copy, AfterCopy::Keep);
    assert_eq!(sync.schedule, Schedule::Every(Duration::from_secs(900)));
    assert!(sync.filter.is_everything());
    assert_eq!(sync.time_limit, Duration::from_secs(24 * 3600));
    // The default of 4 is brought down to the remote's cap of 3.
    assert_eq!(sync.parallel, 3);
}

#[test]
fn sync_mistakes_are_named() {
    let text = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"both\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"two_way\"\nafter_copy = \"delete\"\nparallel = 10\n\n[[syncs]]\nname = \"lost\"\nfolder = \"../up\"\nremote = \"nowhere\"\ndirection = \"pull\"\n");
    let err = load_text(&text).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:14: key `syncs[0].after_copy`"),
        "{err}"
    );
    assert!(err.contains("a two-way sync never deletes"), "{err}");
    assert!(err.contains("gw.toml:15: key `syncs[0].parallel`"), "{err}");
    assert!(err.contains("max_connections = 3"), "{err}");
    assert!(err.contains("key `syncs[1].folder`"), "{err}");
    assert!(
        err.contains("key `syncs[1].remote`") && err.contains("no remote named `nowhere`"),
        "{err}"
    );
    let typo = format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"s\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"sideways\"\n");
    let err = load_text(&typo).unwrap_err().to_string();
    assert!(
        err.contains("gw.toml:13") && err.contains("sideways"),
        "{err}"
    );
}

/// A sync on `partner` with `extra` lines from line 14 on.
fn sync_with(extra: &str) -> String {
    format!("{SFTP_REMOTE}\n[[syncs]]\nname = \"s\"\nfolder = \"/x\"\nremote = \"partner\"\ndirection = \"push\"\n{extra}")
}

#[test]
fn sync_schedule_cron_and_filters() {
    let s = load_text(&sync_with("cron = \"0 2 * * MON-FRI\"\ntime_zone = \"Europe/Berlin\"\ninclude = [\"*.csv\", \"reports/**\"]\nexclude = [\"*.tmp\"]\n")).unwrap();
    let sync = &s.syncs[0];
    assert_eq!(
        sync.schedule.describe(),
        "cron `0 2 * * MON-FRI` Europe/Berlin"
    );
    assert!(sync.filter.matches("a/b.csv"));
    assert!(sync.filter.matches("reports/q1.pdf"));
    assert!(!sync.filter.matches("a.txt"));
    assert!(!sync.filter.matches("reports/x.tmp"));
    // The zone defaults to UTC.
    let s = load_text(&sync_with("cron = \"@daily\"\n")).unwrap();
    assert_eq!(s.syncs[0].schedule.describe(), "cron `@daily` UTC");
    // Neither `every` nor `cron`: on demand only.
    let s = load_text(&sync_with("")).unwrap();
    assert_eq!(s.syncs[0].schedule, Schedule::Manual);
}

#[test]
fn sync_schedule_mistakes_are_named() {
    let err = load_text(&sync_with("every = \"15m\"\ncron = \"*/5 * * * *\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gw.toml:15: key `syncs[0].cron`"), "{err}");
    assert!(err.contains("either `every` or `cron`"), "{err}");

    let err = load_text(&sync_with(
        "every = \"15m\"\ntime_zone = \"Europe/Berlin\"\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gw.toml:15: key `syncs[0].time_zone`"),
        "{err}"
    );
    assert!(err.contains("only applies with `cron`"), "{err}");

    let err = load_text(&sync_with("cron = \"0 25 * * *\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gw.toml:14: key `syncs[0].cron`"), "{err}");
    assert!(
        err.contains("field 2 (hour) `25` is out of range 0-23"),
        "{err}"
    );

    // An unknown zone and a bad expression: both named, each at its key.
    let err = load_text(&sync_with(
        "cron = \"0 0 * * 8\"\ntime_zone = \"Europe/Berln\"\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gw.toml:15: key `syncs[0].time_zone`"),
        "{err}"
    );
    assert!(err.contains("unknown time zone `Europe/Berln`"), "{err}");
    assert!(err.contains("gw.toml:14: key `syncs[0].cron`"), "{err}");
    assert!(err.contains("`8` is out of range 0-7"), "{err}");
}

#[test]
fn sync_filter_mistakes_are_named() {
    let err = load_text(&sync_with(
        "include = [\"*.csv\", \"[a\"]\nexclude = [\"{x,y\"]\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("gw.toml:14: key `syncs[0].include`"), "{err}");
    assert!(err.contains("include pattern `[a`"), "{err}");
    assert!(err.contains("gw.toml:15: key `syncs[0].exclude`"), "{err}");
    assert!(err.contains("exclude pattern `{x,y`"), "{err}");
    let err = load_text(&sync_with("includes = [\"*.csv\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("includes"), "{err}");
}

#[test]
fn an_absurd_duration_is_refused_with_its_key_and_line() {
    let text = "[[remotes]]\nname = \"partner\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nconnect_timeout = \"99999999999999h\"\n";
    let err = load_text(text).unwrap_err().to_string();
    assert!(err.contains("gw.toml:7"), "{err}");
    assert!(err.contains("connect_timeout"), "{err}");
    assert!(err.contains("at most 365 days"), "{err}");
    let fine = text.replace("99999999999999h", "365days");
    load_text(&fine).unwrap();
}

#[test]
fn type_errors_in_several_keys_are_reported_with_the_semantic_ones() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[login]\nmax_failures = \"five\"\n\n\
                [[remotes]]\nname = \"partner\"\nkind = \"sftp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\nport = \"twenty-two\"\nmax_connections = 3\n\n\
                [[users]]\nname = \"alice\"\npassword_hash = \"x\"\nallowed_networks = [\"10.0.0.300/8\"]\n";
    let err = load_text(text).unwrap_err();
    let shown = err.to_string();
    assert!(err.0.len() >= 3, "{shown}");
    assert!(
        shown.contains("gw.toml:5:") && shown.contains("max_failures"),
        "{shown}"
    );
    assert!(
        shown.contains("gw.toml:13:") && shown.contains("port"),
        "{shown}"
    );
    assert!(
        shown.contains("gw.toml:19:") && shown.contains("users[0].allowed_networks"),
        "the semantic problem is reported with the type errors: {shown}"
    );
}

#[test]
fn a_key_can_be_taken_out_of_nested_tables() {
    let text = "[server]\nlisten = [\"a\"]\n\n[[remotes]]\nname = \"x\"\nport = 1\n\n[[remotes]]\nname = \"y\"\nport = 2\n";
    let out = super::locate::without_key(text, "remotes[1].port").unwrap();
    assert!(
        out.contains("port = 1") && !out.contains("port = 2"),
        "{out}"
    );
    assert_eq!(super::locate::without_key(text, "remotes[1]"), None);
    let out = super::locate::without_key(text, "server.listen[0]").unwrap();
    assert!(!out.contains("listen"), "{out}");
}

#[test]
fn admin_key_scopes_are_read_and_checked() {
    let hash = format!("sha256:{}", "ab".repeat(32));
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[admin.keys]]\nname = \"old\"\nhash = \"{hash}\"\n\n\
         [[admin.keys]]\nname = \"dash\"\nhash = \"{hash}\"\nscope = \"read-only\"\n\n\
         [[admin.keys]]\nname = \"oncall\"\nhash = \"{hash}\"\nscope = \"operator\"\n"
    );
    let s = load_text(&text).unwrap();
    let scopes: Vec<ApiScope> = s.ops.api_keys.iter().map(|k| k.scope).collect();
    assert_eq!(
        scopes,
        [ApiScope::Admin, ApiScope::ReadOnly, ApiScope::Operator],
        "a key without a scope keeps the admin scope it had before scopes"
    );
    let err = load_text(&text.replace("\"operator\"", "\"root\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.keys[2].scope"), "{err}");
    assert!(err.contains("read-only, operator, admin"), "{err}");
}

#[test]
fn admin_off_loopback_needs_tls() {
    let hash = format!("sha256:{}", "ab".repeat(32));
    let keys = format!("\n[[admin.keys]]\nname = \"k\"\nhash = \"{hash}\"\n");
    let err = load_text(&format!("[admin]\nlisten = \"0.0.0.0:9465\"\n{keys}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gw.toml:2:") && err.contains("admin.listen"),
        "{err}"
    );
    assert!(err.contains("not a loopback address"), "{err}");
    let s = load_text(&format!(
        "[admin]\nlisten = \"0.0.0.0:9465\"\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n{keys}"
    ))
    .unwrap();
    let (cert, key) = s.ops.admin_tls.expect("TLS files");
    assert!(cert.ends_with("c.pem") && cert.is_absolute(), "{cert:?}");
    assert!(key.ends_with("k.pem"), "{key:?}");
    let err = load_text(&format!(
        "[admin]\nlisten = \"127.0.0.1:9465\"\ncertificate = \"c.pem\"\n{keys}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("admin.certificate") && err.contains("needs admin.private_key"),
        "{err}"
    );
    assert!(load_text(&format!("[admin]\nlisten = \"[::1]:9465\"\n{keys}")).is_ok());
}

#[test]
fn sftp_uploads_are_atomic_unless_turned_off() {
    let atomic = |text: &str| match &load_text(text).unwrap().remote("partner").unwrap().protocol {
        ProtocolSettings::Sftp(s) => s.atomic_uploads,
        _ => panic!("partner is not an sftp remote"),
    };
    assert!(atomic(SFTP_REMOTE));
    assert!(!atomic(&format!("{SFTP_REMOTE}atomic_uploads = false\n")));
}
