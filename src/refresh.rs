//! A database source: refresh a staging database in place, or write an anonymized dump.
//!
//! Order of work: connect to both ends and refuse the same database; open the source's read-only
//! snapshot and read its catalog; bind the rules to it (every problem reported, nothing written);
//! then, for a staging target, one transaction: lock, drop foreign keys, empty, load each table in
//! foreign-key order, restore foreign keys, set sequences, commit. Any failure rolls back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::error::Error;
use crate::pipeline::{
    copy_table, Options, PipelineError, Progress, Report, RunFailure, TableOut, TableStats,
};
use crate::rules::{self, BoundTable, Diagnostic, Plan, QualifiedName, TableAction};
use crate::sink::dump::DumpSink;
use crate::sink::postgres::{Staging, StagingError};
use crate::source::postgres::{self as pg, redact, Catalog};

pub fn is_database_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn db(e: pg::DbError) -> Error {
    Error::Database(e.to_string())
}

/// What the source gives once its snapshot is open: catalog and bound rules, in load order.
struct Prepared {
    catalog: Catalog,
    /// Bound tables in foreign-key load order.
    tables: Vec<(Arc<BoundTable>, Vec<String>)>,
    /// Row filters (`where`) by table; a partition takes its root's.
    filters: BTreeMap<QualifiedName, String>,
}

async fn prepare(plan: &Plan, source: &tokio_postgres::Client) -> Result<Prepared, Error> {
    pg::begin_snapshot(source).await.map_err(db)?;
    let catalog = pg::read_catalog(source).await.map_err(db)?;
    let bound = rules::bind(plan, &catalog.source_tables()).map_err(Error::Bind)?;
    let mut by_name: BTreeMap<QualifiedName, BoundTable> =
        bound.into_iter().map(|b| (b.name.clone(), b)).collect();
    let tables = catalog
        .load_order()
        .into_iter()
        .filter_map(|t| by_name.remove(&t.name))
        .map(|b| {
            let cols = b.columns.clone();
            (Arc::new(b), cols)
        })
        .collect::<Vec<_>>();
    let mut filters = BTreeMap::new();
    for t in &catalog.tables {
        let rules = plan
            .tables
            .get(&t.name)
            .or_else(|| t.partition_root.as_ref().and_then(|r| plan.tables.get(r)));
        if let Some(f) = rules.and_then(|r| r.filter.clone()) {
            filters.insert(t.name.clone(), f);
        }
    }
    Ok(Prepared {
        catalog,
        tables,
        filters,
    })
}

/// Check that staging has every table and column about to be loaded.
fn compare_target(
    tables: &[(Arc<BoundTable>, Vec<String>)],
    target: &BTreeMap<QualifiedName, std::collections::BTreeSet<String>>,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (t, cols) in tables {
        match target.get(&t.name) {
            None => problems.push(Diagnostic {
                location: None,
                message: format!("staging has no table {} (run its migrations first)", t.name),
            }),
            Some(have) => {
                let missing: Vec<&str> = cols
                    .iter()
                    .filter(|c| !have.contains(*c))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    problems.push(Diagnostic {
                        location: None,
                        message: format!(
                            "staging table {} lacks column(s) {}",
                            t.name,
                            missing.join(", ")
                        ),
                    });
                }
            }
        }
    }
    problems
}

/// Run a refresh whose source is a database. With `create_schema`, the source's schema is created in
/// the target first (inside the refresh transaction for a database, at the top of a file).
pub fn run(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    create_schema: bool,
) -> Result<Report, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "starting the async runtime".into(),
            source,
        })?;
    runtime.block_on(run_async(plan, options, progress, create_schema))
}

async fn run_async(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    create_schema: bool,
) -> Result<Report, Error> {
    let started = Instant::now();
    let source = pg::connect(&plan.source).await.map_err(db)?;
    let target_is_db = is_database_url(&plan.target);
    let target_client = if target_is_db {
        let t = pg::connect(&plan.target).await.map_err(db)?;
        let (a, b) = (
            pg::identity(&source).await.map_err(db)?,
            pg::identity(&t).await.map_err(db)?,
        );
        if a == b {
            return Err(Error::Usage(format!(
                "source and target are the same database ({}); refusing to write to production",
                redact(&plan.target)
            )));
        }
        Some(t)
    } else {
        None
    };
    let prepared = prepare(plan, &source).await?;
    let schema = if create_schema {
        Some(pg::schema_sql(&plan.source).map_err(db)?)
    } else {
        None
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.max(1))
        .build()
        .expect("thread pool");
    let mut report = Report::default();
    let result = match target_client {
        Some(client) => {
            let mut staging = Staging::begin_on(client).await.map_err(|e| match e {
                StagingError::Locked => Error::Database(e.to_string()),
                StagingError::Db(d) => db(d),
            })?;
            let mut outcome = Ok(());
            if let Some(sql) = &schema {
                outcome = staging.client().batch_execute(sql).await.map_err(|e| {
                    PipelineError::Db(pg::DbError::Query {
                        context:
                            "creating the schema in staging (--create-schema needs an empty target)"
                                .into(),
                        message: pg::describe(&e),
                    })
                });
            }
            if outcome.is_ok() {
                outcome = load_staging(
                    &mut staging,
                    &prepared,
                    &source,
                    &pool,
                    options,
                    progress,
                    &mut report,
                )
                .await;
            }
            match outcome {
                Ok(()) => staging.commit().await.map_err(PipelineError::from),
                Err(e) => {
                    staging.rollback().await;
                    Err(e)
                }
            }
        }
        None => {
            write_dump(
                plan,
                &prepared,
                schema.as_deref(),
                &source,
                &pool,
                options,
                progress,
                &mut report,
            )
            .await
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => Ok(report),
        Err(PipelineError::Db(pg::DbError::Query { context, message }))
            if context == BIND_MARKER =>
        {
            Err(Error::Bind(vec![Diagnostic {
                location: None,
                message,
            }]))
        }
        Err(error) => Err(Error::Pipeline(Box::new(RunFailure { error, report }))),
    }
}

/// Context of the error that carries target-schema problems (reported as exit 2, nothing written).
const BIND_MARKER: &str = "staging schema";

async fn load_staging(
    staging: &mut Staging,
    prepared: &Prepared,
    source: &tokio_postgres::Client,
    pool: &rayon::ThreadPool,
    options: &Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), PipelineError> {
    let have = staging.columns().await?;
    let problems = compare_target(&prepared.tables, &have);
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(PipelineError::Db(pg::DbError::Query {
            context: BIND_MARKER.into(),
            message,
        }));
    }
    let names: Vec<QualifiedName> = prepared
        .tables
        .iter()
        .map(|(t, _)| t.name.clone())
        .collect();
    staging.drop_foreign_keys(&names).await?;
    staging.truncate(&names).await?;
    for (table, columns) in &prepared.tables {
        let t0 = Instant::now();
        progress.table_started(&table.name);
        let mut stats = TableStats {
            name: table.name.clone(),
            rows_read: 0,
            rows_written: 0,
            bytes_read: 0,
            bytes_written: 0,
            seconds: 0.0,
            skipped: matches!(table.action, TableAction::Skip),
        };
        if !stats.skipped {
            let sql = pg::copy_out_sql(
                &table.name,
                columns,
                prepared.filters.get(&table.name).map(String::as_str),
            );
            let sink = staging.copy_in(&table.name, columns).await?;
            let mut sink = std::pin::pin!(sink);
            let (rows, read, written) = copy_table(
                source,
                &sql,
                Arc::clone(table),
                pool,
                options,
                progress,
                TableOut::Copy(sink.as_mut()),
            )
            .await?;
            stats.rows_read = rows;
            stats.rows_written = rows;
            stats.bytes_read = read;
            stats.bytes_written = written;
        }
        stats.seconds = t0.elapsed().as_secs_f64();
        progress.table_finished(&stats);
        report.tables.push(stats);
    }
    staging.restore_foreign_keys().await?;
    staging.set_sequences(&prepared.catalog.sequences).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // The run's context, passed down once; a struct would only rename it.
async fn write_dump(
    plan: &Plan,
    prepared: &Prepared,
    schema: Option<&str>,
    source: &tokio_postgres::Client,
    pool: &rayon::ThreadPool,
    options: &Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), PipelineError> {
    let mut sink = DumpSink::open(&plan.target).map_err(|source| PipelineError::Write {
        stdout: false,
        source,
    })?;
    let stdout = sink.is_stdout();
    let werr = |source| PipelineError::Write { stdout, source };
    {
        let w = sink.writer();
        w.write_all(b"-- Anonymized data written by anonymize\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n").map_err(werr)?;
        if let Some(sql) = schema {
            w.write_all(sql.as_bytes()).map_err(werr)?;
        }
    }
    for (table, columns) in &prepared.tables {
        let t0 = Instant::now();
        progress.table_started(&table.name);
        let cols: Vec<String> = columns.iter().map(|c| rules::quote_ident(c)).collect();
        let header = format!("\nCOPY {} ({}) FROM stdin;\n", table.name, cols.join(", "));
        sink.writer().write_all(header.as_bytes()).map_err(werr)?;
        let mut stats = TableStats {
            name: table.name.clone(),
            rows_read: 0,
            rows_written: 0,
            bytes_read: 0,
            bytes_written: 0,
            seconds: 0.0,
            skipped: matches!(table.action, TableAction::Skip),
        };
        if !stats.skipped {
            let sql = pg::copy_out_sql(
                &table.name,
                columns,
                prepared.filters.get(&table.name).map(String::as_str),
            );
            let (rows, read, written) = copy_table(
                source,
                &sql,
                Arc::clone(table),
                pool,
                options,
                progress,
                TableOut::Write(sink.writer(), stdout),
            )
            .await?;
            stats.rows_read = rows;
            stats.rows_written = rows;
            stats.bytes_read = read;
            stats.bytes_written = written;
        }
        sink.writer().write_all(b"\\.\n").map_err(werr)?;
        stats.seconds = t0.elapsed().as_secs_f64();
        progress.table_finished(&stats);
        report.tables.push(stats);
    }
    let w = sink.writer();
    w.write_all(b"\n").map_err(werr)?;
    for s in &prepared.catalog.sequences {
        let line = match s.last_value {
            Some(v) => format!(
                "SELECT pg_catalog.setval('{}', {v}, true);\n",
                s.name.to_string().replace('\'', "''")
            ),
            None => format!(
                "SELECT pg_catalog.setval('{}', {}, false);\n",
                s.name.to_string().replace('\'', "''"),
                s.start_value
            ),
        };
        w.write_all(line.as_bytes()).map_err(werr)?;
    }
    sink.commit().map_err(werr)?;
    Ok(())
}
