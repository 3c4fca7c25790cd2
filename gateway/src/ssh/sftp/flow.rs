//! Flow control of one SFTP session: what a request is expected to cost
//! in memory, and the byte budgets that keep a session's memory bounded
//! without ever making it stop reading for a reason only the client can
//! clear.
//!
//! Why it matters: russh hands channel data to us through a bounded queue
//! and waits, on its connection-wide loop, while that queue is full. If a
//! session stopped reading while its replies waited for the client's SSH
//! window, the window adjustments queued behind the unread data would
//! never be seen: a deadlock (paramiko's prefetch, `sftp -R 1024`). So a
//! session reads whenever its queue of received-but-unstarted requests is
//! under [`Budget::input_limit`] (requests are small unless they are
//! writes, whose replies need no window to speak of), and holds back
//! *starting* requests instead when replies pile up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::MAX_DATA_LEN;

/// SFTP packet types whose replies are large.
const FXP_READ: u8 = 5;
const FXP_READDIR: u8 = 12;

/// What one READDIR reply may take (128 names with long paths and attributes).
const READDIR_REPLY_ESTIMATE: usize = 64 * 1024;
/// What any other reply takes at most (a status with a message, a handle, attributes).
const SMALL_REPLY_ESTIMATE: usize = 1024;

/// The byte limits of one session.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Received requests not started yet, in bytes: above it the session
    /// stops reading its channel until requests start.
    pub input_limit: usize,
    /// Requests running (by their expected reply size) plus replies not
    /// yet written to the channel: above it no further request starts.
    pub work_limit: usize,
    /// Requests running at once.
    pub max_in_flight: usize,
}

impl Budget {
    /// The gateway's limits: at most about 4 + 16 MiB, plus one request,
    /// per session (see the README's "Memory per session").
    pub const DEFAULT: Budget = Budget {
        input_limit: 4 * 1024 * 1024,
        work_limit: 16 * 1024 * 1024,
        max_in_flight: 128,
    };
}

/// The memory a request is expected to hold while it runs: its own bytes
/// plus the largest reply it may produce.
pub fn request_cost(frame: &[u8]) -> usize {
    let reply = match frame.first() {
        Some(&FXP_READ) => read_len(frame).min(MAX_DATA_LEN as usize) + 64,
        Some(&FXP_READDIR) => READDIR_REPLY_ESTIMATE,
        _ => SMALL_REPLY_ESTIMATE,
    };
    frame.len() + reply
}

/// The length a READ asks for: its last four bytes (type, id, handle,
/// offset, then the length). A malformed READ costs the most a read may.
fn read_len(frame: &[u8]) -> usize {
    match frame.len().checked_sub(4).and_then(|at| frame.get(at..)) {
        Some([a, b, c, d]) if frame.len() >= 21 => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
        _ => MAX_DATA_LEN as usize,
    }
}

/// Replies handed to the writer and not yet written: shared by the
/// session loop (which adds) and the writer task (which takes away).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Bytes queued for the writer.
    queued: AtomicUsize,
    /// Bytes the writer has written so far (progress, for the stall watch).
    written: AtomicU64,
    /// Woken whenever the writer has written something.
    drained: Notify,
}

impl Outbox {
    /// Counts `len` bytes handed to the writer.
    pub fn queue(&self, len: usize) {
        self.queued.fetch_add(len, Ordering::SeqCst);
    }

    /// Counts `len` bytes written; wakes the session loop.
    pub fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::SeqCst);
        self.written.fetch_add(len as u64, Ordering::SeqCst);
        self.drained.notify_one();
    }

    /// Bytes queued and not written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Bytes written so far.
    pub fn total_written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Resolves once the writer has written something since the last call.
    pub async fn wait_drained(&self) {
        self.drained.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_frame(len: u32) -> Vec<u8> {
        let mut f = vec![FXP_READ, 0, 0, 0, 7, 0, 0, 0, 2, b'h', b'1'];
        f.extend_from_slice(&123u64.to_be_bytes());
        f.extend_from_slice(&len.to_be_bytes());
        f
    }

    #[test]
    fn a_read_costs_what_it_asks_for_up_to_the_limit() {
        let small = read_frame(32 * 1024);
        assert_eq!(request_cost(&small), small.len() + 32 * 1024 + 64);
        let huge = read_frame(u32::MAX);
        assert_eq!(request_cost(&huge), huge.len() + MAX_DATA_LEN as usize + 64);
        // Too short to hold a length: the most a read may cost.
        assert_eq!(request_cost(&[FXP_READ, 1]), 2 + MAX_DATA_LEN as usize + 64);
    }

    #[test]
    fn other_requests_cost_their_size_and_a_small_reply() {
        let write = [6u8; 40_000];
        assert_eq!(request_cost(&write), 40_000 + SMALL_REPLY_ESTIMATE);
        assert_eq!(
            request_cost(&[FXP_READDIR, 0, 0]),
            3 + READDIR_REPLY_ESTIMATE
        );
    }

    #[tokio::test]
    async fn the_outbox_counts_and_wakes() {
        let outbox = Outbox::default();
        outbox.queue(100);
        assert_eq!(outbox.queued(), 100);
        let waiter = outbox.wait_drained();
        outbox.written(60);
        waiter.await;
        assert_eq!(outbox.queued(), 40);
        assert_eq!(outbox.total_written(), 60);
    }
}
