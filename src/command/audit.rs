//! `anonymize audit`: read the source and staging (two databases, or two dump files) and report
//! what of the originals staging still holds (see [`crate::audit`]). Also run by a refresh with
//! `--audit`, on the new staging before it is committed or swapped in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::open::{dump_policy, open_and_scan, rewind};
use crate::audit::{self, Audit, Outcome, Settings};
use crate::diagnostic::Diagnostics;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::rules::{self, BoundTable, Plan, QualifiedName, SourceTable, TypeKind};
use crate::source::dump::{DumpPolicy, DumpReader};
use crate::source::postgres as pg;

/// Audit the plan's target against its source.
pub fn run(plan: &Plan, settings: Settings) -> Result<Outcome, Error> {
    match (&plan.source, &plan.target) {
        (Endpoint::Database(s), Endpoint::Database(t)) => {
            let runtime = crate::db::runtime(2).map_err(Error::runtime)?;
            runtime.block_on(async {
                let t0 = Instant::now();
                let source = crate::db::connect(s).await.map_err(Error::Database)?;
                let staging = crate::db::connect(t).await.map_err(Error::Database)?;
                pg::begin_snapshot(&source).await.map_err(Error::Database)?;
                staging
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| {
                        Error::Database(crate::db::query_err("opening a snapshot of staging")(e))
                    })?;
                let catalog = pg::read_catalog(&source).await.map_err(Error::Database)?;
                let bound = rules::bind(plan, &catalog.source_tables())
                    .map_err(|d| Error::Bind(Diagnostics(d)))?;
                databases(plan, settings, &bound, &catalog, &source, &staging, t0)
                    .await
                    .map_err(Error::Database)
            })
        }
        (Endpoint::File(_), Endpoint::File(_)) => dumps(plan, settings),
        _ => Err(Error::Usage(
            "audit compares two databases (postgres URLs) or two dump files (--source prod.sql \
             --target staging.sql); stdin and stdout cannot be read twice"
                .into(),
        )),
    }
}

/// The audit of a staging database (`staging`, a session that sees what is to be audited: a
/// refresh's own transaction, or a read-only snapshot) against the source's snapshot.
pub async fn databases(
    plan: &Plan,
    settings: Settings,
    bound: &[BoundTable],
    catalog: &pg::Catalog,
    source: &Client,
    staging: &Client,
    t0: Instant,
) -> Result<Outcome, crate::db::DbError> {
    // Both sides print timestamps in one zone, whatever their defaults (staging's is set with
    // the other output settings below). Only read from now on, the source session may change it.
    source
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .map_err(crate::db::query_err("setting the source's time zone"))?;
    let keys: BTreeMap<QualifiedName, Vec<String>> = catalog
        .tables
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.key.clone()?)))
        .collect();
    let mut a = Audit::new(plan.subset_key.audit(), settings, bound, &|t| {
        keys.get(t).cloned()
    });
    let text = |kind: &TypeKind| {
        !matches!(
            kind,
            TypeKind::Number | TypeKind::Date | TypeKind::Timestamp
        )
    };
    let kinds: BTreeMap<(&QualifiedName, &str), &TypeKind> = catalog
        .tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(move |c| ((&t.name, c.name.as_str()), &c.meta.kind))
        })
        .collect();
    a.read_only_needed(&|t, c| kinds.get(&(t, c)).is_none_or(|k| text(k)));
    // Each pass reads on this thread and examines the rows on another.
    let tables = a.source_tables();
    let (mut a, _) = through_worker(
        source,
        tables,
        "reading the source",
        (a, None::<QualifiedName>),
        |(a, current), m| match m {
            Msg::Table(name, _) => *current = Some(name),
            Msg::Rows(data) => {
                if let Some(t) = current {
                    for line in lines(&data) {
                        a.source_row(t, &line);
                    }
                }
            }
        },
    )
    .await?;
    log::info!("audit: source read in {:.2}s", t0.elapsed().as_secs_f64());
    let search = a.searcher().map_err(|message| crate::db::DbError::Query {
        context: "audit".into(),
        message,
    })?;
    // Staging read with the source's session settings, so that values print the same way.
    staging
        .batch_execute(pg::VALUE_SETTINGS_LOCAL)
        .await
        .map_err(crate::db::query_err("setting up the staging session"))?;
    let staging_catalog = pg::read_catalog(staging).await?;
    // Numbers, dates and timestamps cannot hold an original text value: their columns are
    // neither read nor searched, unless they are a key or compared with their original.
    let mut searched: BTreeMap<QualifiedName, Vec<bool>> = BTreeMap::new();
    let rows: BTreeMap<QualifiedName, u64> = staging_catalog
        .tables
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.rows_estimate()?)))
        .collect();
    let mut tables: Vec<(QualifiedName, Vec<String>)> = Vec::new();
    for t in staging_catalog
        .tables
        .iter()
        .filter(|t| !t.partitioned && !t.foreign)
    {
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let flags: Vec<bool> = t.columns.iter().map(|c| text(&c.meta.kind)).collect();
        let read = a.staging_read(&t.name, &names, &flags);
        if read.is_empty() {
            continue;
        }
        tables.push((
            t.name.clone(),
            read.iter().map(|&i| names[i].clone()).collect(),
        ));
        searched.insert(t.name.clone(), read.iter().map(|&i| flags[i]).collect());
    }
    // Staging's populated materialized views are read like tables: one defined differently
    // there could select what the rules removed.
    for m in staging_catalog.matviews.iter().filter(|m| m.populated) {
        let cols = staging
            .query(
                "SELECT a.attname::text, t.typcategory::text FROM pg_attribute a \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&m.name.to_string()],
            )
            .await
            .map_err(crate::db::query_err("reading staging's materialized views"))?;
        let (names, flags): (Vec<String>, Vec<bool>) = cols
            .iter()
            .map(|r| {
                let category: String = r.get(1);
                (
                    r.get::<_, String>(0),
                    !matches!(category.as_str(), "N" | "D"),
                )
            })
            .filter(|(_, text)| *text)
            .unzip();
        if !names.is_empty() {
            tables.push((m.name.clone(), names));
            searched.insert(m.name.clone(), flags);
        }
    }
    let (a, search, _) = through_worker(
        staging,
        tables,
        "reading staging",
        (a, search, None::<audit::StagingTable>),
        move |(a, search, current), m| match m {
            Msg::Table(name, columns) => {
                let text = searched.get(&name).cloned().unwrap_or_default();
                let n = rows.get(&name).copied();
                *current = Some(a.staging_table(&name, &columns, text, n))
            }
            Msg::Rows(data) => {
                if let Some(st) = current {
                    for line in lines(&data) {
                        search.row(a, st, &line);
                    }
                }
            }
        },
    )
    .await?;
    let columns_of = |c: &pg::Catalog| -> BTreeMap<QualifiedName, BTreeSet<String>> {
        c.tables
            .iter()
            .filter(|t| !t.partitioned)
            .map(|t| {
                (
                    t.name.clone(),
                    t.columns.iter().map(|c| c.name.clone()).collect(),
                )
            })
            .collect()
    };
    let matviews = |c: &pg::Catalog| -> Vec<QualifiedName> {
        c.matviews.iter().map(|m| m.name.clone()).collect()
    };
    let unmentioned = audit::unmentioned(
        &columns_of(catalog),
        &columns_of(&staging_catalog),
        &plan.keep_tables,
        &matviews(catalog),
        &matviews(&staging_catalog),
    );
    Ok(search.finish(
        a,
        unmentioned,
        plan.source.to_string(),
        plan.target.to_string(),
        t0.elapsed().as_secs_f64(),
    ))
}

/// What a pass sends from the thread reading to the thread examining: a table starts (its name
/// and columns), or a batch of its rows (whole COPY text lines).
enum Msg {
    Table(QualifiedName, Vec<String>),
    Rows(Vec<u8>),
}

/// Bytes of rows per batch handed to the examining thread.
const BATCH: usize = 1 << 18;

fn lines(data: &[u8]) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    data.strip_suffix(b"\n")
        .unwrap_or(data)
        .split(|b| *b == b'\n')
        .map(String::from_utf8_lossy)
}

/// Read every row of `tables` on `client` and hand them, in order, to `handle` running on a thread
/// of its own with `state`, which comes back at the end. Reading and examining overlap.
async fn through_worker<S: Send + 'static>(
    client: &Client,
    tables: Vec<(QualifiedName, Vec<String>)>,
    what: &str,
    state: S,
    mut handle: impl FnMut(&mut S, Msg) + Send + 'static,
) -> Result<S, crate::db::DbError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
    let worker = std::thread::Builder::new()
        .name("audit".into())
        .spawn(move || {
            let mut state = state;
            for m in rx {
                handle(&mut state, m);
            }
            state
        })
        .map_err(|e| crate::db::DbError::Query {
            context: "audit".into(),
            message: format!("starting a thread: {e}"),
        })?;
    let gone = || crate::db::DbError::Query {
        context: "audit".into(),
        message: "the thread examining rows stopped (a bug in anonymize)".into(),
    };
    let read = async {
        for (table, columns) in tables {
            let err = |e: tokio_postgres::Error| crate::db::DbError::Query {
                context: format!("audit: {what} {table}"),
                message: crate::db::describe(&e),
            };
            let sql = pg::copy_out_sql(&table, &columns, None, None);
            tx.send(Msg::Table(table.clone(), columns))
                .map_err(|_| gone())?;
            let stream = client.copy_out(&sql).await.map_err(err)?;
            let mut stream = std::pin::pin!(stream);
            let mut batch: Vec<u8> = Vec::with_capacity(BATCH + 4096);
            while let Some(chunk) = stream.next().await {
                batch.extend_from_slice(&chunk.map_err(err)?);
                if batch.len() >= BATCH {
                    // Rows come one message each: a batch ends with a whole row.
                    let cut = memchr::memrchr(b'\n', &batch).map_or(0, |i| i + 1);
                    let rest = batch.split_off(cut);
                    tx.send(Msg::Rows(std::mem::replace(&mut batch, rest)))
                        .map_err(|_| gone())?;
                }
            }
            if !batch.is_empty() {
                tx.send(Msg::Rows(batch)).map_err(|_| gone())?;
            }
        }
        Ok::<(), crate::db::DbError>(())
    };
    let result = read.await;
    drop(tx);
    let state = worker.join().map_err(|_| gone())?;
    result.map(|()| state)
}

/// The audit of a staging dump file against the source dump.
fn dumps(plan: &Plan, settings: Settings) -> Result<Outcome, Error> {
    let t0 = Instant::now();
    let policy = dump_policy(plan);
    let (mut input, scanned) = open_and_scan(&plan.source, policy)?;
    let bound = rules::bind(plan, &scanned.tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
    let keys: BTreeMap<QualifiedName, Vec<String>> = scanned
        .primary_keys
        .iter()
        .map(|(_, t, k)| (t.clone(), k.clone()))
        .collect();
    let mut a = Audit::new(plan.subset_key.audit(), settings, &bound, &|t| {
        keys.get(t).cloned()
    });
    rewind(&mut input)?;
    each_dump_line(input, &scanned.tables, policy, |t, line| {
        a.source_row(&t.name, line)
    })?;
    let mut search = a.searcher().map_err(Error::Usage)?;
    if let Endpoint::File(p) = &plan.target {
        if !p.exists() {
            return Err(Error::Usage(format!(
                "the staging dump {} does not exist",
                p.display()
            )));
        }
    }
    let (mut staged, staging) = open_and_scan(&plan.target, policy)?;
    if staging.blocks == 0 {
        return Err(Error::Usage(format!(
            "the staging dump {} holds no table data: nothing to audit",
            plan.target
        )));
    }
    rewind(&mut staged)?;
    let mut tables: Vec<audit::StagingTable> = staging
        .tables
        .iter()
        .map(|t| a.staging_table(&t.name, &t.columns, Vec::new(), t.rows))
        .collect();
    let names: Vec<&SourceTable> = staging.tables.iter().collect();
    each_dump_line(staged, &staging.tables, policy, |t, line| {
        if let Some(i) = names.iter().position(|n| n.name == t.name) {
            search.row(&a, &mut tables[i], line)
        }
    })?;
    let columns_of = |tables: &[SourceTable]| -> BTreeMap<QualifiedName, BTreeSet<String>> {
        tables
            .iter()
            .map(|t| (t.name.clone(), t.columns.iter().cloned().collect()))
            .collect()
    };
    let unmentioned = audit::unmentioned(
        &columns_of(&scanned.tables),
        &columns_of(&staging.tables),
        &plan.keep_tables,
        &[],
        &[],
    );
    Ok(search.finish(
        a,
        unmentioned,
        plan.source.to_string(),
        plan.target.to_string(),
        t0.elapsed().as_secs_f64(),
    ))
}

/// Every data row of a dump, as COPY text lines, with its table.
fn each_dump_line(
    input: std::fs::File,
    tables: &[SourceTable],
    policy: DumpPolicy,
    mut each: impl FnMut(&SourceTable, &str),
) -> Result<(), Error> {
    let mut reader = DumpReader::new(input, 4096, 1 << 20).with_policy(policy);
    super::sample::copy_text_batches(
        &mut reader,
        tables,
        |block, text| {
            let text = text()?;
            let text = text.strip_suffix(b"\n").unwrap_or(&text);
            if !text.is_empty() {
                for line in text.split(|b| *b == b'\n') {
                    each(&tables[block], &String::from_utf8_lossy(line));
                }
            }
            Ok(())
        },
        |_| {},
    )
}
