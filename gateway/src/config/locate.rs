//! Finds where a key sits in a TOML file, so every config problem can
//! name the file, the line and the key.

use std::ops::Range;

use toml_edit::{Document, Item, Value};

/// Every key of a TOML document with the byte range covering it and its
/// value, by dotted path (`users[0].allowed_networks[1]`).
pub struct KeyMap {
    entries: Vec<(String, Range<usize>)>,
    line_starts: Vec<usize>,
}

impl KeyMap {
    /// Indexes `text`; a text that does not parse gives an empty map.
    pub fn new(text: &str) -> Self {
        let mut entries = Vec::new();
        if let Ok(doc) = Document::parse(text) {
            walk_table(doc.as_table(), "", &mut entries);
        }
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        KeyMap {
            entries,
            line_starts,
        }
    }

    /// The innermost key whose key or value covers byte `offset`.
    pub fn key_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, r)| r.start <= offset && offset < r.end.max(r.start + 1))
            .min_by_key(|(_, r)| r.end - r.start)
            .map(|(k, _)| k.as_str())
    }

    /// The 1-based line where `key` is written.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| self.line_at(r.start))
    }

    /// The 1-based line of byte `offset`.
    pub fn line_at(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// `text` without the key at dotted path `key` (`remotes[0].port`; a
/// path ending in an array element drops the whole array), re-rendered;
/// `None` when the path names no key that can be taken out (a whole table
/// of an array, or a text that does not parse).
pub fn without_key(text: &str, key: &str) -> Option<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().ok()?;
    // Segments: names, each maybe followed by [index].
    let mut segments: Vec<(&str, Option<usize>)> = Vec::new();
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (part, None),
        };
        segments.push((name, index));
    }
    let (last, parents) = segments.split_last()?;
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for (name, index) in parents {
        let item = table.get_mut(name)?;
        table = match (item, index) {
            (Item::ArrayOfTables(tables), Some(i)) => tables.get_mut(*i)?,
            (Item::Table(t), None) => t,
            (Item::Value(Value::InlineTable(t)), None) => t,
            _ => return None,
        };
    }
    let (name, index) = last;
    if index.is_some() && matches!(table.get(name), Some(Item::ArrayOfTables(_))) {
        // A whole table of an array: taking it out would renumber the rest.
        return None;
    }
    table.remove(name)?;
    Some(doc.to_string())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn cover(a: Option<Range<usize>>, b: Option<Range<usize>>) -> Option<Range<usize>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.start.min(b.start)..a.end.max(b.end)),
        (a, b) => a.or(b),
    }
}

fn walk_table(table: &toml_edit::Table, prefix: &str, out: &mut Vec<(String, Range<usize>)>) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        let key_span = table.key(key).and_then(|k| k.span());
        walk_item(item, &path, key_span, out);
    }
}

fn walk_item(
    item: &Item,
    path: &str,
    key_span: Option<Range<usize>>,
    out: &mut Vec<(String, Range<usize>)>,
) {
    match item {
        Item::None => {}
        Item::Value(value) => walk_value(value, path, key_span, out),
        Item::Table(table) => {
            if let Some(span) = cover(key_span, table.span()) {
                out.push((path.to_string(), span));
            }
            walk_table(table, path, out);
        }
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if let Some(span) = table.span() {
                    out.push((p.clone(), span));
                }
                walk_table(table, &p, out);
            }
        }
    }
}

fn walk_value(
    value: &Value,
    path: &str,
    key_span: Option<Range<usize>>,
    out: &mut Vec<(String, Range<usize>)>,
) {
    if let Some(span) = cover(key_span, value.span()) {
        out.push((path.to_string(), span));
    }
    match value {
        Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), None, out);
            }
        }
        Value::InlineTable(table) => {
            for (key, v) in table.iter() {
                let key_span = table.key(key).and_then(|k| k.span());
                walk_value(v, &join(path, key), key_span, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_lines() {
        let text = "[server]\nlisten = [\"a\", \"b\"]\n\n[[users]]\nname = \"x\"\nallowed_networks = [\"1.2.3.4/40\"]\n";
        let map = KeyMap::new(text);
        assert_eq!(map.line_of("server.listen"), Some(2));
        assert_eq!(map.line_of("users[0].name"), Some(5));
        let bad = text.find("1.2.3.4/40").unwrap();
        assert_eq!(map.key_at(bad), Some("users[0].allowed_networks[0]"));
        assert_eq!(map.line_at(bad), 6);
    }
}
