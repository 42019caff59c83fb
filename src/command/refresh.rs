//! A database source: refresh a staging database in place, or write an anonymized dump.
//!
//! Order of work: connect to both ends and refuse the same database; open the source's read-only
//! snapshot, export it, and read the catalog; bind the rules to it (every problem reported, nothing
//! written); then move the tables. Up to `--jobs` reader sessions join the exported snapshot and read
//! tables ahead, each into a bounded channel, while the loader takes the tables in foreign-key order:
//! for a staging target inside one transaction (lock, drop foreign keys and indexes, empty, load,
//! rebuild indexes, restore foreign keys, set sequences, commit); any failure rolls back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{try_join, try_join_all};

use super::live::check_source;
use crate::diagnostic::Diagnostics;
use crate::endpoint::{ConnInfo, Endpoint};
use crate::error::Error;
use crate::pipeline::{
    load_table, read_table, Batches, Executor, Options, PipelineError, PlannedTable, Progress,
    Report, RunFailure, TableOut, TableStats,
};
use crate::rules::{BoundTable, Diagnostic, Plan, QualifiedName, TableAction};
use crate::sink::dump::{text, DumpSink};
use crate::sink::postgres::{DroppedKey, Staging, StagingError};
use crate::sink::swap::{Swap, SwapError, SwapOptions};
use crate::source::postgres::{self as pg, Catalog};

fn db(e: crate::db::DbError) -> Error {
    Error::Database(e)
}

/// What a refresh takes besides the plan and the pipeline's options.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// `--audit`: audit the new staging before it is committed or swapped in.
    pub audit: Option<crate::audit::Settings>,
    /// Create the staging schema from the source's (`pg_dump --schema-only`) first.
    pub create_schema: bool,
    /// How long a lock may be waited for, on the source and on staging.
    pub lock_timeout: std::time::Duration,
    /// Source sessions reading at once (the first holds the snapshot).
    pub source_connections: usize,
    /// Build the new staging beside the old one and swap it in (`--refresh swap`).
    pub swap: Option<SwapOptions>,
    /// Sessions loading the new staging at once (swap only; in-place loads in one transaction).
    pub load_connections: usize,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            create_schema: false,
            lock_timeout: std::time::Duration::from_secs(120),
            source_connections: 2,
            swap: None,
            load_connections: 2,
            audit: None,
        }
    }
}

/// One table to move: its bound rules, the statement that reads it, and where its batches arrive.
struct Job {
    table: Arc<BoundTable>,
    /// The catalog's row estimate, for progress.
    rows: Option<u64>,
    /// The catalog's size estimate in pages: a swap loads the biggest tables first.
    pages: u64,
    copy_sql: String,
    /// What the log shows of `copy_sql`: a subset's kept keys only as their number.
    copy_sql_shown: String,
    bytes_read: AtomicU64,
    /// When its reader started streaming it: a table's time runs from its first row read to its last
    /// row loaded (readers run ahead of the loader).
    read_from: std::sync::OnceLock<Instant>,
}

/// What the source gives once its snapshot is open: catalog and bound rules, in load order.
struct Prepared {
    catalog: Catalog,
    snapshot: String,
    /// Tables in foreign-key load order (foreign tables, never read, are not among them).
    jobs: Vec<Job>,
}

/// The jobs of the bound tables, in the catalog's load order.
fn jobs(plan: &Plan, catalog: &Catalog, bound: Vec<BoundTable>) -> Vec<Job> {
    let foreign: std::collections::BTreeSet<&QualifiedName> = catalog
        .tables
        .iter()
        .filter(|t| t.foreign)
        .map(|t| &t.name)
        .collect();
    let mut by_name: BTreeMap<QualifiedName, BoundTable> = bound
        .into_iter()
        .filter(|b| !foreign.contains(&b.name))
        .map(|b| (b.name.clone(), b))
        .collect();
    catalog
        .load_order()
        .into_iter()
        .filter_map(|t| {
            let b = by_name.remove(&t.name)?;
            // A partition filters with its root's `where`.
            let filter = plan
                .table_rules(None, &t.name, t.partition_root.as_ref())
                .and_then(|r| r.filter.as_deref());
            // A subset's kept keys narrow what the server streams (the row filter still decides).
            // The keys are written into the statement, which the source server may log or show
            // in pg_stat_activity: only keys that staging receives unchanged (`keep`) go there.
            let kept_as_is = |c: &str| {
                let i = b.columns.iter().position(|x| x == c);
                matches!((&b.action, i), (TableAction::Copy { ops }, Some(i))
                    if matches!(ops.get(i), Some(crate::rules::CellOp::Pass)))
            };
            let pushed = b.subset.as_ref().and_then(|f| {
                crate::subset::pushdown(
                    &f.filter,
                    t.key.as_deref(),
                    |c| {
                        t.columns
                            .iter()
                            .find(|x| x.name == c && kept_as_is(c))
                            .map(|x| x.meta.type_name.clone())
                    },
                    t.rows_estimate(),
                )
            });
            let (copy_sql, copy_sql_shown) = match (filter, pushed) {
                (f, None) => {
                    let sql = pg::copy_out_sql(&b.name, &b.columns, f, None);
                    (sql.clone(), sql)
                }
                (f, Some((keys, n))) => {
                    let both = |k: &str| match f {
                        Some(f) => format!("({f}) AND {k}"),
                        None => k.to_string(),
                    };
                    let shown = format!("<key among the {n} kept>");
                    (
                        pg::copy_out_sql(&b.name, &b.columns, Some(&both(&keys)), None),
                        pg::copy_out_sql(&b.name, &b.columns, Some(&both(&shown)), None),
                    )
                }
            };
            Some(Job {
                rows: t.rows_estimate(),
                pages: t.pages.max(0) as u64,
                copy_sql,
                copy_sql_shown,
                table: Arc::new(b),
                bytes_read: AtomicU64::new(0),
                read_from: std::sync::OnceLock::new(),
            })
        })
        .collect()
}

/// A swap's work after each table's load, shared by its loading sessions one piece at a time: the
/// foreign keys they add back and check themselves, each as soon as both its tables are loaded and
/// no lock of another session's work is in its way, and each loaded table's `ANALYZE`, once every
/// load has been taken (loads first, which the readers wait on; statistics then fill what would be
/// the sessions' idle time at the end, while the last tables load and their keys are checked). A
/// session with nothing to do waits while another still loads or works, since what that frees may
/// be work for it.
///
/// A key's `ADD … NOT VALID` takes SHARE ROW EXCLUSIVE on both its tables (for milliseconds; one
/// session adds at a time, as that lock conflicts with itself), its `VALIDATE` SHARE UPDATE
/// EXCLUSIVE on its own table for as long as it reads it (and ROW SHARE on the one it
/// references); `ANALYZE` SHARE UPDATE EXCLUSIVE on its table. So a key waits while its
/// own table is any checked key's table or referenced table, or while the table it references is a
/// checked key's own table, or while either is analyzed; an `ANALYZE` waits while its table is a
/// checked key's table or referenced table; keys that only reference the same table are checked
/// side by side. No statement then waits on another session's, which could outlast the lock
/// timeout, and no cycle can deadlock.
struct AfterLoad {
    state: std::sync::Mutex<AfterState>,
    /// Told whenever a load or a piece of work ends.
    changed: tokio::sync::Notify,
    /// Held for each key's short `ADD … NOT VALID` (see [`crate::sink::postgres::add_checked_on`]).
    adding: tokio::sync::Mutex<()>,
}

/// One piece of a swap's work after a load.
#[derive(Debug, Clone)]
enum After {
    Key(DroppedKey),
    Analyze(QualifiedName),
}

/// What a session without a load to take does.
#[derive(Debug)]
enum Idle {
    Work(After),
    /// Nothing is ready, but a load or a piece of work still running may free some.
    Wait,
    Done,
}

#[derive(Default)]
struct AfterState {
    loaded: BTreeSet<QualifiedName>,
    /// Loads taken and not finished.
    loading: usize,
    waiting: Vec<DroppedKey>,
    /// Loaded tables whose `ANALYZE` is still to run (in load order), and those being analyzed.
    unanalyzed: Vec<QualifiedName>,
    analyzing: BTreeSet<QualifiedName>,
    /// The tables of the keys being checked, and how many of them reference each table.
    own: BTreeSet<QualifiedName>,
    referenced: BTreeMap<QualifiedName, usize>,
    taken: usize,
}

impl AfterState {
    /// Take one piece of work that may run now, keys first (statistics only once
    /// `all_loads_taken`), and mark its tables as busy.
    fn take_one(&mut self, all_loads_taken: bool) -> Option<After> {
        let free = |s: &Self, k: &DroppedKey| {
            s.loaded.contains(&k.table)
                && s.loaded.contains(&k.references)
                && !s.own.contains(&k.table)
                && !s.referenced.contains_key(&k.table)
                && !s.own.contains(&k.references)
                && !s.analyzing.contains(&k.table)
                && !s.analyzing.contains(&k.references)
        };
        if let Some(i) = self.waiting.iter().position(|k| free(self, k)) {
            let k = self.waiting.remove(i);
            self.own.insert(k.table.clone());
            *self.referenced.entry(k.references.clone()).or_default() += 1;
            self.taken += 1;
            return Some(After::Key(k));
        }
        if !all_loads_taken {
            return None;
        }
        let i = self
            .unanalyzed
            .iter()
            .position(|t| !self.own.contains(t) && !self.referenced.contains_key(t))?;
        let t = self.unanalyzed.remove(i);
        self.analyzing.insert(t.clone());
        Some(After::Analyze(t))
    }

    /// `work` is done: its tables are free again.
    fn release(&mut self, work: &After) {
        match work {
            After::Key(k) => {
                self.own.remove(&k.table);
                if let Some(n) = self.referenced.get_mut(&k.references) {
                    *n -= 1;
                    if *n == 0 {
                        self.referenced.remove(&k.references);
                    }
                }
            }
            After::Analyze(t) => {
                self.analyzing.remove(t);
            }
        }
    }
}

impl AfterLoad {
    fn new(keys: Vec<DroppedKey>) -> Self {
        AfterLoad {
            state: std::sync::Mutex::new(AfterState {
                waiting: keys,
                ..AfterState::default()
            }),
            changed: tokio::sync::Notify::new(),
            adding: tokio::sync::Mutex::new(()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut AfterState) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut state| f(&mut state))
    }

    /// A session has taken a load (called while the queue it came from is held, so that no
    /// session sees neither the load queued nor taken).
    fn start_load(&self) {
        self.with(|state| state.loading += 1);
    }

    /// `table` is loaded (and is to be analyzed when `analyze`): the work the caller does first.
    fn loaded(&self, table: &QualifiedName, analyze: bool, all_loads_taken: bool) -> Option<After> {
        let next = self
            .with(|state| {
                state.loading = state.loading.saturating_sub(1);
                state.loaded.insert(table.clone());
                if analyze {
                    state.unanalyzed.push(table.clone());
                }
                state.take_one(all_loads_taken)
            })
            .flatten();
        self.changed.notify_waiters();
        next
    }

    /// The caller has done `work`: the work it does next.
    fn done(&self, work: &After, all_loads_taken: bool) -> Option<After> {
        let next = self
            .with(|state| {
                state.release(work);
                state.take_one(all_loads_taken)
            })
            .flatten();
        self.changed.notify_waiters();
        next
    }

    /// Every load is taken and the caller is free.
    fn idle(&self) -> Idle {
        self.with(|state| match state.take_one(true) {
            Some(work) => Idle::Work(work),
            None if state.loading > 0 || !state.own.is_empty() || !state.analyzing.is_empty() => {
                Idle::Wait
            }
            None => Idle::Done,
        })
        .unwrap_or(Idle::Done)
    }

    /// (how many keys were taken, the keys still waiting, the tables not analyzed).
    fn into_parts(self) -> (usize, Vec<DroppedKey>, Vec<QualifiedName>) {
        match self.state.into_inner() {
            Ok(state) => (state.taken, state.waiting, state.unanalyzed),
            Err(_) => (0, Vec::new(), Vec::new()),
        }
    }
}

/// Do a swap's work after a load on one session, then what is ready next, until nothing is.
async fn after_load(
    client: &tokio_postgres::Client,
    work: &AfterLoad,
    mut next: Option<After>,
    all_loads_taken: impl Fn() -> bool,
) -> Result<(), PipelineError> {
    while let Some(w) = next {
        stop_if_asked()?;
        match &w {
            After::Key(key) => {
                crate::sink::postgres::add_checked_on(client, key, &work.adding).await?
            }
            // Statistics for the new staging's planner, while others still work.
            After::Analyze(table) => client
                .batch_execute(&format!("ANALYZE {table}"))
                .await
                .map_err(crate::db::query_err(&format!("analyzing {table}")))?,
        }
        next = work.done(&w, all_loads_taken());
    }
    Ok(())
}

/// The jobs' indexes, biggest table first by the catalog's size (ties in load order): the order a
/// swap's sessions load them in, so that the longest loads start first and the small ones fill
/// the gaps at the end.
fn biggest_first(pages: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pages.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pages[i]));
    order
}

/// What a run should know about its source role: a superuser, or one that may write to the tables
/// it reads, is more than it needs (see least privilege in the README).
fn role_warnings(catalog: &Catalog, progress: &dyn Progress) {
    if catalog.superuser {
        progress.warning(
            "the source role is a superuser: a role with SELECT only is enough, and safer \
             (README: \"Database roles: the least they need\")",
        );
    }
    let writable: Vec<String> = catalog
        .tables
        .iter()
        .filter(|t| t.writable)
        .take(5)
        .map(|t| t.name.to_string())
        .collect();
    if !catalog.superuser && !writable.is_empty() {
        let n = catalog.tables.iter().filter(|t| t.writable).count();
        progress.warning(&format!(
            "the source role may write to {n} source table(s) ({}{}): it only needs SELECT",
            writable.join(", "),
            if n > 5 { ", …" } else { "" }
        ));
    }
}

/// The schema `--create-schema` creates: pg_dump's, in the run's snapshot, through the same judgement
/// as a dump's statements — production's secrets cut out, foreign servers, user mappings and foreign
/// tables left out unless the policy keeps them, comments as the policy says, psql-only lines gone.
fn staging_schema(plan: &Plan, c: &ConnInfo, snapshot: &str) -> Result<String, Error> {
    let text = crate::db::pg_dump_schema(c, Some(snapshot), false).map_err(db)?;
    let mut policy = crate::command::open::dump_policy(plan);
    // A schema holds no large objects' data; their metadata, if any, follows the policy.
    if policy.large_objects == crate::source::dump::Policy::Undecided {
        policy.large_objects = crate::source::dump::Policy::Drop;
    }
    let mut reader =
        crate::source::dump::DumpReader::new(text.as_bytes(), 4096, 1 << 20).with_policy(policy);
    let mut out = Vec::with_capacity(text.len());
    let refused = |e: crate::source::dump::DumpError| match crate::command::open::scan_error(e) {
        Error::Bind(problems) => Error::Bind(
            problems
                .into_iter()
                .map(|d| Diagnostic {
                    location: None,
                    message: format!(
                        "--create-schema: the source's schema (pg_dump --schema-only) {d}"
                    ),
                })
                .collect(),
        ),
        other => other,
    };
    while let Some(ev) = reader.next_event().map_err(refused)? {
        match ev {
            crate::source::dump::Event::Sql(b) => {
                // psql's \restrict and \unrestrict lines: the text is run as SQL.
                for line in b.split_inclusive(|c| *c == b'\n') {
                    if !line.starts_with(b"\\") {
                        out.extend_from_slice(line);
                    }
                }
            }
            crate::source::dump::Event::Note(n) => {
                log::info!("--create-schema: removed a {}", n.describe())
            }
            _ => {
                return Err(Error::Usage(
                    "pg_dump --schema-only wrote data; refusing to create the schema from it"
                        .into(),
                ))
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::Usage("pg_dump wrote invalid UTF-8".into()))
}

/// The start of a swap: the new staging database made beside the old one, with staging's own
/// schema in it unless the source's is to be created (`--create-schema`, inside the refresh). The
/// session on the old staging is closed here: nothing of the run stays connected to it.
async fn swap_begin(
    c: &ConnInfo,
    staging_client: tokio_postgres::Client,
    opts: &SwapOptions,
    create_schema: bool,
    keep: &[QualifiedName],
    progress: &dyn Progress,
) -> Result<(tokio_postgres::Client, Swap), Error> {
    progress.phase("creating the new staging database beside the old one");
    let swap = Swap::prepare(c, &staging_client, opts.clone())
        .await
        .map_err(swap_error)?;
    let filled = async {
        // Staging's schema is read (pg_dump, a process of its own) while the database is created.
        let schema = async {
            if create_schema {
                return Ok::<Option<String>, Error>(None);
            }
            let c = c.clone();
            tokio::task::spawn_blocking(move || crate::sink::swap::staging_schema_sql(&c))
                .await
                .map_err(|e| Error::Usage(format!("reading staging's schema: {e}")))?
                .map(Some)
                .map_err(db)
        };
        let (created, schema) = futures_util::future::join(
            async { swap.create_next().await.map_err(swap_error) },
            schema,
        )
        .await;
        created?;
        let schema = schema?;
        let next = swap.connect_next().await.map_err(db)?;
        if let Some(sql) = schema {
            progress.phase("copying staging's schema into the new staging database");
            next.batch_execute(&sql)
                .await
                .map_err(crate::db::query_err(
                    "creating staging's schema in the new staging database",
                ))
                .map_err(db)?;
        }
        // Their rows are copied after the load (the tables their keys reference are empty now).
        crate::sink::swap::check_kept_tables(&staging_client, keep)
            .await
            .map_err(swap_error)?;
        Ok::<_, Error>(next)
    }
    .await;
    drop(staging_client);
    match filled {
        Ok(next) => Ok((next, swap)),
        Err(e) => {
            if let Err(d) = swap.drop_next().await {
                log::warn!("{d}");
            }
            Err(e)
        }
    }
}

/// The end of a swap: after a successful load, statistics and the cut-over; after a failure, the
/// new database dropped. Either way the old staging is intact unless the cut-over completed.
async fn swap_end(
    swap: Swap,
    result: Result<Report, Error>,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    let outcome = match result {
        Ok(report) => {
            async {
                // Statistics for the planner now, while the old staging still serves. The load
                // wrote its rows frozen (hint bits and visibility map set), so the first query on
                // the new staging does not pay for them and no VACUUM is needed.
                // The loading sessions analyzed the tables they loaded; the rest (kept tables,
                // partitioned parents, materialized views) here.
                progress.phase("analyzing the new staging database");
                let next = swap.connect_next().await.map_err(db)?;
                // Fixtures wrote after the load: then every table is analyzed here.
                let loaded: Vec<&QualifiedName> = report
                    .tables
                    .iter()
                    .filter(|t| !t.skipped && report.fixtures.is_empty())
                    .map(|t| &t.name)
                    .collect();
                analyze_rest(&next, &loaded).await.map_err(db)?;
                drop(next);
                debug_pause("cutover");
                stop_if_asked().map_err(|error| {
                    Error::Pipeline(Box::new(RunFailure {
                        error,
                        report: Report::default(),
                    }))
                })?;
                progress.phase("cutting over to the new staging database");
                swap.cut_over().await.map_err(swap_error)?;
                Ok(report)
            }
            .await
        }
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        if let Err(d) = swap.drop_next().await {
            log::warn!("{d}");
        }
    }
    outcome
}

/// ANALYZE every table and materialized view of a database but `done`.
async fn analyze_rest(
    client: &tokio_postgres::Client,
    done: &[&QualifiedName],
) -> Result<(), crate::db::DbError> {
    let context = "analyzing the new staging database";
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' \
               AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .map_err(crate::db::query_err(context))?;
    let rest: Vec<String> = rows
        .iter()
        .map(|r| QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)))
        .filter(|t| !done.contains(&t))
        .map(|t| t.to_string())
        .collect();
    if !rest.is_empty() {
        client
            .batch_execute(&format!("ANALYZE {}", rest.join(", ")))
            .await
            .map_err(crate::db::query_err(context))?;
    }
    Ok(())
}

fn swap_error(e: SwapError) -> Error {
    match e {
        SwapError::NotAllowed(why) => Error::Usage(why),
        SwapError::Db(d) => db(d),
        e @ SwapError::Locked(_) => db(crate::db::DbError::Busy(e.to_string())),
    }
}

/// Debug builds only (the test suite's): `ANONYMIZE_DEBUG_PAUSE=point` stops the run at `point`
/// (`load`, `indexes`, `cutover`) for a minute, saying so on stderr, so that a test can kill it
/// there. Release builds have no such hook.
fn debug_pause(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("ANONYMIZE_DEBUG_PAUSE").is_ok_and(|p| p == point) {
        eprintln!("anonymize: debug: paused at {point}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Run a refresh whose source is a database. With `create_schema`, the source's schema is created in
/// the target first (inside the refresh transaction for a database, at the top of a file).
pub fn run(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    refresh: &RefreshOptions,
) -> Result<Report, Error> {
    let runtime = crate::db::runtime(2).map_err(Error::runtime)?;
    runtime.block_on(run_async(plan, options, progress, refresh))
}

/// Watches for a signal on behalf of some sessions until dropped.
struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancel the statements running on these sessions as soon as SIGINT or SIGTERM asks the run to
/// stop (a long index build or a lock wait included); the run then rolls back and exits 130/143.
/// The watch ends when the returned [`Watcher`] is dropped, on every way out.
fn cancel_on_signal(tokens: Vec<tokio_postgres::CancelToken>) -> Watcher {
    Watcher(tokio::spawn(async move {
        while crate::interrupt::requested().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        for t in tokens {
            let _ = t.cancel_query(tokio_postgres::NoTls).await;
        }
    }))
}

async fn run_async(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    refresh: &RefreshOptions,
) -> Result<Report, Error> {
    let started = Instant::now();
    let source_info = plan.source.database().expect("a database source");
    let source = crate::db::connect(source_info).await.map_err(db)?;
    let target_client = match &plan.target {
        Endpoint::Database(c) => {
            let t = crate::db::connect(c).await.map_err(db)?;
            let (a, b) = (
                crate::db::identity(&source).await.map_err(db)?,
                crate::db::identity(&t).await.map_err(db)?,
            );
            if a == b {
                return Err(Error::Usage(format!(
                    "source and target are the same database ({c}); refusing to write to production"
                )));
            }
            Some(t)
        }
        _ => None,
    };
    // The source's snapshot opens while a swap creates the new staging database beside the old
    // one: neither waits for the other. A signal cancels what runs on either.
    progress.phase("locking the source tables and reading the catalog in a read-only snapshot");
    let mut cancels = vec![source.cancel_token()];
    if let Some(t) = &target_client {
        cancels.push(t.cancel_token());
    }
    let early_watcher = cancel_on_signal(cancels);
    let (target_client, swap, snapshot) = match (&refresh.swap, target_client, &plan.target) {
        (Some(opts), Some(staging_client), Endpoint::Database(c)) => {
            let (begun, snapshot) = futures_util::future::join(
                swap_begin(
                    c,
                    staging_client,
                    opts,
                    refresh.create_schema,
                    &plan.keep_tables,
                    progress,
                ),
                open_source(&source, refresh),
            )
            .await;
            match (begun, snapshot) {
                (Ok((next, swap)), Ok(snapshot)) => (Some(next), Some(swap), snapshot),
                (Ok((_, swap)), Err(e)) => {
                    if let Err(d) = swap.drop_next().await {
                        log::warn!("{d}");
                    }
                    return as_stop(Err(e));
                }
                (Err(e), _) => {
                    return as_stop(Err(e));
                }
            }
        }
        (_, t, _) => match open_source(&source, refresh).await {
            Ok(snapshot) => (t, None, snapshot),
            Err(e) => {
                return as_stop(Err(e));
            }
        },
    };
    // A swap loads the new database on several sessions, opened side by side.
    let mut lanes = Vec::new();
    if let Some(s) = &swap {
        let opened = try_join_all((0..refresh.load_connections.max(1)).map(|_| async {
            let c = s.connect_next().await?;
            // A wait among the loading sessions is an error, never a hang.
            c.batch_execute(&format!(
                "SET lock_timeout = '{}ms'",
                refresh.lock_timeout.as_millis()
            ))
            .await
            .map_err(crate::db::query_err("opening a loading session"))?;
            Ok::<_, crate::db::DbError>(c)
        }))
        .await;
        match opened {
            Ok(c) => lanes = c,
            Err(e) => {
                if let Err(d) = s.drop_next().await {
                    log::warn!("{d}");
                }
                return as_stop(Err(db(e)));
            }
        }
    }
    let watcher = cancel_on_signal(target_client.iter().map(|t| t.cancel_token()).collect());
    let result = run_opened(
        plan,
        options,
        progress,
        refresh,
        OpenedSource {
            client: source,
            snapshot,
        },
        Target {
            client: target_client,
            lanes,
        },
        started,
    )
    .await;
    drop(watcher);
    drop(early_watcher);
    let result = match swap {
        Some(swap) => swap_end(swap, result, progress).await,
        None => result,
    };
    as_stop(result)
}

/// A statement cancelled because a signal asked the run to stop is that stop.
fn as_stop(result: Result<Report, Error>) -> Result<Report, Error> {
    match (result, crate::interrupt::requested()) {
        (Err(Error::Pipeline(mut f)), Some(signal)) => {
            f.error = PipelineError::Interrupted(signal);
            Err(Error::Pipeline(f))
        }
        (Err(Error::Database(_)), Some(signal)) => Err(Error::Pipeline(Box::new(RunFailure {
            error: PipelineError::Interrupted(signal),
            report: Report::default(),
        }))),
        (r, _) => r,
    }
}

/// Open the run's read-only snapshot on the source and read its catalog.
async fn open_source(
    source: &tokio_postgres::Client,
    refresh: &RefreshOptions,
) -> Result<pg::Snapshot, Error> {
    let t0 = Instant::now();
    let snapshot = pg::open_snapshot(source, refresh.lock_timeout)
        .await
        .map_err(db)?;
    log::info!(
        "source: catalog of {} tables read in {:.0} ms",
        snapshot.catalog.tables.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(snapshot)
}

/// The source session holding the run's snapshot, and what it read in it.
struct OpenedSource {
    client: tokio_postgres::Client,
    snapshot: pg::Snapshot,
}

/// The staging sessions of a run: the one that holds the refresh transaction, and a swap's extra
/// loading sessions on the new database.
struct Target {
    client: Option<tokio_postgres::Client>,
    lanes: Vec<tokio_postgres::Client>,
}

async fn run_opened(
    plan: &Plan,
    options: &Options,
    progress: &dyn Progress,
    refresh: &RefreshOptions,
    opened: OpenedSource,
    target: Target,
    started: Instant,
) -> Result<Report, Error> {
    let OpenedSource {
        client: source,
        snapshot,
    } = opened;
    let Target {
        client: target_client,
        lanes,
    } = target;
    let source_info = plan.source.database().expect("a database source");
    let mut bound = check_source(plan, &source, &snapshot.catalog).await?;
    if super::subset::involved(plan) {
        if super::subset::wanted(plan) {
            progress.phase("choosing the subset's rows (reading keys in the snapshot)");
        }
        super::subset::choose_in_database(plan, &source, &snapshot.catalog, &mut bound).await?;
    }
    role_warnings(&snapshot.catalog, progress);
    let prepared = Prepared {
        jobs: jobs(plan, &snapshot.catalog, bound),
        catalog: snapshot.catalog,
        snapshot: snapshot.id,
    };
    if let Some(t) = plan
        .keep_tables
        .iter()
        .find(|k| prepared.jobs.iter().any(|j| &j.table.name == *k))
    {
        return Err(Error::Usage(format!(
            "[target] keep_tables: {t} is a table of the source, which the refresh loads; keep only \
             tables that staging alone has"
        )));
    }
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
    let schema = match refresh.create_schema {
        true => Some(staging_schema(plan, source_info, &prepared.snapshot)?),
        false => None,
    };
    // Reader sessions: the first is the one holding the snapshot, the others join it.
    let copied = prepared
        .jobs
        .iter()
        .filter(|j| !matches!(j.table.action, TableAction::Skip))
        .count();
    let mut readers = vec![source];
    for _ in 1..refresh.source_connections.min(copied).max(1) {
        readers.push(
            pg::join_snapshot(source_info, &prepared.snapshot)
                .await
                .map_err(db)?,
        );
    }
    let reader_cancels: Vec<_> = readers[1..].iter().map(|r| r.cancel_token()).collect();
    let reader_watcher = cancel_on_signal(reader_cancels);
    log::info!(
        "source: {} reader sessions on one snapshot, {} transform threads",
        readers.len(),
        options.jobs
    );
    for job in &prepared.jobs {
        log::debug!("{}: {}", job.table.name, job.copy_sql_shown);
    }
    let exec = Executor::new(options, readers.len()).map_err(|error| {
        Error::Pipeline(Box::new(RunFailure {
            error,
            report: Report::default(),
        }))
    })?;
    let mut report = Report::default();
    let mover = Mover {
        prepared: &prepared,
        readers: &readers,
        exec: &exec,
        options,
        progress,
        policy: plan.policy,
        lanes: &lanes,
        keep: &plan.keep_tables,
        kept_from: match (&plan.target, lanes.is_empty()) {
            (Endpoint::Database(c), false) => Some(c),
            _ => None,
        },
        fixtures: &plan.fixtures,
    };
    let result = match target_client {
        Some(client) => {
            let mut staging = Staging::begin_on(client, refresh.lock_timeout)
                .await
                .map_err(|e| match e {
                    StagingError::Locked => db(crate::db::DbError::Busy(e.to_string())),
                    StagingError::Db(d) => db(d),
                })?;
            let outcome = mover
                .to_staging(&mut staging, schema.as_deref(), &mut report)
                .await;
            let outcome = match (outcome, refresh.audit) {
                (Ok(()), Some(settings)) => {
                    progress.phase("auditing the new staging against the source (--audit)");
                    let bound: Vec<BoundTable> =
                        prepared.jobs.iter().map(|j| (*j.table).clone()).collect();
                    match super::audit::databases(
                        plan,
                        settings,
                        &bound,
                        &prepared.catalog,
                        &readers[0],
                        staging.client(),
                        Instant::now(),
                    )
                    .await
                    {
                        Ok(o) if o.clean() => {
                            report.audit = Some(o);
                            stop_if_asked()
                        }
                        Ok(o) => Err(PipelineError::AuditFound(Box::new(o))),
                        Err(e) => Err(PipelineError::Db(e)),
                    }
                }
                (outcome, _) => outcome,
            };
            match outcome {
                Ok(()) => {
                    progress.phase("committing");
                    staging.commit().await.map_err(PipelineError::from)
                }
                Err(e) => {
                    staging.rollback().await;
                    Err(match e {
                        PipelineError::Db(d @ crate::db::DbError::LockTimeout { .. }) => {
                            let names: Vec<QualifiedName> =
                                prepared.jobs.iter().map(|j| j.table.name.clone()).collect();
                            PipelineError::Db(staging.lock_failure(d, &names).await)
                        }
                        e => e,
                    })
                }
            }
        }
        None => mover.to_dump(plan, schema.as_deref(), &mut report).await,
    };
    drop(reader_watcher);
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
    exec: &'a Executor,
    /// A swap's extra sessions on the new staging (none in place).
    lanes: &'a [tokio_postgres::Client],
    /// `[target] keep_tables`.
    keep: &'a [QualifiedName],
    /// A swap's old staging, which the kept tables are copied from.
    kept_from: Option<&'a ConnInfo>,
    /// `[[fixtures]]`, applied after the data.
    fixtures: &'a [crate::fixtures::Fixture],
    options: &'a Options,
    progress: &'a dyn Progress,
    policy: crate::rules::ObjectPolicy,
}

impl Mover<'_> {
    /// The readers: each session takes the next table in `order` when it has finished one, and
    /// reads it into that table's own bounded channel. The loaders take tables in the same order,
    /// so each always waits on a table some reader is working on or will take next: no deadlock,
    /// and memory bounded by one channel per reader.
    async fn read_all(
        &self,
        senders: Vec<Option<crate::pipeline::BatchSender>>,
        order: &[usize],
    ) -> Result<(), PipelineError> {
        // Each reader takes the next table in `order` when it has finished one, so that a long
        // table holds up one reader only.
        let mut senders: Vec<Option<crate::pipeline::BatchSender>> = senders;
        let queue: std::sync::Mutex<
            std::collections::VecDeque<(usize, crate::pipeline::BatchSender)>,
        > = std::sync::Mutex::new(
            order
                .iter()
                .filter_map(|&i| Some((i, senders.get_mut(i)?.take()?)))
                .collect(),
        );
        let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
        try_join_all((0..self.readers.len()).map(|reader| async move {
            while let Some((i, tx)) = next() {
                let job = &self.prepared.jobs[i];
                let _ = job.read_from.set(Instant::now());
                let rows =
                    pg::copy_out(&self.readers[reader], &job.copy_sql, &job.table.name).await?;
                read_table(
                    rows,
                    Arc::clone(&job.table),
                    self.exec,
                    self.options,
                    tx,
                    &job.bytes_read,
                )
                .await?;
            }
            Ok::<_, PipelineError>(())
        }))
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
                let (tx, rx) = self.exec.queue();
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
                let header = text::copy_header(&table.name, &table.columns);
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
                    stats.rows_written = kept(table, rows);
                    stats.bytes_written = bytes;
                    stats.bytes_read = job.bytes_read.load(Ordering::Relaxed);
                }
                if let Out::Dump(sink) = &mut out {
                    write(sink, text::COPY_END)?;
                }
                debug_pause("load");
                let from = job.read_from.get().copied().map_or(t0, |r| r.min(t0));
                stats.seconds = from.elapsed().as_secs_f64();
                stats.count_branches(table);
                self.progress.table_finished(&stats);
                report.tables.push(stats);
            }
            Ok::<_, PipelineError>(())
        };
        let order: Vec<usize> = (0..self.prepared.jobs.len()).collect();
        try_join(load, self.read_all(senders, &order)).await?;
        crate::pipeline::finish_commands(self.prepared.jobs.iter().map(|j| j.table.as_ref()))
    }

    /// A swap's load: tables on several sessions of the new staging at once. The biggest tables
    /// go first, and each session takes the next table when it has loaded one (and built its
    /// indexes), in the order the readers take them, so that none waits on another and no
    /// session sits idle while another has two big tables before it.
    async fn move_lanes(
        &self,
        sessions: &[&tokio_postgres::Client],
        rebuild: &std::sync::Mutex<Vec<(QualifiedName, String, String)>>,
        work: &AfterLoad,
        report: &mut Report,
    ) -> Result<(), PipelineError> {
        let mut senders = Vec::new();
        let mut receivers: Vec<Option<Batches>> = Vec::new();
        for job in &self.prepared.jobs {
            if matches!(job.table.action, TableAction::Skip) {
                senders.push(None);
                receivers.push(None);
            } else {
                let (tx, rx) = self.exec.queue();
                senders.push(Some(tx));
                receivers.push(Some(rx));
            }
        }
        let pages: Vec<u64> = self.prepared.jobs.iter().map(|j| j.pages).collect();
        let order = biggest_first(&pages);
        let queue: std::sync::Mutex<std::collections::VecDeque<(usize, Option<Batches>)>> =
            std::sync::Mutex::new(
                order
                    .iter()
                    .map(|&i| (i, receivers.get_mut(i).and_then(Option::take)))
                    .collect(),
            );
        let next = || {
            let mut q = queue.lock().ok()?;
            let load = q.pop_front()?;
            work.start_load();
            Some(load)
        };
        let all_loads_taken = || queue.lock().map_or(true, |q| q.is_empty());
        let lanes = sessions.iter().map(|client| async move {
            let mut done = Vec::new();
            loop {
                let Some((i, rx)) = next() else {
                    // Every load is taken: the statistics and keys left, as their tables come
                    // free; while another session still loads or works, what it frees may be
                    // work for this one.
                    let changed = work.changed.notified();
                    let mut changed = std::pin::pin!(changed);
                    changed.as_mut().enable();
                    match work.idle() {
                        Idle::Work(w) => after_load(client, work, Some(w), all_loads_taken).await?,
                        Idle::Wait => {
                            stop_if_asked()?;
                            let _ = tokio::time::timeout(
                                std::time::Duration::from_millis(100),
                                changed,
                            )
                            .await;
                        }
                        Idle::Done => break,
                    }
                    continue;
                };
                stop_if_asked()?;
                let job = &self.prepared.jobs[i];
                let t0 = Instant::now();
                self.progress.table_started(&job.table.name);
                let mut stats = TableStats::start(&job.table);
                let rx_loaded = rx.is_some();
                if let Some(rx) = rx {
                    let frozen =
                        crate::sink::postgres::begin_frozen_load(client, &job.table.name).await?;
                    let sink = crate::sink::postgres::copy_in_on(
                        client,
                        &job.table.name,
                        &job.table.columns,
                        frozen,
                    )
                    .await?;
                    let mut sink = std::pin::pin!(sink);
                    let (rows, bytes) = load_table(
                        &job.table.name,
                        rx,
                        TableOut::Copy(sink.as_mut()),
                        self.progress,
                    )
                    .await?;
                    if frozen {
                        client
                            .batch_execute("COMMIT")
                            .await
                            .map_err(crate::db::query_err(&format!(
                                "committing the load of {}",
                                job.table.name
                            )))?;
                    }
                    stats.rows_read = rows;
                    stats.rows_written = kept(&job.table, rows);
                    stats.bytes_written = bytes;
                    stats.bytes_read = job.bytes_read.load(Ordering::Relaxed);
                }
                debug_pause("load");
                let own: Vec<(QualifiedName, String, String)> = match rebuild.lock() {
                    Ok(mut all) => {
                        let (own, rest) = std::mem::take(&mut *all)
                            .into_iter()
                            .partition(|(t, _, _)| *t == job.table.name);
                        *all = rest;
                        own
                    }
                    Err(_) => Vec::new(),
                };
                if !own.is_empty() {
                    crate::sink::postgres::rebuild_on(&[client], own).await?;
                }
                let from = job.read_from.get().copied().map_or(t0, |r| r.min(t0));
                stats.seconds = from.elapsed().as_secs_f64();
                stats.count_branches(&job.table);
                self.progress.table_finished(&stats);
                done.push((i, stats));
                // The foreign keys whose two tables are now loaded, checked here while the
                // other sessions still load (and statistics, once no load is left to take).
                // Fixtures write after the load: their tables are analyzed after them.
                let analyze = rx_loaded && self.fixtures.is_empty();
                let first = work.loaded(&job.table.name, analyze, all_loads_taken());
                after_load(client, work, first, all_loads_taken).await?;
            }
            Ok::<_, PipelineError>(done)
        });
        let (loaded, ()) = try_join(try_join_all(lanes), self.read_all(senders, &order)).await?;
        let mut loaded: Vec<(usize, TableStats)> = loaded.into_iter().flatten().collect();
        loaded.sort_by_key(|(i, _)| *i);
        report.tables.extend(loaded.into_iter().map(|(_, s)| s));
        Ok(())
    }

    async fn to_staging(
        &self,
        staging: &mut Staging,
        schema: Option<&str>,
        report: &mut Report,
    ) -> Result<(), PipelineError> {
        if let Some(sql) = schema {
            staging.client().batch_execute(sql).await.map_err(|e| {
                PipelineError::Db(crate::db::DbError::Query {
                    context:
                        "creating the schema in staging (--create-schema needs an empty target)"
                            .into(),
                    message: crate::db::describe(&e),
                })
            })?;
        }
        let target_columns = staging.columns().await?;
        if !self.lanes.is_empty() {
            // A swap: staging's own tables come across empty unless kept. A partitioned table
            // holds no rows of its own (its partitions are loaded or kept, or listed here), and a
            // partition of a kept table comes across with it.
            let kept_names: Vec<String> = self.keep.iter().map(|t| t.to_string()).collect();
            let partitioned: Vec<QualifiedName> = staging
                .client()
                .query(
                    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind = 'p' OR (c.relispartition AND EXISTS ( \
                       SELECT FROM pg_catalog.pg_partition_ancestors(c.oid) a \
                       WHERE a.relid = ANY($1::text[]::regclass[])))",
                    &[&kept_names],
                )
                .await
                .map_err(crate::db::query_err("reading staging's partitioned tables"))?
                .iter()
                .map(|r| QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)))
                .collect();
            let empty: Vec<String> = target_columns
                .keys()
                .filter(|t| {
                    !self.prepared.jobs.iter().any(|j| &j.table.name == *t)
                        && !self.keep.contains(t)
                        && !partitioned.contains(t)
                })
                .map(|t| t.to_string())
                .collect();
            if !empty.is_empty() {
                self.progress.warning(&format!(
                    "swap: {} staging-only table(s) start empty in the new staging ({}); their rows \
                     stay in the old staging (__prev); list them in [target] keep_tables to carry them over",
                    empty.len(),
                    empty.join(", ")
                ));
            }
        }
        let problems = crate::command::check::missing_in_target(
            self.prepared
                .jobs
                .iter()
                .map(|j| (&j.table.name, j.table.columns.as_slice())),
            &target_columns,
        );
        if !problems.is_empty() {
            return Err(PipelineError::TargetSchema(Diagnostics(problems)));
        }
        if !self.policy.empty_matviews {
            // Staging's own definitions are what would run there.
            if let Some(why) = crate::db::matview_problem(&staging.matview_calls().await?) {
                return Err(PipelineError::TargetSchema(Diagnostics(vec![Diagnostic {
                    location: None,
                    message: format!("staging: {why}"),
                }])));
            }
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
        // A swap copies the kept tables after the load: their keys, between themselves too, are
        // added back and checked after that, whatever order they are listed in.
        let kept = if self.lanes.is_empty() {
            &[][..]
        } else {
            self.keep
        };
        staging
            .drop_foreign_keys(&[names.as_slice(), kept].concat())
            .await?;
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
        // A swap's kept tables too: their rows are copied as they were, not stamped again. A
        // partitioned one's triggers are its partitions' (turning the parent's back on would set
        // every partition's trigger alike, one disabled on its own included).
        let kept_leaves = staging.leaf_tables(kept).await?;
        staging
            .disable_triggers(&[names.as_slice(), &kept_leaves].concat())
            .await?;
        stop_if_asked()?;
        staging.truncate(&names).await?;
        if self.lanes.is_empty() {
            self.move_all(Out::Staging(staging), report).await?;
        } else {
            // A new database no one reads: the preparation is committed so that every session
            // can load it; the rest is the refresh's second transaction.
            // The loading sessions work outside the refresh's transaction, which holds no lock
            // on a table until the foreign keys are restored (a COPY in it would hold one that an
            // index build on another session waits for).
            staging.checkpoint().await?;
            let sessions: Vec<&tokio_postgres::Client> = self.lanes.iter().collect();
            // Each session builds a table's indexes as soon as it has loaded it, as pg_restore
            // -j does, while the others still load.
            let rebuild = std::sync::Mutex::new(staging.take_rebuild());
            // And checks a foreign key as soon as its two tables are loaded, unless fixtures,
            // which run after the load, are still to add rows the key would check.
            // Each loaded table is analyzed by a session too, once no load is left to take.
            let work = AfterLoad::new(if self.fixtures.is_empty() {
                staging.take_keys_checked_later()
            } else {
                Vec::new()
            });
            let started = Instant::now();
            self.move_lanes(&sessions, &rebuild, &work, report).await?;
            crate::pipeline::finish_commands(self.prepared.jobs.iter().map(|j| j.table.as_ref()))?;
            staging.give_back_rebuild(rebuild.into_inner().unwrap_or_default());
            let (checked, rest, unanalyzed) = work.into_parts();
            // None is left (the session that frees a table analyzes it); a defect would only
            // cost the planner its statistics, so they are gathered here all the same.
            if let (Some(client), false) = (sessions.first(), unanalyzed.is_empty()) {
                let names: Vec<String> = unanalyzed.iter().map(|t| t.to_string()).collect();
                client
                    .batch_execute(&format!("ANALYZE {}", names.join(", ")))
                    .await
                    .map_err(crate::db::query_err("analyzing the loaded tables"))?;
            }
            if checked > 0 {
                log::info!(
                    "staging: checked {checked} foreign keys during the load ({:.2}s of load)",
                    started.elapsed().as_secs_f64()
                );
            }
            staging.give_back_keys(rest);
            if let Some(old) = self.kept_from {
                stop_if_asked()?;
                let old = crate::db::connect(old).await?;
                if !self.keep.is_empty() {
                    self.progress
                        .phase("copying the staging-only tables of [target] keep_tables");
                    let rows =
                        crate::sink::swap::copy_kept_tables(&old, staging.client(), self.keep)
                            .await?;
                    log::info!(
                        "staging: {} kept tables copied ({rows} rows)",
                        self.keep.len()
                    );
                }
                let (positions, unreadable) =
                    crate::db::sequences(&old, "reading the old staging's sequence positions")
                        .await?;
                let n = staging.set_sequences(&positions).await?;
                log::info!(
                    "staging: {n} sequence positions carried over from the old staging ({} it may \
                     not read start over)",
                    unreadable.len()
                );
            }
        }
        self.large_objects_to_staging(staging).await?;
        // Sequences first, so that a fixture drawing ids from them takes the ones after
        // production's, as an application would.
        self.progress.phase("setting sequences");
        stop_if_asked()?;
        log::info!(
            "staging: setting {} sequences",
            self.prepared.catalog.sequences.len()
        );
        let n = staging
            .set_sequences(&self.prepared.catalog.sequences)
            .await?;
        log::info!("staging: {n} sequences set to the source's positions");
        if !self.lanes.is_empty() && !self.fixtures.is_empty() {
            // A swap's fixtures run on a loading session: the sequences' new positions are
            // committed first (into the new database, which nobody reads yet), or a fixture
            // drawing an id would wait on this transaction's lock on its sequence.
            staging.checkpoint().await?;
        }
        if !self.fixtures.is_empty() {
            self.progress
                .phase(&format!("applying {} fixture(s)", self.fixtures.len()));
            stop_if_asked()?;
            report.fixtures = match self.lanes.first() {
                // In place: inside the refresh's transaction.
                None => crate::fixtures::apply(staging.client(), self.fixtures).await?,
                // A swap: on a loading session, committed before its indexes are built there
                // (an open transaction holding the rows would make the builds wait on it).
                Some(lane) => {
                    let tx = |sql: &'static str| async move {
                        lane.batch_execute(sql)
                            .await
                            .map_err(crate::db::query_err("running the fixtures' transaction"))
                    };
                    tx("BEGIN").await?;
                    let applied = crate::fixtures::apply(lane, self.fixtures).await?;
                    tx("COMMIT").await?;
                    applied
                }
            };
        }
        let (indexes, fks) = staging.pending_work();
        debug_pause("indexes");
        self.progress
            .phase(&format!("rebuilding {indexes} indexes"));
        stop_if_asked()?;
        if self.lanes.is_empty() {
            staging.rebuild_indexes().await?;
        } else {
            let work = staging.take_rebuild();
            let sessions: Vec<&tokio_postgres::Client> = self.lanes.iter().collect();
            crate::sink::postgres::rebuild_on(&sessions, work).await?;
        }
        self.progress
            .phase(&format!("restoring {fks} foreign keys (checks every row)"));
        stop_if_asked()?;
        if self.lanes.is_empty() {
            staging.restore_foreign_keys().await?;
        } else {
            // A swap: the keys are committed unchecked into the new database, which nobody
            // reads yet, so that the loading sessions check their rows side by side.
            let started = Instant::now();
            let checks = staging.add_foreign_keys_unchecked().await?;
            if !checks.is_empty() {
                staging.checkpoint().await?;
                let sessions: Vec<&tokio_postgres::Client> = self.lanes.iter().collect();
                let n = crate::sink::postgres::spread_on(&sessions, checks).await?;
                log::info!(
                    "staging: checked {n} foreign keys on {} sessions in {:.2}s",
                    sessions.len(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        staging.restore_triggers().await?;
        self.progress
            .phase("refreshing materialized views from the anonymized tables");
        stop_if_asked()?;
        let n = staging
            .refresh_matviews(&self.unpopulated_matviews(), self.policy.empty_matviews)
            .await?;
        log::info!("staging: {n} materialized views refreshed");
        // The last moment to stop before COMMIT makes the refresh final.
        stop_if_asked()
    }

    /// The source's materialized views that hold no rows (`WITH NO DATA`).
    fn unpopulated_matviews(&self) -> std::collections::BTreeSet<QualifiedName> {
        self.prepared
            .catalog
            .matviews
            .iter()
            .filter(|m| !m.populated)
            .map(|m| m.name.clone())
            .collect()
    }

    /// The source's large objects, read in the snapshot, a chunk at a time, when the policy keeps
    /// them: `each(oid, None)` starts one, `each(oid, Some(chunk))` adds its next chunk.
    async fn read_large_objects<F, Fut>(&self, mut each: F) -> Result<u64, PipelineError>
    where
        F: FnMut(u32, Option<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), PipelineError>>,
    {
        if self.policy.large_objects != Some(crate::rules::Choice::Keep)
            || self.prepared.catalog.large_objects == 0
        {
            return Ok(0);
        }
        const CHUNK: i32 = 1 << 20;
        let source = &self.readers[0];
        let err = |what: &str| {
            let ctx = what.to_string();
            move |e: tokio_postgres::Error| {
                PipelineError::Db(crate::db::DbError::Query {
                    context: ctx.clone(),
                    message: crate::db::describe(&e),
                })
            }
        };
        let oids: Vec<tokio_postgres::types::Oid> = source
            .query("SELECT oid FROM pg_largeobject_metadata ORDER BY oid", &[])
            .await
            .map_err(err("listing the source's large objects"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        self.progress.phase(&format!(
            "copying {} large objects ([policy] large_objects = \"keep\")",
            oids.len()
        ));
        for oid in &oids {
            stop_if_asked()?;
            each(*oid, None).await?;
            let mut offset = 0i64;
            loop {
                let chunk: Vec<u8> = source
                    .query_one("SELECT lo_get($1, $2, $3)", &[oid, &offset, &CHUNK])
                    .await
                    .map_err(err(&format!("reading large object {oid} from the source")))?
                    .get(0);
                if chunk.is_empty() {
                    break;
                }
                offset += chunk.len() as i64;
                each(*oid, Some(chunk)).await?;
            }
        }
        Ok(oids.len() as u64)
    }

    async fn large_objects_to_staging(&self, staging: &Staging) -> Result<(), PipelineError> {
        let offset = std::cell::Cell::new(0i64);
        let n = self
            .read_large_objects(|oid, chunk| {
                let at = offset.get();
                if let Some(c) = &chunk {
                    offset.set(at + c.len() as i64);
                } else {
                    offset.set(0);
                }
                async move {
                    match chunk {
                        None => staging.create_large_object(oid).await?,
                        Some(c) => staging.write_large_object(oid, at, &c).await?,
                    }
                    Ok(())
                }
            })
            .await?;
        if n > 0 {
            log::info!("staging: {n} large objects copied");
        }
        Ok(())
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
        write(&mut sink, text::PREAMBLE)?;
        if let Some(sql) = schema {
            write(&mut sink, sql.as_bytes())?;
        }
        self.move_all(Out::Dump(&mut sink), report).await?;
        write(&mut sink, b"\n")?;
        for s in &self.prepared.catalog.sequences {
            write(&mut sink, text::setval(s).as_bytes())?;
        }
        // Large objects the policy keeps, as pg_dump writes them.
        let sink = std::cell::RefCell::new(sink);
        let open = std::cell::Cell::new(false);
        self.read_large_objects(|oid, chunk| {
            let mut out = String::new();
            match chunk {
                None => {
                    if open.replace(true) {
                        out.push_str(text::LO_CLOSE);
                    }
                    out.push_str(&text::lo_start(oid));
                }
                Some(c) => out.push_str(&text::lo_write(&c)),
            }
            let r = write(&mut sink.borrow_mut(), out.as_bytes());
            async move { r }
        })
        .await?;
        if open.get() {
            write(&mut sink.borrow_mut(), text::LO_CLOSE.as_bytes())?;
        }
        let mut sink = sink.into_inner();
        if !self.fixtures.is_empty() {
            let (text, applied) = crate::fixtures::dump_text(self.fixtures);
            write(&mut sink, text.as_bytes())?;
            report.fixtures = applied;
        }
        // Materialized views rebuilt from the anonymized rows once they are loaded, as pg_dump's
        // data section ends.
        for m in self
            .prepared
            .catalog
            .matviews
            .iter()
            .filter(|m| m.populated && !self.policy.empty_matviews)
        {
            write(&mut sink, text::refresh_matview(&m.name).as_bytes())?;
        }
        let stdout = sink.is_stdout();
        sink.commit()
            .map_err(|source| PipelineError::Write { stdout, source })
    }
}

/// Stop between the steps of a refresh when SIGINT or SIGTERM asked for it.
/// The rows of a table its subset kept, of `rows` read.
fn kept(table: &BoundTable, rows: u64) -> u64 {
    table.subset.as_ref().map_or(rows, |f| {
        rows.saturating_sub(f.dropped.load(Ordering::Relaxed))
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_loads_the_biggest_tables_first_and_keeps_load_order_among_equals() {
        assert_eq!(biggest_first(&[10, 500, 0, 500, 70]), vec![1, 3, 4, 0, 2]);
        assert_eq!(biggest_first(&[]), Vec::<usize>::new());
    }

    fn key(table: &str, references: &str) -> DroppedKey {
        DroppedKey {
            table: QualifiedName::new("public", table),
            references: QualifiedName::new("public", references),
            name: format!("{table}_{references}_fkey"),
            def: format!("FOREIGN KEY (x) REFERENCES public.{references}(id)"),
            partitioned: false,
        }
    }

    fn name(w: &Option<After>) -> String {
        match w {
            Some(After::Key(k)) => k.name.clone(),
            Some(After::Analyze(t)) => format!("ANALYZE {t}"),
            None => "nothing".into(),
        }
    }

    fn q(n: &str) -> QualifiedName {
        QualifiedName::new("public", n)
    }

    #[test]
    fn a_foreign_key_is_ready_once_both_its_tables_are_loaded_and_taken_once() {
        let keys = AfterLoad::new(vec![
            key("orders", "customers"),
            key("payments", "orders"),
            key("tree", "tree"),
            key("notes", "elsewhere"),
        ]);
        assert!(keys.loaded(&q("orders"), false, false).is_none());
        let tree = keys.loaded(&q("tree"), false, false);
        assert_eq!(name(&tree), "tree_tree_fkey");
        assert!(keys.done(tree.as_ref().unwrap(), false).is_none());
        let orders = keys.loaded(&q("customers"), false, false);
        assert_eq!(name(&orders), "orders_customers_fkey");
        // orders is being checked: a key that would lock it waits for that check, then goes to
        // the session that made it.
        assert!(keys.loaded(&q("payments"), false, false).is_none());
        assert_eq!(
            name(&keys.done(orders.as_ref().unwrap(), false)),
            "payments_orders_fkey"
        );
        // Nothing is handed out twice.
        assert!(keys.loaded(&q("customers"), false, false).is_none());
        assert!(keys.loaded(&q("notes"), false, false).is_none());
        let (taken, rest, unanalyzed) = keys.into_parts();
        assert_eq!(taken, 3);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "notes_elsewhere_fkey");
        assert!(unanalyzed.is_empty());
    }

    #[test]
    fn two_keys_on_one_table_are_checked_one_after_the_other() {
        let keys = AfterLoad::new(vec![key("orders", "customers"), key("orders", "shops")]);
        keys.loaded(&q("orders"), false, false);
        let first = keys.loaded(&q("customers"), false, false);
        assert_eq!(name(&first), "orders_customers_fkey");
        assert!(
            keys.loaded(&q("shops"), false, false).is_none(),
            "orders is being checked"
        );
        let second = keys.done(first.as_ref().unwrap(), false);
        assert_eq!(name(&second), "orders_shops_fkey");
        assert!(keys.done(second.as_ref().unwrap(), false).is_none());
        // Both ready at once: one at a time, whoever asks.
        let keys = AfterLoad::new(vec![key("orders", "customers"), key("orders", "shops")]);
        keys.loaded(&q("customers"), false, false);
        keys.loaded(&q("shops"), false, false);
        let first = keys.loaded(&q("orders"), false, false);
        assert!(first.is_some());
        assert!(matches!(keys.idle(), Idle::Wait), "the other waits for it");
        assert!(keys.done(first.as_ref().unwrap(), false).is_some());
    }

    #[test]
    fn keys_that_only_reference_the_same_table_are_checked_side_by_side_and_no_cycle_runs_at_once()
    {
        let keys = AfterLoad::new(vec![
            key("orders", "customers"),
            key("addresses", "customers"),
        ]);
        keys.loaded(&q("customers"), false, false);
        assert!(keys.loaded(&q("orders"), false, false).is_some());
        assert!(
            keys.loaded(&q("addresses"), false, false).is_some(),
            "both reference customers only"
        );
        // a -> b, b -> c, c -> a: while a -> b is checked, b -> c (its own table is referenced
        // by it) and c -> a (it references a table being checked) wait.
        let keys = AfterLoad::new(vec![key("a", "b"), key("b", "c"), key("c", "a")]);
        keys.loaded(&q("a"), false, false);
        let first = keys.loaded(&q("b"), false, false);
        assert_eq!(name(&first), "a_b_fkey");
        assert!(keys.loaded(&q("c"), false, false).is_none());
        let second = keys.done(first.as_ref().unwrap(), false);
        assert_eq!(name(&second), "b_c_fkey", "c -> a still waits for it");
        let third = keys.done(second.as_ref().unwrap(), false);
        assert_eq!(name(&third), "c_a_fkey");
        assert!(keys.done(third.as_ref().unwrap(), false).is_none());
        assert!(matches!(keys.idle(), Idle::Done));
        assert_eq!(keys.into_parts().0, 3);
    }

    #[test]
    fn tables_are_analyzed_once_every_load_is_taken_and_never_beside_a_key_check_on_them() {
        let work = AfterLoad::new(vec![key("orders", "customers")]);
        // Loads are left to take: keys only, statistics wait.
        work.start_load();
        work.start_load();
        assert!(work.loaded(&q("customers"), true, false).is_none());
        let check = work.loaded(&q("orders"), true, false);
        assert_eq!(name(&check), "orders_customers_fkey");
        // Every load taken, but both tables are the key's while it is checked: a free session
        // waits for it rather than leave.
        assert!(matches!(work.idle(), Idle::Wait));
        let first = work.done(check.as_ref().unwrap(), true);
        assert_eq!(name(&first), "ANALYZE public.customers");
        let Idle::Work(second) = work.idle() else {
            panic!("orders is free")
        };
        assert_eq!(name(&Some(second.clone())), "ANALYZE public.orders");
        assert!(matches!(work.idle(), Idle::Wait), "both still analyzed");
        assert!(work.done(&second, true).is_none());
        assert!(work.done(first.as_ref().unwrap(), true).is_none());
        assert!(matches!(work.idle(), Idle::Done));
        // A table not to be analyzed (nothing was loaded into it) is not.
        let work = AfterLoad::new(Vec::new());
        assert!(work.loaded(&q("empty"), false, true).is_none());
        assert_eq!(name(&work.loaded(&q("t"), true, true)), "ANALYZE public.t");
        // A key waits while either of its tables is analyzed, and a free session while a load
        // is still running elsewhere.
        let work = AfterLoad::new(vec![key("a", "b")]);
        work.start_load();
        work.start_load();
        let b = work.loaded(&q("b"), true, true);
        assert_eq!(name(&b), "ANALYZE public.b");
        assert!(matches!(work.idle(), Idle::Wait), "a still loads");
        let a = work.loaded(&q("a"), true, true);
        assert_eq!(name(&a), "ANALYZE public.a");
        assert!(
            work.done(b.as_ref().unwrap(), true).is_none(),
            "a is analyzed"
        );
        assert_eq!(name(&work.done(a.as_ref().unwrap(), true)), "a_b_fkey");
        let (taken, rest, unanalyzed) = work.into_parts();
        assert_eq!((taken, rest.len(), unanalyzed.len()), (1, 0, 0));
    }

    #[test]
    fn keys_on_partitioned_tables_or_not_valid_in_the_source_are_not_checked_apart() {
        let mut k = key("orders", "customers");
        assert!(k.checked_later());
        assert_eq!(
            k.add_sql(true),
            "ALTER TABLE public.orders ADD CONSTRAINT orders_customers_fkey \
             FOREIGN KEY (x) REFERENCES public.customers(id) NOT VALID"
        );
        assert_eq!(
            k.validate_sql(),
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customers_fkey"
        );
        k.partitioned = true;
        assert!(!k.checked_later());
        let mut k = key("orders", "customers");
        k.def.push_str(" NOT VALID");
        assert!(!k.checked_later());
    }
}
