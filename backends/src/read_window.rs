//! The bytes a sequential reader (an FTP RETR stream, an S3 ranged GET)
//! read last, kept so that a client's reads that step back a little or
//! arrive out of order are served without starting the stream again.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes `[start, start + len)` of a file, at most `keep` of them once
/// trimmed.
#[derive(Debug)]
pub(crate) struct ReadWindow {
    bytes: BytesMut,
    start: u64,
    keep: usize,
}

impl ReadWindow {
    /// An empty window at offset 0 that keeps up to `keep` bytes.
    pub(crate) fn new(keep: usize) -> Self {
        ReadWindow {
            bytes: BytesMut::new(),
            start: 0,
            keep,
        }
    }

    /// Empties the window; the next bytes appended are those at `offset`.
    pub(crate) fn reset(&mut self, offset: u64) {
        self.bytes.clear();
        self.start = offset;
    }

    /// Whether `offset` is in the window, whose end is `pos`.
    pub(crate) fn holds(&self, offset: u64, pos: u64) -> bool {
        offset >= self.start && offset < pos
    }

    /// Where new bytes are appended.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        &mut self.bytes
    }

    /// A copy of bytes `[offset, end)`, as far as the window has them.
    pub(crate) fn copy(&self, offset: u64, end: u64) -> Bytes {
        let at = |o: u64| usize::try_from(o.saturating_sub(self.start)).unwrap_or(usize::MAX);
        self.bytes
            .get(at(offset)..at(end))
            .map(Bytes::copy_from_slice)
            .unwrap_or_default()
    }

    /// Drops the oldest bytes beyond `keep`.
    pub(crate) fn trim(&mut self) {
        if self.bytes.len() > self.keep {
            let excess = self.bytes.len() - self.keep;
            self.bytes.advance(excess);
            self.start += excess as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_what_it_holds_and_keeps_the_newest_bytes() {
        let mut w = ReadWindow::new(4);
        w.reset(10);
        w.buffer().extend_from_slice(b"abcdef");
        assert!(w.holds(10, 16) && !w.holds(16, 16) && !w.holds(9, 16));
        assert_eq!(&w.copy(11, 14)[..], b"bcd");
        assert_eq!(&w.copy(14, 20)[..], b"", "past the end: nothing");
        w.trim();
        assert!(!w.holds(11, 16) && w.holds(12, 16));
        assert_eq!(&w.copy(12, 16)[..], b"cdef");
        w.reset(100);
        assert!(!w.holds(12, 100));
    }
}
