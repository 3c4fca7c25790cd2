//! The modification time kept in an object's user metadata: `mtime`
//! (header `x-amz-meta-mtime`), Unix seconds with a decimal fraction of up
//! to nine digits, as rclone writes it (`1700000000.123456789`), so times
//! set through the gateway and through rclone read back the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The user-metadata name of the modification time.
pub const MTIME_KEY: &str = "mtime";

/// `when` as seconds since the epoch, trailing zeros of the fraction and a
/// bare `.` left out (`1700000000`, `1700000000.5`).
pub fn format(when: SystemTime) -> String {
    let (sign, d) = match when.duration_since(UNIX_EPOCH) {
        Ok(d) => ("", d),
        Err(before) => ("-", before.duration()),
    };
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{sign}{secs}");
    }
    let fraction = format!("{nanos:09}");
    format!("{sign}{secs}.{}", fraction.trim_end_matches('0'))
}

/// Parses what [`format()`] writes (and integers); `None` for anything else.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let nanos: u32 = digits.parse().ok()?;
    let d = Duration::new(secs, nanos);
    if negative {
        UNIX_EPOCH.checked_sub(d)
    } else {
        UNIX_EPOCH.checked_add(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_rclone() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(format(t), "1700000000.123456789");
        assert_eq!(
            format(UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000)),
            "1700000000.5"
        );
        assert_eq!(
            format(UNIX_EPOCH + Duration::from_secs(1_500_000_000)),
            "1500000000"
        );
        assert_eq!(
            format(UNIX_EPOCH - Duration::from_millis(1500)),
            "-1.5",
            "before 1970"
        );
    }

    #[test]
    fn parses_what_it_writes_and_rejects_junk() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH + Duration::new(1, 10),
            UNIX_EPOCH,
            UNIX_EPOCH - Duration::new(5, 250_000_000),
        ] {
            assert_eq!(parse(&format(t)), Some(t), "{}", format(t));
        }
        assert_eq!(
            parse("1700000000.1234567891"),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
            "digits past nanoseconds are dropped"
        );
        assert_eq!(parse(" 42 "), Some(UNIX_EPOCH + Duration::from_secs(42)));
        for junk in [
            "",
            ".",
            "-",
            "1e9",
            "abc",
            "1.2.3",
            "1,5",
            "+1",
            "2023-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}
