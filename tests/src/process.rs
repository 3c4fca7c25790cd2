//! Running commands with a time limit, and reading a process's output
//! line by line.

use std::fmt;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::*;

/// The result of one finished client command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// A human-readable rendering of the command line (password not shown).
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// Wall-clock time the command took.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout followed by stderr (ANSI escapes removed).
    pub fn text(&self) -> String {
        strip_ansi(&format!("{}\n{}", self.stdout, self.stderr))
    }

    /// stdout lines that are not sftp's echo of batch commands (`sftp> ...`).
    pub fn listing(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with("sftp>"))
            .map(str::to_owned)
            .collect()
    }

    /// True when some non-echo stdout line has a whitespace-separated word whose
    /// last path component is `name` (sftp prints `ls /dir` entries as `/dir/name`).
    pub fn lists_name(&self, name: &str) -> bool {
        self.listing().iter().any(|l| {
            l.split_whitespace().any(|w| {
                let w = w.trim_end_matches('/');
                w == name || w.rsplit('/').next() == Some(name)
            })
        })
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\nelapsed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed, capturing stdout/stderr; kills it (and its
/// process group) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<CmdOutput> {
    use std::os::unix::process::CommandExt;
    let command = format!("{cmd:?}");
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {command}"))?;
    let out = read_all_in_thread(child.stdout.take().expect("piped stdout"));
    let err = read_all_in_thread(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            thread::sleep(Duration::from_millis(500));
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            let stdout = join_reader(out);
            let stderr = join_reader(err);
            bail!(
                "command timed out after {timeout:?}: {command}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(25));
    };
    Ok(CmdOutput {
        command,
        status,
        stdout: join_reader(out),
        stderr: join_reader(err),
        elapsed: start.elapsed(),
    })
}

fn read_all_in_thread<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// The reader's text; gives up after a few seconds (a grandchild such as ssh
/// under sshpass may keep the pipe open after its parent exited).
fn join_reader(rx: mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| "<output not closed within 5 s after exit>".into())
}
