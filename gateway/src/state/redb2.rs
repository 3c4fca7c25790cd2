//! A reader for state databases written by redb 2 (file format v2), so the
//! gateway can carry them to the current redb, which refuses that format
//! (`UpgradeRequired`). Keeping redb 2 in the build only for this would put
//! two redb versions in the lock; the part of the format our tables use
//! (`&str` keys, `&[u8]` values) is small and documented in redb 2.6's
//! `docs/design.md`, so we read it here, verifying every page's XXH3-128
//! checksum as redb does. Read-only: the old file is never changed.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why a redb 2 file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Redb2Error {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    /// The file is damaged (a checksum or a structure does not match).
    #[error("it is damaged: {0}")]
    Damaged(String),
    /// The file holds something this reader does not carry over.
    #[error("{0}")]
    Unsupported(String),
}

/// The file format of a redb file, read from its header; `None` when the
/// file is not a redb file (or too short to tell).
pub fn file_format(path: &Path) -> std::io::Result<Option<u8>> {
    let file = File::open(path)?;
    let mut header = [0u8; HEADER_LEN];
    if file.read_exact_at(&mut header, 0).is_err() || header[..9] != MAGIC {
        return Ok(None);
    }
    let primary = usize::from(header[GOD_BYTE] & PRIMARY_BIT);
    Ok(Some(header[SLOT_OFFSET + primary * SLOT_LEN]))
}

/// Every table of the file's last committed transaction: name → rows
/// (key → value), in key order.
pub type Tables = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Reads every table of a redb 2 file.
pub fn read_tables(path: &Path) -> Result<Tables, Redb2Error> {
    let file = File::open(path)?;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0)?;
    if header[..9] != MAGIC {
        return Err(Redb2Error::Damaged("not a redb file".into()));
    }
    let god = header[GOD_BYTE];
    let page_size = u64::from(u32_at(&header, 12));
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Redb2Error::Damaged(format!("page size {page_size}")));
    }
    let layout = Layout {
        page_size,
        region_header_pages: u64::from(u32_at(&header, 16)),
        region_max_data_pages: u64::from(u32_at(&header, 20)),
    };
    let slots = [0, 1].map(|i| {
        Slot::parse(&header[SLOT_OFFSET + i * SLOT_LEN..SLOT_OFFSET + (i + 1) * SLOT_LEN])
    });
    let primary = usize::from(god & PRIMARY_BIT);
    let secondary = primary ^ 1;
    // As redb's repair picks: after a crash without two-phase commit, a
    // newer valid secondary is the last commit; otherwise the primary.
    let recovery = god & RECOVERY_REQUIRED != 0 && god & TWO_PHASE_COMMIT == 0;
    let order = if recovery && slots[secondary].newer_than(&slots[primary]) {
        [secondary, primary]
    } else {
        [primary, secondary]
    };
    let reader = PageReader { file, layout };
    let mut first_error = None;
    for index in order {
        let slot = &slots[index];
        if !slot.checksum_ok {
            first_error.get_or_insert(Redb2Error::Damaged(format!(
                "commit slot {index} fails its checksum"
            )));
            continue;
        }
        if slot.version != 2 {
            return Err(Redb2Error::Unsupported(format!(
                "file format v{} (only v2 is read here)",
                slot.version
            )));
        }
        match reader.tables(slot) {
            Ok(tables) => return Ok(tables),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Redb2Error::Damaged("no valid commit slot".into())))
}

const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
const GOD_BYTE: usize = 9;
const PRIMARY_BIT: u8 = 1;
const RECOVERY_REQUIRED: u8 = 2;
const TWO_PHASE_COMMIT: u8 = 4;
const SLOT_OFFSET: usize = 64;
const SLOT_LEN: usize = 128;
const HEADER_LEN: usize = SLOT_OFFSET + 2 * SLOT_LEN;
const SLOT_CHECKSUM_OFFSET: usize = SLOT_LEN - 16;
const LEAF: u8 = 1;
const BRANCH: u8 = 2;
/// `TableType::Normal` in the table tree (redb 2 wrote 3; 1 was legacy).
const NORMAL_TABLE: u8 = 3;
/// Deeper than any real tree (each level multiplies entries by 2+).
const MAX_DEPTH: usize = 64;

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u128_at(data: &[u8], at: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&data[at..at + 16]);
    u128::from_le_bytes(b)
}

fn checksum(data: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(data)
}

/// A B-tree's entries as raw bytes: (key, value), in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A B-tree's root as stored: page, the page's checksum.
#[derive(Debug, Clone, Copy)]
struct Root {
    page: u64,
    checksum: u128,
}

impl Root {
    /// Parses the 32-byte `BtreeHeader` (page, checksum, length).
    fn parse(data: &[u8]) -> Root {
        Root {
            page: u64_at(data, 0),
            checksum: u128_at(data, 8),
        }
    }
}

/// One of the header's two commit slots.
struct Slot {
    version: u8,
    user_root: Option<Root>,
    transaction_id: u64,
    checksum_ok: bool,
}

impl Slot {
    fn parse(data: &[u8]) -> Slot {
        Slot {
            version: data[0],
            user_root: (data[1] != 0).then(|| Root::parse(&data[8..40])),
            transaction_id: u64_at(data, 104),
            checksum_ok: u128_at(data, SLOT_CHECKSUM_OFFSET)
                == checksum(&data[..SLOT_CHECKSUM_OFFSET]),
        }
    }

    fn newer_than(&self, other: &Slot) -> bool {
        self.checksum_ok && self.transaction_id > other.transaction_id
    }
}

/// Where pages live: regions of header pages then data pages, after the
/// first page (the header).
struct Layout {
    page_size: u64,
    region_header_pages: u64,
    region_max_data_pages: u64,
}

struct PageReader {
    file: File,
    layout: Layout,
}

impl PageReader {
    /// The bytes of page `number` (region, index and order packed as redb
    /// packs them), checked against `expected`.
    fn page(&self, number: u64, expected: u128) -> Result<Vec<u8>, Redb2Error> {
        let order = (number >> 59) as u32;
        if order > 20 {
            return Err(Redb2Error::Damaged(format!(
                "page {number:#x}: order {order}"
            )));
        }
        let index = number & (0x000F_FFFF >> order);
        let region = (number >> 20) & 0x000F_FFFF;
        let l = &self.layout;
        let len = l.page_size << order;
        let region_len = (l.region_header_pages + l.region_max_data_pages) * l.page_size;
        let offset =
            l.page_size + region * region_len + l.region_header_pages * l.page_size + index * len;
        let mut page = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut page, offset)
            .map_err(|e| Redb2Error::Damaged(format!("page {number:#x} at byte {offset}: {e}")))?;
        let used = used_len(&page)
            .ok_or_else(|| Redb2Error::Damaged(format!("page {number:#x} has a bad layout")))?;
        if checksum(&page[..used]) != expected {
            return Err(Redb2Error::Damaged(format!(
                "page {number:#x} fails its checksum"
            )));
        }
        Ok(page)
    }

    /// Every (key, value) of the B-tree under `root`, in key order.
    fn entries(&self, root: Root) -> Result<Entries, Redb2Error> {
        let mut out = Vec::new();
        self.walk(root, 0, &mut out)?;
        Ok(out)
    }

    fn walk(&self, node: Root, depth: usize, out: &mut Entries) -> Result<(), Redb2Error> {
        if depth > MAX_DEPTH {
            return Err(Redb2Error::Damaged("a B-tree loops".into()));
        }
        let page = self.page(node.page, node.checksum)?;
        match page[0] {
            LEAF => {
                let pairs = usize::from(u16::from_le_bytes([page[2], page[3]]));
                let key_end = |n: usize| u32_at(&page, 4 + 4 * n) as usize;
                let value_end = |n: usize| u32_at(&page, 4 + 4 * pairs + 4 * n) as usize;
                let mut start = 4 + 8 * pairs;
                let mut keys = Vec::with_capacity(pairs);
                for n in 0..pairs {
                    let end = key_end(n);
                    keys.push(slice(&page, start, end)?);
                    start = end;
                }
                for (n, key) in keys.into_iter().enumerate() {
                    let end = value_end(n);
                    out.push((key, slice(&page, start, end)?));
                    start = end;
                }
                Ok(())
            }
            BRANCH => {
                let children = usize::from(u16::from_le_bytes([page[2], page[3]])) + 1;
                for n in 0..children {
                    let child = Root {
                        checksum: u128_at(&page, 8 + 16 * n),
                        page: u64_at(&page, 8 + 16 * children + 8 * n),
                    };
                    self.walk(child, depth + 1, out)?;
                }
                Ok(())
            }
            other => Err(Redb2Error::Damaged(format!(
                "page {:#x} has type {other}",
                node.page
            ))),
        }
    }

    /// The user tables of the commit in `slot`.
    fn tables(&self, slot: &Slot) -> Result<Tables, Redb2Error> {
        let mut tables = Tables::new();
        let Some(root) = slot.user_root else {
            return Ok(tables);
        };
        for (name, definition) in self.entries(root)? {
            let name = String::from_utf8(name)
                .map_err(|_| Redb2Error::Damaged("a table name is not UTF-8".into()))?;
            let table_root = table_root(&name, &definition)?;
            let mut rows = BTreeMap::new();
            if let Some(root) = table_root {
                for (key, value) in self.entries(root)? {
                    let key = String::from_utf8(key).map_err(|_| {
                        Redb2Error::Unsupported(format!(
                            "table `{name}` has a key that is not text"
                        ))
                    })?;
                    rows.insert(key, value);
                }
            }
            tables.insert(name, rows);
        }
        Ok(tables)
    }
}

/// The root of a table from its definition in the table tree: type (1),
/// length (8), root present (1), root (32), fixed key size (1 + 4), fixed
/// value size (1 + 4), alignments, type names.
fn table_root(name: &str, definition: &[u8]) -> Result<Option<Root>, Redb2Error> {
    if definition.len() < 64 {
        return Err(Redb2Error::Damaged(format!(
            "table `{name}` has a short definition"
        )));
    }
    if definition[0] != NORMAL_TABLE {
        return Err(Redb2Error::Unsupported(format!(
            "table `{name}` is not a plain key-value table (type {})",
            definition[0]
        )));
    }
    let fixed_key = definition[42] != 0;
    let fixed_value = definition[47] != 0;
    if fixed_key || fixed_value {
        return Err(Redb2Error::Unsupported(format!(
            "table `{name}` does not hold text keys and byte values"
        )));
    }
    Ok((definition[9] != 0).then(|| Root::parse(&definition[10..42])))
}

/// The bytes of a B-tree page that its checksum covers: up to the end of
/// the last value (leaf) or last key (branch), for variable-width keys
/// and values.
fn used_len(page: &[u8]) -> Option<usize> {
    let count = usize::from(u16::from_le_bytes([*page.get(2)?, *page.get(3)?]));
    let end_at = match *page.first()? {
        LEAF if count > 0 => 4 + 4 * count + 4 * (count - 1),
        BRANCH if count > 0 => 8 + 24 * (count + 1) + 4 * (count - 1),
        _ => return None,
    };
    let end = u32_at(page.get(..end_at + 4)?, end_at) as usize;
    (end <= page.len()).then_some(end)
}

fn slice(page: &[u8], start: usize, end: usize) -> Result<Vec<u8>, Redb2Error> {
    page.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Redb2Error::Damaged(format!("an entry spans bytes {start}..{end}")))
}
