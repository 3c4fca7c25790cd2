//! Several gateway nodes on one PostgreSQL state database, in front of one
//! remote sshd: the fixture of `tests/tests/cluster.rs`.
//!
//! Node A and node B share alice (the same key), her `/partner` mount on
//! the sshd and the database; each has its own listen port, storage and
//! node-local state folder, as two machines would.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::mount::MountedGateway;
use crate::postgres::Postgres;
use crate::sshd::{assert_all_ok, sftp_in_parallel, Sshd, MOUNT, REMOTE};
use crate::{toml_str, CmdOutput, Gateway};

/// A cluster of two nodes, a database and a remote.
pub struct ClusterSetup {
    /// Node A (alice's key, her mount).
    pub a: MountedGateway,
    /// Node B (same users and remotes, its own folders).
    pub b: MountedGateway,
    /// The remote server.
    pub sshd: Sshd,
    /// The remote root folder on disk.
    pub root: PathBuf,
    /// The shared state database.
    pub pg: Postgres,
}

impl ClusterSetup {
    /// The database and sshd started, both nodes configured (the remote
    /// capped at `max_connections`), no node started.
    pub fn new(max_connections: u32) -> Result<ClusterSetup> {
        let pg = Postgres::start().context("starting PostgreSQL")?;
        let sshd = Sshd::start_default()?;
        let root = sshd.remote_dir("root")?;
        let mut remote = sshd.remote_config(REMOTE).root(&root);
        remote.max_connections = Some(max_connections);
        remote.pool_wait = Some("60s".into());
        let mut a = MountedGateway::new(remote.clone(), MOUNT)?;
        let mut b = MountedGateway::new(remote, MOUNT)?;
        b.cfg.users = a.cfg.users.clone();
        b.key = a.key.clone();
        for node in [&mut a, &mut b] {
            node.cfg.server_extra.push(format!(
                "local_state = {}",
                toml_str(&node.env.state.display().to_string())
            ));
            node.cfg.state = PathBuf::from(pg.url());
        }
        Ok(ClusterSetup {
            a,
            b,
            sshd,
            root,
            pg,
        })
    }

    /// Starts both nodes (A first: it creates the schema and host keys).
    pub fn start_both(&mut self) -> Result<()> {
        self.a.start_gateway().context("starting node A")?;
        self.b.start_gateway().context("starting node B")?;
        Ok(())
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "=== node A ===\n{}\n=== node B ===\n{}\n=== sshd ===\n{}\n=== PostgreSQL ===\n{}",
            self.a.gateway_log(),
            self.b.gateway_log(),
            self.sshd.logs(),
            self.pg.log()
        )
    }

    /// `gateway cluster status` (on node A's config).
    pub fn status(&self) -> Result<CmdOutput> {
        self.a.write_config()?;
        let mut cmd = std::process::Command::new(crate::gateway_bin()?);
        cmd.args(["cluster", "status", "--config"])
            .arg(&self.a.config_path);
        crate::run_with_timeout(cmd, Duration::from_secs(30))
    }

    /// Advisory locks (connection slots) held in the database.
    pub fn slots_held(&self) -> Result<usize> {
        slots_held(&self.pg)
    }

    /// Five parallel sessions on node A, each listing the mount and making
    /// folder `{prefix}{i}` in it, leave node A holding all five slots
    /// (with the remote's `idle_timeout` long enough to keep them idle).
    pub fn fill_node_a(&self, prefix: &str) {
        let jobs = (0..5)
            .map(|i| {
                (
                    self.a.client_n(i),
                    format!("ls {MOUNT}\nmkdir {MOUNT}/{prefix}{i}\n"),
                )
            })
            .collect();
        assert_all_ok(&sftp_in_parallel(jobs), "5 clients on node A", &self.logs());
        assert!(
            within(Duration::from_secs(10), || self.slots_held().unwrap_or(0)
                == 5)
            .is_some(),
            "node A does not hold 5 slots: {:?}\n{}",
            self.slots_held(),
            self.logs()
        );
    }
}

/// Connection slots (advisory locks of two keys) held in `pg`.
pub fn slots_held(pg: &Postgres) -> Result<usize> {
    let out = pg.psql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted",
    )?;
    out.trim()
        .parse()
        .with_context(|| format!("psql answered {out:?}"))
}

/// Polls `check` every 100 ms until it is true or `limit` passes; returns
/// how long it took (None: never).
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGKILL to the gateway (no shutdown of any kind).
pub fn kill_9(gw: &Gateway) -> Result<()> {
    let pid = gw.pid().context("the gateway has no pid")?;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -9 {pid} failed");
    Ok(())
}
