//! Rows from a pg_dump plain-format file or stream.
//!
//! The dump is read line by line as a stream of events: SQL text (passed through untouched), the
//! start of a `COPY table (columns) FROM stdin;` block, batches of its rows (still COPY-escaped),
//! and the block's `\.` end. A first pass ([`prescan`]) collects the COPY headers and the partitions
//! (`ALTER TABLE ONLY parent ATTACH PARTITION child`) so the rules can be bound before anything is
//! written. This module knows nothing of rules.

use std::collections::BTreeMap;
use std::io::BufRead;

use crate::rules::{split_identifiers, QualifiedName, SourceTable};

/// Why a dump could not be read. Line numbers are 1-based; no content is quoted.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("reading the dump: {0}")]
    Io(#[from] std::io::Error),
    #[error("dump line {line}: the COPY block of {table} (started on line {start}) has no end marker `\\.`: the dump is truncated")]
    Truncated {
        table: QualifiedName,
        start: u64,
        line: u64,
    },
    #[error("dump line {line}: cannot read this COPY header (expected `COPY table (columns) FROM stdin;`)")]
    BadHeader { line: u64 },
    #[error("dump line {line}: invalid UTF-8")]
    InvalidUtf8 { line: u64 },
}

/// One piece of the dump, in order.
#[derive(Debug)]
pub enum Event {
    /// SQL text outside COPY blocks, whole lines.
    Sql(Vec<u8>),
    /// A COPY header line; `block` counts blocks from 0.
    CopyStart { block: usize, header: Vec<u8> },
    /// Rows of the current block, each ending in `\n`.
    Rows {
        block: usize,
        data: Vec<u8>,
        first_line: u64,
        rows: u64,
    },
    /// The `\.` line that ends the current block.
    CopyEnd { block: usize, line: Vec<u8> },
}

/// Parse `COPY schema.table (a, "B c") FROM stdin;`. `None` when the line is not a COPY header.
pub fn parse_copy_header(line: &[u8]) -> Option<Result<(QualifiedName, Vec<String>), ()>> {
    if !line.starts_with(b"COPY ") {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let body = text.strip_prefix("COPY ")?.strip_suffix(" FROM stdin;")?;
    Some(parse_header_body(body).ok_or(()))
}

fn parse_header_body(body: &str) -> Option<(QualifiedName, Vec<String>)> {
    let open = find_unquoted(body, '(')?;
    let name_parts = split_identifiers(body[..open].trim())?;
    let name = match name_parts.as_slice() {
        [n] => QualifiedName::new("public", n),
        [s, n] => QualifiedName::new(s, n),
        _ => return None,
    };
    let cols_text = body[open + 1..].trim_end().strip_suffix(')')?;
    let mut columns = Vec::new();
    for part in split_unquoted(cols_text, ',') {
        let ids = split_identifiers(part.trim())?;
        let [id] = ids.as_slice() else { return None };
        columns.push(id.clone());
    }
    Some((name, columns))
}

fn find_unquoted(s: &str, target: char) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == target && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `ALTER TABLE ONLY parent ATTACH PARTITION child ...` → (child, parent).
fn parse_attach(line: &[u8]) -> Option<(QualifiedName, QualifiedName)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("ALTER TABLE ONLY ")?;
    let at = rest.find(" ATTACH PARTITION ")?;
    let parent = qualified(&rest[..at])?;
    let after = &rest[at + " ATTACH PARTITION ".len()..];
    let end = after
        .find(" FOR VALUES")
        .or_else(|| after.find(" DEFAULT"))?;
    Some((qualified(&after[..end])?, parent))
}

fn qualified(s: &str) -> Option<QualifiedName> {
    QualifiedName::parse(s.trim())
}

/// `\.` alone on its line (also as the file's last line, without a line end).
fn is_end_marker(line: &[u8]) -> bool {
    matches!(line, b"\\.\n" | b"\\.\r\n" | b"\\.")
}

/// Streams [`Event`]s from a dump.
pub struct DumpReader<R> {
    input: R,
    line_no: u64,
    block: Option<(usize, QualifiedName, u64)>,
    blocks: usize,
    /// A line read ahead that belongs to the next event.
    pending: Option<Vec<u8>>,
    batch_rows: u64,
    batch_bytes: usize,
    /// Where row batches come from.
    buffers: std::sync::Arc<crate::pipeline::BufferPool>,
    /// False when only the rows' number matters: `Rows` events then carry no data.
    keep_rows: bool,
}

/// Flush a SQL chunk at this size.
const SQL_CHUNK: usize = 64 * 1024;

impl<R: BufRead> DumpReader<R> {
    pub fn new(input: R, batch_rows: u64, batch_bytes: usize) -> Self {
        DumpReader {
            input,
            line_no: 0,
            block: None,
            blocks: 0,
            pending: None,
            batch_rows,
            batch_bytes,
            buffers: Default::default(),
            keep_rows: true,
        }
    }

    /// Count rows without copying them: every `Rows` event comes with empty data.
    pub fn counting_only(mut self) -> Self {
        self.keep_rows = false;
        self
    }

    /// Take row batches from `buffers` (the pipeline gives them back once written).
    pub fn with_buffers(mut self, buffers: std::sync::Arc<crate::pipeline::BufferPool>) -> Self {
        self.buffers = buffers;
        self
    }

    /// The 1-based number of the last line read.
    pub fn line(&self) -> u64 {
        self.line_no
    }

    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<usize, DumpError> {
        let n = self.input.read_until(b'\n', buf)?;
        if n > 0 {
            self.line_no += 1;
        }
        Ok(n)
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, DumpError> {
        match self.block.clone() {
            Some((block, table, start)) => self.next_in_block(block, table, start),
            None => self.next_sql(),
        }
    }

    fn next_sql(&mut self) -> Result<Option<Event>, DumpError> {
        let mut chunk = Vec::new();
        loop {
            let mut line = match self.pending.take() {
                Some(l) => l,
                None => {
                    let mut l = Vec::new();
                    if self.read_line(&mut l)? == 0 {
                        return Ok((!chunk.is_empty()).then_some(Event::Sql(chunk)));
                    }
                    l
                }
            };
            if std::str::from_utf8(&line).is_err() {
                return Err(DumpError::InvalidUtf8 { line: self.line_no });
            }
            if let Some(header) = parse_copy_header(&line) {
                if !chunk.is_empty() {
                    self.pending = Some(line);
                    return Ok(Some(Event::Sql(chunk)));
                }
                let Ok((table, _)) = header else {
                    return Err(DumpError::BadHeader { line: self.line_no });
                };
                let block = self.blocks;
                self.blocks += 1;
                self.block = Some((block, table, self.line_no));
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                return Ok(Some(Event::CopyStart {
                    block,
                    header: line,
                }));
            }
            chunk.extend_from_slice(&line);
            if chunk.len() >= SQL_CHUNK {
                return Ok(Some(Event::Sql(chunk)));
            }
        }
    }

    fn next_in_block(
        &mut self,
        block: usize,
        table: QualifiedName,
        start: u64,
    ) -> Result<Option<Event>, DumpError> {
        if let Some(end) = self.pending.take() {
            // The end marker was read with the last batch of rows.
            self.block = None;
            return Ok(Some(Event::CopyEnd { block, line: end }));
        }
        // Room for the batch plus one long row, so the last row read rarely reallocates the batch.
        let mut data = self.buffers.take(self.batch_bytes.min(1 << 22) + 64 * 1024);
        let mut rows = 0u64;
        let first_line = self.line_no + 1;
        loop {
            // Fast path: take the whole lines already in the reader's buffer in one copy, instead
            // of one read_until per row (most of the reader thread's time on narrow tables).
            let buf = self.input.fill_buf()?;
            let mut whole = 0;
            let mut marker = None;
            let mut full = false;
            for nl in memchr::memchr_iter(b'\n', buf) {
                let line = &buf[whole..=nl];
                if is_end_marker(line) {
                    marker = Some(line.to_vec());
                    break;
                }
                whole = nl + 1;
                rows += 1;
                self.line_no += 1;
                if rows >= self.batch_rows || data.len() + whole >= self.batch_bytes {
                    full = true;
                    break;
                }
            }
            if self.keep_rows {
                data.extend_from_slice(&buf[..whole]);
            }
            self.input.consume(whole);
            if let Some(end) = marker {
                self.input.consume(end.len());
                self.line_no += 1;
                return Ok(Some(self.reached_end(block, data, first_line, rows, end)));
            }
            if full {
                return Ok(Some(Event::Rows {
                    block,
                    data,
                    first_line,
                    rows,
                }));
            }
            // A line that runs past the buffer (or the file's last line): one line the slow way.
            let before = data.len();
            if self.read_line(&mut data)? == 0 {
                return Err(DumpError::Truncated {
                    table,
                    start,
                    line: self.line_no,
                });
            }
            let line = &data[before..];
            if is_end_marker(line) {
                let mut end = data.split_off(before);
                if !end.ends_with(b"\n") {
                    end.push(b'\n');
                }
                return Ok(Some(self.reached_end(block, data, first_line, rows, end)));
            }
            if !line.ends_with(b"\n") {
                // The last line of a file without a final newline cannot be a complete row block.
                data.push(b'\n');
            }
            rows += 1;
            if !self.keep_rows {
                data.truncate(before);
            }
            if rows >= self.batch_rows || data.len() >= self.batch_bytes {
                return Ok(Some(Event::Rows {
                    block,
                    data,
                    first_line,
                    rows,
                }));
            }
        }
    }

    /// The end marker of a block is read: the rows before it first (the block stays open and the
    /// next call returns the marker), or the block's end.
    fn reached_end(
        &mut self,
        block: usize,
        data: Vec<u8>,
        first_line: u64,
        rows: u64,
        end: Vec<u8>,
    ) -> Event {
        if rows > 0 {
            self.pending = Some(end);
            return Event::Rows {
                block,
                data,
                first_line,
                rows,
            };
        }
        self.block = None;
        Event::CopyEnd { block, line: end }
    }
}

/// What a first pass over the dump finds: its tables in COPY order (with partition parents).
pub fn prescan<R: BufRead>(input: R) -> Result<Vec<SourceTable>, DumpError> {
    let mut reader = DumpReader::new(input, u64::MAX, 1 << 20).counting_only();
    let mut parents: BTreeMap<QualifiedName, QualifiedName> = BTreeMap::new();
    let mut tables = Vec::new();
    while let Some(ev) = reader.next_event()? {
        match ev {
            Event::Sql(chunk) => {
                for line in chunk.split(|b| *b == b'\n') {
                    if let Some((child, parent)) = parse_attach(line) {
                        parents.insert(child, parent);
                    }
                }
            }
            Event::CopyStart { header, .. } => {
                let Some(Ok((name, columns))) = parse_copy_header(&header) else {
                    return Err(DumpError::BadHeader {
                        line: reader.line(),
                    });
                };
                tables.push(SourceTable {
                    name,
                    columns,
                    partition_of: None,
                    meta: None,
                    rows: Some(0),
                });
            }
            Event::Rows { rows, .. } => {
                if let Some(SourceTable { rows: Some(n), .. }) = tables.last_mut() {
                    *n += rows;
                }
            }
            Event::CopyEnd { .. } => {}
        }
    }
    for t in &mut tables {
        t.partition_of = parents.get(&t.name).cloned();
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "SET x = 1;\n\
COPY public.a (id, \"Name\", \"odd, col\") FROM stdin;\n\
1\tx\ty\n\
2\t\\N\tz\n\
\\.\n\
ALTER TABLE ONLY public.p ATTACH PARTITION public.p_1 FOR VALUES FROM (1) TO (2);\n\
COPY public.p_1 (id) FROM stdin;\n\
\\.\n\
SELECT 1;\n";

    fn events(dump: &str, batch: u64) -> Result<Vec<Event>, DumpError> {
        let mut r = DumpReader::new(dump.as_bytes(), batch, 1 << 20);
        let mut out = Vec::new();
        while let Some(e) = r.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn events_reassemble_the_dump() {
        for batch in [1, 2, 100] {
            let evs = events(DUMP, batch).unwrap();
            let mut out = Vec::new();
            for e in &evs {
                match e {
                    Event::Sql(b)
                    | Event::CopyStart { header: b, .. }
                    | Event::CopyEnd { line: b, .. } => out.extend_from_slice(b),
                    Event::Rows { data, .. } => out.extend_from_slice(data),
                }
            }
            assert_eq!(String::from_utf8(out).unwrap(), DUMP);
        }
        let evs = events(DUMP, 1).unwrap();
        let rows: Vec<(u64, u64)> = evs
            .iter()
            .filter_map(|e| match e {
                Event::Rows {
                    first_line, rows, ..
                } => Some((*first_line, *rows)),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec![(3, 1), (4, 1)]);
    }

    #[test]
    fn prescan_finds_tables_columns_partitions_and_row_counts() {
        let tables = prescan(DUMP.as_bytes()).unwrap();
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].rows, Some(2));
        assert_eq!(tables[1].rows, Some(0));
        assert_eq!(tables[0].columns, vec!["id", "Name", "odd, col"]);
        assert_eq!(
            tables[1].partition_of,
            Some(QualifiedName::new("public", "p"))
        );
    }

    #[test]
    fn counting_only_counts_the_same_rows_without_their_bytes() {
        let long = "y".repeat(100);
        let dump = format!(
            "COPY public.a (id, v) FROM stdin;\n1\t{long}\n2\tb\n3\t{long}\n\\.\nCOPY public.b (id) FROM stdin;\n7\n\\.\n"
        );
        // A reader buffer smaller than a row: the slow path for lines that run past it.
        for capacity in [7, 64, 4096] {
            let count = |counting: bool| {
                let input = std::io::BufReader::with_capacity(capacity, dump.as_bytes());
                let mut r = DumpReader::new(input, 2, 1 << 20);
                if counting {
                    r = r.counting_only();
                }
                let (mut rows, mut bytes) = (Vec::new(), 0);
                while let Some(e) = r.next_event().unwrap() {
                    if let Event::Rows {
                        block,
                        rows: n,
                        data,
                        ..
                    } = e
                    {
                        rows.push((block, n));
                        bytes += data.len();
                    }
                }
                (rows, bytes)
            };
            let (kept, kept_bytes) = count(false);
            let (counted, counted_bytes) = count(true);
            assert_eq!(kept.iter().map(|r| r.1).sum::<u64>(), 4);
            assert_eq!(kept_bytes, 2 * (long.len() + 3) + 4 + 2);
            assert_eq!(counted_bytes, 0, "capacity {capacity}");
            let total = |v: &[(usize, u64)], b: usize| {
                v.iter().filter(|r| r.0 == b).map(|r| r.1).sum::<u64>()
            };
            assert_eq!(
                (total(&counted, 0), total(&counted, 1)),
                (3, 1),
                "capacity {capacity}"
            );
        }
        let tables = prescan(std::io::BufReader::with_capacity(7, dump.as_bytes())).unwrap();
        assert_eq!((tables[0].rows, tables[1].rows), (Some(3), Some(1)));
    }

    #[test]
    fn broken_dumps_name_the_line() {
        let truncated = "COPY public.a (id) FROM stdin;\n1\n2\n";
        assert_eq!(
            events(truncated, 10).unwrap_err().to_string(),
            "dump line 3: the COPY block of public.a (started on line 1) has no end marker `\\.`: the dump is truncated"
        );
        let bad = "SELECT 1;\nCOPY public.a id FROM stdin;\n";
        assert_eq!(
            events(bad, 10).unwrap_err().to_string(),
            "dump line 2: cannot read this COPY header (expected `COPY table (columns) FROM stdin;`)"
        );
        let latin1 = b"SELECT 'caf\xe9';\n";
        let mut r = DumpReader::new(&latin1[..], 10, 1024);
        assert_eq!(
            r.next_event().unwrap_err().to_string(),
            "dump line 1: invalid UTF-8"
        );
    }
}
