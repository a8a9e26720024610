//! The parsed TOML document: key paths, positions, and problems that point
//! into the file.
//!
//! The text is parsed once into toml's spanned table ([`DeTable`]), which
//! keeps the byte range of every key and value. A [`KeyPath`] like
//! `pools.web.servers[0].addr` finds its way back to a line and column, so a
//! check that runs long after serde (a route naming an unknown pool) still
//! points at the right line.
//!
//! serde stops at the first error, so [`Document::deserialize`] runs it
//! again after each one, without the key at fault, until it succeeds: every
//! type error and unknown key in the file is reported in one go.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::Problem;
use super::file;

/// A key path with 0-based indexes: `pools.web.servers[0].addr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    fn parent(&self) -> KeyPath {
        let mut path = self.clone();
        path.0.pop();
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A configuration text, parsed but not yet checked.
pub(super) struct Document<'i> {
    text: &'i str,
    file: PathBuf,
    root: Spanned<DeTable<'i>>,
}

/// At most this many serde errors are collected before giving up.
const MAX_SERDE_ERRORS: usize = 200;

impl<'i> Document<'i> {
    /// Parses TOML, or reports its syntax errors (the first on each line:
    /// later ones on the same line are usually echoes of it).
    pub fn parse(text: &'i str, file: &Path) -> Result<Document<'i>, Vec<Problem>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let doc = Document {
            text,
            file: file.to_owned(),
            root,
        };
        if errors.is_empty() {
            return Ok(doc);
        }
        let mut problems: Vec<Problem> = Vec::new();
        for error in errors {
            let mut message = error.message().to_owned();
            if let Some(span) = error.span() {
                if message == "duplicate key" {
                    if let Some(key) = text.get(span.clone()) {
                        message = format!("duplicate key `{key}`");
                    }
                }
            }
            let position = error.span().map(|span| doc.position(span.start));
            let same_line = |p: &Problem| p.position.map(|(l, _)| l) == position.map(|(l, _)| l);
            if position.is_some() && problems.iter().any(same_line) {
                continue;
            }
            problems.push(Problem {
                file: doc.file.clone(),
                position,
                key: String::new(),
                message,
            });
        }
        problems.sort_by_key(|p| p.position);
        Err(problems)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        (line, column)
    }

    /// Whether the file holds a value at `path`.
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.find(path).len() == path.segments().len() + 1
    }

    /// The spans along `path` as far as the document has it: the root's
    /// first, then each (key span, value span) found.
    fn find(&self, path: &KeyPath) -> Vec<(Option<Range<usize>>, Range<usize>)> {
        let mut found = vec![(None, self.root.span())];
        let mut table: Option<&DeTable<'i>> = Some(self.root.get_ref());
        let mut array: Option<&DeArray<'i>> = None;
        for segment in path.segments() {
            let next = match (segment, table, array) {
                (Segment::Key(key), Some(table), _) => table
                    .get_key_value(key.as_str())
                    .map(|(k, v)| (Some(k.span()), v)),
                (Segment::Index(index), _, Some(array)) => array.get(*index).map(|v| (None, v)),
                _ => None,
            };
            let Some((key_span, next)) = next else { break };
            found.push((key_span, next.span()));
            (table, array) = match next.get_ref() {
                DeValue::Table(table) => (Some(table), None),
                DeValue::Array(array) => (None, Some(array)),
                _ => (None, None),
            };
        }
        found
    }

    /// Where a problem with the value at `path` shows: the value itself,
    /// else (a missing key) the table that should hold it.
    fn value_position(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let found = self.find(path);
        let span = found
            .iter()
            .rev()
            .map(|(_, value)| value)
            .find(|s| !s.is_empty())?;
        Some(self.position(span.start))
    }

    /// Where a problem with the key at the end of `path` shows.
    fn key_position(&self, path: &KeyPath) -> Option<(usize, usize)> {
        match self.find(path).last() {
            Some((Some(key), _)) if self.contains(path) => Some(self.position(key.start)),
            _ => self.value_position(path),
        }
    }

    /// Deserializes the whole document, reporting every serde error (each
    /// by its key path) rather than only the first. Keys at fault are left
    /// out; `None` only if an error could not be placed.
    pub fn deserialize<T: DeserializeOwned>(&self, problems: &mut Problems<'_>) -> Option<T> {
        let mut root = self.root.clone();
        for _ in 0..MAX_SERDE_ERRORS {
            let error = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
                Ok(value) => return Some(value),
                Err(error) => error,
            };
            let found = error
                .span()
                .filter(|span| *span != self.root.span())
                .and_then(|span| locate(&children(root.get_ref(), &KeyPath::root()), &span));
            let Some(found) = found else {
                problems.push(Problem {
                    file: self.file.clone(),
                    position: error.span().map(|span| self.position(span.start)),
                    key: String::new(),
                    message: error.message().to_owned(),
                });
                return None;
            };
            if found.is_key && error.message().starts_with("unknown field") {
                problems.key(&found.path, unknown_key_message(&found.path));
            } else {
                problems.value(&found.path, error.message());
            }
            if !remove(root.get_mut(), &found.path) {
                return None;
            }
        }
        None
    }
}

fn unknown_key_message(path: &KeyPath) -> String {
    match file::keys_at(&path.parent()) {
        Some(keys) => format!("unknown key (expected one of: {})", keys.join(", ")),
        None => "unknown key".to_owned(),
    }
}

/// A node of the document that a serde error points at.
struct Located {
    path: KeyPath,
    /// The error is about the key itself (an unknown key), not its value.
    is_key: bool,
    /// Length of the value's span, to prefer the innermost value.
    width: usize,
}

/// Finds the key or value that `span` (from a serde error) points at: a key
/// with exactly that span, else the innermost value that holds it.
fn locate(entries: &[Child<'_, '_>], span: &Range<usize>) -> Option<Located> {
    let mut best: Option<Located> = None;
    for (child_path, key_span, child) in entries {
        if key_span.as_ref() == Some(span) {
            return Some(Located {
                path: child_path.clone(),
                is_key: true,
                width: 0,
            });
        }
        let own = child.span();
        let grandchildren = match child.get_ref() {
            DeValue::Table(table) => children(table, child_path),
            DeValue::Array(array) => array
                .iter()
                .enumerate()
                .map(|(i, v)| (child_path.index(i), None, v))
                .collect(),
            _ => Vec::new(),
        };
        let candidate = locate(&grandchildren, span).or_else(|| {
            (own.start <= span.start && span.end <= own.end).then(|| Located {
                path: child_path.clone(),
                is_key: false,
                width: own.len(),
            })
        });
        if let Some(candidate) = candidate {
            if candidate.is_key {
                return Some(candidate);
            }
            if best.as_ref().is_none_or(|b| candidate.width < b.width) {
                best = Some(candidate);
            }
        }
    }
    best
}

/// A table entry or array element: its path, its key's span, its value.
type Child<'a, 'i> = (KeyPath, Option<Range<usize>>, &'a Spanned<DeValue<'i>>);

fn children<'a, 'i>(table: &'a DeTable<'i>, path: &KeyPath) -> Vec<Child<'a, 'i>> {
    table
        .iter()
        .map(|(k, v)| (path.key(k.get_ref()), Some(k.span()), v))
        .collect()
}

/// Removes the innermost table key on `path` (an array element goes with
/// its whole array). False if there was nothing to remove.
fn remove(root: &mut DeTable<'_>, path: &KeyPath) -> bool {
    let Some(last_key) = path
        .segments()
        .iter()
        .rposition(|s| matches!(s, Segment::Key(_)))
    else {
        return false;
    };
    let mut table = root;
    let segments = path.segments();
    let mut i = 0;
    while i < last_key {
        let next = match segments.get(i..) {
            Some([Segment::Key(key), Segment::Index(index), ..]) => {
                i += 2;
                match table.get_mut(key.as_str()).map(|v| v.get_mut()) {
                    Some(DeValue::Array(array)) => array.get_mut(*index).map(|v| v.get_mut()),
                    _ => None,
                }
            }
            Some([Segment::Key(key), ..]) => {
                i += 1;
                table.get_mut(key.as_str()).map(|v| v.get_mut())
            }
            _ => None,
        };
        match next {
            Some(DeValue::Table(next)) => table = next,
            _ => return false,
        }
    }
    match segments.get(last_key) {
        Some(Segment::Key(key)) => table.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Problems collected so far, each placed in the document by key path.
pub(super) struct Problems<'d> {
    doc: &'d Document<'d>,
    list: Vec<Problem>,
}

impl<'d> Problems<'d> {
    pub fn new(doc: &'d Document<'d>) -> Problems<'d> {
        Problems {
            doc,
            list: Vec::new(),
        }
    }

    pub fn doc(&self) -> &'d Document<'d> {
        self.doc
    }

    /// A problem with the value at `path` (or, if it is missing, with the
    /// table that should hold it).
    pub fn value(&mut self, path: &KeyPath, message: impl Into<String>) {
        let position = self.doc.value_position(path);
        self.add(path, position, message.into());
    }

    /// A problem with the key at the end of `path`.
    pub fn key(&mut self, path: &KeyPath, message: impl Into<String>) {
        let position = self.doc.key_position(path);
        self.add(path, position, message.into());
    }

    /// A required key is missing, unless the file has it and its problem
    /// was already reported.
    pub fn required<T>(&mut self, path: &KeyPath, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.doc.contains(path) {
            self.value(path, "missing (this key is required)");
        }
        value
    }

    fn push(&mut self, problem: Problem) {
        self.list.push(problem);
    }

    fn add(&mut self, path: &KeyPath, position: Option<(usize, usize)>, message: String) {
        self.push(Problem {
            file: self.doc.file.clone(),
            position,
            key: path.to_string(),
            message,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// In the order of the file (problems without a position first).
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.list.sort_by_key(|p| p.position);
        self.list
    }
}
