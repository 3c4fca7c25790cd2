//! Computing and checking the checksums of [`HashKind`]: the local backend
//! hashes its files with [`Hasher`], callers can hash the bytes they send
//! the same way, and the remote backends check what a server reports with
//! [`normalize`] before passing it on, so every backend answers in the
//! same form (lowercase hex of the right length).

use md5::Digest;

use crate::backend::HashKind;

/// A running checksum of one [`HashKind`], fed piece by piece.
#[derive(Clone)]
pub struct Hasher(State);

#[derive(Clone)]
enum State {
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hasher").field(&self.kind()).finish()
    }
}

impl Hasher {
    /// A hasher of `kind` that has seen no bytes yet.
    pub fn new(kind: HashKind) -> Self {
        Hasher(match kind {
            HashKind::Md5 => State::Md5(md5::Md5::new()),
            HashKind::Crc32 => State::Crc32(crc32fast::Hasher::new()),
        })
    }

    /// The kind this hasher computes.
    pub fn kind(&self) -> HashKind {
        match self.0 {
            State::Md5(_) => HashKind::Md5,
            State::Crc32(_) => HashKind::Crc32,
        }
    }

    /// Adds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Md5(h) => h.update(data),
            State::Crc32(h) => h.update(data),
        }
    }

    /// The checksum of every byte added, as lowercase hex (32 digits for
    /// MD5, 8 for CRC-32).
    pub fn finish(self) -> String {
        match self.0 {
            State::Md5(h) => hex(&h.finalize()),
            State::Crc32(h) => format!("{:08x}", h.finalize()),
        }
    }
}

/// The checksum of `data` as lowercase hex.
pub fn of_bytes(kind: HashKind, data: &[u8]) -> String {
    let mut h = Hasher::new(kind);
    h.update(data);
    h.finish()
}

/// Lowercase hex of `bytes` (how every checksum and key is written).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// How many hex digits a checksum of `kind` has.
pub(crate) fn digits(kind: HashKind) -> usize {
    match kind {
        HashKind::Md5 => 32,
        HashKind::Crc32 => 8,
    }
}

/// `text` as a checksum of `kind` in the contract's form: exactly the
/// right number of hex digits (either case), returned lowercase; `None`
/// for anything else, so a server's odd answer is never passed on.
pub(crate) fn normalize(kind: HashKind, text: &str) -> Option<String> {
    (text.len() == digits(kind) && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(
            of_bytes(HashKind::Md5, b"hello\n"),
            "b1946ac92492d2347c6235b4d2611184"
        );
        assert_eq!(of_bytes(HashKind::Crc32, b"hello\n"), "363a3020");
        assert_eq!(
            of_bytes(HashKind::Md5, b""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(of_bytes(HashKind::Crc32, b""), "00000000");
        // Piece by piece gives the same as all at once.
        let mut h = Hasher::new(HashKind::Md5);
        h.update(b"hel");
        h.update(b"lo\n");
        assert_eq!(h.kind(), HashKind::Md5);
        assert_eq!(h.finish(), "b1946ac92492d2347c6235b4d2611184");
    }

    #[test]
    fn normalize_checks_length_and_digits() {
        assert_eq!(
            normalize(HashKind::Md5, "B1946AC92492D2347C6235B4D2611184").as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184")
        );
        assert_eq!(
            normalize(HashKind::Md5, "b1946ac92492d2347c6235b4d261118"),
            None
        );
        assert_eq!(
            normalize(HashKind::Md5, "g1946ac92492d2347c6235b4d2611184"),
            None
        );
        assert_eq!(
            normalize(HashKind::Crc32, "363A3020").as_deref(),
            Some("363a3020")
        );
        assert_eq!(normalize(HashKind::Crc32, "363a302"), None);
    }
}
