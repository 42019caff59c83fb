//! Bind phase: match the plan against the tables and columns the source really has.
//!
//! Every source column gets a [`CellOp`] by position, so the per-row loop never looks up a name.
//! Uncovered tables and columns (schema drift in production) and rules that name tables or columns
//! the source does not have are all reported together; the run stops before anything is written.

use std::collections::{BTreeMap, BTreeSet};

use super::build::{ColumnOp, ColumnPlan, Plan, TablePlan, Uncovered};
use super::{suggest, Diagnostic, QualifiedName};
pub use crate::schema::{ColumnMeta, SourceTable, TypeKind};
use crate::transform::condition::{self, ColType, Condition, EvalError};
use crate::transform::text::{Piece, Template};
use crate::transform::Transform;

/// Whether a rule can work on a column of this type and constraints; the problem if not.
fn check_fit(op: &ColumnOp, unique: bool, m: &ColumnMeta) -> Option<String> {
    let t = match op {
        ColumnOp::Transform(t) => Some(t),
        ColumnOp::Template(_) => None,
    };
    if matches!(t, Some(Transform::Null)) {
        return m.not_null.then(|| {
            "is NOT NULL, so \"null\" would fail the load; use a rule that writes a value"
                .to_string()
        });
    }
    if m.unique && !unique {
        return Some(
            "has a UNIQUE constraint or primary key; its rule must promise distinct values \
             (\"keep\", hash = { format = \"preserve\" }, a hash or fake with unique = true)"
                .to_string(),
        );
    }
    // In a composite or partial unique index: distinct in, distinct out, or a date shifted by an
    // offset per value of another column of the index (`by`), which keeps its rows apart.
    for group in &m.unique_with {
        // (Shifting a date is one-to-one for one offset; noise rounds, so it is not.)
        let by_in_group = matches!(t, Some(Transform::Shift(_)))
            && t.and_then(Transform::by_column)
                .is_some_and(|b| group.iter().any(|g| g == b));
        if !unique && !by_in_group {
            return Some(format!(
                "is in the unique index on ({}); its rule must promise distinct values \
                 (\"keep\", hash = {{ format = \"preserve\" }}, a hash or fake with unique = true) \
                 or take an offset by = another column of that index",
                group.join(", ")
            ));
        }
    }
    let kind_ok = match t {
        Some(Transform::Shift(_) | Transform::Truncate(_)) => {
            matches!(
                m.kind,
                TypeKind::Date | TypeKind::Timestamp | TypeKind::Text
            )
        }
        Some(Transform::Noise(_)) => matches!(m.kind, TypeKind::Number | TypeKind::Text),
        Some(Transform::Json(_)) => matches!(m.kind, TypeKind::Json | TypeKind::Text),
        _ => true,
    };
    if !kind_ok {
        return Some(format!(
            "is of type {}, which this rule cannot read",
            m.type_name
        ));
    }
    let (Some(t), Some(max)) = (t, m.max_len) else {
        return None;
    };
    // The original's length (keep, mask, preserve) or a date or number: nothing to fit.
    if !matches!(
        t,
        Transform::Set(_)
            | Transform::Fake(_)
            | Transform::Scrub(_)
            | Transform::Regex(_)
            | Transform::Fit(..)
    ) && !matches!(t, Transform::Hash(h) if h.output_len().is_some())
    {
        return None;
    }
    // Rules that fit by construction (see `fit_to_column`) pass; the others are refused when their
    // outputs could be longer than the column.
    if fit_to_column(t, max).is_some() {
        return None;
    }
    let bound = t.max_output_chars();
    if bound.is_some_and(|b| b <= max) {
        return None;
    }
    let writes = bound.map_or_else(
        || "outputs of no fixed length".to_string(),
        |b| format!("up to {b} characters"),
    );
    let suggestion = match t {
        Transform::Hash(_) if !unique => format!("use hash = {{ length = {max} }}"),
        Transform::Hash(_) if max >= 24 => {
            format!("use hash = {{ length = {max} }} (unique from 24 characters up)")
        }
        Transform::Fake(f) if f.min_unique_len().is_some() => format!(
            "widen the column to at least {} characters (the shortest form of this fake), or use hash = {{ format = \"preserve\" }}, which keeps each value's length",
            f.min_unique_len().unwrap_or(0)
        ),
        Transform::Hash(_) | Transform::Fake(_) => {
            "widen the column, or use hash = { format = \"preserve\" }, which keeps each value's length"
                .to_string()
        }
        Transform::Set(_) => format!("set a value of at most {max} characters"),
        _ => "widen the column".to_string(),
    };
    Some(format!(
        "is {} (at most {max} characters), and this rule writes {writes}: {suggestion}{}",
        m.type_name,
        if unique {
            " (a unique rule is never cut: two values could become one)"
        } else {
            ""
        }
    ))
}

/// A rule made to fit a column of `max` characters by construction, or `None` when it already
/// does or must not be changed: a fake that does not promise unique values is drawn again until
/// it fits (then cut), scrubbed or regex-replaced text is cut. Unique rules, `set` values and
/// hashes are never cut (check refuses them when too long).
/// Noise clamped to what a number column holds (numeric(p, s), the integer types), and `preserve`
/// kept within an integer type's range, so that no result overflows it.
fn clamp_to_column(t: &Transform, m: &ColumnMeta) -> Option<Transform> {
    let int_max = match m.type_name.as_str() {
        "smallint" => Some(i16::MAX as u128),
        "integer" => Some(i32::MAX as u128),
        "bigint" => Some(i64::MAX as u128),
        _ => None,
    };
    match t {
        Transform::Noise(n) if m.kind == TypeKind::Number => {
            n.within_type(&m.type_name).map(Transform::Noise)
        }
        Transform::Hash(h) => int_max.map(|max| Transform::Hash(h.within_integer(max))),
        _ => None,
    }
}

fn fit_to_column(t: &Transform, max: usize) -> Option<Transform> {
    if t.max_output_chars().is_some_and(|b| b <= max) {
        return None;
    }
    let fits = match t {
        Transform::Fake(f) => !f.is_unique() || f.min_unique_len().is_some_and(|m| m <= max),
        Transform::Scrub(_) | Transform::Regex(_) => true,
        Transform::Fit(inner, _) => return fit_to_column(inner, max),
        _ => false,
    };
    fits.then(|| t.clone().fitted(max))
}

/// What happens to one cell, by column position.
#[derive(Debug, Clone)]
pub enum CellOp {
    /// The original bytes go through untouched.
    Pass,
    Apply(Transform),
    /// A rule keyed by another column's original value (`by`), at this position.
    ApplyBy(Transform, usize),
    /// A `scrub` that also looks for the values of these columns (the `names` detector): it
    /// reads their original and anonymized values.
    ApplyWith(Transform, Vec<usize>),
    Template(Template),
    /// A conditional rule: the first branch whose condition holds on the row's original values,
    /// else the default.
    When(std::sync::Arc<WhenOp>),
}

impl CellOp {
    /// The operations a row of this cell can get: a conditional rule's alternatives, else itself.
    pub fn alternatives(&self) -> Vec<&CellOp> {
        match self {
            CellOp::When(w) => w.alternatives().collect(),
            other => vec![other],
        }
    }

    /// The external commands this cell may run, in any alternative.
    pub fn commands(&self) -> Vec<&crate::external::Command> {
        self.alternatives()
            .into_iter()
            .filter_map(|op| match op {
                CellOp::Apply(t) => t.external(),
                _ => None,
            })
            .collect()
    }
}

/// One bound `when` alternative.
#[derive(Debug)]
pub struct Branch {
    pub condition: Condition,
    pub op: CellOp,
    /// `if <condition>`, for reports and previews.
    pub label: String,
    /// The branch's rule as the report writes a rule (`fake = "email", unique`).
    pub rule: String,
    unique: bool,
    location: super::Location,
}

/// A conditional rule bound to a table: its branches, its default, and the rows each took.
#[derive(Debug)]
pub struct WhenOp {
    pub branches: Vec<Branch>,
    pub default: CellOp,
    /// Every column a condition reads.
    pub reads: Vec<usize>,
    /// Rows per alternative (the branches', then the default's).
    counts: Vec<std::sync::atomic::AtomicU64>,
}

impl WhenOp {
    fn new(branches: Vec<Branch>, default: CellOp) -> Self {
        let mut reads: Vec<usize> = branches
            .iter()
            .flat_map(|b| b.condition.columns().iter().copied())
            .collect();
        reads.sort_unstable();
        reads.dedup();
        let counts = (0..=branches.len())
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        WhenOp {
            branches,
            default,
            reads,
            counts,
        }
    }

    /// The alternative a row takes: the index of the first branch whose condition holds, or
    /// `branches.len()` for the default. `get` reads a column's original value.
    pub fn choose<'a, E>(
        &self,
        get: &mut dyn FnMut(usize) -> Result<Option<std::borrow::Cow<'a, str>>, E>,
    ) -> Result<usize, EvalError<E>> {
        for (k, b) in self.branches.iter().enumerate() {
            if b.condition.eval(get)? {
                return Ok(k);
            }
        }
        Ok(self.branches.len())
    }

    /// Every alternative's operation: the branches', then the default.
    pub fn alternatives(&self) -> impl Iterator<Item = &CellOp> {
        self.branches.iter().map(|b| &b.op).chain([&self.default])
    }

    /// The operation of alternative `k` (as [`WhenOp::choose`] numbers them).
    pub fn op(&self, k: usize) -> &CellOp {
        self.branches.get(k).map_or(&self.default, |b| &b.op)
    }

    /// The label of alternative `k`: `if <condition>`, or `else`.
    pub fn label(&self, k: usize) -> &str {
        self.branches.get(k).map_or("else", |b| b.label.as_str())
    }

    /// Count rows that took each alternative (`counts[k]` rows took alternative `k`).
    pub fn count(&self, counts: &[u64]) {
        for (c, n) in self.counts.iter().zip(counts) {
            if *n > 0 {
                c.fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// (label, rows) per alternative, so far.
    pub fn counted(&self) -> Vec<(String, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                (
                    self.label(k).to_string(),
                    c.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum TableAction {
    /// Copy rows through these per-column operations.
    Copy { ops: Vec<CellOp> },
    /// Copy no rows (`skip = true`).
    Skip,
}

#[derive(Debug, Clone)]
pub struct BoundTable {
    pub name: QualifiedName,
    pub columns: Vec<String>,
    /// The rule of each column, for reports (`keep`, `fake = "email"`, `uncovered (kept)`).
    pub rules: Vec<String>,
    pub action: TableAction,
    /// The rows a subset keeps (none: every row).
    pub subset: Option<std::sync::Arc<crate::subset::RowFilter>>,
}

impl BoundTable {
    /// A table whose rows are never read (`skip = true`, or a foreign table).
    fn skipped(table: &SourceTable) -> Self {
        BoundTable {
            name: table.name.clone(),
            columns: table.columns.clone(),
            rules: vec!["skip".into(); table.columns.len()],
            action: TableAction::Skip,
            subset: None,
        }
    }

    /// Whether any cell is transformed (otherwise whole rows pass through as bytes).
    pub fn transforms_anything(&self) -> bool {
        match &self.action {
            TableAction::Copy { ops } => ops.iter().any(|o| !matches!(o, CellOp::Pass)),
            TableAction::Skip => false,
        }
    }
}

/// Bind a plan to the source's tables. Returns one bound table per source table, in source order.
pub fn bind(plan: &Plan, source: &[SourceTable]) -> Result<Vec<BoundTable>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // (database section, table) → (whole table, columns).
    let mut uncovered: UncoveredColumns = BTreeMap::new();
    // (database section, table) of every rule used.
    let mut used_rules: BTreeSet<(Option<&str>, &QualifiedName)> = BTreeSet::new();
    let mut bound = Vec::with_capacity(source.len());

    for table in source {
        let section = table
            .database
            .as_deref()
            .filter(|d| plan.databases.contains_key(*d));
        let rules: Option<&TablePlan> =
            plan.table_rules(section, &table.name, table.partition_of.as_ref());
        let Some(rules) = rules else {
            if table.foreign {
                // Never read, whatever `uncovered` says: say so explicitly.
                diags.push(Diagnostic {
                    location: None,
                    message: format!(
                        "table {} is a foreign table, which is never read: add `[{}tables.{}]` \
                         with `skip = true`",
                        table.name,
                        section
                            .map(|d| format!("databases.{}.", toml_key(d)))
                            .unwrap_or_default(),
                        table.name.rules_key()
                    ),
                });
                bound.push(BoundTable::skipped(table));
                continue;
            }
            if plan.uncovered == Uncovered::Fail {
                // Partitions under their partitioned table, once.
                let entry = uncovered
                    .entry((section, table.partition_of.as_ref().unwrap_or(&table.name)))
                    .or_insert(Uncovered_ {
                        whole: true,
                        columns: Vec::new(),
                        rules_at: None,
                    });
                for (i, c) in table.columns.iter().enumerate() {
                    if !entry.columns.iter().any(|(e, _)| e == c) {
                        entry
                            .columns
                            .push((c.as_str(), table.meta.as_ref().and_then(|m| m.get(i))));
                    }
                }
            }
            bound.push(BoundTable {
                name: table.name.clone(),
                columns: table.columns.clone(),
                rules: vec!["uncovered (kept)".into(); table.columns.len()],
                action: TableAction::Copy {
                    ops: vec![CellOp::Pass; table.columns.len()],
                },
                subset: None,
            });
            continue;
        };
        used_rules.insert((section, &rules.name));
        if table.foreign && !rules.skip {
            diags.push(Diagnostic {
                location: Some(rules.location.clone()),
                message: format!(
                    "table {} is a foreign table, which is never read (it would read another \
                     server, perhaps production itself): its rule is skip = true",
                    table.name
                ),
            });
        }
        if rules.skip {
            bound.push(BoundTable::skipped(table));
            continue;
        }
        let position: BTreeMap<&str, usize> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let candidates: Vec<&str> = table.columns.iter().map(String::as_str).collect();
        for (col, cp) in &rules.columns {
            if !position.contains_key(col.as_str()) {
                // A rule for a generated column (never in COPY data) finds no near name either.
                let hint = suggest(col, &candidates).map_or_else(
                    || " (generated columns are never copied)".to_string(),
                    |s| format!(" (did you mean {s}?)"),
                );
                diags.push(Diagnostic {
                    location: Some(cp.location.clone()),
                    message: format!("column {}.{col} is not in the source{hint}", table.name),
                });
            }
        }
        let mut ops = Vec::with_capacity(table.columns.len());
        let mut descriptions = Vec::with_capacity(table.columns.len());
        for (i, col) in table.columns.iter().enumerate() {
            if let (Some(cp), Some(meta)) = (
                rules.columns.get(col),
                table.meta.as_ref().and_then(|m| m.get(i)),
            ) {
                // Every alternative of a conditional rule meets the column's constraints.
                let alternatives = cp
                    .when
                    .iter()
                    .map(|b| (&b.op, b.unique, &b.location))
                    .chain([(&cp.op, cp.unique, &cp.location)]);
                for (op, unique, location) in alternatives {
                    if let Some(problem) = check_fit(op, unique, meta) {
                        diags.push(Diagnostic {
                            location: Some(location.clone()),
                            message: format!("column {}.{col} {problem}", table.name),
                        });
                    }
                }
            }
            match rules.columns.get(col) {
                None => {
                    if plan.uncovered == Uncovered::Fail {
                        // Under the table whose rules apply (a partition's parent): once each.
                        let entry = uncovered
                            .entry((section, &rules.name))
                            .or_insert(Uncovered_ {
                                whole: false,
                                columns: Vec::new(),
                                rules_at: Some(&rules.location),
                            });
                        if !entry.columns.iter().any(|(c, _)| c == col) {
                            entry
                                .columns
                                .push((col, table.meta.as_ref().and_then(|m| m.get(i))));
                        }
                    }
                    ops.push(CellOp::Pass);
                    descriptions.push("uncovered (kept)".to_string());
                }
                Some(cp) => {
                    let cx = ColumnCx {
                        table,
                        rules,
                        position: &position,
                        candidates: &candidates,
                    };
                    let (op, description) = if cp.when.is_empty() {
                        bind_rule(&cx, i, col, cp, &mut diags)
                    } else {
                        bind_when(&cx, i, col, cp, &mut diags)
                    };
                    ops.push(op);
                    descriptions.push(description);
                }
            }
        }
        bound.push(BoundTable {
            name: table.name.clone(),
            columns: table.columns.clone(),
            rules: descriptions,
            action: TableAction::Copy { ops },
            subset: None,
        });
    }

    unused_rules(plan, source, &used_rules, &mut diags);
    if !uncovered.is_empty() {
        diags.push(uncovered_diagnostic(plan, &uncovered));
    }
    if diags.is_empty() {
        Ok(bound)
    } else {
        Err(diags)
    }
}

/// The table a column's rule is bound in: its source table, its rules and its columns' positions.
struct ColumnCx<'a> {
    table: &'a SourceTable,
    rules: &'a TablePlan,
    position: &'a BTreeMap<&'a str, usize>,
    candidates: &'a [&'a str],
}

/// What a table's rules say of one column, resolved against the source: the cell's operation
/// (fitted to the column, keyed `by` another, reading the row's names) and its description.
fn bind_rule(
    cx: &ColumnCx,
    i: usize,
    col: &str,
    cp: &ColumnPlan,
    diags: &mut Vec<Diagnostic>,
) -> (CellOp, String) {
    let table = cx.table;
    // (In a table whose other columns are anonymized: it holds their words.)
    if matches!(cp.op, ColumnOp::Transform(Transform::Keep))
        && cx
            .rules
            .columns
            .values()
            .any(|c| !matches!(c.op, ColumnOp::Transform(Transform::Keep)))
        && table
            .meta
            .as_ref()
            .and_then(|m| m.get(i))
            .is_some_and(|m| m.type_name == "tsvector")
    {
        log::warn!(
            "{}: column {}.{col} is a tsvector kept as it is, in a table whose other columns are anonymized: it holds every word of the columns it is built from (names, emails); \"null\" it and rebuild it in staging with a fixture if the application searches",
            cp.location,
            table.name
        );
    }
    let limit = table
        .meta
        .as_ref()
        .and_then(|m| m.get(i))
        .and_then(|m| m.max_len);
    let fitted = match (&cp.op, limit) {
        // A command's answers are checked against the column's length as they come.
        (ColumnOp::Transform(Transform::External(c)), Some(max)) => Some(Transform::External(
            std::sync::Arc::new(c.with_max_chars(max)),
        )),
        (ColumnOp::Transform(t), Some(max)) if t.by_column().is_none() => fit_to_column(t, max),
        _ => None,
    };
    let clamped = match &cp.op {
        ColumnOp::Transform(t) => table
            .meta
            .as_ref()
            .and_then(|m| m.get(i))
            .and_then(|m| clamp_to_column(t, m)),
        ColumnOp::Template(_) => None,
    };
    let description = match (&fitted, &cp.op, limit) {
        (_, ColumnOp::Transform(Transform::External(_)), Some(n)) => {
            format!("{}, answers of at most {n} characters", cp.rule)
        }
        (Some(_), _, Some(n)) | (None, ColumnOp::Template(_), Some(n)) => {
            format!("{}, fitted to {n} characters", cp.rule)
        }
        _ => cp.rule.clone(),
    };
    let op = match &cp.op {
        ColumnOp::Transform(Transform::Keep) => CellOp::Pass,
        ColumnOp::Transform(t) if !t.names_from().is_empty() => {
            let mut at = Vec::new();
            for name in t.names_from() {
                // The names are replaced by their anonymized values, computed before this
                // column: a template or another such scrub is not (its original would stay).
                let derived = cx.rules.columns.get(name).is_some_and(|c| {
                    c.alternatives().any(|op| match op {
                        ColumnOp::Template(_) => true,
                        ColumnOp::Transform(t) => !t.names_from().is_empty(),
                    })
                });
                match cx.position.get(name.as_str()) {
                    Some(&p) if derived && p != i => diags.push(Diagnostic {
                        location: Some(cp.location.clone()),
                        message: format!(
                            "scrub of {}.{col} looks for the names in column {name}, whose rule is a template or another names scrub: name the columns it is built from",
                            table.name
                        ),
                    }),
                    Some(&p) if p != i => at.push(p),
                    found => {
                        let why = if found.is_some() {
                            " (the column itself)".to_string()
                        } else {
                            suggest(name, cx.candidates)
                                .map(|s| format!(" (did you mean {s}?)"))
                                .unwrap_or_default()
                        };
                        diags.push(Diagnostic {
                            location: Some(cp.location.clone()),
                            message: format!(
                                "scrub of {}.{col} looks for the names in column {name}, which is not another column of the source{why}",
                                table.name
                            ),
                        });
                    }
                }
            }
            CellOp::ApplyWith(fitted.unwrap_or_else(|| t.clone()), at)
        }
        ColumnOp::Transform(t) => match t.by_column() {
            None => CellOp::Apply(fitted.or(clamped).unwrap_or_else(|| t.clone())),
            Some(by) => match cx.position.get(by) {
                Some(&p) => CellOp::ApplyBy(clamped.unwrap_or_else(|| t.clone()), p),
                None => {
                    let hint = suggest(by, cx.candidates)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default();
                    diags.push(Diagnostic {
                        location: Some(cp.location.clone()),
                        message: format!(
                            "rule of {}.{col} is keyed by column {by}, which is not in the source{hint}",
                            table.name
                        ),
                    });
                    CellOp::Pass
                }
            },
        },
        ColumnOp::Template(pieces) => CellOp::Template({
            let t = bind_template(
                pieces,
                cx.rules,
                table,
                col,
                cx.position,
                cx.candidates,
                &cp.location,
                diags,
            );
            match limit {
                Some(n) => t.fitted(n),
                None => t,
            }
        }),
    };
    (op, description)
}

/// A conditional rule bound: each branch's condition to the table's columns (type-checked), each
/// alternative's rule as a cell operation, and, in a column that must stay unique, the proof
/// that no two alternatives can write the same value (see [`distinct_alternatives`]).
fn bind_when(
    cx: &ColumnCx,
    i: usize,
    col: &str,
    cp: &ColumnPlan,
    diags: &mut Vec<Diagnostic>,
) -> (CellOp, String) {
    let table = cx.table;
    let meta = table.meta.as_ref().and_then(|m| m.get(i));
    let col_type = |p: usize| -> ColType {
        match table.meta.as_ref().and_then(|m| m.get(p)) {
            None => table
                .declared_types
                .get(p)
                .and_then(Option::as_deref)
                .map_or(ColType::Unknown, declared_type),
            Some(m) => catalog_type(m),
        }
    };
    let mut branches = Vec::with_capacity(cp.when.len());
    let mut failed = false;
    for b in &cp.when {
        let mut known = true;
        for (name, offset) in b.condition.columns() {
            if !cx.position.contains_key(name.as_str()) {
                let hint = suggest(&name, cx.candidates)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                diags.push(Diagnostic {
                    location: Some(b.at.locate(offset)),
                    message: format!(
                        "condition of {}.{col}: column {name} is not in the source{hint}",
                        table.name
                    ),
                });
                known = false;
            }
        }
        if !known {
            failed = true;
            continue;
        }
        let resolve = |n: &str| cx.position.get(n).map(|&p| (p, col_type(p)));
        let condition = match condition::bind(&b.condition, &resolve) {
            Ok(c) => c,
            Err(errors) => {
                for e in errors {
                    diags.push(Diagnostic {
                        location: Some(b.at.locate(e.offset)),
                        message: format!("condition of {}.{col}: {}", table.name, e.message),
                    });
                }
                failed = true;
                continue;
            }
        };
        let branch = ColumnPlan {
            rule: b.rule.clone(),
            op: b.op.clone(),
            unique: b.unique,
            location: b.location.clone(),
            when: Vec::new(),
        };
        let (op, _) = bind_rule(cx, i, col, &branch, diags);
        branches.push(Branch {
            condition,
            op,
            label: format!("if {}", b.text),
            rule: b.rule.clone(),
            unique: b.unique,
            location: b.location.clone(),
        });
    }
    let (default, _) = bind_rule(cx, i, col, cp, diags);
    if failed {
        return (CellOp::Pass, cp.rule.clone());
    }
    let must_be_distinct = cp.unique || meta.is_some_and(|m| m.unique || !m.unique_with.is_empty());
    let default_unique = cp.unique || matches!(default, CellOp::Pass);
    let mut default = default;
    if must_be_distinct {
        if let Err(why) = distinct_alternatives(i, &mut branches, &mut default, default_unique) {
            diags.push(Diagnostic {
                location: Some(cp.location.clone()),
                message: format!(
                    "column {}.{col} must stay unique, and its alternatives could write the same value twice: {why}",
                    table.name
                ),
            });
        }
    }
    let op = WhenOp::new(branches, default);
    (CellOp::When(std::sync::Arc::new(op)), cp.rule.clone())
}

/// A condition's type for a column as the catalog describes it: numbers (not money, oid, reg*:
/// their text is not a plain number), booleans, text (char(n) without its padding, citext only
/// through lower()/upper()), dates and timestamps as their ISO text, and every other type
/// compared by its text for equality only (an enum, a uuid, json: their order is their type's).
fn catalog_type(m: &ColumnMeta) -> ColType {
    let name = m.type_name.as_str();
    match m.kind {
        _ if name == "boolean" => ColType::Bool,
        TypeKind::Number
            if !matches!(name, "money" | "oid" | "xid" | "xid8" | "cid" | "tid")
                && !name.starts_with("reg") =>
        {
            ColType::Number
        }
        TypeKind::Text
            if name == "bpchar" || name == "character" || name.starts_with("character(") =>
        {
            ColType::Char
        }
        TypeKind::Text if name == "citext" || name.ends_with(".citext") => ColType::CaseInsensitive,
        TypeKind::Text | TypeKind::Date | TypeKind::Timestamp => ColType::Text,
        _ => ColType::Opaque,
    }
}

/// A condition's type for a column of a type as a dump's `CREATE TABLE` writes it, by the same
/// families as [`catalog_type`]; a type of the schema (a domain, an enum) is opaque, since the
/// dump's data does not say what it is built on.
fn declared_type(t: &str) -> ColType {
    if t.ends_with("citext") {
        return ColType::CaseInsensitive;
    }
    if t.ends_with(']') || t.starts_with('"') || t.contains('.') {
        return ColType::Opaque;
    }
    let mut words = t.split(' ');
    let first = words.next().unwrap_or("");
    match first {
        "smallint" | "integer" | "int" | "int2" | "int4" | "int8" | "bigint" | "numeric"
        | "decimal" | "real" | "float" | "float4" | "float8" | "double" | "smallserial"
        | "serial" | "bigserial" | "serial2" | "serial4" | "serial8" => ColType::Number,
        "boolean" | "bool" => ColType::Bool,
        "character" | "char" if words.next() == Some("varying") => ColType::Text,
        "character" | "char" | "bpchar" => ColType::Char,
        "text" | "varchar" | "name" | "date" | "timestamp" | "timestamptz" | "time" | "timetz"
        | "interval" => ColType::Text,
        _ => ColType::Opaque,
    }
}

/// What an alternative of a unique column writes, for telling whether two can collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// The original (`keep`).
    Original,
    /// NULL, which never collides.
    Null,
    /// Values carrying a keyed tag of the input of at least 96 bits (a unique fake, a unique hash
    /// that is not `preserve`): two such rules collide no more often than one does with itself.
    Tagged,
    /// Distinct values of some other shape (`preserve`, a command's promise).
    Other,
    /// Values with no promise of being distinct.
    Repeats,
}

fn writes(op: &CellOp, unique: bool) -> Writes {
    let t = match op {
        CellOp::Pass => return Writes::Original,
        CellOp::Apply(t) | CellOp::ApplyBy(t, _) | CellOp::ApplyWith(t, _) => t,
        _ => return Writes::Repeats,
    };
    match t.innermost() {
        Transform::Null => Writes::Null,
        Transform::Keep => Writes::Original,
        Transform::Fake(f) if f.is_unique() => Writes::Tagged,
        Transform::Hash(h) if unique && h.output_len().is_some() => Writes::Tagged,
        _ if unique => Writes::Other,
        _ => Writes::Repeats,
    }
}

/// Whether a unique column's alternatives can never write the same value twice, and if so the
/// branches' rules guarded so that they cannot. The decision:
/// - kept values never collide with each other, NULLs never collide;
/// - two tagged rules (unique fakes, unique hashes other than `preserve`) collide no more than
///   one rule does with itself;
/// - a tagged rule next to a `keep` branch: the keep branch's condition must test the column
///   itself (its `AND` parts that read only this column, e.g. `email LIKE '%@acme.test'`); every
///   value the tagged rule writes is checked against that test while the rows are written, and
///   a value that passes it stops the run (it could be a kept value). A kept default has no
///   condition, so it cannot be told apart, and is refused next to a generating branch;
/// - any other rule (`preserve`, a command) is accepted only as the column's one writing rule
///   beside NULLs.
fn distinct_alternatives(
    col: usize,
    branches: &mut [Branch],
    default: &mut CellOp,
    default_unique: bool,
) -> Result<(), String> {
    let kinds: Vec<Writes> = branches
        .iter()
        .map(|b| writes(&b.op, b.unique))
        .chain([writes(default, default_unique)])
        .collect();
    let name = |k: usize| {
        if k < branches.len() {
            format!("branch {} (at {})", k + 1, branches[k].location)
        } else {
            "the default".to_string()
        }
    };
    if let Some(r) = kinds.iter().position(|k| *k == Writes::Repeats) {
        return Err(format!(
            "{} does not promise distinct values; give it unique = true (a fake kind or hash that can promise it), keep, or \"null\"",
            name(r)
        ));
    }
    let writing: Vec<usize> = (0..kinds.len())
        .filter(|&k| kinds[k] != Writes::Null)
        .collect();
    if let Some(&o) = writing.iter().find(|&&k| kinds[k] == Writes::Other) {
        if writing.len() > 1 {
            return Err(format!(
                "{} writes distinct values of its own kind (a preserve hash or a command), which could equal the values of another alternative; give every non-null alternative a unique fake or hash, or keep",
                name(o)
            ));
        }
        return Ok(());
    }
    let tagged = kinds.contains(&Writes::Tagged);
    if !tagged {
        return Ok(());
    }
    let mut guards = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        if *kind != Writes::Original {
            continue;
        }
        if k == branches.len() {
            return Err("the default keeps values and another alternative generates them, so a generated value could equal a kept one; keep in a branch whose condition tests the column (e.g. email LIKE '%@acme.test') and generate in the default".to_string());
        }
        match branches[k].condition.guard(col) {
            Some(g) => guards.push(g),
            None => {
                return Err(format!(
                    "{} keeps values with a condition that does not test the column itself, so a generated value could equal a kept one; add a test of the column to it (e.g. email LIKE '%@acme.test')",
                    name(k)
                ))
            }
        }
    }
    if guards.is_empty() {
        return Ok(());
    }
    let guards: std::sync::Arc<[condition::Guard]> = guards.into();
    let guard = |op: &mut CellOp| {
        if let CellOp::Apply(t) | CellOp::ApplyBy(t, _) | CellOp::ApplyWith(t, _) = op {
            *t = Transform::Guarded(Box::new(t.clone()), guards.clone());
        }
    };
    for (k, kind) in kinds.iter().enumerate() {
        if *kind == Writes::Tagged {
            if k < branches.len() {
                guard(&mut branches[k].op);
            } else {
                guard(default);
            }
        }
    }
    Ok(())
}

/// A template's pieces with column names resolved to positions in the table's COPY row.
#[allow(clippy::too_many_arguments)] // (the pieces of one column's binding, all borrowed)
fn bind_template(
    pieces: &[Piece<String>],
    rules: &TablePlan,
    table: &SourceTable,
    col: &str,
    position: &BTreeMap<&str, usize>,
    candidates: &[&str],
    location: &super::Location,
    diags: &mut Vec<Diagnostic>,
) -> Template {
    let mut bound = Vec::with_capacity(pieces.len());
    for p in pieces {
        bound.push(match p {
            Piece::Literal(s) => Piece::Literal(s.clone()),
            Piece::Column(name) => {
                let referenced = rules.columns.get(name);
                if referenced.is_some_and(|c| {
                    c.alternatives()
                        .any(|op| matches!(op, ColumnOp::Template(_)))
                }) {
                    diags.push(Diagnostic {
                        location: Some(location.clone()),
                        message: format!("template of {}.{col} uses {name}, which is itself a template; templates read plain columns", table.name),
                    });
                }
                match position.get(name.as_str()) {
                    Some(&i) => Piece::Column(i),
                    None => {
                        let hint = suggest(name, candidates)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default();
                        diags.push(Diagnostic {
                            location: Some(location.clone()),
                            message: format!("template of {}.{col} uses column {name}, which is not in the source{hint}", table.name),
                        });
                        Piece::Column(0)
                    }
                }
            }
        });
    }
    Template::new(bound)
}

/// Rules naming tables (or databases) the source does not have.
fn unused_rules(
    plan: &Plan,
    source: &[SourceTable],
    used_rules: &BTreeSet<(Option<&str>, &QualifiedName)>,
    diags: &mut Vec<Diagnostic>,
) {
    let parents: BTreeSet<&QualifiedName> = source
        .iter()
        .filter_map(|t| t.partition_of.as_ref())
        .collect();
    let source_names: Vec<String> = source.iter().map(|t| t.name.to_string()).collect();
    let source_refs: Vec<&str> = source_names.iter().map(String::as_str).collect();
    let databases: BTreeSet<&str> = source
        .iter()
        .filter_map(|t| t.database.as_deref())
        .collect();
    let sections = std::iter::once((None, &plan.tables))
        .chain(plan.databases.iter().map(|(d, t)| (Some(d.as_str()), t)));
    for (section, tables) in sections {
        if let Some(d) = section {
            if !databases.contains(d) {
                let location = tables.values().next().map(|t| t.location.clone());
                diags.push(Diagnostic {
                    location,
                    message: format!(
                        "database {d} is not in the source ([databases] sections name the \
                         databases of a pg_dumpall file)"
                    ),
                });
                continue;
            }
        }
        for (name, t) in tables {
            if !used_rules.contains(&(section, name)) && !parents.contains(name) {
                let hint = suggest(&name.to_string(), &source_refs)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                let place = section
                    .map(|d| format!(" of database {d}"))
                    .unwrap_or_default();
                diags.push(Diagnostic {
                    location: Some(t.location.clone()),
                    message: format!("table {name}{place} is not in the source{hint}"),
                });
            }
        }
    }
}

/// (database section, table) → (the whole table, its columns) that no rule names.
/// Columns no rule names, by (database section, table whose rules apply).
#[allow(non_camel_case_types)]
struct Uncovered_<'a> {
    /// The table has no rules at all.
    whole: bool,
    columns: Vec<(&'a str, Option<&'a ColumnMeta>)>,
    /// Where the table's rules are, when it has some.
    rules_at: Option<&'a super::Location>,
}

type UncoveredColumns<'a> = BTreeMap<(Option<&'a str>, &'a QualifiedName), Uncovered_<'a>>;

/// A rule that a run accepts for an uncovered column, chosen from its constraints and type: NULL
/// where allowed; a kept value only for an integer id key; a unique-safe rule on other keys;
/// otherwise a rule that writes a value of the column's type. `None` when the type is not known
/// (a dump), where "null" is suggested for review.
fn drift_rule(col: &str, m: Option<&ColumnMeta>) -> (&'static str, String) {
    let Some(m) = m else {
        return ("\"null\"", String::new());
    };
    let lower = col.to_ascii_lowercase();
    let id_like =
        lower == "id" || lower.ends_with("_id") || lower.ends_with("id") && lower.len() <= 4;
    // An integer id (a key, or a reference to one): kept, as the key it points at is.
    let unique = m.unique || !m.unique_with.is_empty();
    let rule = if m.kind == TypeKind::Number && id_like && (unique || m.not_null) {
        "\"keep\""
    } else if unique {
        "{ hash = { format = \"preserve\" }, unique = true }"
    } else if !m.not_null {
        "\"null\""
    } else {
        match (m.kind, m.type_name.as_str()) {
            (TypeKind::Text, _) => "{ hash = { format = \"preserve\" } }",
            (TypeKind::Number, _) => "{ noise = { percent = 10 } }",
            (TypeKind::Date | TypeKind::Timestamp, _) => "{ shift = { days = 30 } }",
            (TypeKind::Json, _) => "{ set = \"{}\" }",
            (_, "boolean") => "{ set = false }",
            (_, "uuid") => "{ fake = \"uuid\" }",
            _ => "\"keep\"",
        }
    };
    let mut notes = vec![m.type_name.clone()];
    if unique {
        notes.push("unique".into());
    } else if m.not_null {
        notes.push("NOT NULL".into());
    }
    if rule == "\"keep\"" && !id_like {
        notes.push("review: no generic rule writes this type".into());
    }
    (rule, notes.join(", "))
}

/// One message listing every uncovered table and column, with lines to paste into the rules file:
/// under the table's existing `[tables.X.columns]` header, or with a new header for a table that
/// has no rules.
fn uncovered_diagnostic(plan: &Plan, uncovered: &UncoveredColumns) -> Diagnostic {
    let mut msg = String::from(
        "uncovered columns: every column of every copied table needs a rule or \"keep\" \
         (schema drift in the source?)\n",
    );
    for ((section, name), u) in uncovered {
        let name = match section {
            Some(d) => format!("{name} (database {d})"),
            None => name.to_string(),
        };
        let cols: Vec<&str> = u.columns.iter().map(|c| c.0).collect();
        if u.whole {
            msg.push_str(&format!(
                "  table {name} has no rules (columns: {})\n",
                cols.join(", ")
            ));
        } else {
            for c in cols {
                msg.push_str(&format!("  column {name}.{c}\n"));
            }
        }
    }
    msg.push_str(&format!(
        "add these lines to {} (each rule writes what its column accepts: review them; \"null\" hides the value, \"keep\" only for data that is not personal, skip = true skips a table):\n",
        plan.rules_file
    ));
    for ((section, name), u) in uncovered {
        let prefix = section
            .map(|d| format!("databases.{}.", toml_key(d)))
            .unwrap_or_default();
        let header = format!("[{prefix}tables.{}.columns]", name.rules_key());
        match u.rules_at {
            Some(at) => msg.push_str(&format!(
                "\n# under {header}, the rules of {name} at {at}:\n"
            )),
            None => msg.push_str(&format!("\n{header}\n")),
        }
        let width = u
            .columns
            .iter()
            .map(|c| toml_key(c.0).len())
            .max()
            .unwrap_or(0);
        for (c, m) in &u.columns {
            let (rule, note) = drift_rule(c, *m);
            let key = toml_key(c);
            if note.is_empty() {
                msg.push_str(&format!("{key} = {rule}\n"));
            } else {
                msg.push_str(&format!("{key:width$} = {rule}  # {note}\n"));
            }
        }
    }
    Diagnostic {
        location: None,
        message: msg.trim_end().to_string(),
    }
}

/// A column name as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
