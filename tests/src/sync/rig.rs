//! [`SyncRig`]: one test's gateway config and state, its remote server
//! (sshd, vsftpd, pure-ftpd, ProFTPD's mod_sftp, AsyncSSH, s3s-fs, rclone
//! serve s3) and the remote's folder on disk.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::ftpd::{FtpServer, FtpServerOptions, FtpServerTls};
use crate::s3d::{S3Server, S3ServerKind};
use crate::sshd::{chown_to_test_user, Sshd, TEST_PASSWORD, TEST_USER};
use crate::{CmdOutput, Gateway, GatewayCommand, GatewayConfig, RemoteConfig, SyncConfig, TestEnv};

use super::*;

/// Which kind of remote a [`SyncRig`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// OpenSSH sshd (SFTP), password login.
    Sftp,
    /// vsftpd, plain FTP (no MLSD, no MFMT: LIST times to the minute).
    Vsftpd,
    /// pure-ftpd, plain FTP (MLSD, MFMT).
    PureFtpd,
    /// s3s-fs (objects are plain files on disk).
    S3,
    /// AsyncSSH's SFTP server (files owned by root, like the test).
    AsyncSsh,
    /// ProFTPD's `mod_sftp` (SFTP), password login.
    ProftpdSftp,
    /// `rclone serve s3` from a current rclone (objects are plain files).
    RcloneS3,
}

/// One side of a sync, for scenarios that are the same seen from either
/// side (a push and a pull are mirror images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The gateway's storage folder.
    Gateway,
    /// The path on the remote.
    Remote,
}

impl Side {
    /// How failure messages name it.
    pub fn label(self) -> &'static str {
        match self {
            Side::Gateway => "gateway folder",
            Side::Remote => "remote",
        }
    }
}

/// The remote server of a [`SyncRig`].
pub enum RemoteServer {
    /// sshd.
    Sftp(Sshd),
    /// vsftpd, pure-ftpd or ProFTPD (FTP or mod_sftp).
    Ftp(FtpServer),
    /// s3s-fs or `rclone serve s3`.
    S3(S3Server),
    /// AsyncSSH's SFTP server.
    AsyncSsh(crate::asyncssh_sftpd::AsyncSshServer),
}

impl RemoteServer {
    /// The server's logs, for failure messages.
    pub fn logs(&self) -> String {
        match self {
            RemoteServer::Sftp(s) => s.logs(),
            RemoteServer::Ftp(f) => f.logs(),
            RemoteServer::S3(s) => s.logs(),
            RemoteServer::AsyncSsh(s) => s.logs(),
        }
    }
}

/// One test's syncs: a gateway config and state (no users), a remote server
/// on loopback named [`REMOTE`], and its root folder on disk. Add syncs
/// with [`SyncRig::add_sync`]; seed both sides on disk; run `gateway sync
/// ...` or `gateway serve`. Dropping it stops the gateway, then the server.
pub struct SyncRig {
    /// `gateway serve` when started (first, so it stops first).
    pub serve: Option<Gateway>,
    /// The gateway's storage (`env.data`) and state.
    pub env: TestEnv,
    /// The config (written before every command).
    pub cfg: GatewayConfig,
    /// Where the config is written.
    pub config_path: PathBuf,
    /// The remote server.
    pub server: RemoteServer,
    /// The remote's root on disk (the sshd or FTP root, s3s-fs's bucket folder).
    pub remote_root: PathBuf,
    /// Which kind of remote.
    pub kind: RemoteKind,
}

impl SyncRig {
    /// Starts the remote server and prepares the config (remote [`REMOTE`], no syncs yet).
    pub fn new(kind: RemoteKind) -> Result<SyncRig> {
        let env = TestEnv::new().context("test env")?;
        let (server, remote, remote_root) = match kind {
            RemoteKind::Sftp => {
                let sshd = Sshd::start_default().context("starting sshd")?;
                let root = sshd.remote_dir("root")?;
                let mut r = sshd.remote_config(REMOTE).root(&root);
                r.connect_timeout = Some("10s".into());
                (RemoteServer::Sftp(sshd), r, root)
            }
            RemoteKind::Vsftpd | RemoteKind::PureFtpd => {
                let opts = if kind == RemoteKind::Vsftpd {
                    FtpServerOptions::vsftpd()
                } else {
                    FtpServerOptions::pure_ftpd()
                };
                let ftp = FtpServer::start(opts.tls(FtpServerTls::None))
                    .context("starting the FTP server")?;
                let r = ftp.remote_config(REMOTE);
                let root = ftp.root();
                (RemoteServer::Ftp(ftp), r, root)
            }
            RemoteKind::S3 | RemoteKind::RcloneS3 => {
                let server_kind = if kind == RemoteKind::S3 {
                    S3ServerKind::S3sFs
                } else {
                    S3ServerKind::RcloneServe
                };
                let s3 = S3Server::start(server_kind).context("starting the S3 server")?;
                let mut r = s3.remote_config(REMOTE);
                if kind == RemoteKind::RcloneS3 {
                    // rclone stores a `dir/` marker as a file `dir`.
                    r = r.folder_markers(false);
                }
                let root = s3
                    .bucket_dir()
                    .context("the S3 server keeps no files on disk")?;
                (RemoteServer::S3(s3), r, root)
            }
            RemoteKind::AsyncSsh => {
                let server = crate::asyncssh_sftpd::AsyncSshServer::start()
                    .context("starting the AsyncSSH server")?;
                let mut r = server.remote_config(REMOTE);
                r.connect_timeout = Some("10s".into());
                let root = server.root();
                (RemoteServer::AsyncSsh(server), r, root)
            }
            RemoteKind::ProftpdSftp => {
                let (server, _key) = FtpServer::start_mod_sftp()?;
                let mut r =
                    crate::RemoteConfig::sftp(REMOTE, "127.0.0.1", server.port(), TEST_USER)
                        .password(TEST_PASSWORD);
                r.connect_timeout = Some("10s".into());
                let root = server.root();
                (RemoteServer::Ftp(server), r, root)
            }
        };
        let mut cfg = env.config();
        cfg.remotes = vec![remote];
        let config_path = env.path("config.toml");
        Ok(SyncRig {
            serve: None,
            env,
            cfg,
            config_path,
            server,
            remote_root,
            kind,
        })
    }

    /// A sync named `name` of [`FOLDER`] with [`REMOTE_PATH`] of [`REMOTE`],
    /// `settle = "0s"`; creates both folders.
    pub fn sync_config(&self, name: &str, direction: &str) -> SyncConfig {
        self.folder_pair(FOLDER, REMOTE_PATH);
        SyncConfig::new(name, FOLDER, REMOTE, REMOTE_PATH, direction).settle("0s")
    }

    /// Creates storage folder `folder` and the remote folder `remote_path`
    /// (owned by the login user for sshd and FTP).
    pub fn folder_pair(&self, folder: &str, remote_path: &str) {
        fs::create_dir_all(self.local_of(folder)).expect("mkdir gateway folder");
        let r = self.remote_of(remote_path);
        fs::create_dir_all(&r).expect("mkdir remote folder");
        self.fix_remote_owner();
    }

    /// Adds a `[[syncs]]` entry.
    pub fn add_sync(&mut self, s: SyncConfig) {
        self.cfg.syncs.push(s);
    }

    /// The `[[remotes]]` entry.
    pub fn remote(&mut self) -> &mut RemoteConfig {
        &mut self.cfg.remotes[0]
    }

    /// [`FOLDER`] on disk.
    pub fn local(&self) -> PathBuf {
        self.local_of(FOLDER)
    }

    /// [`REMOTE_PATH`] on the remote's disk.
    pub fn remote_dir(&self) -> PathBuf {
        self.remote_of(REMOTE_PATH)
    }

    /// Storage folder `folder` on disk.
    pub fn local_of(&self, folder: &str) -> PathBuf {
        self.env.data.join(folder.trim_matches('/'))
    }

    /// Remote path `remote_path` on the remote's disk.
    pub fn remote_of(&self, remote_path: &str) -> PathBuf {
        let p = remote_path.trim_matches('/');
        if p.is_empty() {
            self.remote_root.clone()
        } else {
            self.remote_root.join(p)
        }
    }

    /// Makes everything under the remote root owned by the login user (sshd,
    /// FTP: files written by the test as root are read-only to the server).
    pub fn fix_remote_owner(&self) {
        if matches!(
            self.kind,
            RemoteKind::Sftp | RemoteKind::Vsftpd | RemoteKind::PureFtpd | RemoteKind::ProftpdSftp
        ) {
            chown_to_test_user(&self.remote_root).expect("chown remote files");
        }
    }

    /// s3s-fs only (no-op otherwise): removes the empty directories its
    /// deletes leave on disk, so the bucket looks like S3 after every key
    /// under a prefix is deleted: the prefix is gone (s3s-fs would answer
    /// HEAD on such a directory with 500, a quirk S3 does not have).
    pub fn s3_forget_empty_folders(&self) {
        if !matches!(self.kind, RemoteKind::S3 | RemoteKind::RcloneS3) {
            return;
        }
        let mut dirs: Vec<String> = walk_folders(&self.remote_root)
            .unwrap()
            .into_iter()
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in dirs {
            let _ = fs::remove_dir(self.remote_root.join(d));
        }
    }

    /// Writes `files` into the remote folder with time `when` (and fixes owners).
    pub fn seed_remote(&self, files: &Files, when: SystemTime) {
        write_files(&self.remote_dir(), files, when).expect("seeding the remote");
        self.fix_remote_owner();
    }

    /// Writes `files` into the gateway folder with time `when`.
    pub fn seed_local(&self, files: &Files, when: SystemTime) {
        write_files(&self.local(), files, when).expect("seeding the gateway folder");
    }

    /// The sync's folder on `side`: [`SyncRig::local`] or [`SyncRig::remote_dir`].
    pub fn dir(&self, side: Side) -> PathBuf {
        match side {
            Side::Gateway => self.local(),
            Side::Remote => self.remote_dir(),
        }
    }

    /// Writes `files` into the sync's folder on `side` with time `when`:
    /// [`SyncRig::seed_local`] or [`SyncRig::seed_remote`].
    pub fn seed(&self, side: Side, files: &Files, when: SystemTime) {
        match side {
            Side::Gateway => self.seed_local(files, when),
            Side::Remote => self.seed_remote(files, when),
        }
    }

    /// Writes the config file.
    pub fn write_config(&self) {
        self.cfg
            .write(&self.config_path)
            .expect("writing the config");
    }

    /// `gateway sync ARGS... --config F` on the current config (written first).
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        self.write_config();
        gateway_sync(&self.config_path, args, RUN_TIMEOUT)
            .unwrap_or_else(|e| panic!("gateway sync {args:?}: {e:#}\n{}", self.logs()))
    }

    /// `gateway sync run NAME`.
    pub fn run(&self, name: &str) -> CmdOutput {
        self.cli(&["run", name])
    }

    /// `gateway sync run NAME --dry-run`.
    pub fn dry_run(&self, name: &str) -> CmdOutput {
        self.cli(&["run", name, "--dry-run"])
    }

    /// `gateway sync history NAME --limit 1000`.
    pub fn history(&self, name: &str) -> CmdOutput {
        self.cli(&["history", name, "--limit", "1000"])
    }

    /// A dry run, then the real run, of sync `name` (both must exit 0).
    /// Checks that the dry run changed nothing on either side, that it
    /// listed exactly the actions the real run then printed (holds
    /// included), and that both summaries agree with their lines. Returns
    /// the real run's actions and its output.
    pub fn checked_run(&self, name: &str) -> (Actions, CmdOutput) {
        let sync = self
            .cfg
            .syncs
            .iter()
            .find(|s| s.name == name)
            .expect("sync in the config")
            .clone();
        let local = self.local_of(&sync.folder);
        let remote = self.remote_of(&sync.remote_path);
        let before = (read_tree(&local).unwrap(), read_tree(&remote).unwrap());

        let dry = self.dry_run(name);
        assert!(
            dry.success(),
            "`gateway sync run {name} --dry-run` failed\n{dry}\n{}",
            self.logs()
        );
        let after = (read_tree(&local).unwrap(), read_tree(&remote).unwrap());
        assert!(
            before == after,
            "the dry run of {name} changed files: gateway side {}, remote side {}\n{dry}",
            if before.0 == after.0 {
                "unchanged"
            } else {
                "CHANGED"
            },
            if before.1 == after.1 {
                "unchanged"
            } else {
                "CHANGED"
            },
        );
        let planned = dry_actions(&dry);
        let ds = dry_summary(&dry, name).unwrap_or_else(|| {
            panic!("no `dry run of {name}: N to copy (B bytes), D to delete, H held` line\n{dry}")
        });
        let count = |set: &Actions, f: &dyn Fn(Act) -> bool| -> u64 {
            set.iter().filter(|(a, _)| f(*a)).count() as u64
        };
        let is_copy = |a: Act| matches!(a, Act::CopyPush | Act::CopyPull);
        let is_delete = |a: Act| matches!(a, Act::DeleteGateway | Act::DeleteRemote);
        assert_eq!(
            (ds.to_copy, ds.to_delete, ds.held),
            (
                count(&planned, &is_copy),
                count(&planned, &is_delete),
                count(&planned, &|a| a == Act::Hold)
            ),
            "the dry run's summary (to copy, to delete, held) disagrees with its lines\n{dry}"
        );

        let real = self.run(name);
        assert!(
            real.success(),
            "`gateway sync run {name}` failed\n{real}\n{}",
            self.logs()
        );
        let done = run_actions(&real);
        let lines = run_action_lines(&real);
        assert_eq!(
            lines.len(),
            done.len(),
            "the run printed some action twice\n{real}"
        );
        assert!(
            planned == done,
            "the dry run of {name} did not list exactly what the real run then did:\n{}\n--- dry run ---\n{dry}\n--- real run ---\n{real}",
            show_diff(&planned, &done)
        );
        let rs = run_summary(&real, name).unwrap_or_else(|| {
            panic!(
                "no `sync {name} <outcome>: N copied (B bytes), S skipped, D deleted, E failed in <duration>` line\n{real}"
            )
        });
        assert_eq!(
            rs,
            RunSummary {
                outcome: "succeeded".into(),
                copied: count(&done, &is_copy),
                bytes: ds.bytes,
                // The summary has no count of its own for held files:
                // they are among the skipped.
                skipped: count(&done, &|a| matches!(a, Act::Hold | Act::Skip)),
                deleted: count(&done, &is_delete),
                failed: 0,
            },
            "the run's summary disagrees with its lines or with the dry run's byte count ({} bytes)\n{real}",
            ds.bytes
        );
        (done, real)
    }

    /// Writes the config and starts `gateway serve` on it.
    pub fn start_serve(&mut self) -> &Gateway {
        self.write_config();
        let gw = Gateway::start(&GatewayCommand::serve_config(&self.config_path))
            .unwrap_or_else(|e| panic!("starting gateway serve: {e:#}\n{}", self.logs()));
        self.serve.insert(gw)
    }

    /// The remote server's logs and `gateway serve`'s output, for failure messages.
    pub fn logs(&self) -> String {
        Gateway::logs_with(self.serve.as_ref(), &self.server.logs())
    }
}
