//! Parsers for folder listings and file facts: MLSD/MLST lines (RFC 3659)
//! and `LIST` output in the Unix `ls -l` and DOS/IIS styles.
//!
//! Names are taken verbatim (spaces, non-ASCII); an entry whose name could
//! step outside its folder (`/`, `.`, `..`, NUL) is dropped.

use std::time::{Duration, SystemTime};

use super::time;
use crate::backend::{DirEntry, EntryKind, Metadata};

/// What an MLSD/MLST line describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// A real entry with its metadata.
    Entry(Metadata),
    /// The listed folder itself or its parent (`cdir`/`pdir`).
    SelfOrParent,
}

/// Parses the facts of an MLSD or MLST line (`type=file;size=3; name`)
/// and returns them with the name (the text after the first space).
pub fn parse_mlsx(line: &str) -> Option<(Facts, &str)> {
    let (facts, name) = line.split_once(' ')?;
    let mut kind = EntryKind::File;
    let mut size = 0;
    let mut modified = None;
    let mut mode = None;
    let mut typed = false;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let Some((key, value)) = fact.split_once('=') else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                typed = true;
                let value = value.to_ascii_lowercase();
                kind = match value.as_str() {
                    "file" => EntryKind::File,
                    "dir" => EntryKind::Dir,
                    "cdir" | "pdir" => return Some((Facts::SelfOrParent, name)),
                    _ => EntryKind::Other,
                };
            }
            "size" | "sizd" => size = value.parse().unwrap_or(0),
            "modify" => modified = time::parse_time_val(value),
            "unix.mode" => mode = u32::from_str_radix(value, 8).ok().map(|m| m & 0o7777),
            _ => {}
        }
    }
    if !typed {
        // Without a type fact the entry cannot be classified safely.
        return None;
    }
    if kind == EntryKind::Dir {
        size = 0;
    }
    Some((
        Facts::Entry(Metadata {
            kind,
            size,
            modified,
            mode,
        }),
        name,
    ))
}

/// One MLSD line as an entry; `None` for the folder itself, its parent,
/// unusable names and lines that are not MLSD facts.
pub fn parse_mlsd_line(line: &str) -> Option<DirEntry> {
    match parse_mlsx(line)? {
        (Facts::Entry(metadata), name) if usable_name(name) => Some(DirEntry {
            name: name.to_string(),
            metadata,
        }),
        _ => None,
    }
}

/// One `LIST` line as an entry, in Unix or DOS style; `None` for `total`
/// lines, `.`/`..` and anything unparsable. `now` decides the year of Unix
/// dates that show a time instead of a year.
pub fn parse_list_line(line: &str, now: SystemTime) -> Option<DirEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    let entry = if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        parse_dos(line)
    } else {
        parse_unix(line, now)
    }?;
    usable_name(&entry.name).then_some(entry)
}

/// Whether a name from the server can be used as one path component.
fn usable_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Whitespace-separated words with their byte ranges.
fn words(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `drwxr-xr-x  2 owner group  4096 Jan  1 12:34 name with spaces`: the date
/// (month, day, time or year) is found first, the size is the word before
/// it and the name is everything after it, so missing or numeric owner
/// and group columns do not matter.
fn parse_unix(line: &str, now: SystemTime) -> Option<DirEntry> {
    let w = words(line);
    let perms = &line[w.first()?.0..w.first()?.1];
    let kind = match perms.as_bytes().first()? {
        b'd' => EntryKind::Dir,
        b'-' => EntryKind::File,
        b'l' | b'b' | b'c' | b'p' | b's' | b'D' => EntryKind::Other,
        _ => return None,
    };
    let word = |i: usize| w.get(i).map(|&(s, e)| &line[s..e]);
    let (month_at, month) = (2..w.len().saturating_sub(2)).find_map(|i| {
        let month = month_number(word(i)?)?;
        let day: u32 = word(i + 1)?.parse().ok().filter(|d| (1..=31).contains(d))?;
        word(i - 1)?.parse::<u64>().ok()?;
        let when = word(i + 2)?;
        (is_clock(when) || is_year(when)).then_some((i, (month, day)))
    })?;
    let size: u64 = word(month_at - 1)?.parse().ok()?;
    let when = word(month_at + 2)?;
    let modified = unix_date(month.0, month.1, when, now);
    // The name starts after the single space that follows the date.
    let after_date = w.get(month_at + 2)?.1;
    let mut name = line.get(after_date + 1..)?;
    if kind == EntryKind::Other && perms.starts_with('l') {
        if let Some((link, _target)) = name.split_once(" -> ") {
            name = link;
        }
    }
    Some(DirEntry {
        name: name.to_string(),
        metadata: Metadata {
            kind,
            size: if kind == EntryKind::Dir { 0 } else { size },
            modified,
            mode: unix_mode(perms),
        },
    })
}

fn month_number(word: &str) -> Option<u32> {
    let lower = word.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

fn is_clock(word: &str) -> bool {
    matches!(word.split_once(':'), Some((h, m)) if !h.is_empty() && h.len() <= 2
        && m.len() == 2 && h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
}

fn is_year(word: &str) -> bool {
    word.len() == 4 && word.bytes().all(|b| b.is_ascii_digit())
}

/// `Jan  1 12:34` is within the last six months (so this year, or last year
/// if that would be in the future); `Jan  1  2020` carries its year.
fn unix_date(month: u32, day: u32, when: &str, now: SystemTime) -> Option<SystemTime> {
    if is_year(when) {
        return time::utc(when.parse().ok()?, month, day, 0, 0, 0);
    }
    let (h, m) = when.split_once(':')?;
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    let year = time::year_of(now);
    let this_year = time::utc(year, month, day, h, m, 0)?;
    if this_year > now + Duration::from_secs(86_400) {
        time::utc(year - 1, month, day, h, m, 0)
    } else {
        Some(this_year)
    }
}

/// Permission bits of `rwxr-sr-t` style text (the first of ten characters
/// is the type).
fn unix_mode(perms: &str) -> Option<u32> {
    let p = perms.as_bytes();
    if p.len() < 10 {
        return None;
    }
    let mut mode = 0u32;
    for (i, &c) in p[1..10].iter().enumerate() {
        let bit = 1 << (8 - i);
        match (i % 3, c) {
            (_, b'-') => {}
            (0, b'r') | (1, b'w') | (2, b'x') => mode |= bit,
            (2, b's') | (2, b't') => mode |= bit | special_bit(i),
            (2, b'S') | (2, b'T') => mode |= special_bit(i),
            _ => return None,
        }
    }
    Some(mode)
}

/// setuid, setgid or sticky, by the position of the execute column.
fn special_bit(column: usize) -> u32 {
    match column {
        2 => 0o4000,
        5 => 0o2000,
        _ => 0o1000,
    }
}

/// `01-02-23  03:04PM       <DIR>          name` or
/// `01-02-2023  15:04  1234 name` (IIS and other Windows servers).
fn parse_dos(line: &str) -> Option<DirEntry> {
    let w = words(line);
    if w.len() < 4 {
        return None;
    }
    let word = |i: usize| &line[w[i].0..w[i].1];
    let mut date = word(0).split(['-', '/']);
    let (month, day, year) = (date.next()?, date.next()?, date.next()?);
    let (month, day): (u32, u32) = (month.parse().ok()?, day.parse().ok()?);
    let year: i64 = match year.len() {
        2 => {
            let y: i64 = year.parse().ok()?;
            if y < 70 {
                2000 + y
            } else {
                1900 + y
            }
        }
        4 => year.parse().ok()?,
        _ => return None,
    };
    let clock = word(1).to_ascii_uppercase();
    let (clock, pm) = match clock.strip_suffix("PM") {
        Some(c) => (c.to_string(), Some(true)),
        None => match clock.strip_suffix("AM") {
            Some(c) => (c.to_string(), Some(false)),
            None => (clock, None),
        },
    };
    let (h, m) = clock.split_once(':')?;
    let (mut h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match pm {
        Some(true) if h < 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    let (kind, size) = if word(2).eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, 0)
    } else {
        (EntryKind::File, word(2).replace(',', "").parse().ok()?)
    };
    let name = &line[w[3].0..];
    Some(DirEntry {
        name: name.to_string(),
        metadata: Metadata {
            kind,
            size,
            modified: time::utc(year, month, day, h, m, 0),
            mode: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> SystemTime {
        time::utc(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn mlsd_facts() {
        let e = parse_mlsd_line(
            "type=file;size=1234;modify=20240102030405;UNIX.mode=0644;unique=a; my file.txt",
        )
        .unwrap();
        assert_eq!(e.name, "my file.txt");
        assert_eq!(e.metadata.kind, EntryKind::File);
        assert_eq!(e.metadata.size, 1234);
        assert_eq!(e.metadata.modified, Some(at(2024, 1, 2, 3, 4, 5)));
        assert_eq!(e.metadata.mode, Some(0o644));
        let d = parse_mlsd_line("Type=DIR;Sizd=4096;Modify=20240102030405.123; Ünïcødé ").unwrap();
        assert_eq!(
            (d.name.as_str(), d.metadata.kind, d.metadata.size),
            ("Ünïcødé ", EntryKind::Dir, 0)
        );
        let l = parse_mlsd_line("type=OS.unix=slink:/etc;size=4; link").unwrap();
        assert_eq!(l.metadata.kind, EntryKind::Other);
        assert_eq!(parse_mlsd_line("type=cdir;modify=20240102030405; ."), None);
        assert_eq!(parse_mlsd_line("type=pdir; .."), None);
        assert_eq!(parse_mlsd_line("type=file;size=1; a/b"), None);
        assert_eq!(parse_mlsd_line("type=file;size=1; .."), None);
        assert_eq!(parse_mlsd_line("size=1; untyped"), None);
        assert_eq!(parse_mlsd_line("garbage"), None);
        assert!(matches!(
            parse_mlsx("type=file;size=5; /home/u/f"),
            Some((Facts::Entry(_), "/home/u/f"))
        ));
    }

    #[test]
    fn unix_list_lines() {
        let now = at(2024, 3, 15, 12, 0, 0);
        let e = parse_list_line(
            "-rw-r--r--    1 1000     1000         1234 Jan 02 03:04 name with  spaces.txt",
            now,
        )
        .unwrap();
        assert_eq!(e.name, "name with  spaces.txt");
        assert_eq!(e.metadata.size, 1234);
        assert_eq!(e.metadata.kind, EntryKind::File);
        assert_eq!(e.metadata.mode, Some(0o644));
        assert_eq!(e.metadata.modified, Some(at(2024, 1, 2, 3, 4, 0)));
        // A time that would be in the future belongs to last year.
        let e = parse_list_line("-rw-r--r-- 1 u g 5 Dec 24 18:00 x", now).unwrap();
        assert_eq!(e.metadata.modified, Some(at(2023, 12, 24, 18, 0, 0)));
        let e = parse_list_line(
            "drwxr-sr-t 3 owner group 4096 Nov  3  2019 Ünïcødé dir",
            now,
        )
        .unwrap();
        assert_eq!(e.name, "Ünïcødé dir");
        assert_eq!(e.metadata.kind, EntryKind::Dir);
        assert_eq!(e.metadata.size, 0);
        assert_eq!(e.metadata.mode, Some(0o3755));
        assert_eq!(e.metadata.modified, Some(at(2019, 11, 3, 0, 0, 0)));
        let e = parse_list_line(
            "lrwxrwxrwx 1 root root 7 Feb 29 2020 my link -> target dir",
            now,
        )
        .unwrap();
        assert_eq!(e.name, "my link");
        assert_eq!(e.metadata.kind, EntryKind::Other);
        // No group column, and a user named like a month.
        let e = parse_list_line("-rw-------   1 Jan   42 Mar  1 09:15 Mar 1 report", now).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.size), ("Mar 1 report", 42));
        // A name that is only a leading space and a word survives.
        let e = parse_list_line("-rw-r--r-- 1 u g 0 Jan 02 03:04  lead", now).unwrap();
        assert_eq!(e.name, " lead");
        assert_eq!(parse_list_line("total 12", now), None);
        assert_eq!(
            parse_list_line("drwxr-xr-x 2 u g 4096 Jan 02 03:04 .", now),
            None
        );
        assert_eq!(
            parse_list_line("drwxr-xr-x 2 u g 4096 Jan 02 03:04 ..", now),
            None
        );
        assert_eq!(parse_list_line("", now), None);
        assert_eq!(
            parse_list_line("-rw-r--r-- 1 u g x Jan 02 03:04 f", now),
            None
        );
    }

    #[test]
    fn dos_list_lines() {
        let e = parse_list_line(
            "01-02-23  03:04PM       <DIR>          Some Folder",
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(e.name, "Some Folder");
        assert_eq!(e.metadata.kind, EntryKind::Dir);
        assert_eq!(e.metadata.modified, Some(at(2023, 1, 2, 15, 4, 0)));
        let e = parse_list_line(
            "12-31-99  12:30AM              1,234 report é.txt",
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(e.name, "report é.txt");
        assert_eq!(e.metadata.size, 1234);
        assert_eq!(e.metadata.modified, Some(at(1999, 12, 31, 0, 30, 0)));
        let e = parse_list_line("07-04-2024  23:59  10 a  b", UNIX_EPOCH).unwrap();
        assert_eq!((e.name.as_str(), e.metadata.size), ("a  b", 10));
        assert_eq!(parse_list_line("01-02-23 junk", UNIX_EPOCH), None);
    }
}
