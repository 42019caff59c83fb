//! Subsets in a run: the graph from the source's tables, keys and foreign keys plus the rules'
//! `subset` and `[[references]]`; the scanners that feed the computation (a database under the
//! run's snapshot, or rows a pass over a dump collected); and the filters it yields, set on the
//! bound tables before any row is copied.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::rules::{BoundTable, Diagnostic, Plan, QualifiedName, SourceTable, TableAction};
use crate::schema::ForeignKey;
use crate::subset::{
    encode_key, Counts, Edge, Graph, Node, Outcome, Planner, Role, RowFilter, Sample, ScanError,
    Scanner,
};

/// Whether the rules ask for a subset at all.
pub fn wanted(plan: &Plan) -> bool {
    plan.tables.values().any(|t| t.subset.is_some())
}

/// Whether the rules say anything the subset code checks: a subset or a `[[references]]` entry.
pub fn involved(plan: &Plan) -> bool {
    wanted(plan) || !plan.references.is_empty()
}

/// The table a source table's rows belong to in the graph: a partition's root, else itself.
fn root(t: &SourceTable) -> QualifiedName {
    t.partition_of.clone().unwrap_or_else(|| t.name.clone())
}

/// The computation's graph, or why it cannot be made (exit 2). `tables` and `bound` are the
/// source's tables and their bound rules (same order); `keys` each table's key as the source
/// declares it; `foreign_keys` the source's own. `None` when no table has a subset (the
/// rules' references are still checked).
pub fn planner(
    plan: &Plan,
    tables: &[SourceTable],
    bound: &[BoundTable],
    keys: &dyn Fn(&QualifiedName) -> Option<Vec<String>>,
    foreign_keys: &[ForeignKey],
    database_source: bool,
) -> Result<Option<Planner>, Vec<Diagnostic>> {
    // References are checked even without a subset: a misspelled one is an error, not a no-op.
    if !involved(plan) {
        return Ok(None);
    }
    let mut problems = Vec::new();
    if let Some(t) = tables.iter().find(|t| t.database.is_some()) {
        if !database_source && wanted(plan) {
            problems.push(Diagnostic {
                location: None,
                message: format!(
                    "a subset needs a dump of one database; this one is a pg_dumpall file (database {})",
                    t.database.as_deref().unwrap_or("?")
                ),
            });
            return Err(problems);
        }
    }
    // The nodes: every root with rows that are read (skipped and foreign tables stay out).
    let mut columns: BTreeMap<QualifiedName, Vec<String>> = BTreeMap::new();
    for (t, b) in tables.iter().zip(bound) {
        if matches!(b.action, TableAction::Skip) || t.foreign {
            continue;
        }
        let cols = columns.entry(root(t)).or_default();
        for c in &t.columns {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
    }
    let names: Vec<QualifiedName> = columns.keys().cloned().collect();
    let index = |n: &QualifiedName| names.iter().position(|x| x == n);
    // Rules with a subset on a table the source does not copy.
    for t in plan.tables.values() {
        if t.subset.is_some() && index(&t.name).is_none() {
            let source = tables.iter().find(|s| s.name == t.name);
            let why = match source.and_then(|s| s.partition_of.as_ref()) {
                Some(r) => {
                    format!("is a partition of {r}: put the subset on {r}, its partitions follow")
                }
                None if source.is_some() => {
                    "is not copied (skipped or foreign), so it takes no subset".into()
                }
                None => "is not a table of the source".into(),
            };
            problems.push(Diagnostic {
                location: t.subset.as_ref().map(|s| s.location.clone()),
                message: format!("subset of {}: the table {why}", t.name),
            });
        }
    }
    // The key scan reads a partitioned table through its root, with the root's `where`: a
    // partition's own filter would drop rows the subset counts as kept.
    let leaf_filters: Vec<&SourceTable> = tables
        .iter()
        .filter(|t| t.partition_of.is_some())
        .filter(|t| plan.tables.get(&t.name).is_some_and(|r| r.filter.is_some()))
        .collect();
    let mut nodes = Vec::new();
    for name in &names {
        let rules = plan.tables.get(name);
        let spec = rules.and_then(|r| r.subset.as_ref());
        let cols = &columns[name];
        let key = match spec.and_then(|s| s.key.clone()) {
            Some(k) => {
                if let Some(c) = k.iter().find(|c| !cols.contains(c)) {
                    problems.push(Diagnostic {
                        location: spec.map(|s| s.location.clone()),
                        message: format!("subset key of {name}: {name} has no column {c}"),
                    });
                }
                Some(k)
            }
            // A key with a column that is not copied (a generated one) cannot be read.
            None => keys(name).filter(|k| k.iter().all(|c| cols.contains(c))),
        };
        let role = match spec {
            None => Role::Plain { follow: true },
            Some(s) if s.only_referenced => Role::OnlyReferenced,
            Some(s) => match s.percent {
                None => Role::Plain { follow: s.follow },
                Some(percent) => {
                    if s.always.is_some() && !database_source {
                        problems.push(Diagnostic {
                            location: Some(s.location.clone()),
                            message: format!(
                                "subset of {name}: always is an SQL condition, which only a database \
                                 source can run; with a dump, list the rows in always_keys"
                            ),
                        });
                    }
                    let width = key.as_ref().map_or(0, Vec::len);
                    let mut always_keys = std::collections::HashSet::new();
                    for k in &s.always_keys {
                        if k.len() != width && key.is_some() {
                            problems.push(Diagnostic {
                                location: Some(s.location.clone()),
                                message: format!(
                                    "subset of {name}: always_keys entry of {} value(s), but the key ({}) has {width} column(s)",
                                    k.len(),
                                    key.as_deref().unwrap_or_default().join(", ")
                                ),
                            });
                            continue;
                        }
                        if let Some(e) = encode_key(k.iter().map(|v| Some(v.as_str()))) {
                            always_keys.insert(e);
                        }
                    }
                    Role::Sampled(Sample {
                        percent,
                        always_keys,
                        always_condition: s.always.is_some(),
                        prf: plan.subset_key.table(name),
                    })
                }
            },
        };
        nodes.push(Node {
            name: name.clone(),
            key,
            role,
        });
    }
    // The edges: the source's foreign keys and the rules' references, between copied tables.
    let mut edges: Vec<Edge> = Vec::new();
    // The graph's name of a table a foreign key names: a partition's root.
    let root_of = |n: &QualifiedName| {
        tables
            .iter()
            .find(|t| t.name == *n)
            .map(root)
            .unwrap_or_else(|| n.clone())
    };
    let add = |fk: &ForeignKey, edges: &mut Vec<Edge>| -> Result<(), String> {
        let (from, to) = (root_of(&fk.from), root_of(&fk.to));
        let (Some(f), Some(t)) = (index(&from), index(&to)) else {
            return Ok(());
        };
        for (table, cols) in [(&from, &fk.from_columns), (&to, &fk.to_columns)] {
            if let Some(c) = cols.iter().find(|c| !columns[table].contains(c)) {
                return Err(format!("{table} has no column {c} that is copied"));
            }
        }
        let e = Edge {
            from: f,
            from_columns: fk.from_columns.clone(),
            to: t,
            to_columns: fk.to_columns.clone(),
        };
        if !edges.contains(&e) {
            edges.push(e);
        }
        Ok(())
    };
    // Foreign keys a subset cannot follow: on a column that is not copied (a generated one), or
    // between types that write equal values differently (keys are compared as text). Refused
    // below when the subset reaches either end; harmless between tables copied whole.
    let mut unfollowable: Vec<(&ForeignKey, String, Option<crate::diagnostic::Location>)> =
        Vec::new();
    for fk in foreign_keys {
        match add(fk, &mut edges) {
            Err(why) => unfollowable.push((fk, format!("{why} (a generated column is not)"), None)),
            Ok(()) => {
                if let Some(why) = type_mismatch(tables, fk) {
                    unfollowable.push((fk, why, None));
                }
            }
        }
    }
    for r in &plan.references {
        let known = |n: &QualifiedName| tables.iter().any(|t| t.name == *n);
        let unknown = [&r.key.from, &r.key.to].into_iter().find(|n| !known(n));
        let result = match unknown {
            Some(n) => Err(format!("{n} is not a table of the source")),
            None => add(&r.key, &mut edges),
        };
        if result.is_ok() {
            if let Some(why) = type_mismatch(tables, &r.key) {
                unfollowable.push((&r.key, why, Some(r.location.clone())));
            }
        }
        if let Err(why) = result {
            problems.push(Diagnostic {
                location: Some(r.location.clone()),
                message: format!("[[references]]: {why}"),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if !wanted(plan) {
        return Ok(None);
    }
    let graph = Graph { nodes, edges };
    let locations: BTreeMap<QualifiedName, _> = plan
        .tables
        .values()
        .filter_map(|t| Some((t.name.clone(), t.subset.as_ref()?.location.clone())))
        .collect();
    let planner = Planner::new(graph).map_err(|refusals| {
        refusals
            .into_iter()
            .map(|r| Diagnostic {
                location: locations.get(&r.table).cloned(),
                message: format!(
                    "subset: {}: {} (add subset = {{ key = [\"…\"] }} naming columns that identify a row{})",
                    r.table,
                    r.message,
                    if database_source {
                        ""
                    } else {
                        "; from a dump, keys are read from its PRIMARY KEY constraints only"
                    }
                ),
            })
            .collect::<Vec<_>>()
    })?;
    // What the subset reaches cannot be read wrong.
    for (fk, why, location) in unfollowable {
        if planner.copied_whole(&root_of(&fk.from)) && planner.copied_whole(&root_of(&fk.to)) {
            continue;
        }
        problems.push(Diagnostic {
            location,
            message: format!(
                "subset: the reference of {} ({}) → {} cannot be followed: {why}; a subset would \
                 break it in staging",
                fk.from,
                fk.from_columns.join(", "),
                fk.to
            ),
        });
    }
    // The key scan reads a partitioned table through its root, with the root's `where`: a
    // partition's own filter would drop rows the subset counts as kept.
    for t in leaf_filters {
        if !planner.copied_whole(&root(t)) {
            problems.push(Diagnostic {
                location: None,
                message: format!(
                    "{}: with a subset on {}, a partition cannot have its own `where`; put the \
                     filter on {}",
                    t.name,
                    root(t),
                    root(t)
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(planner))
}

/// Why the two ends of a reference would write equal values differently, if they would (from
/// the catalog's types; a dump has none).
fn type_mismatch(tables: &[SourceTable], fk: &ForeignKey) -> Option<String> {
    let type_of = |table: &QualifiedName, c: &String| {
        let t = tables.iter().find(|t| t.name == *table)?;
        let i = t.columns.iter().position(|x| x == c)?;
        Some(t.meta.as_ref()?.get(i)?.type_name.clone())
    };
    for (a, b) in fk.from_columns.iter().zip(&fk.to_columns) {
        let (Some(ta), Some(tb)) = (type_of(&fk.from, a), type_of(&fk.to, b)) else {
            continue;
        };
        if text_form(&ta) != text_form(&tb) {
            return Some(format!(
                "{}.{a} is {ta} and {}.{b} is {tb}, which write equal values differently (keys \
                 are compared as text); give both the same type",
                fk.from, fk.to
            ));
        }
    }
    None
}

/// How a type writes its values as text: two columns whose forms are equal write equal values
/// the same way. Integers alike, text and varchar alike, `char(n)` padded to n (`bpchar` not),
/// `numeric(p, s)` with s decimals; a precision does not change the form of times and intervals;
/// any other type is its own form.
fn text_form(type_name: &str) -> String {
    let (base, modifier) = match type_name.split_once('(') {
        Some((b, m)) => {
            let (m, rest) = m.split_once(')').unwrap_or((m, ""));
            (format!("{}{}", b.trim(), rest), m.trim())
        }
        None => (type_name.trim().to_string(), ""),
    };
    match base.as_str() {
        "smallint" | "integer" | "bigint" => "integer".into(),
        "text" | "character varying" => "text".into(),
        "character" => format!(
            "character({})",
            if modifier.is_empty() { "1" } else { modifier }
        ),
        "numeric" => match modifier.split_once(',') {
            Some((_, scale)) => format!("numeric, {} decimals", scale.trim()),
            None if !modifier.is_empty() => "numeric, 0 decimals".into(),
            None => "numeric".into(),
        },
        b if b.starts_with("timestamp")
            || b.starts_with("time ")
            || b == "time"
            || b.starts_with("interval") =>
        {
            b.to_string()
        }
        _ => type_name.trim().to_string(),
    }
}

/// Set each bound table's filter from the outcome (a partition takes its root's). A table whose
/// filter needs a column it does not copy is an error, never a table copied whole.
pub fn apply(
    outcome: &Outcome,
    tables: &[SourceTable],
    bound: &mut [BoundTable],
) -> Result<(), crate::error::Error> {
    for (t, b) in tables.iter().zip(bound.iter_mut()) {
        if let Some(f) = outcome.filters.get(&root(t)) {
            let Some(mut rf) = RowFilter::for_columns(Arc::clone(f), &b.columns) else {
                return Err(crate::error::Error::Bind(crate::diagnostic::Diagnostics(
                    vec![Diagnostic {
                        location: None,
                        message: format!(
                            "subset of {}: its rows are chosen by columns it does not copy",
                            t.name
                        ),
                    }],
                )));
            };
            rf.why = outcome.counts.get(&root(t)).map(|c| match c.read {
                0 => reasons(c),
                n => format!("{} of {n} rows: {}", c.kept(), reasons(c)),
            });
            b.subset = Some(Arc::new(rf));
        }
    }
    Ok(())
}

/// Why a table's rows were kept: "62 sample, 3 always, …".
pub fn reasons(c: &Counts) -> String {
    let mut why = Vec::new();
    for (n, what) in [
        (c.sample, "sample"),
        (c.always, "always"),
        (c.follow, "following kept rows"),
        (c.closure, "referenced by kept rows"),
    ] {
        if n > 0 {
            why.push(format!("{n} {what}"));
        }
    }
    if c.always_unmatched > 0 {
        why.push(format!(
            "{} always_keys entr{} matching no row",
            c.always_unmatched,
            if c.always_unmatched == 1 { "y" } else { "ies" }
        ));
    }
    if c.missing > 0 {
        why.push(format!(
            "{} reference(s) to rows the source does not have",
            c.missing
        ));
    }
    if why.is_empty() {
        "none".into()
    } else {
        why.join(", ")
    }
}

/// One line per table of the outcome, for the log: rows read, kept, and why.
pub fn describe(counts: &BTreeMap<QualifiedName, Counts>) -> Vec<String> {
    counts
        .iter()
        .map(|(name, c)| {
            let read = if c.read > 0 {
                format!(" of {}", c.read)
            } else {
                String::new()
            };
            format!("{name}: {} kept{read} ({})", c.kept(), reasons(c))
        })
        .collect()
}

/// Reads tables from a database under the run's snapshot, as narrow `COPY … TO STDOUT` queries.
pub struct DbScanner<'a> {
    pub client: &'a tokio_postgres::Client,
    /// Per node: (table, partitioned, `where`, `always`).
    pub tables: Vec<(QualifiedName, bool, Option<String>, Option<String>)>,
}

impl DbScanner<'_> {
    /// The scanner for a planner's nodes, with their `where` and `always` from the rules.
    pub fn new<'a>(
        client: &'a tokio_postgres::Client,
        plan: &Plan,
        planner: &Planner,
        tables: &[SourceTable],
    ) -> DbScanner<'a> {
        let nodes = planner
            .graph()
            .nodes
            .iter()
            .map(|n| {
                let partitioned = tables
                    .iter()
                    .any(|t| t.partition_of.as_ref() == Some(&n.name));
                let rules = plan.tables.get(&n.name);
                (
                    n.name.clone(),
                    partitioned,
                    rules.and_then(|r| r.filter.clone()),
                    rules.and_then(|r| r.subset.as_ref()?.always.clone()),
                )
            })
            .collect();
        DbScanner {
            client,
            tables: nodes,
        }
    }
}

impl Scanner for DbScanner<'_> {
    async fn scan(
        &mut self,
        node: usize,
        columns: &[String],
        each: &mut (dyn FnMut(&[Option<&str>], bool) + Send),
    ) -> Result<(), ScanError> {
        use futures_util::StreamExt;
        let (table, partitioned, filter, always) = &self.tables[node];
        let mut cols: Vec<String> = columns
            .iter()
            .map(|c| crate::schema::quote_ident(c))
            .collect();
        if let Some(a) = always {
            cols.push(format!("(({a}) IS TRUE)"));
        }
        let only = if *partitioned { "" } else { "ONLY " };
        let mut sql = format!("SELECT {} FROM {only}{table}", cols.join(", "));
        if let Some(f) = filter {
            sql.push_str(&format!(" WHERE ({f})"));
        }
        let stream = crate::source::postgres::copy_out(
            self.client,
            &format!("COPY ({sql}) TO STDOUT"),
            table,
        )
        .await?;
        let mut stream = std::pin::pin!(stream);
        let mut pending: Vec<u8> = Vec::new();
        let bad = |what: &str| ScanError::Other(format!("reading {table} for the subset: {what}"));
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk?);
            let Some(last) = memchr::memrchr(b'\n', &pending) else {
                continue;
            };
            let text = std::str::from_utf8(&pending[..last]).map_err(|_| bad("invalid UTF-8"))?;
            let mut fields: Vec<&str> = Vec::new();
            let mut values: Vec<Option<std::borrow::Cow<str>>> = Vec::new();
            for line in text.split('\n') {
                crate::copy::split(line, &mut fields);
                values.clear();
                for f in &fields {
                    values.push(crate::copy::decode(f).map_err(|e| bad(&e.to_string()))?);
                }
                let n = columns.len();
                if values.len() != n + usize::from(always.is_some()) {
                    return Err(bad("a row with the wrong number of columns"));
                }
                let kept_always = always.is_some() && values[n].as_deref() == Some("t");
                let row: Vec<Option<&str>> = values[..n].iter().map(|v| v.as_deref()).collect();
                each(&row, kept_always);
            }
            pending.drain(..=last);
        }
        Ok(())
    }
}

/// Rows a pass over a dump collected for the computation: per node, each row's projected values
/// packed into one buffer (a length, or `u32::MAX` for NULL, then the bytes).
#[derive(Debug, Default)]
pub struct Collected {
    columns: Vec<Vec<String>>,
    rows: Vec<Vec<u8>>,
}

impl Collected {
    /// Room for the planner's scans.
    pub fn new(planner: &Planner) -> Self {
        let n = planner.graph().nodes.len();
        let mut columns = vec![Vec::new(); n];
        for (i, cols) in planner.scans() {
            columns[i] = cols.to_vec();
        }
        Collected {
            columns,
            rows: vec![Vec::new(); n],
        }
    }

    /// What to collect from a data block of `table` with `columns`: the node and, for each of its
    /// projected columns, the block's column position.
    pub fn wants(
        &self,
        planner: &Planner,
        table: &SourceTable,
        columns: &[String],
    ) -> Option<(usize, Vec<usize>)> {
        let node = planner
            .graph()
            .nodes
            .iter()
            .position(|n| n.name == root(table))?;
        if self.columns[node].is_empty() {
            return None;
        }
        let at = self.columns[node]
            .iter()
            .map(|c| columns.iter().position(|x| x == c))
            .collect::<Option<Vec<_>>>()?;
        Some((node, at))
    }

    /// Add one row (its projected values).
    pub fn push(&mut self, node: usize, values: &[Option<&str>]) {
        let buf = &mut self.rows[node];
        for v in values {
            match v {
                None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(s) => {
                    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

impl Scanner for Collected {
    async fn scan(
        &mut self,
        node: usize,
        columns: &[String],
        each: &mut (dyn FnMut(&[Option<&str>], bool) + Send),
    ) -> Result<(), ScanError> {
        let stored = &self.columns[node];
        let at: Vec<usize> = columns
            .iter()
            .map(|c| stored.iter().position(|x| x == c))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ScanError::Other("a column the first pass did not collect".into()))?;
        let buf = &self.rows[node];
        let mut pos = 0;
        let mut row: Vec<Option<&str>> = Vec::with_capacity(stored.len());
        let mut out: Vec<Option<&str>> = Vec::with_capacity(at.len());
        while pos < buf.len() {
            row.clear();
            for _ in 0..stored.len() {
                let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"));
                pos += 4;
                if len == u32::MAX {
                    row.push(None);
                } else {
                    let end = pos + len as usize;
                    // Pushed from `&str`, so always UTF-8.
                    row.push(std::str::from_utf8(&buf[pos..end]).ok());
                    pos = end;
                }
            }
            out.clear();
            out.extend(at.iter().map(|&i| row[i]));
            each(&out, false);
        }
        Ok(())
    }
}

/// A failed computation as the run reports it.
pub fn scan_error(e: ScanError) -> crate::error::Error {
    match e {
        ScanError::Db(d) => crate::error::Error::Database(d),
        ScanError::Other(m) => {
            crate::error::Error::Pipeline(Box::new(crate::pipeline::RunFailure {
                error: crate::pipeline::PipelineError::Subset(m),
                report: crate::pipeline::Report::default(),
            }))
        }
    }
}

/// Report an outcome: one line per table in the log, the counts kept for the dry run.
pub fn log_outcome(outcome: &Outcome, seconds: f64) {
    log::info!(
        "subset chosen in {:.0} ms ({} tables filtered)",
        seconds * 1e3,
        outcome.filters.len()
    );
    for line in describe(&outcome.counts) {
        log::info!("subset: {line}");
    }
    // A QA account that is gone should not go unnoticed.
    for (name, c) in &outcome.counts {
        if c.always_unmatched > 0 {
            log::warn!(
                "subset of {name}: {} always_keys {} no row of the source",
                c.always_unmatched,
                if c.always_unmatched == 1 {
                    "entry matches"
                } else {
                    "entries match"
                }
            );
        }
    }
}

/// The subset of a database source under the run's snapshot, set on `bound`. `None` without a
/// subset in the rules; the outcome otherwise.
pub async fn choose_in_database(
    plan: &Plan,
    client: &tokio_postgres::Client,
    catalog: &crate::source::postgres::Catalog,
    bound: &mut [BoundTable],
) -> Result<Option<Outcome>, crate::error::Error> {
    let tables = catalog.source_tables();
    let key = |n: &QualifiedName| {
        catalog
            .tables
            .iter()
            .find(|t| t.name == *n)
            .and_then(|t| t.key.clone())
    };
    let Some(planner) = planner(plan, &tables, bound, &key, &catalog.key_columns, true)
        .map_err(|d| crate::error::Error::Bind(crate::diagnostic::Diagnostics(d)))?
    else {
        return Ok(None);
    };
    let t0 = std::time::Instant::now();
    let mut scanner = DbScanner::new(client, plan, &planner, &tables);
    let outcome = planner.compute(&mut scanner).await.map_err(scan_error)?;
    log_outcome(&outcome, t0.elapsed().as_secs_f64());
    apply(&outcome, &tables, bound)?;
    Ok(Some(outcome))
}

/// The subset of a dump source, set on `bound`: a pass over the dump collects the keys and
/// references of the tables involved, then the computation runs on them. `None` without a subset
/// in the rules.
pub fn choose_in_dump(
    plan: &Plan,
    input: &mut std::fs::File,
    scanned: &crate::source::dump::Prescan,
    bound: &mut [BoundTable],
    policy: crate::source::dump::DumpPolicy,
) -> Result<Option<Outcome>, crate::error::Error> {
    use crate::error::Error;
    use crate::source::dump::{DumpReader, Event};
    let key = |n: &QualifiedName| {
        scanned
            .primary_keys
            .iter()
            .find(|(_, t, _)| t == n)
            .map(|(_, _, k)| k.clone())
    };
    let fks: Vec<ForeignKey> = scanned
        .foreign_keys
        .iter()
        .map(|(_, k)| k.clone())
        .collect();
    let Some(planner) = planner(plan, &scanned.tables, bound, &key, &fks, false)
        .map_err(|d| Error::Bind(crate::diagnostic::Diagnostics(d)))?
    else {
        return Ok(None);
    };
    // A foreign key this reader cannot read would be broken by the subset without a word.
    let unread: Vec<Diagnostic> = scanned
        .unread_references
        .iter()
        .filter(|(_, t)| !plan.references.iter().any(|r| r.key.from == *t))
        .map(|(_, t)| Diagnostic {
            location: None,
            message: format!(
                "subset: the dump declares a foreign key of {t} inside CREATE TABLE or among \
                 several ALTER TABLE subcommands, which is not read; write it as ALTER TABLE … \
                 ADD FOREIGN KEY (…) REFERENCES … (as pg_dump does), or list it in [[references]]"
            ),
        })
        .collect();
    if !unread.is_empty() {
        return Err(Error::Bind(crate::diagnostic::Diagnostics(unread)));
    }
    let t0 = std::time::Instant::now();
    super::open::rewind(input)?;
    let mut collected = Collected::new(&planner);
    let mut reader = DumpReader::new(&mut *input, 4096, 1 << 20).with_policy(policy);
    let mut current = None;
    let fail = |error: crate::pipeline::PipelineError| {
        Error::Pipeline(Box::new(crate::pipeline::RunFailure {
            error,
            report: crate::pipeline::Report::default(),
        }))
    };
    let mut values: Vec<Option<String>> = Vec::new();
    while let Some(ev) = reader.next_event().map_err(super::open::scan_error)? {
        match ev {
            Event::DataStart {
                block,
                table,
                columns,
                format,
                ..
            } => {
                current = scanned
                    .tables
                    .get(block)
                    .filter(|t| t.name == table)
                    .and_then(|t| collected.wants(&planner, t, &columns))
                    .map(|(node, at)| (node, at, format, table, columns.len()));
            }
            Event::Rows {
                data,
                tuples,
                first_line,
                ..
            } => {
                let Some((node, at, format, table, width)) = &current else {
                    continue;
                };
                let batch = crate::pipeline::Batch {
                    data,
                    tuples,
                    first_line: Some(first_line),
                    first_row: 1,
                };
                let text = crate::pipeline::to_copy_text(table, format, &batch, *width)
                    .map_err(|e| fail(e.into()))?;
                let text = std::str::from_utf8(&text).map_err(|_| {
                    fail(crate::pipeline::PipelineError::Subset(format!(
                        "{table}: invalid UTF-8 near dump line {first_line}"
                    )))
                })?;
                let mut fields: Vec<&str> = Vec::new();
                for line in text.lines() {
                    crate::copy::split(line, &mut fields);
                    values.clear();
                    for &i in at {
                        let f = fields.get(i).ok_or_else(|| {
                            fail(crate::pipeline::PipelineError::Subset(format!(
                                "{table}: a row with {} fields near dump line {first_line}, expected {width}",
                                fields.len()
                            )))
                        })?;
                        let v = crate::copy::decode(f).map_err(|e| {
                            fail(crate::pipeline::PipelineError::Subset(format!(
                                "{table} near dump line {first_line}: {e}"
                            )))
                        })?;
                        values.push(v.map(|v| v.into_owned()));
                    }
                    let row: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
                    collected.push(*node, &row);
                }
            }
            Event::DataEnd { .. } => current = None,
            _ => {}
        }
    }
    log::info!(
        "subset: a pass over the dump collected {} KiB of keys and references",
        collected.bytes() / 1024
    );
    let runtime = crate::db::runtime(1).map_err(Error::runtime)?;
    let outcome = runtime
        .block_on(planner.compute(&mut collected))
        .map_err(scan_error)?;
    log_outcome(&outcome, t0.elapsed().as_secs_f64());
    apply(&outcome, &scanned.tables, bound)?;
    super::open::rewind(input)?;
    Ok(Some(outcome))
}
