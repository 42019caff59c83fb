//! Rows from a pg_dump plain-format file or stream, read as SQL statements.
//!
//! The dump is cut into statements the way psql cuts it (a real lexer: quotes, dollar quotes,
//! quoted names, comments, `BEGIN ATOMIC` bodies) and each statement is judged
//! ([`crate::sql::statement`]): data statements — `COPY … FROM stdin` blocks in text or CSV, and
//! `INSERT … VALUES` runs — become row batches for the rules; schema statements on the allow-list
//! pass as written, with production's secrets cut out of them; large objects and comments follow a
//! policy; everything else is refused with its line. SQL comments between statements pass only in
//! the forms pg_dump writes (names of objects); others are dropped. A first pass ([`prescan`]) sees
//! every statement and table before anything is written. This module knows nothing of rules.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use crate::copy::CopyFormat;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::schema::QualifiedName;
use crate::schema::SourceTable;
use crate::sql::lexer::{self, Kind};
use crate::sql::split::{Found, SplitError, Splitter};
use crate::sql::statement::{self, Info, InsertHeader, Secret, Session, Statement, TableDef};

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
    #[error("dump line {line}: invalid UTF-8")]
    InvalidUtf8 { line: u64 },
    #[error("dump line {line}: {what}")]
    Syntax { line: u64, what: String },
    /// Statements the tool does not let through, and policies the dump needs: the run stops before
    /// anything is written (exit 2).
    #[error("{0}")]
    Refused(Diagnostics),
}

/// What to do with a kind of object the rules file decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Not decided: meeting one stops the run (exit 2), naming the key to add.
    #[default]
    Undecided,
    Keep,
    Drop,
}

/// How a dump's non-data objects are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpPolicy {
    /// Large objects (their creation, data, ownership, grants and comments).
    pub large_objects: Policy,
    /// `COMMENT ON` and `SECURITY LABEL` text.
    pub comments: Policy,
    /// Foreign servers, user mappings and foreign tables: dropped unless `Keep` (in staging they
    /// would read another server, perhaps production).
    pub foreign_servers: Policy,
    /// `REFRESH MATERIALIZED VIEW` statements left out: views stay as pg_dump created them, without
    /// data, and nothing they call runs in staging.
    pub empty_matviews: bool,
}

/// How the rows of a data block are written.
#[derive(Debug, Clone, PartialEq)]
pub enum DataFormat {
    Copy(CopyFormat),
    /// `INSERT … VALUES` tuples. `scs` is `standard_conforming_strings` for their strings;
    /// `positions` maps each tuple element to its column among the block's columns, `None` for a
    /// generated column (its element must be `DEFAULT`); `None` for all: one to one.
    Insert {
        scs: bool,
        positions: Option<Arc<Vec<Option<usize>>>>,
        /// The run's INSERT header (`INSERT INTO t (…) VALUES `), which every statement of it has.
        header: Arc<[u8]>,
    },
}

/// Something the reader did that the report should say (never with content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    SecretRemoved(Secret),
    LargeObjectDropped,
    CommentDropped,
    SqlCommentDropped,
    ForeignDropped,
}

/// One piece of the dump, in order.
#[derive(Debug)]
pub enum Event {
    /// Text to write as it is (schema statements, pg_dump's comment lines, space).
    Sql(Vec<u8>),
    /// A data block starts: its table, columns and format, and the text that opens it (a COPY
    /// statement's line; nothing for an INSERT run, whose statements are in its rows' text).
    DataStart {
        block: usize,
        table: QualifiedName,
        database: Option<String>,
        columns: Vec<String>,
        format: DataFormat,
        header: Vec<u8>,
    },
    /// Rows of the current block. COPY rows each end in `\n` (a CSV record may span lines). For
    /// INSERT runs `data` is the statements' text and `tuples` the ranges of each `( … )` in it.
    Rows {
        block: usize,
        data: Vec<u8>,
        first_line: u64,
        rows: u64,
        tuples: Vec<(u32, u32)>,
    },
    /// The text that closes the block (COPY's `\.` line; the end of an INSERT run's last statement).
    DataEnd {
        block: usize,
        text: Vec<u8>,
    },
    Note(Note),
    /// A large-object statement or a comment, with its text: only when asked for
    /// ([`DumpReader::observing`]), for a scan that looks at what the policy would decide.
    Object {
        kind: ObjectKind,
        text: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    LargeObject,
    Comment,
}

/// The open INSERT run: consecutive INSERTs into the same table and columns.
struct InsertRun {
    block: usize,
    key: (Option<String>, InsertHeader),
    /// The header as written (`INSERT INTO … VALUES `): a statement that starts with these very
    /// bytes joins the run without being parsed again.
    header: Vec<u8>,
    /// The header written out instead (see [`canonical_insert`]).
    canonical: Vec<u8>,
    scs: bool,
    data: Vec<u8>,
    tuples: Vec<(u32, u32)>,
    rows: u64,
    first_line: u64,
}

/// The INSERT statement being read, once its header is known.
struct InsertStatement {
    /// Up to where its text has joined the run's data.
    copied: usize,
    /// Where the last tuple ended (or the header, before the first).
    last_end: usize,
    /// Something other than a tuple came after the tuples (`ON CONFLICT (…)`): no more tuples.
    tuples_over: bool,
    /// Where the tuple being read started.
    tuple_start: Option<usize>,
}

enum Mode {
    Sql,
    Copy {
        block: usize,
        table: QualifiedName,
        start_line: u64,
        csv: Option<crate::copy::CsvOptions>,
        /// The first record is the CSV header: this line is written for it instead (the
        /// columns' names, not the text the dump has there).
        header_pending: Option<Vec<u8>>,
    },
    /// The rows of a refused COPY: read to their `\.` and dropped, never read as SQL.
    Skip,
}

/// Read this much more input at a time.
const CHUNK: usize = 256 * 1024;

/// Streams [`Event`]s from a dump.
pub struct DumpReader<R> {
    input: R,
    buf: Vec<u8>,
    /// Everything before this has been handed out.
    start: usize,
    eof: bool,
    /// Line counting: `line` is the line of `buf[counted]`.
    counted: usize,
    line: u64,
    split: Splitter,
    /// What the session the dump is replayed into is set to.
    session: Session,
    mode: Mode,
    db: Option<String>,
    defs: HashMap<(Option<String>, QualifiedName), TableDef>,
    /// `ALTER TABLE … ATTACH PARTITION` and `PARTITION OF`: (database, child, parent).
    partitions: Vec<(Option<String>, QualifiedName, QualifiedName)>,
    /// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY`: (database, the key).
    foreign_keys: Vec<(Option<String>, crate::schema::ForeignKey)>,
    primary_keys: Vec<(Option<String>, QualifiedName, Vec<String>)>,
    /// Tables whose foreign keys are declared in a form this reader does not follow.
    unread_references: Vec<(Option<String>, QualifiedName)>,
    /// Foreign tables left out: statements about them go too.
    dropped_foreign: std::collections::HashSet<QualifiedName>,
    /// Names the dump made views, or gave an INSERT rule: no data may go to them.
    not_tables: std::collections::HashSet<(Option<String>, QualifiedName)>,
    blocks: usize,
    run: Option<InsertRun>,
    insert: Option<InsertStatement>,
    /// The statement being read was refused already (a first pass that goes on).
    skip_statement: bool,
    pending: std::collections::VecDeque<Event>,
    policy: DumpPolicy,
    refusals: Vec<Diagnostic>,
    /// Go on past refused statements (a first pass that reports every one).
    keep_going: bool,
    batch_rows: u64,
    batch_bytes: usize,
    buffers: Arc<crate::buffers::BufferPool>,
    keep_rows: bool,
    observe: bool,
}

/// pg_dump's own comment lines (object names and dump metadata): dropped like any comment, but
/// not counted as a note.
fn pg_dump_comment(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let text = text.trim_end();
    let Some(rest) = text.strip_prefix("--") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix(' ') else {
        return false;
    };
    [
        "Name: ",
        "Data for Name: ",
        "TOC entry ",
        "Dependencies: ",
        "PostgreSQL database dump",
        "PostgreSQL database cluster dump",
        "Dumped from database version",
        "Dumped by pg_dump version",
        "Dumped by pg_dumpall version",
        "Started on ",
        "Completed on ",
        "Roles",
        "Role memberships",
        "User Configurations",
        "Tablespaces",
        "Databases",
        "Database \"",
        "Per-Database Role Settings",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
}

fn describe_kind(k: Kind) -> &'static str {
    match k {
        Kind::QuotedIdent => "a quoted name",
        Kind::BlockComment => "a comment",
        Kind::Str(lexer::Str::Dollar) => "a dollar-quoted string",
        _ => "a quoted string",
    }
}

fn describe_tuple_error(e: &crate::sql::literal::TupleError) -> String {
    use crate::sql::literal::TupleError;
    match e {
        TupleError::NotAConstant(n) => format!(
            "an expression or function call as element {n} (only constants: strings, numbers, \
             booleans, NULL, DEFAULT, with casts)"
        ),
        TupleError::Malformed => "a form this reader cannot read".into(),
        TupleError::BadString => "a string constant that is not valid".into(),
        TupleError::Comment => {
            "a comment inside it (comments in data statements do not pass)".into()
        }
    }
}

/// The CSV header line written for a COPY's columns: each name quoted.
fn csv_header(columns: &[String], o: &crate::copy::CsvOptions) -> Vec<u8> {
    let q = o.quote as char;
    let mut line = columns
        .iter()
        .map(|c| format!("{q}{}{q}", c.replace(q, &format!("{q}{q}"))))
        .collect::<Vec<_>>()
        .join(&(o.delimiter as char).to_string());
    line.push('\n');
    line.into_bytes()
}

/// A string literal the server reads the same whatever `standard_conforming_strings` says.
fn escape_literal(s: &[u8]) -> String {
    let mut out = String::from("E'");
    for &b in s {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("''"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

/// ` (a, b, c)`, or nothing for a table without columns.
fn column_list(columns: &[String]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let names: Vec<String> = columns
        .iter()
        .map(|c| crate::schema::quote_ident(c))
        .collect();
    format!(" ({})", names.join(", "))
}

/// The COPY statement written for a data block: the table qualified and every column named, so
/// the server puts each value in the column whose rule made it, whatever the dump did to the
/// table before (a column order this reader did not follow cannot move a value).
fn canonical_copy(table: &QualifiedName, columns: &[String], format: &CopyFormat) -> Vec<u8> {
    let mut s = format!("COPY {table}{} FROM stdin", column_list(columns));
    match format {
        CopyFormat::Text => {}
        CopyFormat::TextWith(o) => s.push_str(&format!(
            " WITH (FORMAT text, DELIMITER {}, NULL {})",
            escape_literal(&[o.delimiter]),
            escape_literal(o.null.as_bytes())
        )),
        CopyFormat::Csv(o) => {
            s.push_str(&format!(
                " WITH (FORMAT csv, DELIMITER {}, NULL {}, QUOTE {}",
                escape_literal(&[o.delimiter]),
                escape_literal(o.null.as_bytes()),
                escape_literal(&[o.quote])
            ));
            if let Some(e) = o.escape {
                s.push_str(&format!(", ESCAPE {}", escape_literal(&[e])));
            }
            if o.header {
                s.push_str(", HEADER");
            }
            s.push(')');
        }
    }
    s.push_str(";\n");
    s.into_bytes()
}

/// The INSERT header written for a run: the table qualified and every column of the tuples named
/// (generated ones too, whose elements are `DEFAULT`), for the same reason as [`canonical_copy`].
fn canonical_insert(h: &InsertHeader, columns: &[String]) -> Vec<u8> {
    let overriding = h
        .overriding
        .map(|o| format!(" OVERRIDING {o} VALUE"))
        .unwrap_or_default();
    format!(
        "INSERT INTO {}{}{overriding} VALUES ",
        h.table,
        column_list(columns)
    )
    .into_bytes()
}

fn not_a_table_refusal(what: &str, table: &QualifiedName) -> String {
    format!(
        "{what} into {table}, which the dump made a view or gave an INSERT rule (its rows would \
         land in another table, under that table's name but not its rules): not allowed to pass"
    )
}

fn unqualified_refusal(what: &str) -> String {
    format!(
        "{what} into a table named without its schema while search_path is set to something other \
         than public (its table depends on the search_path): not allowed to pass"
    )
}

/// `\.` alone on its line (also as the file's last line, without a line end).
fn is_end_marker(line: &[u8]) -> bool {
    matches!(line, b"\\.\n" | b"\\.\r\n" | b"\\.")
}

impl<R: Read> DumpReader<R> {
    pub fn new(input: R, batch_rows: u64, batch_bytes: usize) -> Self {
        let mut split = Splitter::new(true);
        split.report_parens = true;
        DumpReader {
            input,
            buf: Vec::with_capacity(CHUNK),
            start: 0,
            eof: false,
            counted: 0,
            line: 1,
            split,
            session: Session::default(),
            mode: Mode::Sql,
            db: None,
            defs: HashMap::new(),
            partitions: Vec::new(),
            foreign_keys: Vec::new(),
            primary_keys: Vec::new(),
            unread_references: Vec::new(),
            dropped_foreign: Default::default(),
            not_tables: Default::default(),
            blocks: 0,
            run: None,
            insert: None,
            skip_statement: false,
            pending: Default::default(),
            policy: DumpPolicy::default(),
            refusals: Vec::new(),
            keep_going: false,
            batch_rows: batch_rows.max(1),
            batch_bytes,
            buffers: Default::default(),
            keep_rows: true,
            observe: false,
        }
    }

    /// Also hand out large-object and comment statements as [`Event::Object`].
    pub fn observing(mut self) -> Self {
        self.observe = true;
        self
    }

    /// Count rows without copying them: every `Rows` event comes with empty data.
    pub fn counting_only(mut self) -> Self {
        self.keep_rows = false;
        self
    }

    /// Take row batches from `buffers` (the pipeline gives them back once written).
    pub fn with_buffers(mut self, buffers: Arc<crate::buffers::BufferPool>) -> Self {
        self.buffers = buffers;
        self
    }

    /// What to do with large objects and comments.
    pub fn with_policy(mut self, policy: DumpPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The 1-based number of the line being read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The line of byte `pos` of the buffer (positions only move forward).
    fn line_at(&mut self, pos: usize) -> u64 {
        if pos > self.counted {
            self.line += memchr::memchr_iter(b'\n', &self.buf[self.counted..pos]).count() as u64;
            self.counted = pos;
        }
        self.line
    }

    /// Read more input; false at its end.
    fn fill(&mut self) -> Result<bool, DumpError> {
        if self.eof {
            return Ok(false);
        }
        // Drop what was handed out, when that is most of the buffer.
        let drop = self.start.min(self.counted);
        if drop > 64 * 1024 && drop > self.buf.len() / 2 {
            self.buf.drain(..drop);
            self.start -= drop;
            self.counted -= drop;
            self.split.shift(drop);
            if let Some(s) = self.insert.as_mut() {
                s.copied -= drop;
                s.last_end -= drop;
                if let Some(t) = s.tuple_start.as_mut() {
                    *t -= drop;
                }
            }
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e.into());
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        if let Some(z) = memchr::memchr(0, &self.buf[len..]) {
            // No PostgreSQL text holds one; psql and this reader could split the text differently.
            let line = self.line_at(len + z);
            return Err(DumpError::Refused(Diagnostics(vec![Diagnostic::dump(
                line,
                "a NUL byte, which no SQL text or COPY row holds: not allowed to pass".into(),
            )])));
        }
        Ok(n > 0)
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, DumpError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let more = match self.mode {
                Mode::Sql => self.sql()?,
                Mode::Copy { .. } => self.copy_rows()?,
                Mode::Skip => self.skip_rows()?,
            };
            if !more && self.pending.is_empty() {
                return Ok(None);
            }
        }
    }

    /// A statement that may not pass: an error, or noted when going on.
    fn refuse(&mut self, line: u64, message: String) -> Result<(), DumpError> {
        self.refusals.push(Diagnostic::dump(line, message));
        if self.keep_going {
            Ok(())
        } else {
            Err(DumpError::Refused(Diagnostics(std::mem::take(
                &mut self.refusals,
            ))))
        }
    }

    /// Read statements until an event is pending; false at the end of the dump.
    fn sql(&mut self) -> Result<bool, DumpError> {
        while self.pending.is_empty() && matches!(self.mode, Mode::Sql) {
            // An INSERT tuple is read to its end by the tuple scanner, not token by token.
            if let Some(start) = self.insert.as_ref().and_then(|i| i.tuple_start) {
                match crate::sql::literal::tuple_end(&self.buf, start, self.split.scs, self.eof) {
                    Ok(Some(end)) => {
                        self.split.close_group(end);
                        self.close_paren(end)?;
                    }
                    Ok(None) => {
                        self.fill()?;
                    }
                    Err(Ok(crate::sql::literal::Unterminated)) => {
                        let line = self.line_at(start);
                        return Err(DumpError::Syntax {
                            line,
                            what: "the dump ends inside the VALUES tuple of an INSERT".into(),
                        });
                    }
                    Err(Err(crate::sql::literal::Continued)) => {
                        let line = self.line_at(start);
                        return Err(DumpError::Refused(Diagnostics(vec![Diagnostic::dump(
                            line,
                            "an INSERT whose VALUES tuple has a string continued on \
                                      another line: not allowed to pass"
                                .into(),
                        )])));
                    }
                }
                continue;
            }
            // Another INSERT with the very header of the open run (pg_dump --inserts): its header
            // is not read token by token.
            if let Some(at) = self.same_header_next() {
                let content = at - self.run.as_ref().expect("a run").header.len();
                self.split.enter_group(content, at);
                let header = self.run.as_ref().expect("a run").key.1.clone();
                self.begin_insert(content, at, header)?;
                continue;
            }
            let found = match self.split.next(&self.buf, self.eof) {
                Ok(f) => f,
                Err(e) => {
                    let line = self.line_at(self.start);
                    return Err(DumpError::Syntax {
                        line,
                        what: match e {
                            SplitError::Unterminated(k) => {
                                format!("the dump ends inside {}", describe_kind(k))
                            }
                            SplitError::UnbalancedParen => {
                                "a statement with a `)` without its `(`".into()
                            }
                        },
                    });
                }
            };
            match found {
                None => {
                    self.fill()?;
                }
                Some(Found::Open { at }) => self.open_paren(at)?,
                Some(Found::Close { end }) => self.close_paren(end)?,
                Some(Found::End) => {
                    let gap = self.gap(self.buf.len())?;
                    self.close_run();
                    self.start = self.buf.len();
                    if !gap.is_empty() {
                        self.pending.push_back(Event::Sql(gap));
                    }
                    return Ok(!self.pending.is_empty());
                }
                Some(Found::Meta { content, end }) => {
                    self.meta(content, end)?;
                    self.split.report_parens = true;
                }
                Some(Found::Statement { content, end }) => {
                    self.statement(content, end)?;
                    self.split.report_parens = true;
                }
            }
        }
        Ok(true)
    }

    /// Where the first tuple of the next statement opens, when that statement starts (after
    /// space) with the open run's header as written.
    fn same_header_next(&self) -> Option<usize> {
        let run = self.run.as_ref()?;
        if self.insert.is_some() || self.split.content().is_some() || run.scs != self.split.scs {
            return None;
        }
        let rest = &self.buf[self.split.pos..];
        let space = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let after = &rest[space..];
        (after.len() > run.header.len()
            && after.starts_with(&run.header)
            && after[run.header.len()] == b'(')
            .then(|| self.split.pos + space + run.header.len())
    }

    /// The space and comments from `start` to `to`, as they may pass.
    fn gap(&mut self, to: usize) -> Result<Vec<u8>, DumpError> {
        let text = &self.buf[self.start..to];
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(text.to_vec());
        }
        if std::str::from_utf8(text).is_err() {
            let line = self.line_at(self.start);
            return Err(DumpError::InvalidUtf8 { line });
        }
        let mut out = Vec::with_capacity(text.len());
        let mut dropped = false;
        let mut pos = 0;
        while let Ok(Some(t)) = lexer::next(text, pos, true, true) {
            let piece = &text[t.start..t.end];
            // No comment passes (free text, even in pg_dump's own form); the line ends stay.
            match t.kind {
                Kind::LineComment => {
                    dropped |= !pg_dump_comment(piece);
                    if piece.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                }
                Kind::BlockComment => dropped = true,
                _ => out.extend_from_slice(piece),
            }
            pos = t.end;
        }
        if dropped {
            self.pending.push_back(Event::Note(Note::SqlCommentDropped));
        }
        Ok(out)
    }

    fn new_block(&mut self) -> usize {
        self.blocks += 1;
        self.blocks - 1
    }

    /// End the open INSERT run: its last rows, then its closing text.
    fn close_run(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let last = run.tuples.last().map_or(0, |t| t.1 as usize);
        let tail = run.data.split_off(last);
        if run.rows > 0 || !run.data.is_empty() {
            self.pending.push_back(Event::Rows {
                block: run.block,
                data: if self.keep_rows { run.data } else { Vec::new() },
                first_line: run.first_line,
                rows: run.rows,
                tuples: if self.keep_rows {
                    run.tuples
                } else {
                    Vec::new()
                },
            });
        }
        self.pending.push_back(Event::DataEnd {
            block: run.block,
            text: tail,
        });
    }

    fn meta(&mut self, content: usize, end: usize) -> Result<(), DumpError> {
        let gap = self.gap(content)?;
        self.close_run();
        let line = self.line_at(content);
        let text = self.buf[content..end].to_vec();
        self.start = end;
        let mut out = gap;
        match statement::classify(&text, &self.session) {
            Statement::Connect(db) => {
                // Written in pg_dumpall's form, not as the dump has it.
                out.extend_from_slice(statement::connect_line(&db).as_bytes());
                self.db = Some(db);
                self.set_session(Session::default());
            }
            Statement::Schema(info) => {
                out.extend_from_slice(&text);
                self.note_info(info);
            }
            Statement::Refused(why) => {
                self.refuse(line, format!("{why}: not allowed to pass"))?;
            }
            _ => unreachable!("a meta-command is one of these"),
        }
        if !out.is_empty() {
            self.pending.push_back(Event::Sql(out));
        }
        Ok(())
    }

    /// A `(` at the top level of the statement being read: an INSERT's tuple, perhaps.
    fn open_paren(&mut self, at: usize) -> Result<(), DumpError> {
        if self.skip_statement {
            return Ok(());
        }
        if let Some(ins) = &mut self.insert {
            if ins.tuples_over {
                return Ok(());
            }
            // Between two tuples only a comma may stand; anything else ends the tuples.
            let between = &self.buf[ins.last_end..at];
            let plain = between
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .eq(std::iter::once(&b','));
            let comma_only = plain
                || lexer::tokens(between, self.split.scs).is_ok_and(|toks| {
                    // A comment between tuples would pass as written: not a plain separator.
                    let sig: Vec<_> = toks.iter().filter(|t| t.kind != Kind::Space).collect();
                    sig.len() == 1 && sig[0].kind == Kind::Comma
                });
            if comma_only {
                ins.tuple_start = Some(at);
            } else {
                ins.tuples_over = true;
            }
            return Ok(());
        }
        // Fast path: the same header as the run's last statement (pg_dump --inserts).
        if let (Some(content), Some(run)) = (self.split.content(), &self.run) {
            if run.scs == self.split.scs
                && run.key.0 == self.db
                && self.buf[content..at] == run.header[..]
            {
                let header = run.key.1.clone();
                return self.begin_insert(content, at, header);
            }
        }
        let prefix = &self.buf[self.start..at];
        let toks = lexer::tokens(prefix, self.split.scs).unwrap_or_default();
        let Some(first) = toks.iter().find(|t| lexer::significant(t)).copied() else {
            return Ok(());
        };
        if lexer::word(prefix, &first).as_deref() != Some("insert") {
            // Not an INSERT: no tuples to follow in this statement.
            self.split.report_parens = false;
            return Ok(());
        }
        match statement::parse_insert_header(&prefix[first.start..], self.split.scs) {
            Ok(Some(h)) => self.begin_insert(self.start + first.start, at, h),
            // Not yet at VALUES (this is its column list), or not a VALUES insert: judged at its
            // end.
            Ok(None) => Ok(()),
            Err(_) => {
                self.split.report_parens = false;
                Ok(())
            }
        }
    }

    /// An INSERT's header is read (its first token at `content`, its first tuple at `at`): join the
    /// open run or start a new one.
    fn begin_insert(
        &mut self,
        content: usize,
        at: usize,
        header: InsertHeader,
    ) -> Result<(), DumpError> {
        let line = self.line_at(content);
        let scs = self.split.scs;
        let key = (self.db.clone(), header);
        let continues = self
            .run
            .as_ref()
            .is_some_and(|r| r.key == key && r.scs == scs);
        let gap = self.gap(content)?;
        if !continues {
            self.close_run();
            let layout = if key.1.unqualified && !self.session.search_path.resolves_public() {
                Err(unqualified_refusal("an INSERT"))
            } else if self
                .not_tables
                .contains(&(key.0.clone(), key.1.table.clone()))
            {
                Err(not_a_table_refusal("an INSERT", &key.1.table))
            } else {
                self.insert_layout(&key)
            };
            let (columns, positions) = match layout {
                Ok(x) => x,
                Err(message) => {
                    self.refuse(line, message)?;
                    self.skip_statement = true;
                    self.split.report_parens = false;
                    return Ok(());
                }
            };
            if !gap.is_empty() {
                self.pending.push_back(Event::Sql(gap.clone()));
            }
            let all_columns: Vec<String> = match &key.1.columns {
                Some(c) => c.clone(),
                None => self
                    .columns_of(&key.0, &key.1.table)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.0)
                    .collect(),
            };
            let canonical = canonical_insert(&key.1, &all_columns);
            let block = self.new_block();
            self.pending.push_back(Event::DataStart {
                block,
                table: key.1.table.clone(),
                database: key.0.clone(),
                columns,
                format: DataFormat::Insert {
                    scs,
                    positions: positions.map(Arc::new),
                    header: canonical.clone().into(),
                },
                header: Vec::new(),
            });
            self.run = Some(InsertRun {
                block,
                key,
                header: self.buf[content..at].to_vec(),
                canonical,
                scs,
                data: self.take_buffer(),
                tuples: Vec::new(),
                rows: 0,
                first_line: line,
            });
        } else {
            let run = self.run.as_mut().expect("a run is open");
            if run.rows == 0 && run.data.is_empty() {
                run.first_line = line;
            }
            if self.keep_rows {
                run.data.extend_from_slice(&gap);
            }
        }
        if self.keep_rows {
            let run = self.run.as_mut().expect("a run is open");
            run.data.extend_from_slice(&run.canonical);
        }
        self.start = content;
        self.insert = Some(InsertStatement {
            copied: at,
            last_end: at,
            tuples_over: false,
            tuple_start: Some(at),
        });
        Ok(())
    }

    fn take_buffer(&self) -> Vec<u8> {
        if self.keep_rows {
            self.buffers.take(self.batch_bytes.min(1 << 22) + 64 * 1024)
        } else {
            Vec::new()
        }
    }

    /// The columns an INSERT writes, and where each tuple element goes when its CREATE TABLE has
    /// generated columns (whose elements must be DEFAULT).
    #[allow(clippy::type_complexity)]
    fn insert_layout(
        &self,
        key: &(Option<String>, InsertHeader),
    ) -> Result<(Vec<String>, Option<Vec<Option<usize>>>), String> {
        let (db, h) = key;
        if let Some(cols) = &h.columns {
            return Ok((cols.clone(), None));
        }
        let cols = self.columns_of(db, &h.table).ok_or_else(|| {
            format!(
                "an INSERT into {} without a column list, and no CREATE TABLE for it earlier in the \
                 dump that says its columns: dump with --column-inserts, or name the columns",
                h.table
            )
        })?;
        let names: Vec<String> = cols.iter().filter(|c| !c.1).map(|c| c.0.clone()).collect();
        if names.len() == cols.len() {
            return Ok((names, None));
        }
        let mut next = 0;
        let positions = cols
            .iter()
            .map(|(_, generated)| {
                (!generated).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        Ok((names, Some(positions)))
    }

    /// The types the dump's `CREATE TABLE` gives `columns` of a table (a parent's for inherited
    /// ones); `None` for a column it does not say.
    fn declared_types(
        &self,
        db: &Option<String>,
        t: &QualifiedName,
        columns: &[String],
    ) -> Vec<Option<String>> {
        fn collect(
            reader: &DumpReader<impl Read>,
            db: &Option<String>,
            t: &QualifiedName,
            depth: usize,
            out: &mut std::collections::BTreeMap<String, String>,
        ) {
            let Some(def) = reader.defs.get(&(db.clone(), t.clone())) else {
                return;
            };
            if depth > 32 {
                return;
            }
            for (c, ty) in &def.types {
                out.entry(c.clone()).or_insert_with(|| ty.clone());
            }
            for p in &def.parents {
                collect(reader, db, p, depth + 1, out);
            }
        }
        let mut types = std::collections::BTreeMap::new();
        collect(self, db, t, 0, &mut types);
        columns.iter().map(|c| types.get(c).cloned()).collect()
    }

    /// A table's columns in order (with whether each is generated), parents' first.
    fn columns_of(&self, db: &Option<String>, t: &QualifiedName) -> Option<Vec<(String, bool)>> {
        self.columns_of_depth(db, t, 0)
    }

    fn columns_of_depth(
        &self,
        db: &Option<String>,
        t: &QualifiedName,
        depth: usize,
    ) -> Option<Vec<(String, bool)>> {
        if depth > 32 {
            return None;
        }
        let def = self.defs.get(&(db.clone(), t.clone()))?;
        let mut out: Vec<(String, bool)> = Vec::new();
        for p in &def.parents {
            for c in self.columns_of_depth(db, p, depth + 1)? {
                if !out.iter().any(|(n, _)| *n == c.0) {
                    out.push(c);
                }
            }
        }
        for c in def.columns.as_ref()? {
            if !out.iter().any(|(n, _)| *n == c.0) {
                out.push(c.clone());
            }
        }
        Some(out)
    }

    /// A `)` at the top level: an INSERT tuple ends.
    fn close_paren(&mut self, end: usize) -> Result<(), DumpError> {
        let Some(ins) = &mut self.insert else {
            return Ok(());
        };
        let Some(start) = ins.tuple_start.take() else {
            return Ok(());
        };
        // Before the dump sets these, a backslash in a string or a byte that is not ASCII could
        // be read otherwise by the server.
        let tuple = &self.buf[start..end];
        if (self.session.scs.is_none() && tuple.contains(&b'\\'))
            || (!self.session.utf8 && !tuple.is_ascii())
        {
            let line = self.line_at(start);
            self.refuse(
                line,
                "an INSERT whose VALUES tuple has a backslash or text that is not ASCII before the \
                 dump sets standard_conforming_strings and client_encoding: not allowed to pass"
                    .into(),
            )?;
        }
        // A first pass looks at every tuple: an expression whose value no rule can see stops the
        // run before anything is written.
        if self.keep_going {
            if let Err(e) = crate::sql::literal::check(&self.buf[start..end], self.split.scs) {
                let line = self.line_at(start);
                self.refuse(
                    line,
                    format!(
                        "an INSERT whose VALUES tuple has {}: not allowed to pass",
                        describe_tuple_error(&e)
                    ),
                )?;
            }
        }
        let Some(ins) = &mut self.insert else {
            return Ok(());
        };
        let keep = self.keep_rows;
        let run = self.run.as_mut().expect("a run is open");
        if keep {
            let offset = run.data.len();
            run.data.extend_from_slice(&self.buf[ins.copied..end]);
            let t_start = offset + (start - ins.copied);
            run.tuples.push((t_start as u32, run.data.len() as u32));
        }
        run.rows += 1;
        ins.copied = end;
        ins.last_end = end;
        self.start = end;
        let full = run.rows >= self.batch_rows || run.data.len() >= self.batch_bytes;
        if full {
            let next = self.take_buffer();
            let run = self.run.as_mut().expect("a run is open");
            let data = std::mem::replace(&mut run.data, next);
            let tuples = std::mem::take(&mut run.tuples);
            let rows = std::mem::take(&mut run.rows);
            let (block, first_line) = (run.block, run.first_line);
            let next_line = self.line_at(end);
            self.run.as_mut().expect("open").first_line = next_line;
            self.pending.push_back(Event::Rows {
                block,
                data,
                first_line,
                rows,
                tuples,
            });
        }
        Ok(())
    }

    /// A whole statement from `content` (its first token) to `end`.
    fn statement(&mut self, content: usize, end: usize) -> Result<(), DumpError> {
        let line = self.line_at(content);
        if std::mem::take(&mut self.skip_statement) {
            self.start = end;
            return Ok(());
        }
        if let Some(ins) = self.insert.take() {
            // An INSERT whose tuples were read: only ON CONFLICT … DO NOTHING may follow them.
            let suffix = &self.buf[ins.last_end..end];
            let ok = ins.tuple_start.is_none()
                && (suffix == b";"
                    || (std::str::from_utf8(suffix).is_ok()
                        && statement::insert_suffix_ok(suffix, self.split.scs)));
            if !ok {
                self.refuse(
                    line,
                    "an INSERT with more after its VALUES tuples than ON CONFLICT … DO NOTHING \
                     (a DO UPDATE, RETURNING or an expression writes values no rule sees): not \
                     allowed to pass"
                        .into(),
                )?;
            }
            if self.keep_rows {
                if let Some(run) = self.run.as_mut() {
                    run.data.extend_from_slice(&self.buf[ins.copied..end]);
                }
            }
            self.start = end;
            return Ok(());
        }
        let gap = self.gap(content)?;
        let text = self.buf[content..end].to_vec();
        if std::str::from_utf8(&text).is_err() {
            return Err(DumpError::InvalidUtf8 { line });
        }
        self.start = end;
        self.close_run();
        let mut out = gap;
        if !self.session.utf8 && !text.is_ascii() {
            return self.refuse(
                line,
                "text that is not ASCII before the dump sets client_encoding to UTF8 (pg_dump \
                 writes SET client_encoding first): not allowed to pass"
                    .into(),
            );
        }
        let class = statement::classify(&text, &self.session);
        if let Statement::Schema(Info::Session(s)) = &class {
            // psql reads a whole line with the standard_conforming_strings it had when the line
            // began: a change takes effect on the next line only.
            if s.scs != self.session.scs && !self.rest_of_line_blank()? {
                return self.refuse(
                    line,
                    "a SET of standard_conforming_strings with more text after it on its line \
                     (psql reads that text with the old setting): not allowed to pass"
                        .into(),
                );
            }
        }
        if matches!(class, Statement::Refused(_))
            && statement::is_copy_from_stdin(&text, self.split.scs)
        {
            // Its rows follow: they are data, not statements.
            self.skip_copy_data(end);
        }
        if self.observe {
            let kind = match class {
                Statement::LargeObject => Some(ObjectKind::LargeObject),
                Statement::Comment => Some(ObjectKind::Comment),
                _ => None,
            };
            if let Some(kind) = kind {
                self.pending.push_back(Event::Object {
                    kind,
                    text: text.clone(),
                });
            }
        }
        match class {
            // GRANT, COMMENT or ALTER of a foreign table that was left out goes with it.
            Statement::Schema(_)
                if !self.dropped_foreign.is_empty()
                    && statement::names_in(&text, self.split.scs)
                        .iter()
                        .any(|n| self.dropped_foreign.contains(n)) =>
            {
                self.pending.push_back(Event::Note(Note::ForeignDropped));
            }
            Statement::Schema(Info::Refresh) if self.policy.empty_matviews => {}
            Statement::Schema(info) => {
                out.extend_from_slice(&text);
                self.note_info(info);
            }
            Statement::Foreign { text, table } => {
                if self.policy.foreign_servers == Policy::Keep {
                    out.extend_from_slice(&text);
                } else {
                    if let Some(t) = table {
                        self.dropped_foreign.insert(t);
                    }
                    self.pending.push_back(Event::Note(Note::ForeignDropped));
                }
            }
            Statement::Rewritten { text, removed } => {
                out.extend_from_slice(&text);
                self.pending
                    .push_back(Event::Note(Note::SecretRemoved(removed)));
            }
            Statement::LargeObject => match self.policy.large_objects {
                Policy::Keep => out.extend_from_slice(&text),
                Policy::Drop => self
                    .pending
                    .push_back(Event::Note(Note::LargeObjectDropped)),
                Policy::Undecided => self.refuse(
                    line,
                    "a large object, whose data would be copied as it is: choose with \
                     `large_objects = \"drop\"` or `\"keep\"` under [policy] in the rules file"
                        .into(),
                )?,
            },
            Statement::Comment => match self.policy.comments {
                Policy::Keep => out.extend_from_slice(&text),
                Policy::Drop => self.pending.push_back(Event::Note(Note::CommentDropped)),
                Policy::Undecided => self.refuse(
                    line,
                    "a COMMENT ON or SECURITY LABEL, free text that may name people: choose with \
                     `comments = \"keep\"` or `\"drop\"` under [policy] in the rules file"
                        .into(),
                )?,
            },
            Statement::Connect(_) => unreachable!("only meta-commands connect"),
            Statement::Refused(why) => self.refuse(line, format!("{why}: not allowed to pass"))?,
            Statement::Copy(copy) => return self.copy_start(out, copy, line, end),
        }
        if !out.is_empty() {
            self.pending.push_back(Event::Sql(out));
        }
        Ok(())
    }

    fn set_session(&mut self, session: Session) {
        self.split.scs = session.lexing_scs();
        self.session = session;
    }

    /// Forget what is known of a table's columns (of every table of that name, for a name without
    /// a schema).
    fn forget(&mut self, table: &QualifiedName, unqualified: bool) {
        let db = self.db.clone();
        self.defs
            .retain(|(d, n), _| *d != db || !(n == table || (unqualified && n.name == table.name)));
    }

    /// After a refused `COPY … FROM stdin` ending at `end`: its rows are skipped.
    fn skip_copy_data(&mut self, end: usize) {
        let nl = memchr::memchr(b'\n', &self.buf[end..]).map(|n| end + n + 1);
        let from = nl.unwrap_or(self.buf.len());
        self.start = from;
        self.split.skip_to(from);
        self.mode = Mode::Skip;
    }

    /// Skip lines up to a `\.` line.
    fn skip_rows(&mut self) -> Result<bool, DumpError> {
        loop {
            let mut pos = self.start;
            for nl in memchr::memchr_iter(b'\n', &self.buf[self.start..]) {
                let nl = self.start + nl;
                let line = &self.buf[pos..=nl];
                pos = nl + 1;
                if is_end_marker(line) {
                    self.line_at(pos);
                    self.start = pos;
                    self.split.skip_to(pos);
                    self.mode = Mode::Sql;
                    return Ok(true);
                }
            }
            self.line_at(pos);
            self.start = pos;
            self.split.skip_to(pos);
            if !self.fill()? {
                self.start = self.buf.len();
                self.split.skip_to(self.start);
                self.mode = Mode::Sql;
                return Ok(false);
            }
        }
    }

    fn note_info(&mut self, info: Info) {
        match info {
            Info::Session(s) => self.set_session(s),
            Info::Forget { table, unqualified } => self.forget(&table, unqualified),
            Info::Dropped(tables) => {
                for (t, unqualified) in tables {
                    self.forget(&t, unqualified);
                }
            }
            Info::ForgetAll => {
                let db = self.db.clone();
                self.defs.retain(|(d, _), _| *d != db);
            }
            Info::CreateTable(def)
                if def.unqualified && !self.session.search_path.resolves_public() =>
            {
                // Where it goes depends on a search_path this reader does not follow.
                self.forget(&def.name, true);
            }
            Info::CreateTable(def) => {
                if def.references {
                    self.unread_references
                        .push((self.db.clone(), def.name.clone()));
                }
                self.not_tables.remove(&(self.db.clone(), def.name.clone()));
                if def.partition {
                    if let Some(p) = def.parents.first() {
                        self.partitions
                            .push((self.db.clone(), def.name.clone(), p.clone()));
                    }
                }
                self.defs.insert((self.db.clone(), def.name.clone()), def);
            }
            Info::Attach(child, parent) => self.partitions.push((self.db.clone(), child, parent)),
            Info::NotATable(name) => {
                // (A rule leaves the table's columns known: only its data is refused.)
                self.not_tables.insert((self.db.clone(), name));
            }
            Info::ForeignKey(fk) => self.foreign_keys.push((self.db.clone(), fk)),
            Info::UnreadReference {
                table,
                forget,
                unqualified,
            } => {
                if forget {
                    self.forget(&table, unqualified);
                }
                self.unread_references.push((self.db.clone(), table));
            }
            Info::PrimaryKey(t, cols) => self.primary_keys.push((self.db.clone(), t, cols)),
            Info::None | Info::Refresh => {}
        }
    }

    /// Whether only spaces (or a line comment) follow the statement just read (which ends at
    /// `self.start`; reading more may move it) up to the end of its line.
    fn rest_of_line_blank(&mut self) -> Result<bool, DumpError> {
        let nl = loop {
            let end = self.start;
            if let Some(n) = memchr::memchr(b'\n', &self.buf[end..]) {
                break end + n;
            }
            if !self.fill()? {
                break self.buf.len();
            }
        };
        let rest = &self.buf[self.start..nl];
        let blank = rest.iter().all(|b| b.is_ascii_whitespace())
            || lexer::tokens(rest, true).is_ok_and(|toks| {
                toks.iter()
                    .all(|t| matches!(t.kind, Kind::Space | Kind::LineComment))
            });
        Ok(blank)
    }

    /// A COPY … FROM stdin statement: its rows start on the next line.
    fn copy_start(
        &mut self,
        mut header: Vec<u8>,
        copy: statement::CopyStatement,
        line: u64,
        end: usize,
    ) -> Result<(), DumpError> {
        // The statement ends at `self.start` (== `end` now; reading more may move both: `end` is
        // taken again after the line is whole).
        debug_assert_eq!(self.start, end);
        // The rest of the statement's line: only space may follow the `;`.
        let nl = loop {
            let end = self.start;
            if let Some(n) = memchr::memchr(b'\n', &self.buf[end..]) {
                break Some(end + n);
            }
            if !self.fill()? {
                break None;
            }
        };
        let end = self.start;
        let line_end = nl.map_or(self.buf.len(), |n| n + 1);
        let rest = &self.buf[end..line_end];
        if !rest.iter().all(|b| b.is_ascii_whitespace()) {
            self.skip_copy_data(end);
            return self.refuse(
                line,
                "a COPY statement with more text on its line (its rows must start on the next line): not allowed to pass".into(),
            );
        }
        if copy.unqualified && !self.session.search_path.resolves_public() {
            self.skip_copy_data(end);
            return self.refuse(line, unqualified_refusal("a COPY"));
        }
        if self
            .not_tables
            .contains(&(self.db.clone(), copy.table.clone()))
        {
            self.skip_copy_data(end);
            return self.refuse(line, not_a_table_refusal("a COPY", &copy.table));
        }
        let columns = match copy.columns {
            Some(c) => c,
            None => match self.columns_of(&self.db.clone(), &copy.table) {
                Some(c) => c.into_iter().filter(|c| !c.1).map(|c| c.0).collect(),
                None => {
                    self.skip_copy_data(end);
                    return self.refuse(
                        line,
                        format!(
                            "a COPY into {} without a column list, and no CREATE TABLE for it \
                             earlier in the dump that says its columns (or its columns changed \
                             after it)",
                            copy.table
                        ),
                    );
                }
            },
        };
        header.extend_from_slice(&canonical_copy(&copy.table, &columns, &copy.format));
        self.start = line_end;
        self.split.skip_to(line_end);
        let block = self.new_block();
        let csv = match &copy.format {
            CopyFormat::Csv(o) => Some(o.clone()),
            _ => None,
        };
        let header_pending = match &csv {
            Some(o) if o.header => Some(csv_header(&columns, o)),
            _ => None,
        };
        self.pending.push_back(Event::DataStart {
            block,
            table: copy.table.clone(),
            database: self.db.clone(),
            columns,
            format: DataFormat::Copy(copy.format.clone()),
            header,
        });
        self.mode = Mode::Copy {
            block,
            table: copy.table,
            start_line: line,
            header_pending,
            csv,
        };
        Ok(())
    }

    /// Rows of the COPY block being read, up to a batch or the block's end.
    fn copy_rows(&mut self) -> Result<bool, DumpError> {
        let Mode::Copy {
            block,
            ref table,
            start_line,
            ref csv,
            ref header_pending,
        } = self.mode
        else {
            unreachable!("in a COPY block");
        };
        let (table, csv) = (table.clone(), csv.clone());
        let header_line = header_pending.clone();
        let header_pending = header_line.is_some();
        let first_line = self.line_at(self.start);
        let mut data = if self.keep_rows && !header_pending {
            self.buffers.take(self.batch_bytes.min(1 << 22) + 64 * 1024)
        } else {
            Vec::new()
        };
        let mut rows = 0u64;
        let mut quoted = false;
        loop {
            // Whole lines in the buffer: a record ends at a line end outside quotes.
            let mut pos = self.start;
            let mut record_end = self.start;
            let mut marker: Option<(usize, usize)> = None;
            let mut full = false;
            for nl in memchr::memchr_iter(b'\n', &self.buf[self.start..]) {
                let nl = self.start + nl;
                let line = &self.buf[pos..=nl];
                if is_end_marker(line) {
                    if quoted {
                        // psql ends the block at this line whatever the quotes say: what
                        // follows would be read as SQL.
                        let line = self.line_at(pos);
                        return Err(DumpError::Refused(Diagnostics(vec![Diagnostic::dump(
                            line,
                            format!(
                                "a `\\.` line inside a quoted field of the CSV block of {table}, \
                                 where psql ends the block: not allowed to pass"
                            ),
                        )])));
                    }
                    marker = Some((pos, nl + 1));
                    break;
                }
                if let Some(o) = &csv {
                    quoted = o.inside_quotes_after(line, quoted);
                }
                pos = nl + 1;
                if quoted {
                    continue;
                }
                record_end = pos;
                rows += 1;
                if header_pending
                    || rows >= self.batch_rows
                    || (record_end - self.start) + data.len() >= self.batch_bytes
                {
                    full = true;
                    break;
                }
            }
            if self.keep_rows || header_pending {
                data.extend_from_slice(&self.buf[self.start..record_end]);
            }
            self.line_at(record_end);
            self.start = record_end;
            if !self.session.utf8 && !data.is_ascii() {
                // (Rows are looked at only in this rare state.)
                let line = self.line_at(self.start);
                self.refuse(
                    line,
                    format!(
                        "rows of {table} that are not ASCII before the dump sets client_encoding \
                         to UTF8: not allowed to pass"
                    ),
                )?;
            }
            if header_pending && rows == 1 {
                // The CSV header record: the column names are written instead of its text.
                if let Mode::Copy { header_pending, .. } = &mut self.mode {
                    *header_pending = None;
                }
                self.pending
                    .push_back(Event::Sql(header_line.expect("a header")));
                return Ok(true);
            }
            if let Some((from, to)) = marker {
                let end_line = self.buf[from..to].to_vec();
                self.line_at(to);
                self.start = to;
                self.split.skip_to(to);
                self.mode = Mode::Sql;
                if rows > 0 {
                    self.pending.push_back(Event::Rows {
                        block,
                        data,
                        first_line,
                        rows,
                        tuples: Vec::new(),
                    });
                }
                self.pending.push_back(Event::DataEnd {
                    block,
                    text: end_line,
                });
                return Ok(true);
            }
            if full {
                self.pending.push_back(Event::Rows {
                    block,
                    data,
                    first_line,
                    rows,
                    tuples: Vec::new(),
                });
                return Ok(true);
            }
            if !self.fill()? {
                // The end of the input: a last line without its line end.
                let rest = &self.buf[self.start..];
                if !quoted && is_end_marker(rest) {
                    let mut end_line = rest.to_vec();
                    end_line.push(b'\n');
                    self.start = self.buf.len();
                    self.split.skip_to(self.start);
                    self.mode = Mode::Sql;
                    if rows > 0 {
                        self.pending.push_back(Event::Rows {
                            block,
                            data,
                            first_line,
                            rows,
                            tuples: Vec::new(),
                        });
                    }
                    self.pending.push_back(Event::DataEnd {
                        block,
                        text: end_line,
                    });
                    return Ok(true);
                }
                let line = self.line_at(self.buf.len());
                if quoted {
                    return Err(DumpError::Syntax {
                        line,
                        what: format!(
                            "the CSV block of {table} (started on line {start_line}) ends inside a quoted field"
                        ),
                    });
                }
                return Err(DumpError::Truncated {
                    table,
                    start: start_line,
                    line,
                });
            }
            // A record not whole yet: read on (the lines already taken stay in `data`).
            if quoted {
                // Re-read the partial record from its start next time.
                quoted = false;
            }
        }
    }
}

/// What a first pass over a dump finds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prescan {
    /// The data blocks in order (with partition parents and databases), then the tables the dump
    /// creates but has no rows for (an empty table in an INSERT dump), which bind like the others.
    pub tables: Vec<SourceTable>,
    /// How many of `tables` are data blocks.
    pub blocks: usize,
    /// How many of each secret kind, large-object and comment statement, and SQL comment the run
    /// will remove.
    pub notes: BTreeMap<String, u64>,
    /// The foreign keys the dump adds (with their database in a pg_dumpall file).
    pub foreign_keys: Vec<(Option<String>, crate::schema::ForeignKey)>,
    /// The primary keys the dump adds: (database, table, columns).
    pub primary_keys: Vec<(Option<String>, QualifiedName, Vec<String>)>,
    /// Tables whose foreign keys the dump declares in a form this reader does not follow (inside
    /// CREATE TABLE, or among several ALTER TABLE subcommands): (database, table).
    pub unread_references: Vec<(Option<String>, QualifiedName)>,
}

impl Note {
    pub fn describe(self) -> &'static str {
        match self {
            Note::SecretRemoved(s) => s.describe(),
            Note::LargeObjectDropped => "large-object statement",
            Note::CommentDropped => "COMMENT ON or SECURITY LABEL",
            Note::SqlCommentDropped => "SQL comment not written by pg_dump",
            Note::ForeignDropped => "foreign server, user mapping or foreign table statement",
        }
    }
}

/// A first pass over the dump: its data blocks (tables, columns, rows) and partitions, and every
/// statement it may not let through, before anything is written.
pub fn prescan<R: Read>(input: R, policy: DumpPolicy) -> Result<Prescan, DumpError> {
    let mut reader = DumpReader::new(input, u64::MAX, usize::MAX)
        .counting_only()
        .with_policy(policy);
    reader = reader.keep_going();
    let mut out = Prescan::default();
    while let Some(ev) = reader.next_event()? {
        match ev {
            Event::DataStart {
                table,
                database,
                columns,
                ..
            } => out.tables.push(SourceTable {
                declared_types: reader.declared_types(&database, &table, &columns),
                name: table,
                columns,
                partition_of: None,
                meta: None,
                rows: Some(0),
                database,
                foreign: false,
            }),
            Event::Rows { rows, .. } => {
                if let Some(SourceTable { rows: Some(n), .. }) = out.tables.last_mut() {
                    *n += rows;
                }
            }
            Event::Note(n) => *out.notes.entry(n.describe().to_string()).or_default() += 1,
            Event::Sql(_) | Event::DataEnd { .. } | Event::Object { .. } => {}
        }
    }
    if !reader.refusals.is_empty() {
        return Err(DumpError::Refused(Diagnostics(reader.refusals)));
    }
    for t in &mut out.tables {
        t.partition_of = reader
            .partitions
            .iter()
            .find(|(db, child, _)| *db == t.database && *child == t.name)
            .map(|(_, _, parent)| parent.clone());
    }
    out.blocks = out.tables.len();
    out.primary_keys = std::mem::take(&mut reader.primary_keys);
    out.unread_references = std::mem::take(&mut reader.unread_references);
    // `REFERENCES t` without columns names t's primary key.
    let primary = &out.primary_keys;
    out.foreign_keys = std::mem::take(&mut reader.foreign_keys)
        .into_iter()
        .filter_map(|(db, mut fk)| {
            if fk.to_columns.is_empty() {
                let (_, _, cols) = primary.iter().find(|(d, t, _)| *d == db && *t == fk.to)?;
                if cols.len() != fk.from_columns.len() {
                    return None;
                }
                fk.to_columns = cols.clone();
            }
            Some((db, fk))
        })
        .collect();
    // Tables created without rows (partitioned parents hold none of their own).
    let mut defined: Vec<&(Option<String>, QualifiedName)> = reader.defs.keys().collect();
    defined.sort();
    for key in defined {
        let (db, name) = key;
        let has_rows = out.tables[..out.blocks]
            .iter()
            .any(|t| t.database == *db && t.name == *name);
        let is_parent = reader
            .partitions
            .iter()
            .any(|(d, _, parent)| d == db && parent == name);
        let Some(columns) = reader.columns_of(db, name) else {
            continue;
        };
        if has_rows || is_parent {
            continue;
        }
        let partition_of = reader
            .partitions
            .iter()
            .find(|(d, child, _)| d == db && child == name)
            .map(|(_, _, parent)| parent.clone());
        out.tables.push(SourceTable {
            name: name.clone(),
            columns: columns.into_iter().filter(|c| !c.1).map(|c| c.0).collect(),
            partition_of,
            meta: None,
            rows: Some(0),
            database: db.clone(),
            foreign: false,
            declared_types: Vec::new(),
        });
    }
    Ok(out)
}

impl<R: Read> DumpReader<R> {
    fn keep_going(mut self) -> Self {
        self.keep_going = true;
        self
    }
}
