//! Remote checksums: `md5sum` run on the server over a second session
//! channel of a pooled connection.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Md5sumLimits {
    /// For the channel to open and the server to accept the command.
    pub(super) accept: Duration,
    /// For the command to finish once accepted.
    pub(super) finish: Duration,
}

/// What running `md5sum` on the server came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Md5sum {
    /// The file's MD5 (lowercase hex).
    Sum(String),
    /// md5sum ran but could not hash this file (its own error message).
    FileRefused(String),
    /// Commands cannot be run here, or not md5sum; why.
    Unavailable(String),
    /// The SSH connection ended; why.
    Lost(String),
}

/// Runs `md5sum -- '<remote>'` on a new session channel of `ssh`.
///
/// Its stdin is closed at once: md5sum does not read it, and a session
/// forced into the SFTP server (`ForceCommand internal-sftp`) then ends at
/// once without output instead of waiting for SFTP requests.
pub(super) async fn run_md5sum(
    ssh: &russh::client::Handle<ClientHandler>,
    remote: &str,
    limits: Md5sumLimits,
) -> Md5sum {
    let lost_or = |what: String| {
        if ssh.is_closed() {
            Md5sum::Lost(what)
        } else {
            Md5sum::Unavailable(what)
        }
    };
    let command = format!("md5sum -- {}", shell_quote(remote));
    let mut out = ExecOutput::default();
    let accepted = tokio::time::timeout(limits.accept, async {
        let mut channel = match ssh.channel_open_session().await {
            Ok(c) => c,
            Err(e) => return Err(lost_or(format!("cannot open a session channel: {e}"))),
        };
        if let Err(e) = channel.exec(true, command.as_str()).await {
            return Err(lost_or(format!("cannot send the command: {e}")));
        }
        loop {
            match channel.wait().await {
                Some(russh::ChannelMsg::Success) => return Ok(channel),
                Some(russh::ChannelMsg::Failure) => {
                    let _ = channel.close().await;
                    return Err(Md5sum::Unavailable(
                        "the server refuses to run commands".into(),
                    ));
                }
                Some(msg) => out.take(msg),
                None => {
                    return Err(lost_or(
                        "the server closed the channel instead of running the command".into(),
                    ))
                }
            }
        }
    })
    .await;
    let mut channel = match accepted {
        Ok(Ok(channel)) => channel,
        Ok(Err(outcome)) => return outcome,
        Err(_) => {
            return Md5sum::Unavailable(format!(
                "the server did not accept the command within {}s",
                limits.accept.as_secs()
            ))
        }
    };
    let _ = channel.eof().await;
    let finished = tokio::time::timeout(limits.finish, async {
        while let Some(msg) = channel.wait().await {
            if matches!(msg, russh::ChannelMsg::Close) {
                break;
            }
            out.take(msg);
        }
    })
    .await;
    let _ = channel.close().await;
    if finished.is_err() {
        return Md5sum::Unavailable(format!(
            "md5sum did not finish within {}s",
            limits.finish.as_secs()
        ));
    }
    out.outcome(ssh.is_closed())
}

/// What a command sent back on its channel.
#[derive(Debug, Default)]
pub(super) struct ExecOutput {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) status: Option<u32>,
    pub(super) signal: Option<String>,
}

impl ExecOutput {
    /// Keeps what `msg` carries (within the size limits).
    pub(super) fn take(&mut self, msg: russh::ChannelMsg) {
        fn keep(buf: &mut Vec<u8>, data: &[u8], max: usize) {
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
        }
        match msg {
            russh::ChannelMsg::Data { data } => keep(&mut self.stdout, &data, MD5SUM_MAX_STDOUT),
            russh::ChannelMsg::ExtendedData { data, ext: 1 } => {
                keep(&mut self.stderr, &data, MD5SUM_MAX_STDERR)
            }
            russh::ChannelMsg::ExitStatus { exit_status } => self.status = Some(exit_status),
            russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                self.signal = Some(format!("{signal_name:?}"))
            }
            _ => {}
        }
    }

    /// The outcome of a command that ended (the channel closed).
    pub(super) fn outcome(&self, connection_closed: bool) -> Md5sum {
        let stderr = String::from_utf8_lossy(&self.stderr).trim().to_string();
        let said = |prefix: &str| {
            if stderr.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}: {stderr}")
            }
        };
        match (self.status, &self.signal) {
            (Some(0), _) => match parse_md5sum(&self.stdout) {
                Some(sum) => Md5sum::Sum(sum),
                None if self.stdout.is_empty() => {
                    Md5sum::Unavailable(said("the command printed nothing (an SFTP-only account?)"))
                }
                None => Md5sum::Unavailable(format!(
                    "unexpected md5sum output `{}`",
                    String::from_utf8_lossy(&self.stdout)
                        .trim()
                        .chars()
                        .take(100)
                        .collect::<String>()
                )),
            },
            (Some(status @ (126 | 127)), _) => {
                Md5sum::Unavailable(said(&format!("md5sum cannot be run (exit {status})")))
            }
            // md5sum's own complaint about this file (unreadable, vanished).
            (Some(_), _) if stderr.starts_with("md5sum:") => Md5sum::FileRefused(stderr),
            // Something else answered: a restricted shell, `nologin`, or
            // an SFTP server forced on every session (it fails on the
            // closed stdin without a word).
            (Some(status), _) if stderr.is_empty() => Md5sum::Unavailable(format!(
                "the command ended with exit {status} and no output (an SFTP-only account?)"
            )),
            (Some(status), _) => Md5sum::Unavailable(said(&format!("exit {status}"))),
            (None, Some(signal)) => Md5sum::FileRefused(format!("md5sum ended by {signal}")),
            (None, None) if connection_closed => {
                Md5sum::Lost("the connection closed while md5sum ran".into())
            }
            (None, None) => Md5sum::Unavailable(said("the command ended without an exit status")),
        }
    }
}

/// The MD5 of `md5sum`'s output line (`<hex>  name`, or `\<hex>  name`
/// when the name has a backslash or line break), taking the last such
/// line in case the login shell printed something first.
pub(super) fn parse_md5sum(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|line| {
            let line = line.strip_prefix('\\').unwrap_or(line);
            let (hex, rest) = (line.get(..32)?, line.get(32..)?);
            if !rest.starts_with(' ') {
                return None;
            }
            crate::hash::normalize(HashKind::Md5, hex)
        })
}

/// `s` as one word for the login shell: in single quotes, with `'` and
/// `\` written outside them (`'\''`, `'\\'`), which sh, bash, zsh and
/// fish all read back as the same bytes.
pub(super) fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '\\' => out.push_str("'\\\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
