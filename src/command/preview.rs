//! `--dry-run`: run every validation, anonymize a small sample of each table, and report what the
//! rules do — original and anonymized values side by side, and the weak spots the sample shows.
//!
//! Nothing is written: no target is opened, no file created. This is the one place that puts original
//! values in front of a person, on purpose: the operator asked to see them. They are returned to the
//! CLI for display and never logged.

use std::collections::{BTreeSet, HashSet};

use super::sample::{decode_row, sample};
use crate::diagnostic::Diagnostics;
use crate::error::Error;
use crate::pipeline::{process_rows, PipelineError, Report, RunFailure};
use crate::rules::{
    self, BoundTable, CellOp, ColumnMeta, Plan, QualifiedName, SourceTable, TableAction,
};

/// What to sample.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per table.
    pub sample: usize,
    /// Only these tables (all when `None`).
    pub tables: Option<Vec<QualifiedName>>,
}

#[derive(Debug, Clone)]
pub struct ColumnPreview {
    pub name: String,
    pub rule: String,
    pub transformed: bool,
    /// (original, anonymized) per sampled row.
    pub samples: Vec<(Option<String>, Option<String>)>,
    /// Under a conditional rule: the alternative each sampled row took (`if …` or `else`).
    pub branches: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TablePreview {
    pub name: QualifiedName,
    /// Rows in the table: counted in a dump, the catalog's estimate in a database (`None` when
    /// the catalog has none: a table never analyzed).
    pub rows: Option<u64>,
    pub skipped: bool,
    pub columns: Vec<ColumnPreview>,
}

#[derive(Debug, Clone, Default)]
pub struct Preview {
    pub tables: Vec<TablePreview>,
    /// What the subset keeps of each table it filters.
    pub subset: Vec<SubsetPreview>,
}

/// A table under a subset: the rows it keeps (counted in a dump, estimated in a database) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetPreview {
    pub name: QualifiedName,
    pub kept: Option<u64>,
    pub read: Option<u64>,
    pub exact: bool,
    pub why: String,
}

impl Preview {
    pub fn warnings(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.columns)
            .map(|c| c.warnings.len())
            .sum()
    }
}

fn failed(error: PipelineError) -> Error {
    Error::Pipeline(Box::new(RunFailure {
        error,
        report: Report::default(),
    }))
}

fn selected(options: &Options, tables: &[SourceTable]) -> Result<BTreeSet<QualifiedName>, Error> {
    let all: BTreeSet<QualifiedName> = tables.iter().map(|t| t.name.clone()).collect();
    match &options.tables {
        None => Ok(all),
        Some(wanted) => {
            let unknown: Vec<String> = wanted
                .iter()
                .filter(|w| !all.contains(*w))
                .map(|w| w.to_string())
                .collect();
            if unknown.is_empty() {
                Ok(wanted.iter().cloned().collect())
            } else {
                Err(Error::Usage(format!(
                    "--tables names tables the source does not have: {}",
                    unknown.join(", ")
                )))
            }
        }
    }
}

/// Bind, sample, transform and compare. Reads the source only.
pub fn run(plan: &Plan, options: &Options) -> Result<Preview, Error> {
    let filter = |t: &SourceTable| {
        plan.table_rules(t.database.as_deref(), &t.name, t.partition_of.as_ref())
            .and_then(|r| r.filter.clone())
    };
    // Filters only mean something to a database; a dump is sampled from its first rows.
    let sampled = sample(
        &plan.source,
        options.sample,
        &filter,
        crate::command::open::dump_policy(plan),
    )?;
    let bound = rules::bind(plan, &sampled.tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
    let wanted = selected(options, &sampled.tables)?;
    let mut preview = Preview::default();
    for ((table, source), sample) in bound.iter().zip(&sampled.tables).zip(sampled.samples) {
        let rows = source.rows;
        if wanted.contains(&table.name) {
            let sample = if matches!(table.action, TableAction::Skip) {
                Vec::new()
            } else {
                sample
            };
            preview
                .tables
                .push(compare(table, source.meta.as_deref(), sample, rows)?);
        }
    }
    // Commands end as at the end of a run: extra lines or a failing exit show here too.
    crate::pipeline::finish_commands(bound.iter()).map_err(failed)?;
    kept_copies(&mut preview);
    if crate::command::subset::involved(plan) {
        preview.subset = subset_preview(plan)?;
    }
    Ok(preview)
}

/// The subset's rows per table: computed exactly for a dump (a pass over its keys), estimated
/// from the catalog for a database (no row read).
fn subset_preview(plan: &Plan) -> Result<Vec<SubsetPreview>, Error> {
    use crate::command::subset;
    let policy = crate::command::open::dump_policy(plan);
    match &plan.source {
        crate::endpoint::Endpoint::Database(c) => {
            let (tables, catalog) = crate::command::live::check_catalog(plan, c)?;
            let bound = rules::bind(plan, &tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
            let key = |n: &QualifiedName| {
                catalog
                    .tables
                    .iter()
                    .find(|t| t.name == *n)
                    .and_then(|t| t.key.clone())
            };
            let Some(planner) =
                subset::planner(plan, &tables, &bound, &key, &catalog.key_columns, true)
                    .map_err(|d| Error::Bind(Diagnostics(d)))?
            else {
                return Ok(Vec::new());
            };
            // A partitioned table's estimate is its partitions' sum.
            let rows = |n: &QualifiedName| -> Option<u64> {
                let parts: Vec<&crate::source::postgres::CatalogTable> = catalog
                    .tables
                    .iter()
                    .filter(|t| !t.partitioned)
                    .filter(|t| t.name == *n || t.partition_root.as_ref() == Some(n))
                    .collect();
                parts.iter().map(|t| t.rows_estimate()).sum()
            };
            Ok(planner
                .estimates(&rows)
                .into_iter()
                .map(|(name, kept, why)| SubsetPreview {
                    read: rows(&name),
                    name,
                    kept,
                    exact: false,
                    why,
                })
                .collect())
        }
        crate::endpoint::Endpoint::Stdio if subset::wanted(plan) => Err(Error::Usage(
            "--dry-run with a subset needs the dump as a file: stdin is read once, for the \
             samples; save it to a file and dry-run that"
                .into(),
        )),
        source => {
            let (mut input, scanned) = crate::command::open::open_and_scan(source, policy)?;
            let mut bound =
                rules::bind(plan, &scanned.tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
            let Some(outcome) =
                subset::choose_in_dump(plan, &mut input, &scanned, &mut bound, policy)?
            else {
                return Ok(Vec::new());
            };
            Ok(outcome
                .counts
                .iter()
                .map(|(name, c)| SubsetPreview {
                    name: name.clone(),
                    kept: Some(c.kept()),
                    read: Some(c.read).filter(|r| *r > 0),
                    exact: true,
                    why: subset::reasons(c),
                })
                .collect())
        }
    }
}

/// Kept columns whose sampled values equal originals of a transformed column (a phone kept in
/// one table and masked in another): the same personal data, left as it is. Dates and numbers
/// (shift, truncate, noise) and values under six characters are not compared.
fn kept_copies(preview: &mut Preview) {
    let mut originals: std::collections::HashMap<&str, String> = Default::default();
    for t in &preview.tables {
        for c in t.columns.iter().filter(|c| c.transformed) {
            if ["shift", "truncate", "noise"]
                .iter()
                .any(|r| c.rule.starts_with(r))
            {
                continue;
            }
            for v in c.samples.iter().filter_map(|(o, _)| o.as_deref()) {
                if v.chars().count() >= 6 {
                    originals
                        .entry(v)
                        .or_insert_with(|| format!("{}.{}", t.name, c.name));
                }
            }
        }
    }
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    for (ti, t) in preview.tables.iter().enumerate() {
        for (ci, c) in t.columns.iter().enumerate().filter(|(_, c)| !c.transformed) {
            let mut hits: Vec<&String> = c
                .samples
                .iter()
                .filter_map(|(o, _)| o.as_deref().and_then(|v| originals.get(v)))
                .collect();
            if hits.is_empty() {
                continue;
            }
            let n = hits.len();
            hits.sort();
            hits.dedup();
            let names: Vec<&str> = hits.iter().map(|h| h.as_str()).collect();
            found.push((
                ti,
                ci,
                format!(
                    "kept, but {n} of its {} sampled values equal originals of the transformed column(s) {}: the same data left as it is? Give it the same rule",
                    c.samples.len(),
                    names.join(", ")
                ),
            ));
        }
    }
    for (ti, ci, w) in found {
        preview.tables[ti].columns[ci].warnings.push(w);
    }
}

/// Transform the sample rows and describe each column.
fn compare(
    table: &BoundTable,
    meta: Option<&[ColumnMeta]>,
    sample: Vec<u8>,
    rows: Option<u64>,
) -> Result<TablePreview, Error> {
    let ops: &[CellOp] = match &table.action {
        TableAction::Copy { ops } => ops,
        TableAction::Skip => &[],
    };
    let skipped = matches!(table.action, TableAction::Skip);
    let output = if skipped || sample.is_empty() {
        Vec::new()
    } else {
        process_rows(table, sample.clone(), None, 1, &Default::default())
            .map_err(|e| failed(e.into()))?
    };
    let text_in = String::from_utf8(sample).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        failed(PipelineError::Row(Box::new(crate::pipeline::RowError {
            table: table.name.clone(),
            row: 1 + memchr::memchr_iter(b'\n', valid).count() as u64,
            line: None,
            column: None,
            kind: crate::pipeline::RowErrorKind::InvalidUtf8,
        })))
    })?;
    let text_out = String::from_utf8(output).expect("transforms write UTF-8");
    let rows_in: Vec<Vec<Option<String>>> =
        text_in.lines().map(decode_row).collect::<Result<_, _>>()?;
    let rows_out: Vec<Vec<Option<String>>> =
        text_out.lines().map(decode_row).collect::<Result<_, _>>()?;
    let mut columns = Vec::with_capacity(table.columns.len());
    for (c, name) in table.columns.iter().enumerate() {
        let transformed = ops.get(c).is_some_and(|o| !matches!(o, CellOp::Pass));
        let samples: Vec<(Option<String>, Option<String>)> = rows_in
            .iter()
            .zip(&rows_out)
            .map(|(i, o)| (i.get(c).cloned().flatten(), o.get(c).cloned().flatten()))
            .collect();
        let branches = match ops.get(c) {
            Some(CellOp::When(w)) => rows_in
                .iter()
                .map(|row| {
                    let mut get = |p: usize| {
                        Ok::<_, ()>(row.get(p).cloned().flatten().map(std::borrow::Cow::Owned))
                    };
                    w.choose(&mut get)
                        .map_or_else(|_| "?".to_string(), |k| w.label(k).to_string())
                })
                .collect(),
            _ => Vec::new(),
        };
        // Rows a conditional rule keeps on purpose are not weak spots.
        let examined: Vec<(Option<String>, Option<String>)> = match ops.get(c) {
            Some(CellOp::When(w)) => samples
                .iter()
                .zip(&branches)
                .filter(|(_, b)| {
                    (0..=w.branches.len())
                        .find(|&k| w.label(k) == b.as_str())
                        .is_none_or(|k| !matches!(w.op(k), CellOp::Pass))
                })
                .map(|(s, _)| s.clone())
                .collect(),
            _ => samples.clone(),
        };
        let warnings = match ops.get(c).and_then(scrub_of) {
            Some(scrub) => scrub_spots(scrub, &examined),
            None if transformed => weak_spots(&examined, meta.and_then(|m| m.get(c))),
            None => Vec::new(),
        };
        columns.push(ColumnPreview {
            name: name.clone(),
            rule: table.rules[c].clone(),
            transformed,
            samples,
            branches,
            warnings,
        });
    }
    Ok(TablePreview {
        name: table.name.clone(),
        rows,
        skipped,
        columns,
    })
}

/// The scrub rule of a column, if that is its rule.
fn scrub_of(op: &CellOp) -> Option<&crate::transform::scrub::Scrub> {
    use crate::transform::Transform;
    match op {
        CellOp::Apply(Transform::Scrub(s)) | CellOp::ApplyWith(Transform::Scrub(s), _) => Some(s),
        CellOp::Apply(Transform::Fit(inner, _))
        | CellOp::ApplyWith(Transform::Fit(inner, _), _) => match inner.as_ref() {
            Transform::Scrub(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// What the sample shows about a `scrub` rule: free text without personal data is meant to come
/// out as it went in, so only personal data its detectors found in an original and still present
/// in the output is a weak spot.
fn scrub_spots(
    scrub: &crate::transform::scrub::Scrub,
    samples: &[(Option<String>, Option<String>)],
) -> Vec<String> {
    let n = samples.len();
    let (mut holding, mut survived) = (0, 0);
    for (i, o) in samples {
        let (Some(i), Some(o)) = (i, o) else { continue };
        let found = scrub.personal_data(i);
        if found.is_empty() {
            continue;
        }
        holding += 1;
        if found.iter().any(|f| o.contains(f)) {
            survived += 1;
        }
    }
    if survived == 0 {
        return Vec::new();
    }
    vec![format!(
        "personal data found by the scrub detectors is still in the output in {survived} of {n} sampled rows ({holding} held some)"
    )]
}

/// What the sample shows about a rule: values left as they were or inside their pseudonym, and
/// outputs that the column's constraints would refuse.
fn weak_spots(
    samples: &[(Option<String>, Option<String>)],
    meta: Option<&ColumnMeta>,
) -> Vec<String> {
    let n = samples.len();
    let mut warnings = Vec::new();
    let count = |f: &dyn Fn(&str, &str) -> bool| {
        samples
            .iter()
            .filter(|(i, o)| matches!((i, o), (Some(i), Some(o)) if f(i, o)))
            .count()
    };
    let equal = count(&|i, o| !i.is_empty() && i == o);
    if equal > 0 {
        warnings.push(format!(
            "anonymized value equal to the original in {equal} of {n} sampled rows"
        ));
    }
    let inside = count(&|i, o| i.chars().count() >= 4 && i != o && o.contains(i));
    if inside > 0 {
        warnings.push(format!(
            "anonymized value contains the original in {inside} of {n} sampled rows"
        ));
    }
    if let Some(m) = meta {
        let outputs: Vec<&str> = samples.iter().filter_map(|(_, o)| o.as_deref()).collect();
        if m.unique {
            let distinct: HashSet<&str> = outputs.iter().copied().collect();
            if distinct.len() < outputs.len() {
                warnings.push(format!(
                    "{} duplicate outputs in a column with a UNIQUE constraint",
                    outputs.len() - distinct.len()
                ));
            }
        }
        if let Some(max) = m.max_len {
            let long = outputs.iter().filter(|o| o.chars().count() > max).count();
            if long > 0 {
                warnings.push(format!(
                    "{long} outputs longer than the column's {}",
                    m.type_name
                ));
            }
        }
        if m.not_null {
            let nulls = samples.iter().filter(|(_, o)| o.is_none()).count();
            if nulls > 0 {
                warnings.push(format!(
                    "NULL produced for a NOT NULL column in {nulls} sampled rows"
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(unique: bool, not_null: bool, max_len: Option<usize>) -> ColumnMeta {
        ColumnMeta {
            not_null,
            unique,
            kind: rules::TypeKind::Text,
            max_len,
            type_name: "character varying(5)".into(),
            unique_with: Vec::new(),
        }
    }

    #[test]
    fn weak_spots_are_named_with_counts_and_without_values() {
        let s = |i: Option<&str>, o: Option<&str>| (i.map(String::from), o.map(String::from));
        let samples = vec![
            s(Some("alice"), Some("alice")),
            s(Some("bob@x.io"), Some("re: bob@x.io")),
            s(Some("carol"), Some("zzzzzz")),
            s(Some("dave"), Some("zzzzzz")),
            s(Some("erin"), None),
        ];
        assert_eq!(
            weak_spots(&samples, Some(&meta(true, true, Some(5)))),
            vec![
                "anonymized value equal to the original in 1 of 5 sampled rows",
                "anonymized value contains the original in 1 of 5 sampled rows",
                "1 duplicate outputs in a column with a UNIQUE constraint",
                "3 outputs longer than the column's character varying(5)",
                "NULL produced for a NOT NULL column in 1 sampled rows",
            ]
        );
        assert!(weak_spots(&samples[2..3], None).is_empty());
    }

    #[test]
    fn scrub_is_flagged_only_when_personal_data_survives() {
        use crate::transform::fake::{FakeKind, Faker, Locale};
        use crate::transform::scrub::{Detector, Scrub};
        use crate::transform::seed::tests::key;
        use crate::transform::Transform;
        let email = Transform::Fake(Faker::new(
            key("a").domain("e"),
            FakeKind::Email,
            Locale::En,
            true,
        ));
        let scrub = Scrub::new(vec![(Detector::Email, email)]);
        let s = |i: &str, o: &str| (Some(i.to_string()), Some(o.to_string()));
        let plain = "no personal data in this note (1963-1981)";
        let with = "write to ann@corp.example today";
        let samples = vec![s(plain, plain), s(with, &scrub.apply(with)), (None, None)];
        // Text without personal data comes out as it went in: no warning, even with --strict.
        assert!(scrub_spots(&scrub, &samples).is_empty());
        assert_eq!(scrub.personal_data(with), vec!["ann@corp.example"]);
        let leaked = vec![s(with, "ann@corp.example was here"), s(plain, plain)];
        assert_eq!(
            scrub_spots(&scrub, &leaked),
            vec!["personal data found by the scrub detectors is still in the output in 1 of 2 sampled rows (1 held some)"]
        );
    }

    #[test]
    fn a_kept_column_holding_a_transformed_column_s_originals_is_named() {
        let col = |name: &str, rule: &str, transformed: bool, values: &[&str]| ColumnPreview {
            name: name.into(),
            rule: rule.into(),
            transformed,
            samples: values
                .iter()
                .map(|v| (Some(v.to_string()), Some("x".to_string())))
                .collect(),
            branches: Vec::new(),
            warnings: Vec::new(),
        };
        let table = |name: &str, columns| TablePreview {
            name: QualifiedName::new("public", name),
            rows: None,
            skipped: false,
            columns,
        };
        let mut p = Preview {
            tables: vec![
                table(
                    "customers",
                    vec![
                        col(
                            "phone",
                            "mask",
                            true,
                            &["+1 415-555-0134", "+1 415-555-0199"],
                        ),
                        col("born", "shift (±9 days)", true, &["1980-01-01"]),
                    ],
                ),
                table(
                    "orders",
                    vec![
                        col(
                            "contact",
                            "keep",
                            false,
                            &["+1 415-555-0134", "other value"],
                        ),
                        col("day", "keep", false, &["1980-01-01"]),
                    ],
                ),
            ],
            subset: Vec::new(),
        };
        kept_copies(&mut p);
        assert_eq!(
            p.tables[1].columns[0].warnings,
            vec!["kept, but 1 of its 2 sampled values equal originals of the transformed column(s) public.customers.phone: the same data left as it is? Give it the same rule"]
        );
        // Dates under shift are not compared: equal days are not the same person.
        assert!(p.tables[1].columns[1].warnings.is_empty());
        assert!(p.tables[0].columns.iter().all(|c| c.warnings.is_empty()));
        assert_eq!(p.warnings(), 1);
    }
}
