//! A database source: refresh a staging database in place, or write an anonymized dump.
//!
//! Order of work: connect to both ends and refuse the same database; open the source's read-only
//! snapshot, export it, and read the catalog; bind the rules to it (every problem reported, nothing
//! written); then move the tables. Up to `--jobs` reader sessions join the exported snapshot and read
//! tables ahead, each into a bounded channel, while the loader takes the tables in foreign-key order:
//! for a staging target inside one transaction (lock, drop foreign keys and indexes, empty, load,
//! rebuild indexes, restore foreign keys, set sequences, commit); any failure rolls back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{try_join, try_join_all};

use crate::error::Error;
use crate::pipeline::{
    batch_channel, load_table, read_table, Batches, Options, PipelineError, PlannedTable, Progress,
    Report, RunFailure, TableOut, TableStats,
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

/// The async runtime the database work runs on (the transforms stay on rayon).
pub(crate) fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = if workers > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|source| Error::Io {
        context: "starting the async runtime".into(),
        source,
    })
}

/// One table to move: its bound rules, the statement that reads it, and where its batches arrive.
struct Job {
    table: Arc<BoundTable>,
    /// The catalog's row estimate, for progress.
    rows: Option<u64>,
    copy_sql: String,
    bytes_read: AtomicU64,
    /// When its reader started streaming it: a table's time runs from its first row read to its last
    /// row loaded (readers run ahead of the loader).
    read_from: std::sync::OnceLock<Instant>,
}

/// What the source gives once its snapshot is open: catalog and bound rules, in load order.
struct Prepared {
    catalog: Catalog,
    snapshot: String,
    /// Tables in foreign-key load order.
    jobs: Vec<Job>,
}

async fn prepare(plan: &Plan, source: &tokio_postgres::Client) -> Result<Prepared, Error> {
    let snapshot = pg::begin_snapshot(source).await.map_err(db)?;
    let t0 = Instant::now();
    let catalog = pg::read_catalog(source).await.map_err(db)?;
    log::info!(
        "source: catalog of {} tables read in {:.0} ms",
        catalog.tables.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let bound = rules::bind(plan, &catalog.source_tables()).map_err(Error::Bind)?;
    let mut by_name: BTreeMap<QualifiedName, BoundTable> =
        bound.into_iter().map(|b| (b.name.clone(), b)).collect();
    let jobs = catalog
        .load_order()
        .into_iter()
        .filter_map(|t| {
            let b = by_name.remove(&t.name)?;
            // A partition filters with its root's `where`.
            let rules = plan
                .tables
                .get(&t.name)
                .or_else(|| t.partition_root.as_ref().and_then(|r| plan.tables.get(r)));
            let filter = rules.and_then(|r| r.filter.as_deref());
            Some(Job {
                rows: t.rows_estimate(),
                copy_sql: pg::copy_out_sql(&b.name, &b.columns, filter, None),
                table: Arc::new(b),
                bytes_read: AtomicU64::new(0),
                read_from: std::sync::OnceLock::new(),
            })
        })
        .collect();
    Ok(Prepared {
        catalog,
        snapshot,
        jobs,
    })
}

/// Check that staging has every table and column about to be loaded.
fn compare_target(
    jobs: &[Job],
    target: &BTreeMap<QualifiedName, std::collections::BTreeSet<String>>,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for job in jobs {
        let t = &job.table;
        let message = match target.get(&t.name) {
            None => format!("staging has no table {} (run its migrations first)", t.name),
            Some(have) => {
                let missing: Vec<&str> = t
                    .columns
                    .iter()
                    .filter(|c| !have.contains(*c))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                format!(
                    "staging table {} lacks column(s) {}",
                    t.name,
                    missing.join(", ")
                )
            }
        };
        problems.push(Diagnostic {
            location: None,
            message,
        });
    }
    problems
}

/// The tables a database source would copy, read from its catalog in a read-only snapshot (for
/// `anonymize check`: no data is read).
pub fn catalog_tables(url: &str) -> Result<Vec<rules::SourceTable>, Error> {
    let runtime = runtime(1)?;
    runtime.block_on(async {
        let client = pg::connect(url).await.map_err(db)?;
        pg::begin_snapshot(&client).await.map_err(db)?;
        Ok(pg::read_catalog(&client).await.map_err(db)?.source_tables())
    })
}

/// Run a refresh whose source is a database. With `create_schema`, the source's schema is created in
/// the target first (inside the refresh transaction for a database, at the top of a file).
pub fn run(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    create_schema: bool,
) -> Result<Report, Error> {
    let runtime = runtime(2)?;
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
    let target_client = if is_database_url(&plan.target) {
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
    progress.phase("reading the source catalog in a read-only snapshot");
    let prepared = prepare(plan, &source).await?;
    let unreadable = &prepared.catalog.unreadable_sequences;
    if !unreadable.is_empty() {
        let names: Vec<String> = unreadable.iter().take(5).map(|n| n.to_string()).collect();
        progress.warning(&format!(
            "the source role may not read {} sequence(s) ({}{}): the target keeps their positions; \
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA … TO the source role",
            unreadable.len(),
            names.join(", "),
            if unreadable.len() > 5 { ", …" } else { "" }
        ));
    }
    progress.run_started(
        &prepared
            .jobs
            .iter()
            .map(|j| PlannedTable::new(&j.table, j.rows))
            .collect::<Vec<_>>(),
    );
    let schema = match create_schema {
        true => Some(pg::schema_sql(&plan.source).map_err(db)?),
        false => None,
    };
    // Reader sessions: the first is the one holding the snapshot, the others join it.
    let copied = prepared
        .jobs
        .iter()
        .filter(|j| !matches!(j.table.action, TableAction::Skip))
        .count();
    let mut readers = vec![source];
    for _ in 1..options.jobs.min(copied).max(1) {
        readers.push(
            pg::join_snapshot(&plan.source, &prepared.snapshot)
                .await
                .map_err(db)?,
        );
    }
    log::info!(
        "source: {} reader sessions on one snapshot, {} transform threads",
        readers.len(),
        options.jobs
    );
    for job in &prepared.jobs {
        log::debug!("{}: {}", job.table.name, job.copy_sql);
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(options.jobs.max(1))
            .build()
            .expect("thread pool"),
    );
    let mut report = Report::default();
    let mover = Mover {
        prepared: &prepared,
        readers: &readers,
        pool,
        options,
        progress,
    };
    let result = match target_client {
        Some(client) => {
            let mut staging = Staging::begin_on(client).await.map_err(|e| match e {
                StagingError::Locked => Error::Database(e.to_string()),
                StagingError::Db(d) => db(d),
            })?;
            let outcome = mover
                .to_staging(&mut staging, schema.as_deref(), &mut report)
                .await;
            match outcome {
                Ok(()) => {
                    progress.phase("committing");
                    staging.commit().await.map_err(PipelineError::from)
                }
                Err(e) => {
                    staging.rollback().await;
                    Err(e)
                }
            }
        }
        None => mover.to_dump(plan, schema.as_deref(), &mut report).await,
    };
    report.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => Ok(report),
        Err(PipelineError::TargetSchema(problems)) => Err(Error::Bind(problems)),
        Err(error) => Err(Error::Pipeline(Box::new(RunFailure { error, report }))),
    }
}

/// Where each table's rows go, table by table in load order.
enum Out<'a> {
    Staging(&'a Staging),
    Dump(&'a mut DumpSink),
}

/// Tables expected to hold fewer rows keep their indexes during the load (row-by-row index upkeep
/// is cheap there; dropping and rebuilding costs two statements and locks per index).
const REBUILD_INDEXES_FROM_ROWS: u64 = 10_000;

/// Moves every table from the reader sessions to one target.
struct Mover<'a> {
    prepared: &'a Prepared,
    readers: &'a [tokio_postgres::Client],
    pool: Arc<rayon::ThreadPool>,
    options: &'a Options,
    progress: &'a dyn Progress,
}

impl Mover<'_> {
    /// The readers: session r reads tables r, r + R, r + 2R … in load order, each into its own
    /// bounded channel. The loader takes tables in the same order, so it always waits on a table
    /// some reader is working on: no deadlock, and memory bounded by R channels.
    async fn read_all(
        &self,
        senders: Vec<Option<crate::pipeline::BatchSender>>,
    ) -> Result<(), PipelineError> {
        let r = self.readers.len();
        let mut per_reader: Vec<Vec<(usize, crate::pipeline::BatchSender)>> =
            (0..r).map(|_| Vec::new()).collect();
        let mut next = 0;
        for (i, tx) in senders.into_iter().enumerate() {
            if let Some(tx) = tx {
                per_reader[next % r].push((i, tx));
                next += 1;
            }
        }
        try_join_all(
            per_reader
                .into_iter()
                .enumerate()
                .map(|(reader, tables)| async move {
                    for (i, tx) in tables {
                        let job = &self.prepared.jobs[i];
                        let _ = job.read_from.set(Instant::now());
                        read_table(
                            &self.readers[reader],
                            &job.copy_sql,
                            Arc::clone(&job.table),
                            Arc::clone(&self.pool),
                            self.options,
                            tx,
                            &job.bytes_read,
                        )
                        .await?;
                    }
                    Ok::<_, PipelineError>(())
                }),
        )
        .await
        .map(|_| ())
    }

    /// Load every table into `out` in order while the readers run.
    async fn move_all(&self, mut out: Out<'_>, report: &mut Report) -> Result<(), PipelineError> {
        let mut senders = Vec::new();
        let mut receivers: Vec<Option<Batches>> = Vec::new();
        for job in &self.prepared.jobs {
            if matches!(job.table.action, TableAction::Skip) {
                senders.push(None);
                receivers.push(None);
            } else {
                let (tx, rx) = batch_channel(self.options);
                senders.push(Some(tx));
                receivers.push(Some(rx));
            }
        }
        let load = async {
            for (job, rx) in self.prepared.jobs.iter().zip(receivers) {
                if let Some(signal) = crate::interrupt::requested() {
                    return Err(PipelineError::Interrupted(signal));
                }
                let t0 = Instant::now();
                let table = &job.table;
                self.progress.table_started(&table.name);
                let mut stats = TableStats::start(table);
                let header = crate::pipeline::copy_header(&table.name, &table.columns);
                if let Out::Dump(sink) = &mut out {
                    write(sink, header.as_bytes())?;
                }
                if let Some(rx) = rx {
                    let (rows, bytes) = match &mut out {
                        Out::Staging(staging) => {
                            let sink = staging.copy_in(&table.name, &table.columns).await?;
                            let mut sink = std::pin::pin!(sink);
                            load_table(
                                &table.name,
                                rx,
                                TableOut::Copy(sink.as_mut()),
                                self.progress,
                            )
                            .await?
                        }
                        Out::Dump(sink) => {
                            let stdout = sink.is_stdout();
                            load_table(
                                &table.name,
                                rx,
                                TableOut::Write(sink.writer(), stdout),
                                self.progress,
                            )
                            .await?
                        }
                    };
                    stats.rows_read = rows;
                    stats.rows_written = rows;
                    stats.bytes_written = bytes;
                    stats.bytes_read = job.bytes_read.load(Ordering::Relaxed);
                }
                if let Out::Dump(sink) = &mut out {
                    write(sink, b"\\.\n")?;
                }
                let from = job.read_from.get().copied().map_or(t0, |r| r.min(t0));
                stats.seconds = from.elapsed().as_secs_f64();
                self.progress.table_finished(&stats);
                report.tables.push(stats);
            }
            Ok::<_, PipelineError>(())
        };
        try_join(load, self.read_all(senders)).await.map(|_| ())
    }

    async fn to_staging(
        &self,
        staging: &mut Staging,
        schema: Option<&str>,
        report: &mut Report,
    ) -> Result<(), PipelineError> {
        if let Some(sql) = schema {
            staging.client().batch_execute(sql).await.map_err(|e| {
                PipelineError::Db(pg::DbError::Query {
                    context:
                        "creating the schema in staging (--create-schema needs an empty target)"
                            .into(),
                    message: pg::describe(&e),
                })
            })?;
        }
        let problems = compare_target(&self.prepared.jobs, &staging.columns().await?);
        if !problems.is_empty() {
            return Err(PipelineError::TargetSchema(problems));
        }
        let names: Vec<QualifiedName> = self
            .prepared
            .jobs
            .iter()
            .map(|j| j.table.name.clone())
            .collect();
        self.progress
            .phase("dropping foreign keys and indexes of the tables to load");
        stop_if_asked()?;
        staging.drop_foreign_keys(&names).await?;
        // Rebuilding pays off for big tables only; small ones keep their indexes, which also keeps
        // the locks of one transaction within max_locks_per_transaction on schemas of many tables.
        let big: Vec<QualifiedName> = self
            .prepared
            .jobs
            .iter()
            .filter(|j| j.rows.is_none_or(|n| n >= REBUILD_INDEXES_FROM_ROWS))
            .map(|j| j.table.name.clone())
            .collect();
        stop_if_asked()?;
        staging.drop_indexes(&big).await?;
        stop_if_asked()?;
        staging.truncate(&names).await?;
        self.move_all(Out::Staging(staging), report).await?;
        let (indexes, fks) = staging.pending_work();
        self.progress
            .phase(&format!("rebuilding {indexes} indexes"));
        stop_if_asked()?;
        staging.rebuild_indexes().await?;
        self.progress
            .phase(&format!("restoring {fks} foreign keys (checks every row)"));
        stop_if_asked()?;
        staging.restore_foreign_keys().await?;
        self.progress.phase("setting sequences");
        stop_if_asked()?;
        staging
            .set_sequences(&self.prepared.catalog.sequences)
            .await?;
        // The last moment to stop before COMMIT makes the refresh final.
        stop_if_asked()
    }

    async fn to_dump(
        &self,
        plan: &Plan,
        schema: Option<&str>,
        report: &mut Report,
    ) -> Result<(), PipelineError> {
        let mut sink = DumpSink::open(&plan.target).map_err(|source| PipelineError::Write {
            stdout: false,
            source,
        })?;
        write(
            &mut sink,
            b"-- Anonymized data written by anonymize\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n",
        )?;
        if let Some(sql) = schema {
            write(&mut sink, sql.as_bytes())?;
        }
        self.move_all(Out::Dump(&mut sink), report).await?;
        write(&mut sink, b"\n")?;
        for s in &self.prepared.catalog.sequences {
            let name = s.name.to_string().replace('\'', "''");
            let line = match s.last_value {
                Some(v) => format!("SELECT pg_catalog.setval('{name}', {v}, true);\n"),
                None => format!(
                    "SELECT pg_catalog.setval('{name}', {}, false);\n",
                    s.start_value
                ),
            };
            write(&mut sink, line.as_bytes())?;
        }
        let stdout = sink.is_stdout();
        sink.commit()
            .map_err(|source| PipelineError::Write { stdout, source })
    }
}

/// Stop between the steps of a refresh when SIGINT or SIGTERM asked for it.
fn stop_if_asked() -> Result<(), PipelineError> {
    match crate::interrupt::requested() {
        Some(signal) => Err(PipelineError::Interrupted(signal)),
        None => Ok(()),
    }
}

fn write(sink: &mut DumpSink, bytes: &[u8]) -> Result<(), PipelineError> {
    let stdout = sink.is_stdout();
    sink.writer()
        .write_all(bytes)
        .map_err(|source| PipelineError::Write { stdout, source })
}
