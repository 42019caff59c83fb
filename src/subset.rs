//! Subsetting: which rows of which tables a run keeps so that every foreign key still holds.
//!
//! The tables form a graph whose edges are foreign keys (declared in the source, or listed in the
//! rules as `[[references]]`). Three kinds of tables take part:
//!
//! - *sampled* tables (`subset = { percent = P }`): a row is kept when the keyed hash of its key
//!   falls under P % (or it is one of the `always` rows);
//! - *following* tables: every table that reaches a sampled table through foreign keys (unless it
//!   says `follow = false`): a row is kept only when every row it references in a sampled or
//!   following table is kept (a NULL reference keeps it). With a cycle, the largest set that holds
//!   this is kept;
//! - *referenced-only* tables (`subset = { only_referenced = true }`): only rows that kept rows
//!   reference.
//!
//! The kept rows so far are the *core*. Then the closure runs upward: every row a kept row
//! references (in a sampled, following or referenced-only table) is kept too, transitively; rows
//! added that way do not pull in the rows that reference them. Every other table is copied whole
//! (it holds every row any kept row could reference already).
//!
//! The computation reads narrow projections of the tables (keys and referencing columns) through a
//! [`Scanner`] — a database under the run's snapshot, or rows collected from a dump — and keeps in
//! memory the keys of kept rows (plus, inside a cycle, the candidates of that cycle). The result is a
//! [`RowFilter`] per table that the pipeline applies to each row before transforming it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::schema::QualifiedName;
use crate::transform::seed::Prf;

/// The encoded values of a key (see [`encode_key`]).
pub type Key = Box<[u8]>;
pub type KeySet = HashSet<Key>;

/// The values of some columns of one row as one key: `None` when any is NULL (such a reference
/// holds whatever it points at). One value is its bytes; several are each length-prefixed.
pub fn encode_key<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Option<Key> {
    let mut it = values.into_iter().peekable();
    let first = it.next()?;
    if it.peek().is_none() {
        return first.map(|v| v.as_bytes().into());
    }
    let mut out = Vec::new();
    for v in std::iter::once(first).chain(it) {
        let v = v?;
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    Some(out.into_boxed_slice())
}

/// A table of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: QualifiedName,
    /// The primary key, or a unique key whose columns are all NOT NULL.
    pub key: Option<Vec<String>>,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub enum Role {
    /// No subset of its own: follows the sampled tables it reaches (if `follow`), else copied whole.
    Plain {
        follow: bool,
    },
    Sampled(Sample),
    /// Only the rows that kept rows reference.
    OnlyReferenced,
}

#[derive(Clone)]
pub struct Sample {
    pub percent: f64,
    /// Keys of rows always kept (`always_keys`), encoded.
    pub always_keys: HashSet<Key>,
    /// Whether the scanner reports an `always` condition for each row.
    pub always_condition: bool,
    /// The keyed hash of this table's sample (its own domain).
    pub prf: Prf,
}

impl std::fmt::Debug for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("percent", &self.percent)
            .field("always_keys", &self.always_keys.len())
            .field("always_condition", &self.always_condition)
            .finish()
    }
}

impl Sample {
    /// Whether a row with this key is in the sample: the first 8 bytes of its keyed hash, read as a
    /// fraction of 2^64, fall under `percent`.
    pub fn chooses(&self, key: &[u8]) -> bool {
        if self.percent >= 100.0 {
            return true;
        }
        let d = self.prf.digest(key);
        let x = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        (x as f64) < self.percent / 100.0 * 18_446_744_073_709_551_616.0
    }
}

/// A reference from some columns of one table to some columns of another.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub from_columns: Vec<String>,
    pub to: usize,
    pub to_columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Reads the rows of a table for the computation.
#[allow(async_fn_in_trait)]
pub trait Scanner {
    /// Every row of `node` (after its `where`): the values of `columns`, decoded, and whether the
    /// row meets the table's `always` condition (false when it has none).
    async fn scan(
        &mut self,
        node: usize,
        columns: &[String],
        each: &mut (dyn FnMut(&[Option<&str>], bool) + Send),
    ) -> Result<(), ScanError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("{0}")]
    Other(String),
}

/// Why a table's rows were kept, for the dry run and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows read by the computation's first scan (0 for a table scanned only for the closure).
    pub read: u64,
    /// Chosen by the sample.
    pub sample: u64,
    /// Kept by `always` or `always_keys`.
    pub always: u64,
    /// Kept because every row they reference is kept (following tables).
    pub follow: u64,
    /// Added because a kept row references them.
    pub closure: u64,
    /// References of kept rows to rows the source does not have (or `where` removed).
    pub missing: u64,
    /// `always_keys` entries that match no row of the source (or none `where` lets through).
    pub always_unmatched: u64,
}

impl Counts {
    pub fn kept(&self) -> u64 {
        self.sample + self.always + self.follow + self.closure
    }
}

/// What a table's rows must satisfy to be copied.
#[derive(Debug)]
pub enum Filter {
    /// The row's key is among the kept keys.
    Keys {
        columns: Vec<String>,
        set: Arc<KeySet>,
    },
    /// Each reference of the row is NULL or to a kept row (a following table without a key that
    /// nothing references).
    Refs {
        checks: Vec<(Vec<String>, Arc<KeySet>)>,
    },
}

/// A table's filter with its columns resolved for one bound table (a partition has its own column
/// order), and a count of the rows it dropped.
#[derive(Debug)]
pub struct RowFilter {
    pub filter: Arc<Filter>,
    /// Column positions of each check (for `Keys`, one entry).
    positions: Vec<Vec<usize>>,
    pub dropped: AtomicU64,
    /// Why the table's rows were kept ("62 sample, 3 always, …"), for the run's report.
    pub why: Option<String>,
}

impl RowFilter {
    /// The filter for a table whose columns are `columns`; `None` if one it needs is missing.
    pub fn for_columns(filter: Arc<Filter>, columns: &[String]) -> Option<Self> {
        let pos = |cols: &[String]| -> Option<Vec<usize>> {
            cols.iter()
                .map(|c| columns.iter().position(|x| x == c))
                .collect()
        };
        let positions = match &*filter {
            Filter::Keys { columns, .. } => vec![pos(columns)?],
            Filter::Refs { checks } => checks
                .iter()
                .map(|(c, _)| pos(c))
                .collect::<Option<Vec<_>>>()?,
        };
        Some(RowFilter {
            filter,
            positions,
            dropped: AtomicU64::new(0),
            why: None,
        })
    }

    /// Whether the row whose column `c` decodes as `value(c)` is kept.
    pub fn keeps<'a, E>(
        &self,
        mut value: impl FnMut(usize) -> Result<Option<std::borrow::Cow<'a, str>>, E>,
    ) -> Result<bool, E> {
        let mut key = |cols: &[usize]| -> Result<Option<Key>, E> {
            let mut vals = Vec::with_capacity(cols.len());
            for &c in cols {
                vals.push(value(c)?);
            }
            Ok(encode_key(vals.iter().map(|v| v.as_deref())))
        };
        let kept = match &*self.filter {
            Filter::Keys { set, .. } => match key(&self.positions[0])? {
                Some(k) => set.contains(&k),
                None => false,
            },
            Filter::Refs { checks } => {
                let mut ok = true;
                for ((_, set), cols) in checks.iter().zip(&self.positions) {
                    if let Some(k) = key(cols)? {
                        if !set.contains(&k) {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            }
        };
        if !kept {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(kept)
    }
}

/// At most this many keys are sent to the source server in one statement.
pub const PUSHDOWN_MAX_KEYS: usize = 1_000_000;

/// Types whose text form (as COPY writes it) reads back as a value equal to the one written, and
/// whose arrays the server builds from an untyped literal (no domain, no typmod-dependent parse).
fn pushdown_type(type_name: &str) -> bool {
    let base = type_name.split('(').next().unwrap_or("").trim();
    matches!(
        base,
        "smallint"
            | "integer"
            | "bigint"
            | "numeric"
            | "text"
            | "character varying"
            | "character"
            | "uuid"
            | "date"
    )
}

/// A condition for a live source's `COPY (SELECT …)` that every row the filter keeps satisfies —
/// `"id" = ANY ('{…}')` over the kept keys — so the server streams about the kept rows only (the
/// filter still decides each row: the condition only narrows what is read). Only for a key filter
/// on one indexed column (`indexed`: the catalog's primary or unique key is that column) of a type
/// that reads back exactly, keeping at most a fifth of the table's estimated rows and at most
/// [`PUSHDOWN_MAX_KEYS`]; otherwise `None` and the whole table is read. Keys are sorted, so the
/// statement is the same on every run. Returns the condition and its number of keys (the
/// condition holds production values: log the count, never the text).
pub fn pushdown(
    filter: &Filter,
    indexed: Option<&[String]>,
    type_of: impl Fn(&str) -> Option<String>,
    rows_estimate: Option<u64>,
) -> Option<(String, usize)> {
    let Filter::Keys { columns, set } = filter else {
        return None;
    };
    let [column] = columns.as_slice() else {
        return None;
    };
    if indexed != Some(columns.as_slice()) || !pushdown_type(&type_of(column)?) {
        return None;
    }
    let n = set.len();
    if n > PUSHDOWN_MAX_KEYS || rows_estimate.is_some_and(|r| (n as u64).saturating_mul(5) > r) {
        return None;
    }
    let mut keys: Vec<&str> = set
        .iter()
        .map(|k| std::str::from_utf8(k))
        .collect::<Result<_, _>>()
        .ok()?;
    keys.sort_unstable();
    // An array literal ({"a","b\"c"}) inside a standard-conforming string literal ('' for ').
    let mut sql = format!("{} = ANY ('{{", crate::schema::quote_ident(column));
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('"');
        for c in k.chars() {
            match c {
                '\\' | '"' => {
                    sql.push('\\');
                    sql.push(c);
                }
                '\'' => sql.push_str("''"),
                c => sql.push(c),
            }
        }
        sql.push('"');
    }
    sql.push_str("}')");
    Some((sql, n))
}

/// The outcome: a filter for each table that is not copied whole, and the counts.
#[derive(Debug, Default)]
pub struct Outcome {
    pub filters: BTreeMap<QualifiedName, Arc<Filter>>,
    pub counts: BTreeMap<QualifiedName, Counts>,
}

/// Why a subset cannot be computed, before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub table: QualifiedName,
    pub message: String,
}

/// How each table takes part, from the graph alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Copied whole; scanned only when it references a filtered or referenced-only table.
    Whole,
    /// Sampled or following: its core is computed.
    Filtered,
    OnlyReferenced,
}

/// The computation's plan: each table's part and the columns it reads.
#[derive(Debug)]
pub struct Planner {
    graph: Graph,
    parts: Vec<Part>,
    /// Each node's projection.
    columns: Vec<Vec<String>>,
}

impl Planner {
    /// Decide each table's part; refuse tables that would need a key and have none.
    pub fn new(graph: Graph) -> Result<Self, Vec<Refusal>> {
        let n = graph.nodes.len();
        let mut parts: Vec<Part> = graph
            .nodes
            .iter()
            .map(|node| match node.role {
                Role::Sampled(_) => Part::Filtered,
                Role::OnlyReferenced => Part::OnlyReferenced,
                Role::Plain { .. } => Part::Whole,
            })
            .collect();
        // Following: a table that references a filtered one follows it, transitively.
        loop {
            let mut changed = false;
            for e in &graph.edges {
                let follows = matches!(graph.nodes[e.from].role, Role::Plain { follow: true });
                if follows && parts[e.from] == Part::Whole && parts[e.to] == Part::Filtered {
                    parts[e.from] = Part::Filtered;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let involved = |i: usize| parts[i] != Part::Whole;
        let mut refusals = Vec::new();
        let cyclic = cyclic_nodes(&graph, &parts);
        for (i, node) in graph.nodes.iter().enumerate() {
            if node.key.is_some() {
                continue;
            }
            let referenced = graph.edges.iter().any(|e| e.to == i && involved(e.from))
                || graph.edges.iter().any(|e| e.to == i && involved(i));
            let why = match (parts[i], &node.role) {
                (_, Role::Sampled(_)) => Some("a table with a subset needs a primary key or a unique key of NOT NULL columns"),
                (Part::OnlyReferenced, _) => Some("only_referenced needs a primary key or a unique key of NOT NULL columns"),
                (Part::Filtered, _) if cyclic.contains(&i) => Some("it follows a subset through a cycle of references, which needs a primary key or a unique key of NOT NULL columns"),
                (Part::Filtered, _) if referenced => Some("it follows a subset and rows of other tables reference it, which needs a primary key or a unique key of NOT NULL columns"),
                _ => None,
            };
            if let Some(why) = why {
                refusals.push(Refusal {
                    table: node.name.clone(),
                    message: why.into(),
                });
            }
        }
        if !refusals.is_empty() {
            return Err(refusals);
        }
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut add = |i: usize, cols: &[String]| {
            for c in cols {
                if !columns[i].contains(c) {
                    columns[i].push(c.clone());
                }
            }
        };
        for (i, node) in graph.nodes.iter().enumerate() {
            if let (Some(k), true) = (&node.key, involved(i)) {
                add(i, k);
            }
        }
        for e in &graph.edges {
            if involved(e.to) {
                add(e.from, &e.from_columns);
                add(e.to, &e.to_columns);
            }
        }
        Ok(Planner {
            graph,
            parts,
            columns,
        })
    }

    /// The tables the computation reads, with the columns it reads of each.
    pub fn scans(&self) -> Vec<(usize, &[String])> {
        (0..self.graph.nodes.len())
            .filter(|&i| self.needs_scan(i))
            .map(|i| (i, self.columns[i].as_slice()))
            .collect()
    }

    /// Whether a table (by its graph name) is copied whole: no subset reaches it.
    pub fn copied_whole(&self, name: &QualifiedName) -> bool {
        self.graph
            .nodes
            .iter()
            .position(|n| n.name == *name)
            .is_none_or(|i| self.parts[i] == Part::Whole)
    }

    fn needs_scan(&self, i: usize) -> bool {
        self.parts[i] != Part::Whole
            || self
                .graph
                .edges
                .iter()
                .any(|e| e.from == i && self.parts[e.to] != Part::Whole)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// What a subset would keep of each table that is not copied whole, from row estimates (a
    /// database's catalog) without reading a row: (table, estimated rows, why). A following table
    /// is estimated at the smallest percent it follows; a referenced-only table is not estimated.
    pub fn estimates(
        &self,
        rows: &dyn Fn(&QualifiedName) -> Option<u64>,
    ) -> Vec<(QualifiedName, Option<u64>, String)> {
        let n = self.graph.nodes.len();
        let mut fraction: Vec<Option<f64>> = self
            .graph
            .nodes
            .iter()
            .map(|x| match &x.role {
                Role::Sampled(s) => Some(s.percent / 100.0),
                _ => None,
            })
            .collect();
        for _ in 0..n {
            for e in &self.graph.edges {
                if self.parts[e.from] == Part::Filtered
                    && !matches!(self.graph.nodes[e.from].role, Role::Sampled(_))
                {
                    if let Some(f) = fraction[e.to] {
                        fraction[e.from] = Some(fraction[e.from].map_or(f, |g: f64| g.min(f)));
                    }
                }
            }
        }
        (0..n)
            .filter(|&i| self.parts[i] != Part::Whole)
            .map(|i| {
                let node = &self.graph.nodes[i];
                let (est, why) = match (&node.role, fraction[i]) {
                    (Role::OnlyReferenced, _) => {
                        (None, "only rows that kept rows reference".to_string())
                    }
                    (Role::Sampled(s), _) => (
                        rows(&node.name).map(|r| (r as f64 * s.percent / 100.0).round() as u64),
                        format!(
                            "{}% sample, plus always rows and rows kept rows reference",
                            s.percent
                        ),
                    ),
                    (_, f) => (
                        rows(&node.name)
                            .zip(f)
                            .map(|(r, f)| (r as f64 * f).round() as u64),
                        "rows whose references are kept, plus rows kept rows reference".to_string(),
                    ),
                };
                (node.name.clone(), est, why)
            })
            .collect()
    }

    /// Run the computation.
    pub async fn compute(self, scanner: &mut impl Scanner) -> Result<Outcome, ScanError> {
        let mut state = State::new(&self);
        // The core, parents first: each strongly connected group of filtered tables in turn.
        for group in components(&self.graph, &self.parts) {
            state.core(&self, &group, scanner).await?;
        }
        // Whole tables that reference filtered or referenced-only ones.
        for i in 0..self.graph.nodes.len() {
            if self.parts[i] == Part::Whole && self.needs_scan(i) {
                state.whole(&self, i, scanner).await?;
            }
        }
        // The closure, a round per level of references.
        state.closure(&self, scanner).await?;
        Ok(state.finish(&self))
    }
}

/// Nodes in a cycle (or with a reference to themselves) among filtered tables.
fn cyclic_nodes(graph: &Graph, parts: &[Part]) -> BTreeSet<usize> {
    components(graph, parts)
        .into_iter()
        .filter(|g| g.len() > 1 || graph.edges.iter().any(|e| e.from == g[0] && e.to == g[0]))
        .flatten()
        .collect()
}

/// The strongly connected components of the filtered tables, each after the ones it references
/// (Tarjan's algorithm emits a component after every component reachable from it).
fn components(graph: &Graph, parts: &[Part]) -> Vec<Vec<usize>> {
    let n = graph.nodes.len();
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &graph.edges {
        if parts[e.from] == Part::Filtered && parts[e.to] == Part::Filtered {
            out_edges[e.from].push(e.to);
        }
    }
    struct T {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[Vec<usize>], t: &mut T) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on_stack[v] = true;
        for &w in &adj[v] {
            match t.index[w] {
                None => {
                    visit(w, adj, t);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on_stack[w] => t.low[v] = t.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            group.sort_unstable();
            t.out.push(group);
        }
    }
    let mut t = T {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for (v, part) in parts.iter().enumerate() {
        if *part == Part::Filtered && t.index[v].is_none() {
            visit(v, &out_edges, &mut t);
        }
    }
    t.out
}

/// Positions of some columns in a node's projection.
fn positions(columns: &[String], of: &[String]) -> Vec<usize> {
    of.iter()
        .map(|c| columns.iter().position(|x| x == c).expect("projected"))
        .collect()
}

fn key_at(values: &[Option<&str>], at: &[usize]) -> Option<Key> {
    encode_key(at.iter().map(|&i| values[i]))
}

fn borrowed(row: &[Option<String>]) -> Vec<Option<&str>> {
    row.iter().map(|v| v.as_deref()).collect()
}

/// How a row of a table fares against its own sample.
struct Judge {
    sample: Option<Sample>,
    key: Option<Vec<usize>>,
}

impl Judge {
    fn new(p: &Planner, node: usize) -> Self {
        Judge {
            sample: match &p.graph.nodes[node].role {
                Role::Sampled(s) => Some(s.clone()),
                _ => None,
            },
            key: p.graph.nodes[node]
                .key
                .as_ref()
                .map(|k| positions(&p.columns[node], k)),
        }
    }

    /// (kept whatever it references, chosen if what it references is kept).
    fn sample(&self, values: &[Option<&str>], always_sql: bool) -> (bool, bool) {
        let Some(s) = &self.sample else {
            return (false, true);
        };
        let Some(k) = self.key.as_ref().and_then(|at| key_at(values, at)) else {
            return (false, false);
        };
        (always_sql || s.always_keys.contains(&k), s.chooses(&k))
    }
}

/// The computation's memory: kept keys, values of kept rows that others reference, and the
/// references still to pull in.
struct State {
    /// Kept keys of filtered and referenced-only tables.
    kept: Vec<KeySet>,
    /// Per table, per referenced column list: values of kept rows, and values already pulled in
    /// (found or not).
    values: Vec<HashMap<Vec<String>, KeySet>>,
    /// Per table, per referenced column list: values to pull in.
    pending: Vec<HashMap<Vec<String>, KeySet>>,
    counts: Vec<Counts>,
}

impl State {
    fn new(p: &Planner) -> Self {
        let n = p.graph.nodes.len();
        State {
            kept: vec![KeySet::new(); n],
            values: vec![HashMap::new(); n],
            pending: vec![HashMap::new(); n],
            counts: vec![Counts::default(); n],
        }
    }

    /// Whether a referenced value is kept (always for a table copied whole).
    fn holds(&self, p: &Planner, to: usize, to_columns: &[String], value: &Key) -> bool {
        if p.parts[to] == Part::Whole {
            return true;
        }
        if p.graph.nodes[to].key.as_deref() == Some(to_columns) {
            return self.kept[to].contains(value);
        }
        self.values[to]
            .get(to_columns)
            .is_some_and(|s| s.contains(value))
    }

    /// Keep a row pulled in by the closure: record it and ask for what it references. False when
    /// it was kept already.
    fn keep(&mut self, p: &Planner, node: usize, values: &[Option<&str>]) -> bool {
        if let Some(k) = &p.graph.nodes[node].key {
            let key = key_at(values, &positions(&p.columns[node], k));
            if key.is_some_and(|k| self.kept[node].contains(&k)) {
                return false;
            }
        }
        self.record(p, node, values);
        self.ask(p, node, values);
        true
    }

    /// Ask for the rows a kept row references that are not kept yet.
    fn ask(&mut self, p: &Planner, node: usize, values: &[Option<&str>]) {
        let cols = &p.columns[node];
        for e in p.graph.edges.iter().filter(|e| e.from == node) {
            if p.parts[e.to] == Part::Whole {
                continue;
            }
            let Some(v) = key_at(values, &positions(cols, &e.from_columns)) else {
                continue;
            };
            if !self.holds(p, e.to, &e.to_columns, &v) {
                self.pending[e.to]
                    .entry(e.to_columns.clone())
                    .or_default()
                    .insert(v);
            }
        }
    }

    /// Whether each reference of a row to a filtered table outside `group` holds.
    fn outside_refs_hold(
        &self,
        p: &Planner,
        node: usize,
        group: &[usize],
        values: &[Option<&str>],
    ) -> bool {
        let cols = &p.columns[node];
        p.graph.edges.iter().all(|e| {
            if e.from != node || p.parts[e.to] != Part::Filtered || group.contains(&e.to) {
                return true;
            }
            match key_at(values, &positions(cols, &e.from_columns)) {
                Some(v) => self.holds(p, e.to, &e.to_columns, &v),
                None => true,
            }
        })
    }

    /// The core of one group of filtered tables (one table, or the tables of a cycle).
    async fn core(
        &mut self,
        p: &Planner,
        group: &[usize],
        scanner: &mut impl Scanner,
    ) -> Result<(), ScanError> {
        let cyclic = group.len() > 1
            || p.graph
                .edges
                .iter()
                .any(|e| e.from == group[0] && e.to == group[0]);
        if !cyclic {
            return self.core_one(p, group[0], scanner).await;
        }
        // Candidates: rows that meet every condition outside the group; (always, row).
        let mut candidates: Vec<Vec<(bool, Vec<Option<String>>)>> = Vec::new();
        for &node in group {
            let mut rows = Vec::new();
            let mut read = 0u64;
            let state = &*self;
            let judge = Judge::new(p, node);
            scanner
                .scan(node, &p.columns[node], &mut |values, always_sql| {
                    read += 1;
                    let (always, chosen) = judge.sample(values, always_sql);
                    if always || (chosen && state.outside_refs_hold(p, node, group, values)) {
                        rows.push((
                            always,
                            values.iter().map(|v| v.map(str::to_string)).collect(),
                        ));
                    }
                })
                .await?;
            self.counts[node].read += read;
            candidates.push(rows);
        }
        // Drop rows whose references inside the group are not candidates, until nothing changes
        // (the largest set that holds).
        let inner: Vec<&Edge> = p
            .graph
            .edges
            .iter()
            .filter(|e| group.contains(&e.from) && group.contains(&e.to))
            .collect();
        loop {
            let mut present: HashMap<(usize, &[String]), KeySet> = HashMap::new();
            for (gi, &node) in group.iter().enumerate() {
                for e in inner.iter().filter(|e| e.to == node) {
                    let at = positions(&p.columns[node], &e.to_columns);
                    let set = present.entry((node, &e.to_columns)).or_default();
                    for (_, row) in &candidates[gi] {
                        if let Some(k) = key_at(&borrowed(row), &at) {
                            set.insert(k);
                        }
                    }
                }
            }
            let mut removed = false;
            for (gi, &node) in group.iter().enumerate() {
                let before = candidates[gi].len();
                candidates[gi].retain(|(always, row)| {
                    let vals = borrowed(row);
                    *always
                        || inner.iter().filter(|e| e.from == node).all(|e| {
                            match key_at(&vals, &positions(&p.columns[node], &e.from_columns)) {
                                Some(v) => present
                                    .get(&(e.to, e.to_columns.as_slice()))
                                    .is_some_and(|s| s.contains(&v)),
                                None => true,
                            }
                        })
                });
                removed |= candidates[gi].len() != before;
            }
            if !removed {
                break;
            }
        }
        // Keep the survivors, then ask for what they reference (an `always` row may reference rows
        // the sample left out).
        for (gi, &node) in group.iter().enumerate() {
            let sampled = matches!(p.graph.nodes[node].role, Role::Sampled(_));
            for (always, row) in &candidates[gi] {
                self.record(p, node, &borrowed(row));
                let c = &mut self.counts[node];
                match (always, sampled) {
                    (true, _) => c.always += 1,
                    (false, true) => c.sample += 1,
                    (false, false) => c.follow += 1,
                }
            }
        }
        for (gi, &node) in group.iter().enumerate() {
            for (_, row) in &candidates[gi] {
                self.ask(p, node, &borrowed(row));
            }
        }
        Ok(())
    }

    /// The core of a filtered table outside any cycle: each row is judged as it is read, against
    /// the tables it references (all decided before it).
    async fn core_one(
        &mut self,
        p: &Planner,
        node: usize,
        scanner: &mut impl Scanner,
    ) -> Result<(), ScanError> {
        let judge = Judge::new(p, node);
        let cols = &p.columns[node];
        let key_pos = p.graph.nodes[node].key.as_ref().map(|k| positions(cols, k));
        let referenced: Vec<(Vec<String>, Vec<usize>)> = p
            .graph
            .edges
            .iter()
            .filter(|e| e.to == node && p.graph.nodes[node].key.as_ref() != Some(&e.to_columns))
            .map(|e| (e.to_columns.clone(), positions(cols, &e.to_columns)))
            .collect();
        let outgoing: Vec<(&Edge, Vec<usize>)> = p
            .graph
            .edges
            .iter()
            .filter(|e| e.from == node && p.parts[e.to] != Part::Whole)
            .map(|e| (e, positions(cols, &e.from_columns)))
            .collect();
        let sampled = matches!(p.graph.nodes[node].role, Role::Sampled(_));
        let mut counts = Counts::default();
        let mut keys: Vec<Key> = Vec::new();
        let mut values: Vec<(usize, Key)> = Vec::new();
        let mut asks: Vec<(usize, Key)> = Vec::new();
        let state = &*self;
        scanner
            .scan(node, cols, &mut |row, always_sql| {
                counts.read += 1;
                let (always, chosen) = judge.sample(row, always_sql);
                if !(always || (chosen && state.outside_refs_hold(p, node, &[node], row))) {
                    return;
                }
                match (always, sampled) {
                    (true, _) => counts.always += 1,
                    (false, true) => counts.sample += 1,
                    (false, false) => counts.follow += 1,
                }
                if let Some(k) = key_pos.as_ref().and_then(|at| key_at(row, at)) {
                    keys.push(k);
                }
                for (ri, (_, at)) in referenced.iter().enumerate() {
                    if let Some(v) = key_at(row, at) {
                        values.push((ri, v));
                    }
                }
                for (ei, (e, at)) in outgoing.iter().enumerate() {
                    if let Some(v) = key_at(row, at) {
                        if !state.holds(p, e.to, &e.to_columns, &v) {
                            asks.push((ei, v));
                        }
                    }
                }
            })
            .await?;
        let c = &mut self.counts[node];
        c.read += counts.read;
        c.sample += counts.sample;
        c.always += counts.always;
        c.follow += counts.follow;
        self.kept[node].extend(keys);
        for (ri, v) in values {
            self.values[node]
                .entry(referenced[ri].0.clone())
                .or_default()
                .insert(v);
        }
        for (ei, v) in asks {
            let e = outgoing[ei].0;
            self.pending[e.to]
                .entry(e.to_columns.clone())
                .or_default()
                .insert(v);
        }
        Ok(())
    }

    /// Record a kept row without asking for its references (a group asks once all are kept).
    fn record(&mut self, p: &Planner, node: usize, values: &[Option<&str>]) {
        let cols = &p.columns[node];
        if let Some(k) = &p.graph.nodes[node].key {
            if let Some(key) = key_at(values, &positions(cols, k)) {
                self.kept[node].insert(key);
            }
        }
        for e in p.graph.edges.iter().filter(|e| e.to == node) {
            if p.graph.nodes[node].key.as_ref() == Some(&e.to_columns) {
                continue;
            }
            if let Some(v) = key_at(values, &positions(cols, &e.to_columns)) {
                self.values[node]
                    .entry(e.to_columns.clone())
                    .or_default()
                    .insert(v);
            }
        }
    }

    async fn whole(
        &mut self,
        p: &Planner,
        node: usize,
        scanner: &mut impl Scanner,
    ) -> Result<(), ScanError> {
        let mut read = 0u64;
        let mut asked: Vec<(usize, Vec<String>, Key)> = Vec::new();
        let state = &*self;
        let cols = &p.columns[node];
        let edges: Vec<(&Edge, Vec<usize>)> = p
            .graph
            .edges
            .iter()
            .filter(|e| e.from == node && p.parts[e.to] != Part::Whole)
            .map(|e| (e, positions(cols, &e.from_columns)))
            .collect();
        let mut seen: HashSet<(usize, Key)> = HashSet::new();
        scanner
            .scan(node, cols, &mut |values, _| {
                read += 1;
                for (ei, (e, at)) in edges.iter().enumerate() {
                    if let Some(v) = key_at(values, at) {
                        if !state.holds(p, e.to, &e.to_columns, &v) && seen.insert((ei, v.clone()))
                        {
                            asked.push((e.to, e.to_columns.clone(), v));
                        }
                    }
                }
            })
            .await?;
        self.counts[node].read += read;
        for (to, cols, v) in asked {
            self.pending[to].entry(cols).or_default().insert(v);
        }
        Ok(())
    }

    async fn closure(&mut self, p: &Planner, scanner: &mut impl Scanner) -> Result<(), ScanError> {
        loop {
            // What is asked for and not kept yet, per table.
            let mut wanted: BTreeMap<usize, HashMap<Vec<String>, KeySet>> = BTreeMap::new();
            for node in 0..p.graph.nodes.len() {
                for (cols, vals) in std::mem::take(&mut self.pending[node]) {
                    let left: KeySet = vals
                        .into_iter()
                        .filter(|v| !self.holds(p, node, &cols, v))
                        .collect();
                    if !left.is_empty() {
                        wanted.entry(node).or_default().insert(cols, left);
                    }
                }
            }
            if wanted.is_empty() {
                return Ok(());
            }
            for (node, want) in wanted {
                let cols = p.columns[node].clone();
                let checks: Vec<(Vec<usize>, &KeySet)> = want
                    .iter()
                    .map(|(c, set)| (positions(&cols, c), set))
                    .collect();
                let mut found: Vec<Vec<Option<String>>> = Vec::new();
                let mut hit: Vec<KeySet> = vec![KeySet::new(); checks.len()];
                scanner
                    .scan(node, &cols, &mut |values, _| {
                        let mut matched = false;
                        for (ci, (at, set)) in checks.iter().enumerate() {
                            if let Some(v) = key_at(values, at) {
                                if set.contains(&v) {
                                    hit[ci].insert(v);
                                    matched = true;
                                }
                            }
                        }
                        if matched {
                            found.push(values.iter().map(|v| v.map(str::to_string)).collect());
                        }
                    })
                    .await?;
                for row in &found {
                    if self.keep(p, node, &borrowed(row)) {
                        self.counts[node].closure += 1;
                    }
                }
                // Values asked for that no row has: counted, and not asked for again.
                for ((c, set), hits) in want.into_iter().zip(hit) {
                    let missing: Vec<Key> = set.into_iter().filter(|v| !hits.contains(v)).collect();
                    self.counts[node].missing += missing.len() as u64;
                    if p.graph.nodes[node].key.as_ref() == Some(&c) {
                        self.kept[node].extend(missing);
                    } else {
                        self.values[node].entry(c).or_default().extend(missing);
                    }
                }
            }
        }
    }

    fn finish(self, p: &Planner) -> Outcome {
        let mut out = Outcome::default();
        let kept: Vec<Arc<KeySet>> = self.kept.into_iter().map(Arc::new).collect();
        let values: Vec<HashMap<Vec<String>, Arc<KeySet>>> = self
            .values
            .into_iter()
            .map(|m| m.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
            .collect();
        for (i, node) in p.graph.nodes.iter().enumerate() {
            if p.parts[i] == Part::Whole {
                continue;
            }
            let filter = match &node.key {
                Some(k) => Filter::Keys {
                    columns: k.clone(),
                    set: Arc::clone(&kept[i]),
                },
                None => Filter::Refs {
                    checks: p
                        .graph
                        .edges
                        .iter()
                        .filter(|e| e.from == i && p.parts[e.to] == Part::Filtered)
                        .map(|e| {
                            let set = match &p.graph.nodes[e.to].key {
                                Some(k) if *k == e.to_columns => Arc::clone(&kept[e.to]),
                                _ => values[e.to].get(&e.to_columns).cloned().unwrap_or_default(),
                            };
                            (e.from_columns.clone(), set)
                        })
                        .collect(),
                },
            };
            let mut counts = self.counts[i].clone();
            if let Role::Sampled(sample) = &node.role {
                counts.always_unmatched = sample
                    .always_keys
                    .iter()
                    .filter(|k| !kept[i].contains(*k))
                    .count() as u64;
            }
            out.filters.insert(node.name.clone(), Arc::new(filter));
            out.counts.insert(node.name.clone(), counts);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pushdown_quotes_sorted_keys_and_only_where_it_helps() {
        let set: KeySet = ["b\"c", "a'b", "c\\d"]
            .iter()
            .map(|k| encode_key([Some(*k)]).unwrap())
            .collect();
        let keys = |cols: &[&str]| Filter::Keys {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            set: Arc::new(set.clone()),
        };
        let id = vec!["id".to_string()];
        let text = |_: &str| Some("character varying(20)".to_string());
        assert_eq!(
            pushdown(&keys(&["id"]), Some(&id), text, Some(100)),
            Some((r#"id = ANY ('{"a''b","b\"c","c\\d"}')"#.to_string(), 3))
        );
        // Not for more than a fifth of the table, an unindexed or composite key, another type.
        assert_eq!(pushdown(&keys(&["id"]), Some(&id), text, Some(14)), None);
        assert!(pushdown(&keys(&["id"]), Some(&id), text, None).is_some());
        assert_eq!(pushdown(&keys(&["id"]), None, text, Some(100)), None);
        let pair = vec!["id".to_string(), "x".to_string()];
        assert_eq!(pushdown(&keys(&["id", "x"]), Some(&pair), text, None), None);
        let domain = |_: &str| Some("email_address".to_string());
        assert_eq!(pushdown(&keys(&["id"]), Some(&id), domain, None), None);
        let refs = Filter::Refs {
            checks: vec![(id.clone(), Arc::new(set.clone()))],
        };
        assert_eq!(pushdown(&refs, Some(&id), text, None), None);
    }

    /// Tables held in memory: each row's values by column name order of `columns`.
    struct Memory {
        columns: Vec<Vec<String>>,
        rows: Vec<Vec<Vec<Option<String>>>>,
        scans: usize,
    }

    impl Scanner for Memory {
        async fn scan(
            &mut self,
            node: usize,
            columns: &[String],
            each: &mut (dyn FnMut(&[Option<&str>], bool) + Send),
        ) -> Result<(), ScanError> {
            self.scans += 1;
            let at: Vec<usize> = columns
                .iter()
                .map(|c| self.columns[node].iter().position(|x| x == c).unwrap())
                .collect();
            for row in &self.rows[node] {
                let vals: Vec<Option<&str>> = at.iter().map(|&i| row[i].as_deref()).collect();
                each(&vals, false);
            }
            Ok(())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the memory scanner never waits"),
        }
    }

    fn prf(table: &str) -> Prf {
        crate::transform::seed::SecretKey::new(b"subset test key, not a secret")
            .unwrap()
            .domain(&format!("subset:{table}"))
    }

    /// A random schema: tables t0..tn with an `id` key, edges `r<k>` to other tables (cycles and
    /// self-references included), rows whose references are NULL or existing ids.
    #[derive(Debug, Clone)]
    struct Case {
        roles: Vec<u8>,
        percents: Vec<u8>,
        edges: Vec<(usize, usize)>,
        rows: Vec<Vec<Vec<Option<u8>>>>,
        always: Vec<u8>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (2usize..6)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(0u8..5, n),
                    proptest::collection::vec(1u8..=100, n),
                    proptest::collection::vec((0..n, 0..n), 0..8),
                    proptest::collection::vec(0u8..12, 0..3),
                    Just(n),
                )
            })
            .prop_flat_map(|(roles, percents, edges, always, n)| {
                let width = edges.len();
                let rows = proptest::collection::vec(
                    proptest::collection::vec(
                        proptest::collection::vec(proptest::option::weighted(0.8, 0u8..12), width),
                        0..12,
                    ),
                    n,
                );
                (Just(roles), Just(percents), Just(edges), rows, Just(always))
            })
            .prop_map(|(roles, percents, edges, rows, always)| Case {
                roles,
                percents,
                edges,
                rows,
                always,
            })
    }

    /// Node i has rows with ids 0.. its row count; reference k of node `from` is column `r<k>`,
    /// made to point at an existing id (or NULL).
    fn build(c: &Case) -> (Graph, Memory) {
        let n = c.roles.len();
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: QualifiedName::new("public", &format!("t{i}")),
                key: Some(vec!["id".into()]),
                role: match c.roles[i] {
                    0 | 1 => Role::Sampled(Sample {
                        percent: f64::from(c.percents[i]),
                        always_keys: c
                            .always
                            .iter()
                            .map(|a| a.to_string().into_bytes().into_boxed_slice())
                            .collect(),
                        always_condition: false,
                        prf: prf(&format!("t{i}")),
                    }),
                    2 => Role::Plain { follow: true },
                    3 => Role::Plain { follow: false },
                    _ => Role::OnlyReferenced,
                },
            })
            .collect();
        let edges: Vec<Edge> = c
            .edges
            .iter()
            .enumerate()
            .map(|(k, &(from, to))| Edge {
                from,
                from_columns: vec![format!("r{k}")],
                to,
                to_columns: vec!["id".into()],
            })
            .collect();
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        for i in 0..n {
            let mut cols = vec!["id".to_string()];
            cols.extend((0..c.edges.len()).map(|k| format!("r{k}")));
            columns.push(cols);
            let table: Vec<Vec<Option<String>>> = c.rows[i]
                .iter()
                .enumerate()
                .map(|(id, refs)| {
                    let mut row = vec![Some(id.to_string())];
                    for (k, r) in refs.iter().enumerate() {
                        let to = c.edges[k].1;
                        let size = c.rows[to].len();
                        let v = match r {
                            Some(x) if c.edges[k].0 == i && size > 0 => {
                                Some((usize::from(*x) % size).to_string())
                            }
                            _ => None,
                        };
                        row.push(v);
                    }
                    row
                })
                .collect();
            rows.push(table);
        }
        (
            Graph { nodes, edges },
            Memory {
                columns,
                rows,
                scans: 0,
            },
        )
    }

    /// The same rules computed the plain way, over whole rows: the largest core that holds, then
    /// the closure. Returns the kept ids of each table.
    fn reference(g: &Graph, m: &Memory) -> Vec<BTreeSet<usize>> {
        let n = g.nodes.len();
        let mut filtered: Vec<bool> = g
            .nodes
            .iter()
            .map(|x| matches!(x.role, Role::Sampled(_)))
            .collect();
        loop {
            let mut changed = false;
            for e in &g.edges {
                if matches!(g.nodes[e.from].role, Role::Plain { follow: true })
                    && !filtered[e.from]
                    && filtered[e.to]
                {
                    filtered[e.from] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let whole = |i: usize| !filtered[i] && !matches!(g.nodes[i].role, Role::OnlyReferenced);
        let col = |i: usize, name: &str| m.columns[i].iter().position(|c| c == name).unwrap();
        let always = |i: usize, id: usize| match &g.nodes[i].role {
            Role::Sampled(s) => s.always_keys.contains(id.to_string().as_bytes()),
            _ => false,
        };
        let mut core: Vec<BTreeSet<usize>> = (0..n)
            .map(|i| {
                (0..m.rows[i].len())
                    .filter(|&id| match &g.nodes[i].role {
                        _ if whole(i) => true,
                        Role::Sampled(s) => always(i, id) || s.chooses(id.to_string().as_bytes()),
                        Role::OnlyReferenced => false,
                        Role::Plain { .. } => true,
                    })
                    .collect()
            })
            .collect();
        loop {
            let mut changed = false;
            for i in (0..n).filter(|&i| filtered[i]) {
                let drop: Vec<usize> = core[i]
                    .iter()
                    .copied()
                    .filter(|&id| !always(i, id))
                    .filter(|&id| {
                        g.edges.iter().any(|e| {
                            e.from == i
                                && filtered[e.to]
                                && m.rows[i][id][col(i, &e.from_columns[0])]
                                    .as_ref()
                                    .is_some_and(|v| !core[e.to].contains(&v.parse().unwrap()))
                        })
                    })
                    .collect();
                for id in drop {
                    core[i].remove(&id);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut kept = core;
        loop {
            let mut changed = false;
            for e in &g.edges {
                let refs: Vec<usize> = kept[e.from]
                    .iter()
                    .filter_map(|&id| m.rows[e.from][id][col(e.from, &e.from_columns[0])].clone())
                    .map(|v| v.parse().unwrap())
                    .collect();
                for r in refs {
                    changed |= kept[e.to].insert(r);
                }
            }
            if !changed {
                break;
            }
        }
        kept
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_subset_is_the_smallest_closed_set_holding_the_core(c in case()) {
            let (g, mut m) = build(&c);
            let expected = reference(&g, &m);
            let planner = Planner::new(g.clone()).unwrap();
            let outcome = block_on(planner.compute(&mut m)).unwrap();
            for (i, node) in g.nodes.iter().enumerate() {
                let kept: BTreeSet<usize> = match outcome.filters.get(&node.name) {
                    None => (0..m.rows[i].len()).collect(),
                    Some(f) => {
                        let rf = RowFilter::for_columns(Arc::clone(f), &m.columns[i]).unwrap();
                        (0..m.rows[i].len())
                            .filter(|&id| {
                                rf.keeps(|c| Ok::<_, ()>(m.rows[i][id][c].as_deref().map(std::borrow::Cow::Borrowed)))
                                    .unwrap()
                            })
                            .collect()
                    }
                };
                prop_assert_eq!(&kept, &expected[i], "table t{}", i);
            }
            // Every reference of a kept row holds.
            for e in &g.edges {
                for &id in &expected[e.from] {
                    let at = m.columns[e.from].iter().position(|c| *c == e.from_columns[0]).unwrap();
                    if let Some(v) = &m.rows[e.from][id][at] {
                        prop_assert!(expected[e.to].contains(&v.parse::<usize>().unwrap()));
                    }
                }
            }
        }
    }

    #[test]
    fn the_sample_is_keyed_and_near_its_percent() {
        let s = Sample {
            percent: 10.0,
            always_keys: HashSet::new(),
            always_condition: false,
            prf: prf("customers"),
        };
        let chosen = (0..100_000)
            .filter(|i| s.chooses(i.to_string().as_bytes()))
            .count();
        assert!((9_500..10_500).contains(&chosen), "{chosen}");
        let other = Sample {
            prf: prf("orders"),
            ..s.clone()
        };
        let differ = (0..1000)
            .filter(|i| {
                s.chooses(i.to_string().as_bytes()) != other.chooses(i.to_string().as_bytes())
            })
            .count();
        assert!(differ > 100, "{differ}");
    }

    #[test]
    fn a_table_without_a_key_is_refused_where_one_is_needed() {
        let node = |name: &str, key: bool, role: Role| Node {
            name: QualifiedName::new("public", name),
            key: key.then(|| vec!["id".into()]),
            role,
        };
        let sample = Role::Sampled(Sample {
            percent: 5.0,
            always_keys: HashSet::new(),
            always_condition: false,
            prf: prf("a"),
        });
        let edge = |from, to| Edge {
            from,
            from_columns: vec!["r".into()],
            to,
            to_columns: vec!["id".into()],
        };
        // A sampled table without a key.
        let g = Graph {
            nodes: vec![node("a", false, sample.clone())],
            edges: vec![],
        };
        let r = Planner::new(g).unwrap_err();
        assert!(r[0].message.contains("needs a primary key"), "{r:?}");
        // A following leaf without a key is fine (filtered by its references)...
        let g = Graph {
            nodes: vec![
                node("a", true, sample.clone()),
                node("log", false, Role::Plain { follow: true }),
            ],
            edges: vec![edge(1, 0)],
        };
        assert!(Planner::new(g).is_ok());
        // ...but not one that references itself.
        let g = Graph {
            nodes: vec![
                node("a", true, sample),
                node("log", false, Role::Plain { follow: true }),
            ],
            edges: vec![edge(1, 0), edge(1, 1)],
        };
        let r = Planner::new(g).unwrap_err();
        assert_eq!(r[0].table.name, "log");
    }
}
