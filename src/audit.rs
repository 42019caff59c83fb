//! The leak audit: staging compared with its source, for every transformed column.
//!
//! Two passes, each a stream of COPY text rows, so that memory stays bounded whatever the size of
//! the databases:
//! 1. the source: for each transformed column, a sample of its original values (all of them up to
//!    `max_values` distinct ones; beyond that the ones with the smallest keyed hash, the same every
//!    night) and, for rules that must change every value, the keyed hash of each sampled row's
//!    value by its primary key;
//! 2. staging: every table, every row — the original values searched for at once with
//!    Aho-Corasick in the raw COPY line (any table, any column, inside JSON and arrays), the
//!    sampled rows compared with their originals, kept text columns run through the `scan`
//!    detectors.
//!
//! Findings name tables, columns, counts and kinds, never a value.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use aho_corasick::AhoCorasick;

use crate::command::scan::Detectors;
use crate::rules::{BoundTable, CellOp, QualifiedName, TableAction};
use crate::transform::seed::SipKey;
use crate::transform::Transform;

/// How much the audit keeps in memory and what it searches for.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Distinct original values (and compared rows) kept per column.
    pub max_values: usize,
    /// Original values shorter than this (in characters) are not searched for: they turn up by
    /// coincidence.
    pub min_length: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_values: 20_000,
            min_length: 6,
        }
    }
}

/// A pattern's columns (whose originals it is) and whether it is a short number.
/// A pattern's columns (whose originals it is) and, for a short number, its shape.
type Owners = (Vec<usize>, Option<Shape>);

/// The shapes of short numbers, as bits: which a column's rule writes, which a value has.
type Shape = u8;
const SSN: Shape = 1;
const PHONE: Shape = 2;
const CARD: Shape = 4;
const ANY_NUMBER: Shape = 0xff;

/// Characters of a long original value that are searched for.
const MAX_NEEDLE_CHARS: usize = 64;

/// Kept text values examined by the detectors, per column (about; at most twice as many).
const KEPT_SAMPLE: usize = 5_000;

/// Fake kinds drawn from a dictionary: such a value occurring elsewhere in staging proves nothing
/// (a real customer and a fake one can both be called Williams), so these are compared row by row.
const DICTIONARY_KINDS: &[&str] = &[
    "first_name",
    "last_name",
    "name",
    "username",
    "city",
    "state",
    "country",
    "company",
    "job_title",
    "word",
    "sentence",
    "paragraph",
    "zip",
];

/// What the audit does with one source column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treat {
    /// `keep`: its text values are run through the detectors in staging.
    Kept,
    /// A rule that replaces the whole value: compared row by row, and (unless drawn from a
    /// dictionary) its values searched for everywhere.
    Whole { search: bool },
    /// A rule that replaces parts (scrub, json, regex): the personal data the detectors find in
    /// the originals is searched for.
    Parts,
    /// Dates and numbers moved, rounded or nulled: nothing to search for, no row to compare
    /// (a truncated date may already have been truncated).
    Moved,
    /// `shift`: compared row by row (a shift never gives the same date back).
    Shifted,
}

fn writes(op: &CellOp, treat: Treat) -> Shape {
    fn scrub_of(t: &Transform) -> Option<&crate::transform::scrub::Scrub> {
        match t {
            Transform::Scrub(s) => Some(s),
            Transform::Fit(inner, _) => scrub_of(inner),
            _ => None,
        }
    }
    use crate::transform::scrub::Detector;
    let scrub = match op {
        CellOp::Apply(t) | CellOp::ApplyBy(t, _) | CellOp::ApplyWith(t, _) => scrub_of(t),
        // Any alternative's shapes (a short number can be a coincidence in each).
        CellOp::When(w) => return w.alternatives().fold(0, |acc, op| acc | writes(op, treat)),
        _ => None,
    };
    match (treat, scrub) {
        (Treat::Kept, _) => 0,
        (_, Some(s)) => s.numeric_detectors().iter().fold(0, |acc, d| {
            acc | match d {
                Detector::Ssn => SSN,
                Detector::Phone => PHONE,
                Detector::CreditCard => CARD,
                _ => 0,
            }
        }),
        _ => ANY_NUMBER,
    }
}

fn treat(op: &CellOp, rule: &str) -> Treat {
    fn of(t: &Transform, rule: &str) -> Treat {
        match t {
            Transform::Keep => Treat::Kept,
            Transform::Fit(inner, _) | Transform::Guarded(inner, _) => of(inner, rule),
            Transform::External(_) => Treat::Whole { search: true },
            Transform::Fake(_) => Treat::Whole {
                search: !DICTIONARY_KINDS
                    .iter()
                    .any(|k| rule.starts_with(&format!("fake = \"{k}\""))),
            },
            Transform::Hash(_) | Transform::Mask(_) | Transform::Set(_) => {
                Treat::Whole { search: true }
            }
            Transform::Scrub(_) | Transform::Json(_) | Transform::Regex(_) => Treat::Parts,
            Transform::Shift(_) => Treat::Shifted,
            Transform::Null | Transform::Truncate(_) | Transform::Noise(_) => Treat::Moved,
        }
    }
    match op {
        CellOp::Pass => Treat::Kept,
        CellOp::Apply(t) | CellOp::ApplyBy(t, _) | CellOp::ApplyWith(t, _) => of(t, rule),
        CellOp::Template(_) => Treat::Whole { search: true },
        // A conditional rule that keeps some rows puts originals in staging on purpose: its
        // column is not searched (the report says so). Otherwise the most thorough treatment
        // any alternative needs: one branch may leak what the default would hide.
        CellOp::When(w) if keeps_some(w) => Treat::Moved,
        CellOp::When(w) => {
            let rank = |t: &Treat| match t {
                Treat::Parts => 5,
                Treat::Whole { search: true } => 4,
                Treat::Whole { search: false } => 3,
                Treat::Shifted => 2,
                Treat::Kept => 1,
                Treat::Moved => 0,
            };
            w.branches
                .iter()
                .map(|b| treat(&b.op, &b.rule))
                .chain([treat(&w.default, rule)])
                .max_by_key(rank)
                .unwrap_or(Treat::Moved)
        }
    }
}

/// Whether a conditional rule keeps some rows as they are.
fn keeps_some(w: &crate::rules::WhenOp) -> bool {
    w.branches.iter().any(|b| matches!(b.op, CellOp::Pass))
}

/// One finding or result line, as reported.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ColumnResult {
    pub table: String,
    pub column: String,
    pub rule: String,
    /// Rows compared with their original by primary key (none when the rule may leave a value
    /// as it was, or the table has no key).
    pub rows_compared: u64,
    /// Of those, cells equal to their original.
    pub unchanged: u64,
    /// Original values searched for in all of staging.
    pub values_searched: u64,
    /// More distinct values or rows than `--max-values`: a keyed sample was used.
    pub sampled: bool,
    /// Where original values of this column were found: staging table, column, cells.
    pub found: Vec<Found>,
    /// Short numbers of this column (a social security or phone number: at most 12 digits) found
    /// in columns whose whole value a rule makes up (`fake`, `hash`, `mask`, …): a pseudonym in that shape equals some real value by chance
    /// (1 in 10^9 for an SSN, per pair), so these are counted, not findings.
    pub coincidental: u64,
    /// Why some check did not run on this column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Found {
    pub table: String,
    pub column: String,
    pub cells: u64,
}

/// A kept staging column whose values look like personal data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeptFinding {
    pub table: String,
    pub column: String,
    /// Detector kind → values seen (of the sampled ones).
    pub kinds: BTreeMap<String, u64>,
    pub values_examined: u64,
}

/// A staging object the rules do not mention.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unmentioned {
    /// `table`, `column` or `materialized view`.
    pub kind: &'static str,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub source: String,
    pub target: String,
    pub columns: Vec<ColumnResult>,
    pub kept: Vec<KeptFinding>,
    pub unmentioned: Vec<Unmentioned>,
    pub settings: SettingsDoc,
    pub findings: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SettingsDoc {
    pub max_values: usize,
    pub min_length: usize,
}

impl Outcome {
    pub fn clean(&self) -> bool {
        self.findings == 0
    }
}

/// Keeps the `cap` entries with the smallest keys (keyed hashes), deduplicated by key.
struct BottomK<V> {
    cap: usize,
    map: BTreeMap<u64, V>,
    evicted: bool,
}

impl<V> BottomK<V> {
    fn new(cap: usize) -> Self {
        BottomK {
            cap: cap.max(1),
            map: BTreeMap::new(),
            evicted: false,
        }
    }

    fn wants(&self, h: u64) -> bool {
        self.map.len() < self.cap || self.map.last_key_value().is_some_and(|(k, _)| h < *k)
    }

    fn insert(&mut self, h: u64, v: V) {
        if self.map.contains_key(&h) {
            return;
        }
        self.map.insert(h, v);
        if self.map.len() > self.cap {
            self.map.pop_last();
            self.evicted = true;
        }
    }
}

struct Column {
    table: usize,
    index: usize,
    name: String,
    treat: Treat,
    /// The short-number shapes its rule writes (a pseudonym there can equal a real number by
    /// chance): all for a rule that makes up the whole value, a `json` or a `regex`; a `scrub`'s
    /// own number detectors; none for a kept column.
    writes: Shape,
    needles: BottomK<String>,
    /// Index among its table's compared columns.
    compared: Option<usize>,
    result: ColumnResult,
}

struct Table {
    name: QualifiedName,
    columns: Vec<String>,
    /// The columns the first pass reads, when not all (a database: no number or date that is
    /// kept, nulled or moved).
    read: Option<Vec<usize>>,
    key: Option<Vec<usize>>,
    /// Columns (indexes into `Audit::columns`) of this table.
    audited: Vec<usize>,
    /// Row index → value hashes of the compared columns (0 for NULL), sampled by key hash.
    rows: BottomK<Vec<u64>>,
    compared: usize,
    kept: Vec<usize>,
}

/// The audit's state between its two passes.
pub struct Audit {
    key: SipKey,
    settings: Settings,
    tables: Vec<Table>,
    by_name: HashMap<QualifiedName, usize>,
    columns: Vec<Column>,
    /// Hashes of kept text values (a searched-for value also kept elsewhere is no finding:
    /// pagila's address.district often equals a kept city name).
    kept_values: BottomK<()>,
    detectors: Detectors,
}

/// A cell's keyed hash for the row-by-row comparison: 0 for NULL and for values with no letter
/// or digit (an empty address line masked is still empty: no finding).
fn cell_hash(key: &SipKey, v: Option<&str>) -> u64 {
    match v {
        Some(v) if v.chars().any(char::is_alphanumeric) => key.hash(v.as_bytes()) | 1,
        _ => 0,
    }
}

impl Audit {
    /// Plan the audit of the tables of a bound rules file; `keys` gives each table's key columns.
    pub fn new(
        key: SipKey,
        settings: Settings,
        bound: &[BoundTable],
        keys: &dyn Fn(&QualifiedName) -> Option<Vec<String>>,
    ) -> Audit {
        let mut a = Audit {
            key,
            settings,
            tables: Vec::new(),
            by_name: HashMap::new(),
            columns: Vec::new(),
            kept_values: BottomK::new(settings.max_values.saturating_mul(8)),
            detectors: Detectors::new(),
        };
        for t in bound {
            let TableAction::Copy { ops } = &t.action else {
                continue;
            };
            let ti = a.tables.len();
            let key = keys(&t.name).and_then(|k| {
                k.iter()
                    .map(|c| t.columns.iter().position(|x| x == c))
                    .collect::<Option<Vec<usize>>>()
            });
            let mut table = Table {
                name: t.name.clone(),
                columns: t.columns.clone(),
                read: None,
                key,
                audited: Vec::new(),
                rows: BottomK::new(settings.max_values),
                compared: 0,
                kept: Vec::new(),
            };
            for (i, op) in ops.iter().enumerate() {
                let rule = t.rules.get(i).cloned().unwrap_or_default();
                let treat = treat(op, &rule);
                if treat == Treat::Kept {
                    table.kept.push(i);
                    continue;
                }
                let compares = matches!(treat, Treat::Whole { .. } | Treat::Shifted);
                let note = match treat {
                    Treat::Moved if matches!(op, CellOp::When(w) if keeps_some(w)) => Some(
                        "a conditional rule keeps some rows as they are: neither searched for nor compared"
                            .to_string(),
                    ),
                    Treat::Moved => Some(
                        "moved, rounded or nulled: neither searched for nor compared".to_string(),
                    ),
                    Treat::Parts => Some(
                        "replaces parts: the personal data found in its originals is searched for; rows are not compared"
                            .to_string(),
                    ),
                    _ if table.key.is_none() => {
                        Some("no primary key: rows are not compared".to_string())
                    }
                    _ => None,
                };
                let compared = (compares && table.key.is_some()).then(|| {
                    table.compared += 1;
                    table.compared - 1
                });
                table.audited.push(a.columns.len());
                a.columns.push(Column {
                    table: ti,
                    index: i,
                    name: t.columns[i].clone(),
                    writes: writes(op, treat),
                    treat,
                    needles: BottomK::new(settings.max_values),
                    compared,
                    result: ColumnResult {
                        table: t.name.to_string(),
                        column: t.columns[i].clone(),
                        rule,
                        rows_compared: 0,
                        unchanged: 0,
                        values_searched: 0,
                        sampled: false,
                        found: Vec::new(),
                        coincidental: 0,
                        note,
                    },
                });
            }
            a.by_name.insert(t.name.clone(), ti);
            a.tables.push(table);
        }
        a
    }

    /// Read only the columns the audit looks at: keys, columns searched or compared, kept ones
    /// that can hold text (`text(table, column)`). For a database, where a COPY names its columns.
    pub fn read_only_needed(&mut self, text: &dyn Fn(&QualifiedName, &str) -> bool) {
        for t in &mut self.tables {
            let mut read: BTreeSet<usize> = t.key.iter().flatten().copied().collect();
            read.extend(
                t.audited
                    .iter()
                    .map(|&ci| &self.columns[ci])
                    .filter(|c| c.treat != Treat::Moved)
                    .map(|c| c.index),
            );
            read.extend(
                t.kept
                    .iter()
                    .copied()
                    .filter(|&i| text(&t.name, &t.columns[i])),
            );
            t.read = Some(read.into_iter().collect());
        }
    }

    /// The source tables the first pass reads (name and columns, in COPY order).
    pub fn source_tables(&self) -> Vec<(QualifiedName, Vec<String>)> {
        self.tables
            .iter()
            .filter(|t| !t.audited.is_empty() || !t.kept.is_empty())
            .map(|t| {
                let columns = match &t.read {
                    Some(read) => read.iter().map(|&i| t.columns[i].clone()).collect(),
                    None => t.columns.clone(),
                };
                (t.name.clone(), columns)
            })
            .collect()
    }

    /// The columns of a staging table the second pass reads (all from a dump): those that can hold
    /// text (`text`), and the key and compared columns of its source table.
    pub fn staging_read(
        &self,
        table: &QualifiedName,
        columns: &[String],
        text: &[bool],
    ) -> Vec<usize> {
        let needed: BTreeSet<&str> = match self.by_name.get(table) {
            Some(&ti) => {
                let t = &self.tables[ti];
                t.key
                    .iter()
                    .flatten()
                    .map(|&i| t.columns[i].as_str())
                    .chain(
                        t.audited
                            .iter()
                            .map(|&ci| &self.columns[ci])
                            .filter(|c| c.compared.is_some())
                            .map(|c| c.name.as_str()),
                    )
                    .collect()
            }
            None => BTreeSet::new(),
        };
        (0..columns.len())
            .filter(|&i| {
                text.get(i).copied().unwrap_or(true) || needed.contains(columns[i].as_str())
            })
            .collect()
    }

    /// One source row (COPY text, without its newline) of `table`.
    pub fn source_row(&mut self, table: &QualifiedName, line: &str) {
        let Some(&ti) = self.by_name.get(table) else {
            return;
        };
        let t = &self.tables[ti];
        let fields = match &t.read {
            None => decode_fields(line),
            // Each field read put at its column's place, the others left NULL.
            Some(read) => {
                let mut raw = Vec::new();
                crate::copy::split(line, &mut raw);
                let mut full = vec![None; t.columns.len()];
                for (&i, f) in read.iter().zip(&raw) {
                    full[i] = decode_field(f);
                }
                full
            }
        };
        let min = self.settings.min_length;
        for &i in &t.kept {
            if let Some(Some(v)) = fields.get(i) {
                // Words only: kept dates, times and numbers are no reason not to search.
                if v.chars().count() >= min && !numeric_like(v) {
                    let h = self.key.hash(v.as_bytes());
                    if self.kept_values.wants(h) {
                        self.kept_values.insert(h, ());
                    }
                }
            }
        }
        let mut compared = vec![0u64; t.compared];
        for &ci in &t.audited {
            let c = &mut self.columns[ci];
            let v = fields.get(c.index).and_then(|f| f.as_deref());
            if let Some(k) = c.compared {
                compared[k] = cell_hash(&self.key, v);
            }
            let Some(v) = v else { continue };
            match c.treat {
                // An IP address drawn by a fake matches real ones' digits by chance
                // (10.1.2.3 inside 10.1.2.34): addresses are compared row by row only.
                Treat::Whole { search: true } if ip_like(v) => {}
                Treat::Whole { search: true } if v.chars().count() >= min => {
                    let h = self.key.hash(v.as_bytes());
                    if c.needles.wants(h) {
                        c.needles.insert(h, v.to_string());
                    }
                }
                Treat::Whole { search: true } | Treat::Parts => {
                    for (_, span) in self.detectors.spans(v) {
                        if span.chars().count() >= min {
                            let h = self.key.hash(span.as_bytes());
                            if c.needles.wants(h) {
                                c.needles.insert(h, span.to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(key) = &t.key {
            if t.compared > 0 {
                let kh = row_key(&self.key, &fields, key);
                let t = &mut self.tables[ti];
                if t.rows.wants(kh) {
                    t.rows.insert(kh, compared);
                }
            }
        }
    }

    /// End of the first pass: the searcher for the second.
    pub fn searcher(&mut self) -> Result<Searcher, String> {
        let mut patterns: HashMap<Vec<u8>, Owners> = HashMap::new();
        for (ci, c) in self.columns.iter_mut().enumerate() {
            c.result.sampled =
                c.needles.evicted || (c.compared.is_some() && self.tables[c.table].rows.evicted);
            let needles = std::mem::take(&mut c.needles.map);
            let mut searched = 0;
            for (h, v) in needles {
                if self.kept_values.map.contains_key(&h) {
                    continue;
                }
                searched += 1;
                // A long value is searched for by its first characters: memory grows with
                // the bytes searched for, and 64 characters of an original are evidence enough.
                let v = match v.char_indices().nth(MAX_NEEDLE_CHARS) {
                    Some((cut, _)) => v[..cut].to_string(),
                    None => v,
                };
                let mut forms = vec![copy_escaped(&v)];
                let json = serde_json::to_string(&v).unwrap_or_default();
                let json = copy_escaped(&json[1..json.len().saturating_sub(1).max(1)]);
                if json != forms[0] {
                    forms.push(json);
                }
                let short = short_number(&v).then(|| match self.detectors.whole(&v) {
                    Some("ssn") => SSN,
                    Some("phone") => PHONE,
                    Some("card") => CARD,
                    _ => ANY_NUMBER,
                });
                for f in forms {
                    let (owners, low) = patterns.entry(f).or_insert((Vec::new(), short));
                    if owners.last() != Some(&ci) {
                        owners.push(ci);
                    }
                    if *low != short {
                        *low = None;
                    }
                }
            }
            c.result.values_searched = searched;
        }
        let (bytes, owners): (Vec<Vec<u8>>, Vec<Owners>) = patterns.into_iter().unzip();
        let ac = if bytes.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .ascii_case_insensitive(true)
                    .build(&bytes)
                    .map_err(|e| format!("building the search for original values: {e}"))?,
            )
        };
        Ok(Searcher {
            ac,
            owners,
            found: BTreeMap::new(),
            coincidental: vec![0; self.columns.len()],
            unchanged: vec![(0, 0); self.columns.len()],
            kept: BTreeMap::new(),
        })
    }

    /// The staging columns that are kept in the rules, for the detectors.
    fn kept_in(&self, table: &QualifiedName, columns: &[String]) -> Vec<(usize, String)> {
        let Some(&ti) = self.by_name.get(table) else {
            return Vec::new();
        };
        let t = &self.tables[ti];
        t.kept
            .iter()
            .filter_map(|&i| {
                let name = &t.columns[i];
                columns
                    .iter()
                    .position(|c| c == name)
                    .map(|p| (p, name.clone()))
            })
            .collect()
    }

    /// How to read one staging table in the second pass.
    pub fn staging_table(
        &self,
        table: &QualifiedName,
        columns: &[String],
        searched: Vec<bool>,
        rows: Option<u64>,
    ) -> StagingTable {
        let compare = self.by_name.get(table).and_then(|&ti| {
            let t = &self.tables[ti];
            let key = t.key.as_ref()?;
            let key: Option<Vec<usize>> = key
                .iter()
                .map(|&i| columns.iter().position(|c| *c == t.columns[i]))
                .collect();
            let cols: Vec<(usize, usize, usize)> = t
                .audited
                .iter()
                .filter_map(|&ci| {
                    let c = &self.columns[ci];
                    let pos = columns.iter().position(|x| *x == c.name)?;
                    Some((pos, c.compared?, ci))
                })
                .collect();
            (!cols.is_empty()).then_some((ti, key?, cols))
        });
        // What a rule writes into each column: a short number of a shape it writes may be one of
        // its pseudonyms equal to a real number by chance; of another shape (an SSN in a column
        // that scrubs only phone numbers) it is the original text passing through.
        let written = match self.by_name.get(table) {
            Some(&ti) => columns
                .iter()
                .map(|c| {
                    self.tables[ti]
                        .audited
                        .iter()
                        .map(|&ci| &self.columns[ci])
                        .find(|col| col.name == *c)
                        .map_or(0, |col| col.writes)
                })
                .collect(),
            None => vec![0; columns.len()],
        };
        StagingTable {
            name: table.clone(),
            columns: columns.to_vec(),
            written,
            searched,
            compare,
            kept: self.kept_in(table, columns),
            kept_seen: Vec::new(),
            // Spread over the whole table: values whose keyed hash falls under this.
            kept_below: match rows {
                Some(n) if n > KEPT_SAMPLE as u64 => {
                    (u64::MAX / n).saturating_mul(KEPT_SAMPLE as u64)
                }
                _ => u64::MAX,
            },
        }
    }
}

/// Only digits, separators and time-zone letters: a date, time or number.
fn numeric_like(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_digit() || b" -+:./,()T".contains(&b))
}

/// Whether a match stands on its own: no letter or digit continues it on either side (a zip
/// code inside a card number, a short original inside a longer word are not that value).
fn whole_word(text: &[u8], start: usize, end: usize) -> bool {
    let alnum = |i: Option<&u8>| i.is_some_and(|b| b.is_ascii_alphanumeric());
    let first = text.get(start);
    let last = end.checked_sub(1).and_then(|i| text.get(i));
    // COPY writes a tab or newline inside a value as `\t`, `\n`: the letter is no continuation.
    let escaped_before = start >= 2 && text[start - 2] == b'\\';
    let continues_before =
        alnum(first) && start > 0 && alnum(text.get(start - 1)) && !escaped_before;
    let continues_after = alnum(last) && alnum(text.get(end));
    !continues_before && !continues_after
}

/// A number of at most 12 digits, with or without separators (an SSN, a phone number).
fn short_number(v: &str) -> bool {
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    digits <= 12 && numeric_like(v)
}

/// An IP address, with or without a prefix length.
fn ip_like(v: &str) -> bool {
    let addr = v.split_once('/').map_or(v, |(a, _)| a);
    addr.parse::<std::net::IpAddr>().is_ok()
}

/// The key columns' values of a row, hashed.
fn row_key(key: &SipKey, fields: &[Option<Cow<str>>], cols: &[usize]) -> u64 {
    let mut buf = Vec::new();
    for &i in cols {
        match fields.get(i).and_then(|f| f.as_deref()) {
            Some(v) => {
                buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            None => buf.extend_from_slice(&u64::MAX.to_le_bytes()),
        }
    }
    key.hash(&buf)
}

fn decode_fields(line: &str) -> Vec<Option<Cow<'_, str>>> {
    let mut raw = Vec::new();
    crate::copy::split(line, &mut raw);
    raw.into_iter().map(decode_field).collect()
}

/// A field that cannot be decoded is taken as NULL (never equal to an original): the audit reads
/// what COPY wrote.
fn decode_field(f: &str) -> Option<Cow<'_, str>> {
    crate::copy::decode(f).unwrap_or(None)
}

/// A value as COPY text writes it (backslash, tab, newline and carriage return escaped).
fn copy_escaped(v: &str) -> Vec<u8> {
    let mut out = Vec::new();
    crate::copy::encode(Some(v), &mut out);
    out
}

/// One staging table of the second pass.
pub struct StagingTable {
    name: QualifiedName,
    columns: Vec<String>,
    /// (source table, staging positions of its key, (staging position, compared index, column)).
    #[allow(clippy::type_complexity)]
    compare: Option<(usize, Vec<usize>, Vec<(usize, usize, usize)>)>,
    kept: Vec<(usize, String)>,
    kept_seen: Vec<u64>,
    /// Kept values are examined when their keyed hash is at most this (a sample of about
    /// `KEPT_SAMPLE` values spread over the table, not its first rows).
    kept_below: u64,
    /// Per staging column: whether a rule makes up its whole value (its values are a rule's
    /// outputs).
    written: Vec<Shape>,
    /// Per staging column: whether it is searched (its type can hold text; all, from a dump).
    searched: Vec<bool>,
}

/// The second pass's state.
pub struct Searcher {
    ac: Option<AhoCorasick>,
    /// Per pattern: the columns whose originals it is, and whether it is a short number.
    owners: Vec<Owners>,
    coincidental: Vec<u64>,
    /// (source column, staging table, staging column) → cells.
    found: BTreeMap<(usize, String, String), u64>,
    /// Per source column: (rows compared, unchanged).
    unchanged: Vec<(u64, u64)>,
    /// (staging table, column) → (kind → values, values examined).
    kept: BTreeMap<(String, String), (BTreeMap<String, u64>, u64)>,
}

impl Searcher {
    /// One staging row (COPY text, without its newline).
    pub fn row(&mut self, audit: &Audit, t: &mut StagingTable, line: &str) {
        if let Some(ac) = &self.ac {
            // Once per cell, source column and kind (a coincidence does not hide a finding).
            let mut seen: BTreeSet<(usize, usize, bool)> = BTreeSet::new();
            let mut start = 0;
            let ends = memchr::memchr_iter(b'\t', line.as_bytes()).chain([line.len()]);
            // Field by field, skipping those whose type holds no text (numbers, dates).
            let found = ends.enumerate().flat_map(|(field, end)| {
                let text = &line[start..end];
                start = end + 1;
                let searched = t.searched.get(field).copied().unwrap_or(true);
                searched
                    .then(|| {
                        ac.find_iter(text)
                            .filter(move |m| whole_word(text.as_bytes(), m.start(), m.end()))
                            .map(move |m| (field, m.pattern()))
                    })
                    .into_iter()
                    .flatten()
            });
            for (field, pattern) in found {
                let (owners, short) = &self.owners[pattern.as_usize()];
                let written = t.written.get(field).copied().unwrap_or(0);
                for &owner in owners {
                    if short.is_some_and(|shape| shape & written != 0) {
                        if seen.insert((owner, field, true)) {
                            self.coincidental[owner] += 1;
                        }
                        continue;
                    }
                    if seen.insert((owner, field, false)) {
                        let col = t.columns.get(field).cloned().unwrap_or_default();
                        *self
                            .found
                            .entry((owner, t.name.to_string(), col))
                            .or_default() += 1;
                    }
                }
            }
        }
        if t.compare.is_none() && t.kept.is_empty() {
            return;
        }
        let fields = decode_fields(line);
        if let Some((ti, key, cols)) = &t.compare {
            let kh = row_key(&audit.key, &fields, key);
            if let Some(orig) = audit.tables[*ti].rows.map.get(&kh) {
                for &(pos, k, ci) in cols {
                    let now = cell_hash(&audit.key, fields.get(pos).and_then(|f| f.as_deref()));
                    let u = &mut self.unchanged[ci];
                    u.0 += 1;
                    if orig[k] != 0 && orig[k] == now {
                        u.1 += 1;
                    }
                }
            }
        }
        if t.kept_seen.len() < t.kept.len() {
            t.kept_seen.resize(t.kept.len(), 0);
        }
        for (k, (pos, name)) in t.kept.iter().enumerate() {
            if t.kept_seen[k] >= 2 * KEPT_SAMPLE as u64 {
                continue;
            }
            let Some(Some(v)) = fields.get(*pos) else {
                continue;
            };
            if t.kept_below < u64::MAX && audit.key.hash(v.as_bytes()) > t.kept_below {
                continue;
            }
            t.kept_seen[k] += 1;
            let entry = self
                .kept
                .entry((t.name.to_string(), name.clone()))
                .or_default();
            entry.1 += 1;
            let kind = match audit.detectors.whole(v) {
                Some(k @ ("email" | "card" | "ssn" | "iban" | "phone")) => Some(k),
                _ => audit
                    .detectors
                    .spans(v)
                    .into_iter()
                    .map(|(k, _)| k)
                    .find(|k| matches!(*k, "email" | "card" | "ssn")),
            };
            if let Some(k) = kind {
                *entry.0.entry(k.to_string()).or_default() += 1;
            }
        }
    }

    /// The results, with what the catalogs say staging has beyond the rules.
    pub fn finish(
        self,
        audit: Audit,
        unmentioned: Vec<Unmentioned>,
        source: String,
        target: String,
        seconds: f64,
    ) -> Outcome {
        let mut columns: Vec<ColumnResult> = audit.columns.into_iter().map(|c| c.result).collect();
        for ((owner, table, column), cells) in self.found {
            columns[owner].found.push(Found {
                table,
                column,
                cells,
            });
        }
        for ((c, (compared, unchanged)), n) in columns
            .iter_mut()
            .zip(self.unchanged)
            .zip(self.coincidental)
        {
            c.rows_compared = compared;
            c.unchanged = unchanged;
            c.coincidental = n;
        }
        // Email addresses in a kept column are personal data however few; the other detectors
        // fire by chance on some values (a film title passing the IBAN checksum, an id passing
        // Luhn's), so they count from a tenth of the values examined.
        let kept: Vec<KeptFinding> = self
            .kept
            .into_iter()
            .filter_map(|((table, column), (mut kinds, n))| {
                kinds.retain(|kind, seen| kind == "email" || (*seen >= 3 && *seen * 10 >= n));
                (!kinds.is_empty()).then_some(KeptFinding {
                    table,
                    column,
                    kinds,
                    values_examined: n,
                })
            })
            .collect();
        let findings = columns
            .iter()
            .map(|c| c.unchanged + c.found.iter().map(|f| f.cells).sum::<u64>())
            .sum::<u64>()
            + kept.len() as u64
            + unmentioned.len() as u64;
        Outcome {
            source,
            target,
            columns,
            kept,
            unmentioned,
            settings: SettingsDoc {
                max_values: audit.settings.max_values,
                min_length: audit.settings.min_length,
            },
            findings,
            seconds,
        }
    }
}

/// Staging objects the rules do not mention: tables neither copied from the source nor kept by
/// `[target] keep_tables`, columns the source's tables do not have, materialized views the source
/// does not have.
pub fn unmentioned(
    source: &BTreeMap<QualifiedName, BTreeSet<String>>,
    staging: &BTreeMap<QualifiedName, BTreeSet<String>>,
    keep_tables: &[QualifiedName],
    source_matviews: &[QualifiedName],
    staging_matviews: &[QualifiedName],
) -> Vec<Unmentioned> {
    let mut out = Vec::new();
    for (t, cols) in staging {
        match source.get(t) {
            None if keep_tables.contains(t) => {}
            None => out.push(Unmentioned {
                kind: "table",
                name: t.to_string(),
            }),
            Some(src) => out.extend(cols.difference(src).map(|c| Unmentioned {
                kind: "column",
                name: format!("{t}.{}", crate::schema::quote_ident(c)),
            })),
        }
    }
    out.extend(
        staging_matviews
            .iter()
            .filter(|m| !source_matviews.contains(m))
            .map(|m| Unmentioned {
                kind: "materialized view",
                name: m.to_string(),
            }),
    );
    out
}

/// The audit as a table for people.
pub fn render_table(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "anonymize audit: staging {} against source {}\n",
        o.target, o.source
    );
    let width = o
        .columns
        .iter()
        .map(|c| c.table.len() + c.column.len() + 1)
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "  {:width$}  {:>9}  {:>9}  {:>9}  {:>7}  finding",
        "column", "compared", "unchanged", "searched", "found"
    );
    for c in &o.columns {
        let found: u64 = c.found.iter().map(|f| f.cells).sum();
        let what = if c.unchanged + found == 0 {
            "none".to_string()
        } else {
            let mut parts = Vec::new();
            if c.unchanged > 0 {
                parts.push(format!("{} cell(s) equal to their original", c.unchanged));
            }
            for f in &c.found {
                parts.push(format!(
                    "originals in {}.{} ({} cell(s))",
                    f.table,
                    crate::schema::quote_ident(&f.column),
                    f.cells
                ));
            }
            parts.join("; ")
        };
        let _ = writeln!(
            out,
            "  {:width$}  {:>9}  {:>9}  {:>9}  {:>7}  {what}{}{}",
            format!("{}.{}", c.table, c.column),
            c.rows_compared,
            c.unchanged,
            c.values_searched,
            found,
            if c.sampled { " (sampled)" } else { "" },
            match (c.coincidental, c.note.as_deref()) {
                (0, None) => String::new(),
                (0, Some(n)) => format!(" [{n}]"),
                (k, n) => format!(
                    " [{k} short number(s) also where a rule writes numbers of that shape, by chance{}]",
                    n.map(|n| format!("; {n}")).unwrap_or_default()
                ),
            }
        );
    }
    if o.kept.is_empty() {
        out.push_str("  kept columns that look like personal data: none\n");
    }
    for k in &o.kept {
        let kinds: Vec<String> = k.kinds.iter().map(|(k, n)| format!("{k} in {n}")).collect();
        let _ = writeln!(
            out,
            "  kept column {}.{} looks like personal data: {} of {} values examined",
            k.table,
            k.column,
            kinds.join(", "),
            k.values_examined
        );
    }
    if o.unmentioned.is_empty() {
        out.push_str("  staging objects the rules do not mention: none\n");
    }
    for u in &o.unmentioned {
        let _ = writeln!(out, "  {} {} is not in the rules", u.kind, u.name);
    }
    let _ = writeln!(
        out,
        "anonymize audit: {} transformed column(s), {} finding(s){} in {:.2}s",
        o.columns.len(),
        o.findings,
        if o.columns.iter().any(|c| c.sampled) {
            format!(
                "; columns marked (sampled) had more than {} distinct values or rows (a keyed sample was audited)",
                o.settings.max_values
            )
        } else {
            String::new()
        },
        o.seconds
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottom_k_keeps_the_smallest_keys_and_says_when_it_dropped_some() {
        let mut b = BottomK::new(3);
        for h in [9u64, 3, 7, 1, 3, 5] {
            if b.wants(h) {
                b.insert(h, h);
            }
        }
        assert_eq!(b.map.keys().copied().collect::<Vec<_>>(), [1, 3, 5]);
        assert!(b.evicted);
        let mut small = BottomK::new(10);
        small.insert(4, ());
        assert!(!small.evicted);
    }

    #[test]
    fn a_match_must_stand_on_its_own() {
        let t = b"call 4155550134 or x12345y, a\\tjohn@x.io";
        assert!(whole_word(t, 5, 15));
        // 12345 inside x12345y, 5555 inside the phone number.
        assert!(!whole_word(t, 20, 25));
        assert!(!whole_word(t, 8, 12));
        // After a COPY escape.
        assert!(whole_word(t, 31, 40));
    }

    #[test]
    fn values_are_searched_in_the_forms_copy_and_json_write_them() {
        assert_eq!(copy_escaped("a\tb\\c"), b"a\\tb\\\\c");
        let unmentioned = unmentioned(
            &BTreeMap::from([(
                QualifiedName::new("public", "a"),
                BTreeSet::from(["x".to_string()]),
            )]),
            &BTreeMap::from([
                (
                    QualifiedName::new("public", "a"),
                    BTreeSet::from(["x".to_string(), "y".to_string()]),
                ),
                (QualifiedName::new("public", "b"), BTreeSet::new()),
                (QualifiedName::new("public", "k"), BTreeSet::new()),
            ]),
            &[QualifiedName::new("public", "k")],
            &[],
            &[QualifiedName::new("public", "mv")],
        );
        let names: Vec<String> = unmentioned
            .iter()
            .map(|u| format!("{} {}", u.kind, u.name))
            .collect();
        assert_eq!(
            names,
            [
                "column public.a.y",
                "table public.b",
                "materialized view public.mv"
            ]
        );
    }
}
