//! Carries a state database written by redb 2 (file format v2) over to
//! the current redb on first open: every table is read with
//! [`super::redb2`], written into a new file in one transaction, and the
//! new file replaces the old one, which is kept beside it as a backup.

use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{Database, TableDefinition};

use super::redb2;
use super::StateError;

/// Suffix of the kept copy of a migrated file (`state.redb.redb2-backup`).
pub const BACKUP_SUFFIX: &str = "redb2-backup";

/// What a migration did, for the log.
#[derive(Debug)]
pub struct Migrated {
    /// Tables carried over.
    pub tables: usize,
    /// Rows carried over.
    pub rows: usize,
    /// Where the old file now is.
    pub backup: PathBuf,
}

/// Migrates `path` if redb 2 wrote it; `None` when there was nothing to do.
///
/// Safe against a second process migrating at the same time (an exclusive
/// lock on a side file) and against a crash midway (the new file is built
/// under another name and renamed into place only when complete).
pub fn migrate_if_needed(path: &Path) -> Result<Option<Migrated>, StateError> {
    let err = |message: String| failed(path, message);
    if !is_redb2(path).map_err(|e| err(format!("cannot read its header: {e}")))? {
        return Ok(None);
    }
    let lock_path = sibling(path, "migrating.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| err(format!("cannot create {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| err(format!("cannot lock {}: {e}", lock_path.display())))?;
    let result = migrate_locked(path);
    let _ = std::fs::remove_file(&lock_path);
    result
}

/// The migration proper, run while holding the side file's lock.
fn migrate_locked(path: &Path) -> Result<Option<Migrated>, StateError> {
    let err = |message: String| failed(path, message);
    // Another process may have migrated it while this one waited.
    if !is_redb2(path).map_err(|e| err(format!("cannot read its header: {e}")))? {
        return Ok(None);
    }
    // redb 2 holds an exclusive flock while it has the file open: an
    // older gateway still running on this folder must stop first.
    let old = File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
    if old.try_lock().is_err() {
        return Err(err(
            "it was written by an older gateway (redb file format v2) that still has it open; \
             stop that gateway, then start this one to migrate it"
                .into(),
        ));
    }
    let tables = redb2::read_tables(path).map_err(|e| {
        err(format!(
            "it was written by an older gateway (redb file format v2) and cannot be migrated: {e}"
        ))
    })?;
    let fresh = sibling(path, "migrating");
    let _ = std::fs::remove_file(&fresh);
    let rows = write_tables(&fresh, &tables).map_err(|e| {
        let _ = std::fs::remove_file(&fresh);
        err(format!(
            "cannot write the migrated copy {}: {e}",
            fresh.display()
        ))
    })?;
    let backup = free_backup_name(path);
    std::fs::hard_link(path, &backup).map_err(|e| {
        err(format!(
            "cannot keep the old file as {}: {e}",
            backup.display()
        ))
    })?;
    std::fs::rename(&fresh, path)
        .map_err(|e| err(format!("cannot put the migrated copy in place: {e}")))?;
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    drop(old);
    Ok(Some(Migrated {
        tables: tables.len(),
        rows,
        backup,
    }))
}

fn failed(path: &Path, message: String) -> StateError {
    StateError::Database {
        path: path.to_path_buf(),
        message,
    }
}

fn is_redb2(path: &Path) -> std::io::Result<bool> {
    match redb2::file_format(path) {
        Ok(format) => Ok(format == Some(2)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes every table into a new database at `path`; returns the rows.
fn write_tables(path: &Path, tables: &redb2::Tables) -> Result<usize, redb::Error> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    let mut rows = 0;
    for (name, entries) in tables {
        let definition: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
        let mut table = txn.open_table(definition)?;
        for (key, value) in entries {
            table.insert(key.as_str(), value.as_slice())?;
            rows += 1;
        }
    }
    txn.commit()?;
    Ok(rows)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// `state.redb.redb2-backup`, or `…-backup.2`, `.3`… if taken.
fn free_backup_name(path: &Path) -> PathBuf {
    let first = sibling(path, BACKUP_SUFFIX);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| sibling(path, &format!("{BACKUP_SUFFIX}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RedbStore, StateStore, Table};

    /// `tests/fixtures/state-redb2/NAME`, un-gzipped into `dir`.
    fn fixture(name: &str, dir: &Path, as_name: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/state-redb2")
            .join(format!("{name}.gz"));
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&source)
            .output()
            .expect("gzip runs");
        assert!(out.status.success(), "gzip -dc {}", source.display());
        let path = dir.join(as_name);
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    const TABLES: [Table; 10] = [
        Table::Users,
        Table::HostKeys,
        Table::DisabledRemotes,
        Table::SyncRuns,
        Table::SyncLocks,
        Table::Health,
        Table::Checksums,
        Table::S3Keys,
        Table::SyncClaims,
        Table::ServerHostKeys,
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every table as the store lists it, in the fixture's JSON shape.
    fn dump(store: &RedbStore) -> serde_json::Value {
        let mut all = serde_json::Map::new();
        for table in TABLES {
            let rows: Vec<serde_json::Value> = store
                .list(table)
                .unwrap()
                .into_iter()
                .map(|(k, v)| serde_json::json!([k, hex(&v)]))
                .collect();
            all.insert(table.name().to_string(), rows.into());
        }
        all.into()
    }

    #[test]
    fn a_file_the_old_gateway_wrote_opens_with_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture("state.redb", dir.path(), RedbStore::FILE_NAME);
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture("expected.json", dir.path(), "expected.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(redb2::file_format(&db).unwrap(), Some(2));
        let old_bytes = std::fs::read(&db).unwrap();

        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(dump(&store), expected, "rows differ after the migration");
        assert_eq!(store.list(Table::Checksums).unwrap().len(), 2999);
        assert_eq!(
            store
                .get(Table::Health, "big-probe")
                .unwrap()
                .map(|v| v.len()),
            Some(200_000)
        );

        // The old file is kept, unchanged; the new one is redb's v3.
        let backup = dir.path().join("state.redb.redb2-backup");
        assert_eq!(std::fs::read(&backup).unwrap(), old_bytes);
        assert_eq!(redb2::file_format(&db).unwrap(), Some(3));
        assert!(!dir.path().join("state.redb.migrating").exists());

        // Writes work, and the next open migrates nothing.
        store.put(Table::Health, "after", b"1").unwrap();
        drop(store);
        assert!(migrate_if_needed(&db).unwrap().is_none());
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(Table::Health, "after").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(store.list(Table::Users).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_old_file_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture("state.redb", dir.path(), RedbStore::FILE_NAME);
        let mut bytes = std::fs::read(&db).unwrap();
        // Flip one byte inside a checksum row's text (a leaf page's data).
        let needle = b"batch-017/file-01750.csv";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the fixture holds that row");
        bytes[at + 6] ^= 0x01;
        std::fs::write(&db, &bytes).unwrap();

        let message = match RedbStore::open(dir.path()) {
            Ok(_) => panic!("a damaged page was carried over"),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains("older gateway") && message.contains("fails its checksum"),
            "unclear refusal: {message}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "the old file changed");
        assert!(!dir.path().join("state.redb.redb2-backup").exists());
        assert!(!dir.path().join("state.redb.migrating").exists());
    }

    #[test]
    fn an_old_file_still_open_in_an_older_gateway_waits_for_it_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture("state.redb", dir.path(), RedbStore::FILE_NAME);
        // redb 2 holds this flock while the file is open.
        let held = File::open(&db).unwrap();
        held.lock().unwrap();
        let message = match RedbStore::open(dir.path()) {
            Ok(_) => panic!("migrated a file another process has open"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("still has it open"), "{message}");
        assert_eq!(redb2::file_format(&db).unwrap(), Some(2));
        drop(held);
        RedbStore::open(dir.path()).unwrap();
        assert_eq!(redb2::file_format(&db).unwrap(), Some(3));
    }

    #[test]
    fn a_file_that_is_not_redb_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(RedbStore::FILE_NAME);
        std::fs::write(&db, b"not a database").unwrap();
        assert!(migrate_if_needed(&db).unwrap().is_none());
        assert_eq!(std::fs::read(&db).unwrap(), b"not a database");
    }
}
