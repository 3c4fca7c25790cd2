//! The gateway half of a remote-mount test: user `alice` (key login) with
//! one folder mounted on one remote, the config written before each start,
//! and the clients and CLI commands the tests drive. The remote server half
//! (sshd, an FTP or an S3 server) is the test's own; see
//! [`crate::sshd::MountSetup`] and the FTP and S3 tests.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::sshd::{remote_list, remote_test, remote_trust};
use crate::{
    client_key, Auth, Client, CmdOutput, Gateway, GatewayCommand, GatewayConfig, RemoteConfig,
    TestEnv, UserConfig,
};

/// A gateway for one mount: alice's `mount` folder on the remote that
/// `cfg.remotes[0]` describes. Tweak `cfg` before
/// [`MountedGateway::start_gateway`]; dropping it stops the gateway.
pub struct MountedGateway {
    /// The running gateway (after `start_gateway`).
    pub gw: Option<Gateway>,
    /// The gateway's config (written to `config_path` at each start).
    pub cfg: GatewayConfig,
    /// Where the config file is written.
    pub config_path: PathBuf,
    /// alice's private key.
    pub key: PathBuf,
    /// The test's env (temp dir, storage, state, known_hosts).
    pub env: TestEnv,
}

impl MountedGateway {
    /// Config prepared (alice, her key, `mount` on `remote`), gateway NOT started.
    pub fn new(remote: RemoteConfig, mount: &str) -> Result<MountedGateway> {
        let env = TestEnv::new().context("test env")?;
        let key = env.path("id");
        let pubkey = client_key(&key)?;
        let mut cfg = env.config();
        let name = remote.name.clone();
        cfg.remotes = vec![remote];
        cfg.users = vec![UserConfig::new("alice")
            .key(&pubkey)
            .mount(mount, &name, "")];
        fs::create_dir_all(env.data.join("alice"))?;
        let config_path = env.path("config.toml");
        Ok(MountedGateway {
            gw: None,
            cfg,
            config_path,
            key,
            env,
        })
    }

    /// The `[[remotes]]` entry of the mount.
    pub fn remote(&mut self) -> &mut RemoteConfig {
        &mut self.cfg.remotes[0]
    }

    /// Writes the config file (without starting anything).
    pub fn write_config(&self) -> Result<()> {
        self.cfg.write(&self.config_path)
    }

    /// Writes the config and starts the gateway on it.
    pub fn start_gateway(&mut self) -> Result<&Gateway> {
        self.write_config()?;
        let gw = Gateway::start(&GatewayCommand::serve_config(&self.config_path))?;
        Ok(self.gw.insert(gw))
    }

    /// Stops the gateway (SIGTERM) and starts it again on the current config and state.
    pub fn restart_gateway(&mut self) -> Result<&Gateway> {
        if let Some(mut gw) = self.gw.take() {
            gw.stop().context("stopping the gateway")?;
        }
        self.start_gateway()
    }

    /// The running gateway.
    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("gateway not started")
    }

    /// The gateway's stderr (its log).
    pub fn gateway_log(&self) -> String {
        self.gw
            .as_ref()
            .map(|g| g.stderr.text())
            .unwrap_or_default()
    }

    /// The gateway's logs followed by `server_logs`, for failure messages.
    pub fn logs_with(&self, server_logs: &str) -> String {
        Gateway::logs_with(self.gw.as_ref(), server_logs)
    }

    /// An sftp client logging in to the gateway as alice with her key.
    pub fn client(&self) -> Client {
        self.env
            .client(self.gw(), "alice", Auth::Key(self.key.clone()))
    }

    /// Like [`MountedGateway::client`] with its own known_hosts file (for parallel clients).
    pub fn client_n(&self, n: usize) -> Client {
        let mut c = self.client();
        c.known_hosts = self.env.path(&format!("known_hosts-{n}"));
        c
    }

    /// `gateway remote test NAME` on the current config (written first).
    pub fn remote_test(&self) -> Result<CmdOutput> {
        self.write_config()?;
        remote_test(&self.config_path, &self.cfg.remotes[0].name)
    }

    /// `gateway remote list` on the current config (written first).
    pub fn remote_list(&self) -> Result<CmdOutput> {
        self.write_config()?;
        remote_list(&self.config_path)
    }

    /// The standard output of `gateway sync history NAME --limit 1000` on
    /// the current config (written first); empty if it fails.
    pub fn sync_history(&self, name: &str) -> String {
        if self.write_config().is_err() {
            return String::new();
        }
        let Ok(bin) = crate::gateway_bin() else {
            return String::new();
        };
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["sync", "history", name, "--limit", "1000", "--config"])
            .arg(&self.config_path);
        crate::run_with_timeout(cmd, std::time::Duration::from_secs(30))
            .map(|o| o.stdout)
            .unwrap_or_default()
    }

    /// `gateway remote trust NAME` on the current config (written first).
    pub fn remote_trust(&self) -> Result<CmdOutput> {
        self.write_config()?;
        remote_trust(&self.config_path, &self.cfg.remotes[0].name)
    }
}

/// Drives every operation through `m`'s mount (started, on a remote whose
/// root folder is `root` on this machine) with OpenSSH's `sftp`: 64 MiB up
/// and down, `mkdir`, `put -p` of a name with spaces and accents (its
/// mtime kept on the server), `rename`, `ls -l`, then `rm` and `rmdir`;
/// checks each on the remote's disk. `server_logs` goes into failure
/// messages.
pub fn every_operation(
    m: &MountedGateway,
    root: &std::path::Path,
    server_logs: &dyn Fn() -> String,
) {
    use crate::sshd::MOUNT;
    use crate::{assert_ok, assert_same_large_file, p, write_random_file};
    let logs = || m.logs_with(&server_logs());
    let src = m.env.path("big.bin");
    write_random_file(&src, 64 << 20).expect("test file");
    let odd = m.env.path("odd.txt");
    fs::write(&odd, b"spaces and accents").expect("test file");
    // A fixed old mtime that `put -p` must carry.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    crate::sync::set_mtime(&odd, old).expect("set mtime");
    let back = m.env.path("back.bin");
    let batch = format!(
        "put {src} {MOUNT}/big.bin\n\
         get {MOUNT}/big.bin {back}\n\
         mkdir {MOUNT}/folder\n\
         put -p {odd} \"{MOUNT}/folder/naïve café.txt\"\n\
         rename {MOUNT}/big.bin {MOUNT}/folder/moved.bin\n\
         ls -l {MOUNT}/folder\n",
        src = p(&src),
        back = p(&back),
        odd = p(&odd),
    );
    let out = m.client().sftp(&batch).expect("sftp");
    assert_ok(&out, &format!("operations through the mount\n{}", logs()));
    assert_same_large_file(&src, &root.join("folder/moved.bin"));
    assert_same_large_file(&src, &back);
    let odd_remote = root.join("folder/naïve café.txt");
    assert_eq!(
        fs::read(&odd_remote).expect("uploaded file"),
        b"spaces and accents"
    );
    let mtime = fs::metadata(&odd_remote)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(mtime, old, "put -p did not keep the mtime on the server");
    assert!(!root.join("big.bin").exists(), "renamed file still there");

    let out = m
        .client()
        .sftp(&format!(
            "rm {MOUNT}/folder/moved.bin\nrm \"{MOUNT}/folder/naïve café.txt\"\nrmdir {MOUNT}/folder\n"
        ))
        .expect("sftp");
    assert_ok(&out, &format!("rm and rmdir through the mount\n{}", logs()));
    assert!(!root.join("folder").exists(), "{}", logs());
}
