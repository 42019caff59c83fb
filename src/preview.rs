//! `--dry-run`: run every validation, anonymize a small sample of each table, and report what the
//! rules do — original and anonymized values side by side, and the weak spots the sample shows.
//!
//! Nothing is written: no target is opened, no file created. This is the one place that puts original
//! values in front of a person, on purpose: the operator asked to see them. They are returned to the
//! CLI for display and never logged.

use std::collections::{BTreeSet, HashSet};

use crate::copy;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pipeline::{process_rows, PipelineError, Report, RunFailure};
use crate::rules::{
    self, BoundTable, CellOp, ColumnMeta, Plan, QualifiedName, SourceTable, TableAction,
};
use crate::source::dump::{DataFormat, DumpPolicy, DumpReader, Event, ObjectKind};
use crate::source::postgres as pg;

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
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TablePreview {
    pub name: QualifiedName,
    /// Rows in the table: counted in a dump, the catalog's estimate in a database.
    pub rows: u64,
    pub skipped: bool,
    pub columns: Vec<ColumnPreview>,
}

#[derive(Debug, Clone, Default)]
pub struct Preview {
    pub tables: Vec<TablePreview>,
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

/// The first `n` rows of every table of a source; each table's `rows` is its row count (counted
/// in a dump, the catalog's estimate in a database). `filter` gives a table's `where`, for
/// database sources.
pub struct Sampled {
    pub tables: Vec<SourceTable>,
    /// COPY text rows per table, in `tables` order.
    pub samples: Vec<Vec<u8>>,
    /// The text of the dump's COMMENT ON and SECURITY LABEL statements (for a scan to look at), and
    /// whether it has large objects.
    pub comments: Vec<String>,
    pub large_objects: bool,
    /// A database's materialized views (rebuilt in staging, never copied).
    pub matviews: Vec<QualifiedName>,
}

pub fn sample(
    source: &Endpoint,
    n: usize,
    filter: &dyn Fn(&SourceTable) -> Option<String>,
    policy: DumpPolicy,
) -> Result<Sampled, Error> {
    if let Endpoint::Database(c) = source {
        return sample_database(c, n, filter);
    }
    let (mut input, scanned) = crate::dump_run::open_and_scan(source, policy)?;
    std::io::Seek::rewind(&mut input).map_err(|source| Error::Io {
        context: "rewinding the source".into(),
        source,
    })?;
    let tables = scanned.tables;
    // The first pass counted the rows; this one only takes the first n of each table, in the
    // standard COPY text whatever the dump's format.
    let mut samples = vec![Vec::new(); tables.len()];
    let (mut comments, mut large_objects) = (Vec::new(), false);
    let mut reader = DumpReader::new(input, 4096, 1 << 20)
        .with_policy(policy)
        .observing();
    let mut format = DataFormat::Copy(crate::copy::CopyFormat::Text);
    while let Some(event) = reader.next_event().map_err(|e| failed(e.into()))? {
        match event {
            Event::DataStart { format: f, .. } => format = f,
            Event::Rows {
                block,
                data,
                tuples,
                first_line,
                ..
            } => {
                let sample = &mut samples[block];
                let have = sample.iter().filter(|b| **b == b'\n').count();
                if have >= n {
                    continue;
                }
                let batch = crate::pipeline::Batch {
                    data,
                    tuples,
                    first_line: Some(first_line),
                    first_row: 1,
                };
                let text = crate::pipeline::to_copy_text(
                    &tables[block].name,
                    &format,
                    &batch,
                    tables[block].columns.len(),
                )
                .map_err(|e| failed(e.into()))?;
                for line in text.split_inclusive(|b| *b == b'\n').take(n - have) {
                    sample.extend_from_slice(line);
                }
            }
            Event::Object { kind, text } => match kind {
                ObjectKind::LargeObject => large_objects = true,
                ObjectKind::Comment => comments.push(String::from_utf8_lossy(&text).into_owned()),
            },
            _ => {}
        }
    }
    Ok(Sampled {
        tables,
        samples,
        comments,
        large_objects,
        matviews: Vec::new(),
    })
}

fn sample_database(
    source: &crate::endpoint::ConnInfo,
    n: usize,
    filter: &dyn Fn(&SourceTable) -> Option<String>,
) -> Result<Sampled, Error> {
    let db = Error::Database;
    let runtime = crate::db::runtime(1).map_err(Error::runtime)?;
    runtime.block_on(async {
        use futures_util::StreamExt;
        let client = crate::db::connect(source).await.map_err(db)?;
        pg::begin_snapshot(&client).await.map_err(db)?;
        let catalog = pg::read_catalog(&client).await.map_err(db)?;
        let tables = catalog.source_tables();
        let mut samples = Vec::with_capacity(tables.len());
        for t in &tables {
            // A foreign table is never read: it would read another server.
            if t.foreign {
                samples.push(Vec::new());
                continue;
            }
            // A cheap sample: the first rows the server finds, never a full scan.
            let sql = pg::copy_out_sql(&t.name, &t.columns, filter(t).as_deref(), Some(n));
            let err = |e: tokio_postgres::Error| {
                db(crate::db::DbError::Query {
                    context: format!("sampling {}", t.name),
                    message: crate::db::describe(&e),
                })
            };
            let stream = client.copy_out(&sql).await.map_err(err)?;
            let mut stream = std::pin::pin!(stream);
            let mut sample = Vec::new();
            while let Some(chunk) = stream.next().await {
                sample.extend_from_slice(&chunk.map_err(err)?);
            }
            samples.push(sample);
        }
        // The comments --create-schema would carry (a dump's COMMENT ON statements).
        let comments: Vec<String> = client
            .query(
                "SELECT description FROM pg_description d \
                 WHERE d.objoid >= 16384 AND d.classoid <> 'pg_catalog.pg_extension'::regclass",
                &[],
            )
            .await
            .map_err(|e| {
                db(crate::db::DbError::Query {
                    context: "reading the source's comments".into(),
                    message: crate::db::describe(&e),
                })
            })?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Sampled {
            tables,
            samples,
            comments,
            large_objects: catalog.large_objects > 0,
            matviews: catalog.matviews.iter().map(|m| m.name.clone()).collect(),
        })
    })
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
        crate::dump_run::dump_policy(plan),
    )?;
    let bound = rules::bind(plan, &sampled.tables).map_err(Error::Bind)?;
    let wanted = selected(options, &sampled.tables)?;
    let mut preview = Preview::default();
    for ((table, source), sample) in bound.iter().zip(&sampled.tables).zip(sampled.samples) {
        let rows = source.rows.unwrap_or(0);
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
    Ok(preview)
}

pub(crate) fn decode_row(line: &str) -> Result<Vec<Option<String>>, Error> {
    let mut fields = Vec::new();
    copy::split(line, &mut fields);
    fields
        .iter()
        .map(|f| {
            copy::decode(f)
                .map(|v| v.map(|s| s.into_owned()))
                .map_err(|e| {
                    Error::Usage(format!(
                        "the sample has a field that cannot be decoded: {e}"
                    ))
                })
        })
        .collect()
}

/// Transform the sample rows and describe each column.
fn compare(
    table: &BoundTable,
    meta: Option<&[ColumnMeta]>,
    sample: Vec<u8>,
    rows: u64,
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
    let text_in = String::from_utf8(sample).map_err(|_| {
        failed(PipelineError::Write {
            stdout: false,
            source: std::io::Error::other("sample is not UTF-8"),
        })
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
        let warnings = if transformed {
            weak_spots(&samples, meta.and_then(|m| m.get(c)))
        } else {
            Vec::new()
        };
        columns.push(ColumnPreview {
            name: name.clone(),
            rule: table.rules[c].clone(),
            transformed,
            samples,
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
}
