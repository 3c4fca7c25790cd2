//! The FTP listing parsers: MLSD/MLST facts (`parse_mlsd_line`,
//! `parse_mlsx`), `LIST` lines in Unix and DOS/IIS styles
//! (`parse_list_line`), and RFC 3659 time values (`parse_time_val`).
//!
//! Input: a listing as a server sends it (UTF-8, lossy as the backend
//! reads it); every line goes through every parser, and also each
//! `;`-separated fact value through `parse_time_val`.
//!
//! Checked: no panic; an entry that comes out has a name usable as one
//! path component (not empty, `.`, `..`, no `/` or NUL), a folder has
//! size 0, modes are permission bits only; `parse_mlsd_line` agrees with
//! `parse_mlsx`; a parsed time formats back to a value that parses to
//! the same time (and any time formats to a 14-digit value that parses).
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backends::ftp::fuzzing::{
    format_time_val, parse_list_line, parse_mlsd_line, parse_mlsx, parse_time_val, Facts,
};
use backends::{DirEntry, EntryKind};
use libfuzzer_sys::fuzz_target;

fn check_entry(line: &str, e: &DirEntry) {
    let n = e.name.as_str();
    assert!(
        !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']),
        "unusable name {n:?} from {line:?}"
    );
    if e.metadata.kind == EntryKind::Dir {
        assert_eq!(e.metadata.size, 0, "folder with a size from {line:?}");
    }
    if let Some(mode) = e.metadata.mode {
        assert_eq!(mode & !0o7777, 0, "mode {mode:o} from {line:?}");
    }
}

/// A formatted time is always a time value (14 digits) that parses.
fn check_format(t: SystemTime) -> SystemTime {
    let text = format_time_val(t);
    assert!(
        text.len() == 14 && text.bytes().all(|b| b.is_ascii_digit()),
        "{t:?} formatted as {text:?}"
    );
    parse_time_val(&text)
        .unwrap_or_else(|| panic!("{t:?} formatted as {text:?}, which does not parse"))
}

fn check_time(value: &str) {
    if let Some(t) = parse_time_val(value) {
        // The same time back, except past 9999-12-31 23:59:59 (a leap
        // second there), which formats as that last second.
        let back = check_format(t);
        assert!(
            back == t || (back < t && format_time_val(t) == "99991231235959"),
            "{value:?} parsed to {t:?}, formatted as {:?}",
            format_time_val(t)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The first eight bytes as seconds since the epoch, for the formatter.
    if let Some(b) = data.get(..8) {
        let secs = i64::from_be_bytes(b.try_into().unwrap());
        let d = Duration::from_secs(secs.unsigned_abs());
        if let Some(t) = if secs < 0 {
            UNIX_EPOCH.checked_sub(d)
        } else {
            UNIX_EPOCH.checked_add(d)
        } {
            check_format(t);
        }
    }
    let text = String::from_utf8_lossy(data);
    // Two clocks: now-ish, and just after the epoch (dates without a year
    // then fall in 1969 or 1970).
    let nows = [
        UNIX_EPOCH + Duration::from_secs(1_781_524_800),
        UNIX_EPOCH + Duration::from_secs(3_600),
    ];
    for line in text.split('\n') {
        for now in nows {
            if let Some(e) = parse_list_line(line, now) {
                check_entry(line, &e);
            }
        }
        let mlsd = parse_mlsd_line(line);
        if let Some(e) = &mlsd {
            check_entry(line, e);
            match parse_mlsx(line) {
                Some((Facts::Entry(m), name)) => {
                    assert_eq!((&m, name), (&e.metadata, e.name.as_str()), "{line:?}")
                }
                other => panic!("MLSD gave {e:?} but MLSx {other:?} for {line:?}"),
            }
        }
        if let Some((Facts::Entry(m), name)) = parse_mlsx(line) {
            if m.kind == EntryKind::Dir {
                assert_eq!(m.size, 0, "{line:?}");
            }
            let usable =
                !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
            assert_eq!(mlsd.is_some(), usable, "{line:?}");
        }
        check_time(line.trim_end_matches('\r'));
        for fact in line.split(';') {
            if let Some((_, value)) = fact.split_once('=') {
                check_time(value);
            }
        }
    }
});
