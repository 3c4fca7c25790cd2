//! Lines for the person at the client, sent on the SFTP channel's stderr
//! stream. OpenSSH's `sftp` shows only a status code's own text ("No
//! connection"), never the server's message; it does print what the
//! server writes to the channel's stderr. So when a remote cannot be used,
//! the reason is also written there, once per distinct line and at most
//! [`MAX_NOTICES`] times per session (other clients ignore the stream, and
//! what they leave unread must not fill their window).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Most distinct lines one session sends.
pub const MAX_NOTICES: usize = 16;

/// Where a session's notices go (nowhere, for sessions without a channel).
#[derive(Default)]
pub struct Notices {
    sink: Option<mpsc::UnboundedSender<String>>,
    sent: Mutex<HashSet<String>>,
}

impl Notices {
    /// Notices written, one per line, to `stderr` by a task of their own
    /// (a client that never reads its stderr holds up only that task).
    pub fn to<W: AsyncWrite + Send + Unpin + 'static>(mut stderr: W) -> Self {
        let (sink, mut lines) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if stderr.write_all(line.as_bytes()).await.is_err() || stderr.flush().await.is_err()
                {
                    break;
                }
            }
        });
        Notices {
            sink: Some(sink),
            sent: Mutex::default(),
        }
    }

    /// Tells the person `line` unless it was told already.
    pub fn tell(&self, line: &str) {
        let Some(sink) = &self.sink else {
            return;
        };
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= MAX_NOTICES || !sent.insert(line.to_string()) {
            return;
        }
        let _ = sink.send(format!("gateway: {line}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn each_line_once_and_no_more_than_the_limit() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let notices = Notices::to(ours);
        notices.tell("remote `a` is unreachable");
        notices.tell("remote `a` is unreachable");
        for i in 0..40 {
            notices.tell(&format!("line {i}"));
        }
        drop(notices);
        let mut text = String::new();
        theirs.read_to_string(&mut text).await.unwrap();
        assert_eq!(text.matches("remote `a` is unreachable").count(), 1);
        assert_eq!(text.lines().count(), MAX_NOTICES);
        assert!(text.starts_with("gateway: remote `a`"));
    }
}
