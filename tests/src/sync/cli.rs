//! Running `gateway sync ...` commands, and `gateway serve` with its
//! scheduler as a [`SyncProcess`] a test can stop or kill.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sshd::gateway_run;
use crate::{for_each_line, CmdOutput, GatewayCommand};

use super::*;

/// `gateway sync ARGS... --config CONFIG`.
pub fn gateway_sync(config: &Path, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
    let c = config.display().to_string();
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    all.extend(["--config", c.as_str()]);
    gateway_run(&all, timeout)
}

/// `gateway config check --config CONFIG`.
pub fn config_check(config: &Path) -> Result<CmdOutput> {
    let c = config.display().to_string();
    gateway_run(
        &["config", "check", "--config", &c],
        Duration::from_secs(30),
    )
}

/// A `gateway sync run NAME` started in the background (own process group,
/// stdout and stderr collected line by line), to be killed at a chosen
/// moment. Dropping it kills it.
pub struct SyncProcess {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

impl SyncProcess {
    /// Starts `gateway sync run NAME --config CONFIG`.
    pub fn spawn(config: &Path, name: &str) -> Result<SyncProcess> {
        let spec = GatewayCommand {
            args: vec![
                "sync".into(),
                "run".into(),
                name.into(),
                "--config".into(),
                config.display().to_string(),
            ],
            ..Default::default()
        };
        let mut cmd = spec.command()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().context("spawning gateway sync run")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = vec![];
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for r in [
            Box::new(out) as Box<dyn Read + Send>,
            Box::new(err) as Box<dyn Read + Send>,
        ] {
            let lines = lines.clone();
            readers.push(thread::spawn(move || {
                for_each_line(r, |l| lines.lock().unwrap().push(l))
            }));
        }
        Ok(SyncProcess {
            child: Some(child),
            lines,
            readers,
            started: Instant::now(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many `copied` / `deleted` lines it printed so far.
    pub fn done_actions(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| matches!(parse_run_line(l), Some((a, _)) if a != Act::Hold))
            .count()
    }

    /// Its exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until it printed at least `n` action lines, exited, or `timeout` passed.
    pub fn wait_for_actions(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.done_actions() < n && self.try_status().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILL to the process; returns its status (None if it had exited before).
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let st = child.wait().ok();
        self.join_readers();
        st
    }

    /// Waits for the exit (killing it after `timeout`); returns the status
    /// and everything it printed.
    pub fn wait(&mut self, timeout: Duration) -> Result<(ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                self.join_readers();
                return Ok((st, self.lines().join("\n")));
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "gateway sync run did not finish within {timeout:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn join_readers(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for SyncProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
