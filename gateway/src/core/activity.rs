//! What one inbound session is doing, for the admin API and the console:
//! its protocol, the bytes it moved each way and the transfers open now.
//! The SSH layer updates it; readers take a [`ActivitySnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One session's live figures, shared by the session and the registry.
#[derive(Debug, Default)]
pub struct Activity {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    state: Mutex<ActivityState>,
}

#[derive(Debug, Default)]
struct ActivityState {
    protocol: Option<&'static str>,
    next_token: u64,
    /// Transfers open now, oldest first: (token, "downloading /a").
    doing: Vec<(u64, String)>,
}

/// A copy of an [`Activity`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivitySnapshot {
    /// `sftp`, `scp`, `exec`, or `ssh` before a channel asked for one.
    pub protocol: &'static str,
    /// Bytes the client sent (uploads).
    pub bytes_in: u64,
    /// Bytes the client received (downloads).
    pub bytes_out: u64,
    /// What it does now: `idle`, or its open transfers.
    pub doing: String,
}

impl Activity {
    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session asked for `protocol` (the first one asked stays).
    pub fn set_protocol(&self, protocol: &'static str) {
        self.state().protocol.get_or_insert(protocol);
    }

    /// `n` bytes arrived from the client.
    pub fn received(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes were sent to the client.
    pub fn sent(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks `what` (`downloading /a/b`) as going on until the guard is
    /// dropped.
    pub fn begin(self: &Arc<Self>, what: String) -> Doing {
        let mut st = self.state();
        st.next_token += 1;
        let token = st.next_token;
        st.doing.push((token, what));
        Doing {
            activity: self.clone(),
            token,
        }
    }

    /// The figures now.
    pub fn snapshot(&self) -> ActivitySnapshot {
        let st = self.state();
        let doing = match st.doing.as_slice() {
            [] => "idle".to_string(),
            [(_, one)] => one.clone(),
            [(_, first), rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        ActivitySnapshot {
            protocol: st.protocol.unwrap_or("ssh"),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            doing,
        }
    }
}

/// One transfer in progress; dropping it ends it.
#[derive(Debug)]
pub struct Doing {
    activity: Arc<Activity>,
    token: u64,
}

impl Drop for Doing {
    fn drop(&mut self) {
        self.activity
            .state()
            .doing
            .retain(|(t, _)| *t != self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_show_while_open_and_bytes_add_up() {
        let a = Arc::new(Activity::default());
        assert_eq!(a.snapshot().doing, "idle");
        assert_eq!(a.snapshot().protocol, "ssh");
        a.set_protocol("sftp");
        a.set_protocol("exec");
        let d1 = a.begin("downloading /a".into());
        let d2 = a.begin("uploading /b".into());
        a.sent(10);
        a.sent(5);
        a.received(7);
        let s = a.snapshot();
        assert_eq!(s.protocol, "sftp");
        assert_eq!((s.bytes_in, s.bytes_out), (7, 15));
        assert_eq!(s.doing, "downloading /a (and 1 more)");
        drop(d1);
        assert_eq!(a.snapshot().doing, "uploading /b");
        drop(d2);
        assert_eq!(a.snapshot().doing, "idle");
    }
}
