//! Reader → bounded queue → parallel transform (order kept) → writer.
//!
//! - `executor`: the one ordered-batch executor (rayon pool, buffers, bounded ordered queue,
//!   interrupt checks, panic capture) every mode runs on.
//! - `dump`: its driver for a dump stream (a reader thread and the calling thread as writer).
//! - `live`: its driver for a database source (a task per source session, one loader).
//! - here: what a batch's work is — row and tuple processing in every input format — and the
//!   run's report and errors.
//!
//! Every batch of rows is handed to the rayon pool at once and its ticket goes into a bounded
//! queue in input order; the writer takes tickets in order and waits for each batch it reaches.
//! The bound caps the batches in flight, so memory stays flat whatever the input size, and the
//! slowest stage sets the pace. Cells without a rule are copied as the bytes they came in; only
//! transformed cells are decoded, transformed and re-encoded.

mod branch;
mod dump;
mod executor;
mod live;

use std::borrow::Cow;

pub use crate::buffers::BufferPool;
use crate::copy::CopyFormat;
use crate::copy::{self, CodecError};
use crate::rules::{BoundTable, CellOp, QualifiedName, TableAction};
use crate::source::dump::{DataFormat, DumpError};
use crate::transform::ValueError;
pub use branch::finish_commands;
pub use dump::run_dump;
pub use executor::{BatchResult, Executor, Feed, Queue, Ticket};
pub use live::{load_table, read_table, BatchSender, Batches, TableOut};

/// Tuning of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Transform threads.
    pub jobs: usize,
    /// Rows per batch handed to a worker.
    pub batch_rows: u64,
    /// Bytes per batch handed to a worker.
    pub batch_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch_rows: 4096,
            batch_bytes: 512 * 1024,
        }
    }
}

/// How the core reports progress. Every method does nothing by default, so tests and `--quiet` get
/// silence for free; the CLI renders it.
pub trait Progress: Send + Sync {
    /// Something the operator should know that does not stop the run.
    fn warning(&self, _message: &str) {}
    /// The tables about to be copied, in copy order, once the rules are bound.
    fn run_started(&self, _tables: &[PlannedTable]) {}
    fn table_started(&self, _table: &QualifiedName) {}
    fn rows_written(&self, _table: &QualifiedName, _rows: u64) {}
    fn table_finished(&self, _stats: &TableStats) {}
    /// A step of the run that is not copying rows (a first pass, index rebuilds, a commit): long
    /// ones would otherwise look like a hang.
    fn phase(&self, _what: &str) {}
}

/// A table about to be copied, as a progress display sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTable {
    pub name: QualifiedName,
    /// Rows expected: counted in a dump, estimated by the catalog in a database.
    pub rows: Option<u64>,
    pub skipped: bool,
}

impl PlannedTable {
    pub fn new(table: &BoundTable, rows: Option<u64>) -> Self {
        PlannedTable {
            name: table.name.clone(),
            rows,
            skipped: matches!(table.action, TableAction::Skip),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableStats {
    pub name: QualifiedName,
    pub rows_read: u64,
    pub rows_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub seconds: f64,
    pub skipped: bool,
    /// (column, rule) in column order, for reports.
    pub rules: Vec<(String, String)>,
    /// Why the subset kept the rows it kept (of the partitioned table, for a partition).
    pub subset: Option<String>,
    /// Under conditional rules: per column, the rows each alternative took (`if …`, `else`).
    pub branches: Vec<(String, Vec<(String, u64)>)>,
}

impl TableStats {
    /// The stats of a table about to be copied: nothing counted yet.
    pub fn start(table: &BoundTable) -> Self {
        TableStats {
            name: table.name.clone(),
            rows_read: 0,
            rows_written: 0,
            bytes_read: 0,
            bytes_written: 0,
            seconds: 0.0,
            skipped: matches!(table.action, TableAction::Skip),
            rules: table
                .columns
                .iter()
                .cloned()
                .zip(table.rules.iter().cloned())
                .collect(),
            subset: table.subset.as_ref().and_then(|f| f.why.clone()),
            branches: Vec::new(),
        }
    }

    /// Take the rows per alternative of the table's conditional rules (once its rows are done).
    pub fn count_branches(&mut self, table: &BoundTable) {
        let TableAction::Copy { ops } = &table.action else {
            return;
        };
        self.branches = ops
            .iter()
            .zip(&table.columns)
            .filter_map(|(op, c)| match op {
                CellOp::When(w) => Some((c.clone(), w.counted())),
                _ => None,
            })
            .collect();
    }
}

/// What a run did (or had done when it failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub tables: Vec<TableStats>,
    pub seconds: f64,
    /// `[[fixtures]]` written after the data (their rows are not anonymized).
    pub fixtures: Vec<crate::fixtures::Applied>,
    /// `--audit`: the audit of the new staging.
    pub audit: Option<crate::audit::Outcome>,
}

impl Report {
    pub fn rows_written(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_written).sum()
    }
}

/// Why a row could not be anonymized. Names table, row, dump line and column; never a value.
#[derive(Debug, thiserror::Error)]
#[error("{table} row {row}{}{}: {kind}", line.map(|l| format!(" (dump line {l})")).unwrap_or_default(), column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct RowError {
    pub table: QualifiedName,
    pub row: u64,
    /// The line in a dump source; none for a database source.
    pub line: Option<u64>,
    pub column: Option<String>,
    pub kind: RowErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum RowErrorKind {
    #[error("{found} fields, expected {expected}")]
    ColumnCount { expected: usize, found: usize },
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Tuple(#[from] crate::sql::literal::TupleError),
    /// A condition reads a column as a number or boolean, and this row's value is not one.
    #[error("a condition reads this column as {0}, and the row's value is not one")]
    ConditionType(&'static str),
    #[error("element {0} of the VALUES tuple is a generated column, which takes DEFAULT only")]
    GeneratedValue(usize),
    /// A CSV value written with a line of its own that is `\.`: psql would end the block there.
    #[error("the anonymized CSV record has a line `\\.` inside a quoted field, where psql would end the block")]
    EndMarkerInField,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Row(#[from] Box<RowError>),
    #[error("writing {}: {source}", if *.stdout { "to stdout" } else { "the target file" })]
    Write {
        stdout: bool,
        source: std::io::Error,
    },
    #[error("the dump changed between the first and second read (COPY block {block})")]
    Changed { block: usize },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("interrupted by {}: nothing was kept", crate::interrupt::name(*.0))]
    Interrupted(i32),
    /// A transform thread panicked (a bug): the run stops as after any error.
    #[error("transforming {table}: a transform worker panicked (a bug in anonymize; please report it with the rules file, never the data)")]
    WorkerPanicked { table: QualifiedName },
    /// Staging lacks tables or columns the run would load (found before anything was written).
    #[error("{0}")]
    TargetSchema(crate::diagnostic::Diagnostics),
    /// The subset's rows could not be chosen.
    #[error("choosing the subset: {0}")]
    Subset(String),
    /// `--audit` found original data in the new staging: nothing was committed or swapped in.
    #[error("{}", audit_message(.0))]
    AuditFound(Box<crate::audit::Outcome>),
    /// An external command misbehaved after its last batch (extra lines, a failing exit).
    #[error("{0}")]
    Command(String),
    /// The transform threads could not be started.
    #[error("starting the transform threads: {0}")]
    Start(#[source] rayon::ThreadPoolBuildError),
}

fn audit_message(o: &crate::audit::Outcome) -> String {
    format!(
        "--audit: {} finding(s) in the new staging (see the audit above); nothing was committed, staging is as it was",
        o.findings
    )
}

/// A failed run: why, and what it had finished before.
#[derive(Debug)]
pub struct RunFailure {
    pub error: PipelineError,
    pub report: Report,
}

/// One batch of rows as the reader cut it.
pub struct Batch {
    pub data: Vec<u8>,
    /// For INSERT runs: where each tuple is in `data`.
    pub tuples: Vec<(u32, u32)>,
    pub first_line: Option<u64>,
    pub first_row: u64,
}

/// Transform one batch in its format: the text COPY format on its fast path, other formats
/// through their values.
pub fn process_batch(
    table: &BoundTable,
    format: &DataFormat,
    batch: Batch,
    buffers: &BufferPool,
) -> Result<Vec<u8>, Box<RowError>> {
    // Text COPY rows are filtered in `process_rows`, which a database source calls directly.
    let batch = match (&table.subset, format) {
        (Some(_), DataFormat::Copy(CopyFormat::Text)) => batch,
        (Some(filter), _) if !matches!(table.action, TableAction::Skip) => {
            subset_batch(table, filter, format, batch, buffers)?
        }
        _ => batch,
    };
    match format {
        DataFormat::Copy(CopyFormat::Text) => process_rows(
            table,
            batch.data,
            batch.first_line,
            batch.first_row,
            buffers,
        ),
        DataFormat::Copy(f) => process_records(table, f, batch, buffers),
        DataFormat::Insert { scs, positions, .. } => process_tuples(
            table,
            *scs,
            positions.as_deref().map(Vec::as_slice),
            batch,
            buffers,
        ),
    }
}

/// The rows of a batch that its table's subset keeps, in the same format. An INSERT run's kept
/// tuples each become a statement of their own (`header (…);`): dropping tuples from a statement
/// that spans batches could not otherwise keep its text whole. Errors name the row, never a value.
fn subset_batch(
    table: &BoundTable,
    filter: &crate::subset::RowFilter,
    format: &DataFormat,
    batch: Batch,
    buffers: &BufferPool,
) -> Result<Batch, Box<RowError>> {
    let err = |i: usize, kind: RowErrorKind| {
        Box::new(RowError {
            table: table.name.clone(),
            row: batch.first_row + i as u64,
            line: None,
            column: None,
            kind,
        })
    };
    let data = &batch.data;
    let mut out = buffers.take(data.len());
    let mut tuples = Vec::new();
    match format {
        DataFormat::Copy(CopyFormat::Text) => {
            let text = std::str::from_utf8(data).map_err(|e| {
                let row = memchr::memchr_iter(b'\n', &data[..e.valid_up_to()]).count();
                err(row, RowErrorKind::InvalidUtf8)
            })?;
            let mut fields: Vec<&str> = Vec::new();
            for (i, line) in lines(text).enumerate() {
                fields.clear();
                copy::split(line, &mut fields);
                let keep = filter
                    .keeps(|c| match fields.get(c) {
                        Some(f) => copy::decode(f).map_err(RowErrorKind::from),
                        None => Err(RowErrorKind::ColumnCount {
                            expected: table.columns.len(),
                            found: fields.len(),
                        }),
                    })
                    .map_err(|e| err(i, e))?;
                if keep {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        DataFormat::Copy(f) => {
            for (i, record) in split_records(data, f).into_iter().enumerate() {
                let body = std::str::from_utf8(record_body(record, f))
                    .map_err(|_| err(i, RowErrorKind::InvalidUtf8))?;
                let fields = f.fields(body).map_err(|e| err(i, e.into()))?;
                let keep = filter
                    .keeps(|c| match fields.get(c) {
                        Some(v) => Ok(v.value.clone()),
                        None => Err(RowErrorKind::ColumnCount {
                            expected: table.columns.len(),
                            found: fields.len(),
                        }),
                    })
                    .map_err(|e| err(i, e))?;
                if keep {
                    out.extend_from_slice(record);
                }
            }
        }
        DataFormat::Insert {
            scs,
            positions,
            header,
        } => {
            use crate::sql::literal;
            let element_of = |c: usize| match positions {
                None => Some(c),
                Some(p) => p.iter().position(|x| *x == Some(c)),
            };
            for (i, &(from, to)) in batch.tuples.iter().enumerate() {
                let tuple = &data[from as usize..to as usize];
                let elements =
                    literal::elements(tuple, *scs).map_err(|e| err(i, RowErrorKind::Tuple(e)))?;
                let keep = filter
                    .keeps(|c| {
                        let e = element_of(c).and_then(|e| elements.get(e)).ok_or(
                            RowErrorKind::ColumnCount {
                                expected: table.columns.len(),
                                found: elements.len(),
                            },
                        )?;
                        literal::value(tuple, e, *scs).map_err(RowErrorKind::Tuple)
                    })
                    .map_err(|e| err(i, e))?;
                if keep {
                    out.extend_from_slice(header);
                    let start = out.len() as u32;
                    out.extend_from_slice(tuple);
                    tuples.push((start, out.len() as u32));
                    out.extend_from_slice(b";\n");
                }
            }
            // Each batch's statements are whole; the run's closing text (the end of its last
            // statement) loses its `;` in the writer.
        }
    }
    let first_line = batch.first_line;
    let first_row = batch.first_row;
    buffers.give(batch.data);
    Ok(Batch {
        data: out,
        tuples,
        first_line,
        first_row,
    })
}

/// What one cell of a row becomes.
#[derive(Debug)]
enum Cell {
    /// Its bytes pass as they are.
    Same,
    Value(Option<String>),
}

/// Whether an operation reads other columns' anonymized values (a template, a scrub looking for
/// the row's names), in any alternative.
fn reads_outputs(op: &CellOp) -> bool {
    op.alternatives()
        .into_iter()
        .any(|o| matches!(o, CellOp::Template(_) | CellOp::ApplyWith(..)))
}

/// The cells of one row under its operations (`ops`: the table's, with each conditional rule's
/// alternative chosen). `decode(c)` reads column `c`'s value (the caller knows its format);
/// errors name the column. External cells take their values from `ext` (row `row` of the batch).
fn transform_row<'a, 't>(
    ops: &[&'t CellOp],
    row: usize,
    ext: Option<&std::cell::RefCell<branch::Externals<'t>>>,
    decode: &dyn Fn(usize) -> Result<Option<Cow<'a, str>>, RowErrorKind>,
    cells: &mut Vec<Cell>,
) -> Result<(), (usize, RowErrorKind)> {
    cells.clear();
    for (c, op) in ops.iter().copied().enumerate() {
        cells.push(match op {
            CellOp::Pass | CellOp::Template(_) | CellOp::ApplyWith(..) => Cell::Same,
            CellOp::Apply(t) => {
                let v = decode(c).map_err(|e| (c, e))?;
                match (ext, t.external()) {
                    (Some(x), Some(_)) => Cell::Value(x.borrow_mut().cell(row, c, t, v.as_deref())),
                    _ => Cell::Value(t.apply(v.as_deref()).map_err(|e| (c, e.into()))?),
                }
            }
            CellOp::ApplyBy(t, by) => {
                let v = decode(c).map_err(|e| (c, e))?;
                let k = decode(*by).map_err(|e| (*by, e))?;
                Cell::Value(
                    t.apply_by(v.as_deref(), k.as_deref())
                        .map_err(|e| (c, e.into()))?,
                )
            }
            CellOp::When(_) => unreachable!("a row's conditional rules are chosen before"),
        });
    }
    // A scrub that looks for the row's names reads their original and anonymized values.
    for (c, op) in ops.iter().copied().enumerate() {
        let CellOp::ApplyWith(t, from) = op else {
            continue;
        };
        let v = decode(c).map_err(|e| (c, e))?;
        let mut originals = Vec::with_capacity(from.len());
        for &r in from {
            originals.push(decode(r).map_err(|e| (r, e))?);
        }
        let names: Vec<(&str, Option<&str>)> = from
            .iter()
            .zip(&originals)
            .filter_map(|(&r, o)| {
                let o = o.as_deref()?;
                Some(match &cells[r] {
                    Cell::Value(v) => (o, v.as_deref()),
                    Cell::Same => (o, Some(o)),
                })
            })
            .collect();
        cells[c] = Cell::Value(
            t.apply_with_names(v.as_deref(), &names)
                .map_err(|e| (c, e.into()))?,
        );
    }
    for (c, op) in ops.iter().copied().enumerate() {
        let CellOp::Template(t) = op else { continue };
        // NULL stays NULL under a template too.
        if decode(c).map_err(|e| (c, e))?.is_none() {
            cells[c] = Cell::Value(None);
            continue;
        }
        let mut read: Vec<Option<Cow<'a, str>>> = vec![None; ops.len()];
        for r in t.columns() {
            if !matches!(cells[r], Cell::Value(_)) || matches!(ops[r], CellOp::Template(_)) {
                read[r] = decode(r).map_err(|e| (r, e))?;
            }
        }
        let rendered = t.render(|r| match &cells[r] {
            Cell::Value(v) if !matches!(ops[r], CellOp::Template(_)) => v.as_deref(),
            _ => read[r].as_deref(),
        });
        cells[c] = Cell::Value(Some(rendered));
    }
    Ok(())
}

/// Rows of a COPY block in CSV or text with another delimiter or NULL string: each field decoded,
/// the row transformed, and written back in the same format.
fn process_records(
    table: &BoundTable,
    format: &CopyFormat,
    batch: Batch,
    buffers: &BufferPool,
) -> Result<Vec<u8>, Box<RowError>> {
    let ops = match &table.action {
        TableAction::Copy { ops } => ops,
        TableAction::Skip => return Ok(Vec::new()),
    };
    let data = &batch.data;
    let line_of = |offset: usize| {
        batch
            .first_line
            .map(|l| l + memchr::memchr_iter(b'\n', &data[..offset]).count() as u64)
    };
    let err = |i: usize, offset: usize, column: Option<usize>, kind: RowErrorKind| {
        Box::new(RowError {
            table: table.name.clone(),
            row: batch.first_row + i as u64,
            line: line_of(offset),
            column: column.map(|c| table.columns[c].clone()),
            kind,
        })
    };
    let text = std::str::from_utf8(data).map_err(|e| {
        let row = memchr::memchr_iter(b'\n', &data[..e.valid_up_to()]).count();
        err(row, e.valid_up_to(), None, RowErrorKind::InvalidUtf8)
    })?;
    let _ = text;
    let mut out = buffers.take(data.len() + data.len() / 2);
    let mut cells = Vec::with_capacity(ops.len());
    let mut choices = branch::Choices::new(ops);
    let ext = branch::has_external(ops).then(|| branch::Externals::new(ops.len()));
    let records = split_records(data, format);
    // With external commands, a first pass collects their values and a second writes the rows.
    for _ in 0..if ext.is_some() { 2 } else { 1 } {
        let writing = ext.as_ref().is_none_or(|x| x.borrow().answering());
        let mut pos = 0usize;
        for (i, record) in records.iter().enumerate() {
            let body = std::str::from_utf8(record_body(record, format)).expect("UTF-8 checked");
            let fields = format
                .fields(body)
                .map_err(|e| err(i, pos, None, RowErrorKind::Codec(e)))?;
            if fields.len() != ops.len() {
                return Err(err(
                    i,
                    pos,
                    None,
                    RowErrorKind::ColumnCount {
                        expected: ops.len(),
                        found: fields.len(),
                    },
                ));
            }
            let decode = |c: usize| -> Result<Option<Cow<'_, str>>, RowErrorKind> {
                Ok(fields[c].value.clone())
            };
            let eff = choices
                .row(&mut |c| decode(c), writing)
                .map_err(|(c, e)| err(i, pos, Some(c), e))?;
            transform_row(eff, i, ext.as_ref(), &decode, &mut cells)
                .map_err(|(c, e)| err(i, pos, Some(c), e))?;
            if !writing {
                pos += record.len();
                continue;
            }
            let record_start = out.len();
            for (c, cell) in cells.iter().enumerate() {
                if c > 0 {
                    out.push(format.delimiter());
                }
                match cell {
                    Cell::Same => out.extend_from_slice(fields[c].raw.as_bytes()),
                    Cell::Value(v) => format.encode(v.as_deref(), &mut out),
                }
            }
            // The record's own line end (`\r\n` in a CSV file written on Windows).
            out.extend_from_slice(&record[body.len()..]);
            if matches!(format, CopyFormat::Csv(_)) && has_end_marker_line(&out[record_start..]) {
                return Err(err(i, pos, None, RowErrorKind::EndMarkerInField));
            }
            pos += record.len();
        }
        if let Some(x) = ext.as_ref().filter(|_| !writing) {
            x.borrow_mut().run(records.len()).map_err(|(r, c, e)| {
                let offset = records[..r].iter().map(|x| x.len()).sum();
                err(r, offset, Some(c), e)
            })?;
        }
    }
    buffers.give(batch.data);
    Ok(out)
}

/// Whether a written CSV record has a line that reads `\.` (only a value spanning lines can).
fn has_end_marker_line(record: &[u8]) -> bool {
    memchr::memmem::find_iter(record, b"\\.").any(|at| {
        let starts = at == 0 || record[at - 1] == b'\n';
        let rest = &record[at + 2..];
        starts && (rest.is_empty() || rest.starts_with(b"\n") || rest.starts_with(b"\r\n"))
    })
}

/// The tuples of an INSERT run: each constant decoded, the row transformed, and written back as a
/// constant of the same kind; the text around the tuples (the statements) passes as it is.
/// `positions` maps tuple elements to columns (`None`: a generated column, whose element must be
/// DEFAULT).
fn process_tuples(
    table: &BoundTable,
    scs: bool,
    positions: Option<&[Option<usize>]>,
    batch: Batch,
    buffers: &BufferPool,
) -> Result<Vec<u8>, Box<RowError>> {
    use crate::sql::literal::{self, Const};
    let ops = match &table.action {
        TableAction::Copy { ops } => ops,
        TableAction::Skip => return Ok(Vec::new()),
    };
    let data = &batch.data;
    let line_of = |offset: usize| {
        batch
            .first_line
            .map(|l| l + memchr::memchr_iter(b'\n', &data[..offset]).count() as u64)
    };
    let err = |i: usize, offset: usize, column: Option<usize>, kind: RowErrorKind| {
        Box::new(RowError {
            table: table.name.clone(),
            row: batch.first_row + i as u64,
            line: line_of(offset),
            column: column.map(|c| table.columns[c].clone()),
            kind,
        })
    };
    if let Err(e) = std::str::from_utf8(data) {
        let i = batch
            .tuples
            .iter()
            .position(|t| t.1 as usize > e.valid_up_to())
            .unwrap_or(0);
        return Err(err(i, e.valid_up_to(), None, RowErrorKind::InvalidUtf8));
    }
    let arity = positions.map_or(ops.len(), <[_]>::len);
    // Column → tuple element.
    let element_of: Vec<usize> = match positions {
        None => (0..ops.len()).collect(),
        Some(p) => {
            let mut m = vec![0; ops.len()];
            for (e, c) in p.iter().enumerate() {
                if let Some(c) = c {
                    m[*c] = e;
                }
            }
            m
        }
    };
    let mut out = buffers.take(data.len() + data.len() / 2);
    let mut cells = Vec::with_capacity(ops.len());
    let mut choices = branch::Choices::new(ops);
    let ext = branch::has_external(ops).then(|| branch::Externals::new(ops.len()));
    // With external commands, a first pass collects their values and a second writes the rows.
    for _ in 0..if ext.is_some() { 2 } else { 1 } {
        let writing = ext.as_ref().is_none_or(|x| x.borrow().answering());
        let mut at = 0usize;
        for (i, &(from, to)) in batch.tuples.iter().enumerate() {
            let (from, to) = (from as usize, to as usize);
            if writing {
                out.extend_from_slice(&data[at..from]);
            }
            let tuple = &data[from..to];
            let elements = literal::elements(tuple, scs)
                .map_err(|e| err(i, from, None, RowErrorKind::Tuple(e)))?;
            if elements.len() != arity {
                return Err(err(
                    i,
                    from,
                    None,
                    RowErrorKind::ColumnCount {
                        expected: arity,
                        found: elements.len(),
                    },
                ));
            }
            if let Some(p) = positions {
                if let Some(e) = p
                    .iter()
                    .zip(&elements)
                    .position(|(c, e)| c.is_none() && e.kind != Const::Default)
                {
                    return Err(err(i, from, None, RowErrorKind::GeneratedValue(e + 1)));
                }
            }
            let decode = |c: usize| -> Result<Option<Cow<'_, str>>, RowErrorKind> {
                literal::value(tuple, &elements[element_of[c]], scs).map_err(RowErrorKind::Tuple)
            };
            let eff = choices
                .row(&mut |c| decode(c), writing)
                .map_err(|(c, e)| err(i, from, Some(c), e))?;
            transform_row(eff, i, ext.as_ref(), &decode, &mut cells)
                .map_err(|(c, e)| err(i, from, Some(c), e))?;
            at = to;
            if !writing {
                continue;
            }
            let mut prev = 0;
            for (e, el) in elements.iter().enumerate() {
                out.extend_from_slice(&tuple[prev..el.start]);
                let cell = positions.map_or(Some(e), |p| p[e]).map(|c| &cells[c]);
                match cell {
                    Some(Cell::Value(v)) if el.kind != Const::Default => {
                        literal::encode(v.as_deref(), el, tuple, scs, &mut out)
                    }
                    _ => out.extend_from_slice(&tuple[el.start..el.end]),
                }
                prev = el.end;
            }
            out.extend_from_slice(&tuple[prev..]);
        }
        if let Some(x) = ext.as_ref().filter(|_| !writing) {
            x.borrow_mut()
                .run(batch.tuples.len())
                .map_err(|(r, c, e)| {
                    let offset = batch.tuples.get(r).map_or(0, |t| t.0 as usize);
                    err(r, offset, Some(c), e)
                })?;
        } else {
            out.extend_from_slice(&data[at..]);
        }
    }
    buffers.give(batch.data);
    Ok(out)
}

/// The rows of a batch as standard COPY text (for previews and scans, which read every format the
/// same way). `columns` is the block's column count.
pub fn to_copy_text(
    table: &QualifiedName,
    format: &DataFormat,
    batch: &Batch,
    columns: usize,
) -> Result<Vec<u8>, Box<RowError>> {
    let _ = columns;
    let text = match format {
        DataFormat::Copy(CopyFormat::Text) => return Ok(batch.data.clone()),
        DataFormat::Copy(f) => {
            let mut out = Vec::new();
            let mut offset = 0;
            for (i, record) in split_records(&batch.data, f).into_iter().enumerate() {
                let fail = |kind| {
                    Box::new(RowError {
                        table: table.clone(),
                        row: batch.first_row + i as u64,
                        line: None,
                        column: None,
                        kind,
                    })
                };
                offset += record.len();
                let body = std::str::from_utf8(record_body(record, f))
                    .map_err(|_| fail(RowErrorKind::InvalidUtf8))?;
                let fields = f.fields(body).map_err(|e| fail(RowErrorKind::Codec(e)))?;
                for (n, field) in fields.iter().enumerate() {
                    if n > 0 {
                        out.push(b'\t');
                    }
                    crate::copy::encode(field.value.as_deref(), &mut out);
                }
                out.push(b'\n');
            }
            let _ = offset;
            out
        }
        DataFormat::Insert { scs, positions, .. } => {
            use crate::sql::literal;
            let mut out = Vec::new();
            for (i, &(from, to)) in batch.tuples.iter().enumerate() {
                let tuple = &batch.data[from as usize..to as usize];
                let fail = |kind| {
                    Box::new(RowError {
                        table: table.clone(),
                        row: batch.first_row + i as u64,
                        line: None,
                        column: None,
                        kind,
                    })
                };
                let elements =
                    literal::elements(tuple, *scs).map_err(|e| fail(RowErrorKind::Tuple(e)))?;
                let mut first = true;
                for (e, el) in elements.iter().enumerate() {
                    if positions
                        .as_ref()
                        .is_some_and(|p| p.get(e).copied().flatten().is_none())
                    {
                        continue;
                    }
                    if !first {
                        out.push(b'\t');
                    }
                    first = false;
                    let v = literal::value(tuple, el, *scs)
                        .map_err(|e| fail(RowErrorKind::Tuple(e)))?;
                    crate::copy::encode(v.as_deref(), &mut out);
                }
                out.push(b'\n');
            }
            out
        }
    };
    Ok(text)
}

/// A record without its line end (`\n`, and a `\r` before it in CSV).
fn record_body<'a>(record: &'a [u8], format: &CopyFormat) -> &'a [u8] {
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    match format {
        CopyFormat::Csv(_) => body.strip_suffix(b"\r").unwrap_or(body),
        _ => body,
    }
}

/// The records of a batch in a COPY format (a CSV record may span lines).
fn split_records<'a>(data: &'a [u8], format: &CopyFormat) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let mut end = pos;
        let mut quoted = false;
        loop {
            let nl = memchr::memchr(b'\n', &data[end..]).map_or(data.len(), |n| end + n + 1);
            if let CopyFormat::Csv(o) = format {
                quoted = o.inside_quotes_after(&data[end..nl], quoted);
            }
            end = nl;
            if !quoted || end >= data.len() {
                break;
            }
        }
        out.push(&data[pos..end]);
        pos = end;
    }
    out
}

/// Transform one batch of COPY rows. Pass-through cells are copied as bytes. The output buffer
/// comes from `buffers`, and `data` goes back to it once transformed.
pub fn process_rows<'t>(
    table: &'t BoundTable,
    data: Vec<u8>,
    first_line: Option<u64>,
    first_row: u64,
    buffers: &BufferPool,
) -> Result<Vec<u8>, Box<RowError>> {
    let err = |i: usize, column: Option<usize>, kind: RowErrorKind| {
        Box::new(RowError {
            table: table.name.clone(),
            row: first_row + i as u64,
            line: first_line.map(|l| l + i as u64),
            column: column.map(|c| table.columns[c].clone()),
            kind,
        })
    };
    let ops = match &table.action {
        TableAction::Copy { ops } => ops,
        TableAction::Skip => return Ok(Vec::new()),
    };
    let data = match &table.subset {
        Some(filter) => {
            let batch = Batch {
                data,
                tuples: Vec::new(),
                first_line,
                first_row,
            };
            let format = DataFormat::Copy(CopyFormat::Text);
            subset_batch(table, filter, &format, batch, buffers)?.data
        }
        None => data,
    };
    // One pass over the whole batch is much cheaper than one per row; on failure, find the row.
    // The fields are then sliced out of this one validated text, never checked again.
    let text = match std::str::from_utf8(&data) {
        Ok(t) => t,
        Err(e) => {
            let row = memchr::memchr_iter(b'\n', &data[..e.valid_up_to()]).count();
            return Err(err(row, None, RowErrorKind::InvalidUtf8));
        }
    };
    if !table.transforms_anything() {
        // Whole rows go through; only check what a transform would have checked.
        for (i, line) in lines(text).enumerate() {
            let found = copy::fields(line.as_bytes()).count() + 1;
            if found != ops.len() {
                return Err(err(
                    i,
                    None,
                    RowErrorKind::ColumnCount {
                        expected: ops.len(),
                        found,
                    },
                ));
            }
        }
        return Ok(data);
    }
    let has_templates = ops.iter().any(reads_outputs);
    let mut choices = branch::Choices::new(ops);
    let ext = branch::has_external(ops).then(|| branch::Externals::new(ops.len()));
    let mut out = buffers.take(data.len() + data.len() / 2);
    let mut fields: Vec<&str> = Vec::with_capacity(ops.len());
    let mut outputs: Vec<Option<Option<String>>> = Vec::with_capacity(ops.len());
    // With external commands, a first pass collects their values and a second writes the rows.
    let passes = if ext.is_some() { 2 } else { 1 };
    for _ in 0..passes {
        let writing = ext.as_ref().is_none_or(|x| x.borrow().answering());
        let mut rows = copy::Rows::new(text);
        let mut i = 0;
        while rows.next_row(&mut fields) {
            if fields.len() != ops.len() {
                return Err(err(
                    i,
                    None,
                    RowErrorKind::ColumnCount {
                        expected: ops.len(),
                        found: fields.len(),
                    },
                ));
            }
            let eff: &[&CellOp] = if choices.is_plain() {
                choices
                    .row(&mut |_| Ok(None), false)
                    .map_err(|(c, e)| err(i, Some(c), e))?
            } else {
                choices
                    .row(
                        &mut |c| copy::decode(fields[c]).map_err(RowErrorKind::from),
                        writing,
                    )
                    .map_err(|(c, e)| err(i, Some(c), e))?
            };
            // The anonymized value of an applied column: decode, transform; errors name the cell.
            let apply = |c: usize, t: &'t crate::transform::Transform, by: Option<usize>| {
                let v = copy::decode(fields[c]).map_err(|e| err(i, Some(c), e.into()))?;
                if let (Some(x), Some(_)) = (&ext, t.external()) {
                    return Ok(x.borrow_mut().cell(i, c, t, v.as_deref()));
                }
                match by {
                    None => t.apply(v.as_deref()),
                    Some(b) => {
                        let k = copy::decode(fields[b]).map_err(|e| err(i, Some(b), e.into()))?;
                        t.apply_by(v.as_deref(), k.as_deref())
                    }
                }
                .map_err(|e| err(i, Some(c), e.into()))
            };
            if !writing {
                // First pass: only the external cells' values.
                for (c, op) in eff.iter().copied().enumerate() {
                    if let CellOp::Apply(t) = op {
                        if t.external().is_some() {
                            apply(c, t, None)?;
                        }
                    }
                }
                i += 1;
                continue;
            }
            // A scrub looking for the row's names: their original and anonymized values (computed
            // in `outputs` when the row has templates or such scrubs, else the original).
            let with_names = |c: usize,
                              t: &crate::transform::Transform,
                              from: &[usize],
                              outputs: &[Option<Option<String>>]| {
                let v = copy::decode(fields[c]).map_err(|e| err(i, Some(c), e.into()))?;
                let mut originals = Vec::with_capacity(from.len());
                for &r in from {
                    originals.push(copy::decode(fields[r]).map_err(|e| err(i, Some(r), e.into()))?);
                }
                let names: Vec<(&str, Option<&str>)> = from
                    .iter()
                    .zip(&originals)
                    .filter_map(|(&r, o)| {
                        let o = o.as_deref()?;
                        Some(match outputs.get(r) {
                            Some(Some(v)) => (o, v.as_deref()),
                            _ => (o, Some(o)),
                        })
                    })
                    .collect();
                t.apply_with_names(v.as_deref(), &names)
                    .map_err(|e| err(i, Some(c), e.into()))
            };
            if has_templates {
                // Templates read other columns' anonymized values, so compute those first.
                outputs.clear();
                for (c, op) in eff.iter().copied().enumerate() {
                    outputs.push(match op {
                        CellOp::Apply(t) => Some(apply(c, t, None)?),
                        CellOp::ApplyBy(t, b) => Some(apply(c, t, Some(*b))?),
                        _ => None,
                    });
                }
                // Then the scrubs that read those (a template may read them in turn).
                for (c, op) in eff.iter().copied().enumerate() {
                    if let CellOp::ApplyWith(t, from) = op {
                        let v = with_names(c, t, from, &outputs)?;
                        outputs[c] = Some(v);
                    }
                }
            }
            for (c, (f, op)) in fields.iter().zip(eff.iter().copied()).enumerate() {
                if c > 0 {
                    out.push(b'\t');
                }
                match op {
                    CellOp::Pass => out.extend_from_slice(f.as_bytes()),
                    CellOp::Apply(t) => match outputs.get(c) {
                        Some(Some(v)) => copy::encode(v.as_deref(), &mut out),
                        _ => copy::encode(apply(c, t, None)?.as_deref(), &mut out),
                    },
                    CellOp::ApplyBy(t, b) => match outputs.get(c) {
                        Some(Some(v)) => copy::encode(v.as_deref(), &mut out),
                        _ => copy::encode(apply(c, t, Some(*b))?.as_deref(), &mut out),
                    },
                    CellOp::ApplyWith(t, from) => match outputs.get(c) {
                        Some(Some(v)) => copy::encode(v.as_deref(), &mut out),
                        _ => copy::encode(with_names(c, t, from, &outputs)?.as_deref(), &mut out),
                    },
                    // NULL stays NULL under a template too, as under every rule but "null".
                    CellOp::Template(_) if *f == "\\N" => out.extend_from_slice(b"\\N"),
                    CellOp::Template(t) => {
                        // Pass-through columns a template reads are decoded here.
                        let mut decoded: Vec<Option<String>> = vec![None; fields.len()];
                        for r in t.columns() {
                            if !matches!(
                                eff[r],
                                CellOp::Apply(_) | CellOp::ApplyBy(..) | CellOp::ApplyWith(..)
                            ) {
                                decoded[r] = copy::decode(fields[r])
                                    .map_err(|e| err(i, Some(r), e.into()))?
                                    .map(|v| v.into_owned());
                            }
                        }
                        let rendered = t.render(|r| match &outputs[r] {
                            Some(v) => v.as_deref(),
                            None => decoded[r].as_deref(),
                        });
                        copy::encode(Some(&rendered), &mut out);
                    }
                    CellOp::When(_) => unreachable!("a row's conditional rules are chosen above"),
                }
            }
            out.push(b'\n');
            i += 1;
        }
        if let Some(x) = &ext {
            if !writing {
                x.borrow_mut()
                    .run(i)
                    .map_err(|(r, c, e)| err(r, Some(c), e))?;
            }
        }
    }
    buffers.give(data);
    Ok(out)
}

/// The lines of a batch, without their `\n`: for the pass-through check, which only counts each
/// line's tabs (`copy::Rows`, which slices every field, makes that check a fifth slower).
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let body = data.strip_suffix('\n').unwrap_or(data);
    let mut start = 0;
    // The memchr crate's search: several times faster than `str::split` on short lines.
    let ends = memchr::memchr_iter(b'\n', body.as_bytes()).chain([body.len()]);
    ends.filter(move |_| !data.is_empty()).map(move |end| {
        // `\n` is ASCII, so both ends are on character boundaries.
        let line = &body[start..end];
        start = end + 1;
        line
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn end_marker_lines_are_found_in_written_records() {
        use super::has_end_marker_line as f;
        assert!(f(b"1,\"a\n\\.\nb\"\n"));
        assert!(f(b"1,\"a\r\n\\.\r\nb\"\r\n"));
        assert!(f(b"1,\"a\n\\."));
        assert!(!f(b"1,\"\\.\"\n"));
        assert!(!f(b"1,\"a\n\\.x\"\n"));
        assert!(!f(b"1,\\.\n"));
    }

    use super::*;
    use crate::rules::{bind, parse, Overrides, SourceTable};

    fn table(rules: &str, columns: &[&str]) -> BoundTable {
        let plan = parse(
            "t.toml",
            format!("[tables.t.columns]\n{rules}"),
            &Overrides::default(),
            &|_| Some("pipeline-test-key-0123456789".into()),
        )
        .unwrap();
        let source = SourceTable {
            name: QualifiedName::new("public", "t"),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            partition_of: None,
            meta: None,
            rows: None,
            database: None,
            foreign: false,
            declared_types: Vec::new(),
        };
        bind(&plan, &[source]).unwrap().remove(0)
    }

    fn rows(t: &BoundTable, data: &str) -> Result<String, Box<RowError>> {
        process_rows(
            t,
            data.as_bytes().to_vec(),
            Some(10),
            1,
            &BufferPool::default(),
        )
        .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_batch_splits_into_its_lines() {
        fn all(d: &str) -> Vec<&str> {
            lines(d).collect()
        }
        assert!(all("").is_empty());
        assert_eq!(all("\n"), [""]);
        assert_eq!(all("a\tb\n"), ["a\tb"]);
        assert_eq!(all("a\n\nbé\n"), ["a", "", "bé"]);
        assert_eq!(all("a\nb"), ["a", "b"]);
    }

    #[test]
    fn templates_read_the_anonymized_values_of_columns_on_either_side() {
        let t = table(
            "login = { template = \"{first}.{last}@{id}\" }\nfirst = { set = \"Ann\" }\nlast = { set = \"Lee\" }\nid = \"keep\"\n",
            &["first", "login", "last", "id"],
        );
        assert_eq!(
            rows(&t, "Bob\tx\tDoe\t7\n\\N\ty\tRoe\t8\n").unwrap(),
            "Ann\tAnn.Lee@7\tLee\t7\n\\N\t.Lee@8\tLee\t8\n"
        );
        // A NULL login stays NULL.
        assert_eq!(
            rows(&t, "Bob\t\\N\tDoe\t7\n").unwrap(),
            "Ann\t\\N\tLee\t7\n"
        );
    }

    #[test]
    fn null_stays_null_under_every_rule_but_null() {
        use crate::transform::fake::FakeKind;
        use crate::transform::hash::HashFormat;
        use crate::transform::scrub::Detector;
        let mut rules = vec![
            "\"keep\"".to_string(),
            "{ set = \"x\" }".into(),
            "{ set = 3 }".into(),
            "{ mask = { keep_last = 2 } }".into(),
            "{ shift = { days = 9 } }".into(),
            "{ truncate = \"month\" }".into(),
            "{ noise = { percent = 5 } }".into(),
            "{ noise = { absolute = 5 } }".into(),
            "{ regex = { pattern = \"a\", replace = \"b\" } }".into(),
            "{ template = \"{c0}-x\" }".into(),
            "{ json = { \"$.a\" = { fake = \"email\" } } }".into(),
            format!("{{ scrub = {:?} }}", Detector::NAMES),
        ];
        for f in HashFormat::NAMES {
            rules.push(format!("{{ hash = {{ format = \"{f}\" }} }}"));
        }
        for k in FakeKind::NAMES {
            rules.push(format!("{{ fake = \"{k}\" }}"));
        }
        let text: String = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("c{i} = {r}\n"))
            .collect::<String>()
            + "n = \"null\"\n";
        let mut columns: Vec<String> = (0..rules.len()).map(|i| format!("c{i}")).collect();
        columns.push("n".into());
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        let t = table(&text, &cols);
        let nulls = vec!["\\N"; rules.len()].join("\t");
        let out = rows(&t, &format!("{nulls}\tx\n")).unwrap();
        assert_eq!(out, format!("{nulls}\t\\N\n"));
    }

    #[test]
    fn untouched_cells_keep_their_bytes_and_errors_name_the_cell() {
        let t = table("a = \"keep\"\nb = { shift = { days = 2 } }\n", &["a", "b"]);
        let out = rows(&t, "x\\ty\\\\z\t2024-01-10\n").unwrap();
        assert!(out.starts_with("x\\ty\\\\z\t2024-01-"), "{out}");
        let e = rows(&t, "1\t2024-01-10\n2\tnope\n").unwrap_err();
        assert_eq!(e.to_string(), "public.t row 2 (dump line 11), column b: value is not a date or timestamp (expected YYYY-MM-DD[ time][zone][ BC])");
        let e = rows(&t, "1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "public.t row 1 (dump line 10): 1 fields, expected 2"
        );
        let keep = table("a = \"keep\"\nb = \"keep\"\n", &["a", "b"]);
        assert_eq!(rows(&keep, "1\t2\n").unwrap(), "1\t2\n");
        assert_eq!(
            rows(&keep, "1\t2\t3\n").unwrap_err().to_string(),
            "public.t row 1 (dump line 10): 3 fields, expected 2"
        );
        assert_eq!(
            rows(&keep, "1\t2\n3\n").unwrap_err().to_string(),
            "public.t row 2 (dump line 11): 1 fields, expected 2"
        );
    }

    #[test]
    fn a_scrub_replaces_the_row_s_own_names_with_their_pseudonyms_in_every_format() {
        let t = table(
            "first_name = { fake = \"first_name\" }\nlast_name = \"null\"\nid = \"keep\"\n\
             note = { scrub = { detectors = [\"email\", \"names\"], names_from = [\"first_name\", \"last_name\"] } }\n\
             label = { template = \"{note}!\" }\n",
            &["id", "note", "first_name", "last_name", "label"],
        );
        let text = "7\tDear ANN Lee, mail ann@corp.example; Annabel is not Ann.\tAnn\tLee\tx\n\
                    8\t\\N\tBo\t\\N\tx\n";
        let out = rows(&t, text).unwrap();
        let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
        let (note, first) = (lines[0][1], lines[0][2]);
        assert_ne!(first, "Ann");
        assert_eq!(
            note,
            format!(
                "Dear {first} [name], mail {}; Annabel is not {first}.",
                note.split("mail ")
                    .nth(1)
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
            )
        );
        assert!(
            !note.contains("ann@corp.example") && !note.contains("Lee"),
            "{note}"
        );
        // A template reading the scrubbed column reads its output, not the original.
        assert_eq!(lines[0][4], format!("{note}!"));
        assert_eq!(lines[1][1], "\\N");
        // CSV goes through the other path: the same values.
        let csv = CopyFormat::Csv(crate::copy::CsvOptions {
            delimiter: b',',
            null: String::new(),
            quote: b'"',
            escape: None,
            header: false,
        });
        let data = "7,\"Dear ANN Lee, mail ann@corp.example; Annabel is not Ann.\",Ann,Lee,x\n"
            .as_bytes()
            .to_vec();
        let batch = Batch {
            data,
            tuples: Vec::new(),
            first_line: Some(10),
            first_row: 1,
        };
        let out_csv =
            String::from_utf8(process_records(&t, &csv, batch, &BufferPool::default()).unwrap())
                .unwrap();
        assert!(out_csv.contains(&format!("\"{note}\"")), "{out_csv}");
    }
}
