use bytes::Buf;

use crate::error::Error;

pub trait TryBuf: Buf {
    fn try_get_bytes(&mut self) -> Result<Vec<u8>, Error>;
    fn try_get_string(&mut self) -> Result<String, Error>;
}

impl<T: Buf> TryBuf for T {
    fn try_get_bytes(&mut self) -> Result<Vec<u8>, Error> {
        let len = self.try_get_u32()? as usize;
        if self.remaining() < len {
            return Err(Error::BadMessage("no remaining for vec".to_owned()));
        }

        Ok(self.copy_to_bytes(len).to_vec())
    }

    fn try_get_string(&mut self) -> Result<String, Error> {
        let bytes = self.try_get_bytes()?;
        Ok(String::from_utf8(bytes).unwrap_or_else(|error| escape_invalid(error.as_bytes())))
    }
}

/// First of the private-use code points that stand for the bytes 0x80 to
/// 0xFF of a string that is not UTF-8 (patched in: see PATCHED.md).
const ESCAPE_BASE: u32 = 0x10_FF00;

/// `bytes` as a string in which every byte that is not part of valid UTF-8
/// becomes the code point `ESCAPE_BASE + byte`, so [`unescape`] gives the
/// same bytes back (a server's binary file handle, a file name in Latin-1).
pub fn escape_invalid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push(char::from_u32(ESCAPE_BASE + u32::from(*b)).unwrap_or('\u{FFFD}'));
        }
    }
    out
}

/// The bytes a string stands for on the wire: its UTF-8, except that the
/// code points made by [`escape_invalid`] become their original bytes.
pub fn unescape(s: &str) -> std::borrow::Cow<'_, [u8]> {
    let escaped = |c: char| (ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF).contains(&u32::from(c));
    if !s.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if escaped(c) {
            out.push((u32::from(c) - ESCAPE_BASE) as u8);
        } else {
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_survive_a_round_trip() {
        for bytes in [
            &[0u8, 0, 0, 0x80][..],
            &[0, 0, 1, 0xff],
            b"caf\xe9.txt",
            "na\u{ef}ve".as_bytes(),
            b"plain",
        ] {
            let s = escape_invalid(bytes);
            assert_eq!(&*unescape(&s), bytes, "{s:?}");
        }
        assert_eq!(escape_invalid(b"plain"), "plain");
    }
}
