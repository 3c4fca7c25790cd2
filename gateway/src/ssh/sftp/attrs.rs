//! Conversion of backend metadata to SFTP attributes and listing lines.

use std::time::{Duration, UNIX_EPOCH};

use backends::{DirEntry, EntryKind, Metadata};
use russh_sftp::protocol::{File, FileAttributes, FileMode};

/// SFTP attributes for `meta`, with sensible modes where the storage has none.
pub fn attributes(meta: &Metadata) -> FileAttributes {
    let (kind_bits, default_mode) = match meta.kind {
        EntryKind::Dir => (FileMode::DIR.bits(), 0o755),
        EntryKind::File => (FileMode::REG.bits(), 0o644),
        EntryKind::Other => (FileMode::LNK.bits(), 0o777),
    };
    let mtime = meta
        .modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32);
    FileAttributes {
        size: Some(meta.size),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(kind_bits | (meta.mode.unwrap_or(default_mode) & 0o7777)),
        atime: mtime,
        mtime,
    }
}

/// A listing entry with its `ls -l` style long name.
pub fn listing_entry(entry: &DirEntry) -> File {
    File::new(entry.name.clone(), attributes(&entry.metadata))
}

/// An SFTP time (seconds since the epoch) as a system time.
pub fn system_time(secs: u32) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_files_get_type_bits() {
        let meta = Metadata {
            kind: EntryKind::Dir,
            size: 0,
            modified: Some(system_time(1000)),
            mode: None,
        };
        let a = attributes(&meta);
        assert!(a.is_dir());
        assert_eq!(a.permissions, Some(0o40755));
        assert_eq!(a.mtime, Some(1000));
        let f = attributes(&Metadata {
            kind: EntryKind::File,
            size: 5,
            modified: None,
            mode: Some(0o600),
        });
        assert!(f.is_regular());
        assert_eq!(f.permissions, Some(0o100600));
    }
}
