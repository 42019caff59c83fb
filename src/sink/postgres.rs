//! The staging database as the target: one transaction for the whole refresh.
//!
//! The refresh takes a transaction-scoped advisory lock (a second refresh fails at once instead of
//! waiting), drops the foreign keys that touch the refreshed tables, empties those tables, loads them
//! with COPY, puts the foreign keys back (which validates every row, as pg_restore does after the
//! data), sets the sequences, and commits. Anything that fails before COMMIT rolls everything back, so
//! staging keeps its previous contents. This module knows nothing of rules.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tokio_postgres::{Client, CopyInSink};

use crate::db::{describe, query_err, DbError};
use crate::schema::SequenceState;
use crate::schema::{quote_ident, QualifiedName};

/// The advisory lock every refresh takes on the target ("anonymiz" in ASCII).
pub const LOCK_KEY: i64 = 0x616e_6f6e_796d_697a;

/// A foreign key dropped for the load, to add back after it.
#[derive(Debug, Clone)]
pub struct DroppedKey {
    /// The table it is on.
    pub table: QualifiedName,
    /// The table it references.
    pub references: QualifiedName,
    pub name: String,
    /// `pg_get_constraintdef`: `FOREIGN KEY (…) REFERENCES …`, with `NOT VALID` if it was.
    pub def: String,
    /// Either table is partitioned: PostgreSQL cannot add it `NOT VALID`.
    pub partitioned: bool,
}

impl DroppedKey {
    /// It can be added `NOT VALID` and checked by a separate `VALIDATE CONSTRAINT`, which runs
    /// beside other checks: not on a partitioned table, and not one that was `NOT VALID` in the
    /// source (it stays so).
    pub fn checked_later(&self) -> bool {
        !self.partitioned && !self.def.trim_end().ends_with("NOT VALID")
    }

    /// What its errors say it was doing.
    pub fn context(&self) -> String {
        format!("restoring foreign key {} of {}", self.name, self.table)
    }

    /// The statement that adds it back (`not_valid`: without checking the rows yet).
    pub fn add_sql(&self, not_valid: bool) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}{}",
            self.table,
            quote_ident(&self.name),
            self.def,
            if not_valid { " NOT VALID" } else { "" }
        )
    }

    /// The statement that checks its rows once it was added `NOT VALID`.
    pub fn validate_sql(&self) -> String {
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            self.table,
            quote_ident(&self.name)
        )
    }
}

pub struct Staging {
    client: Client,
    dropped_fks: Vec<DroppedKey>,
    /// Statements that rebuild the keys and indexes dropped for the load, in order: (table,
    /// what it does, the statement).
    rebuild: Vec<(QualifiedName, String, String)>,
    /// User triggers disabled for the load: (table, trigger, how it was enabled).
    triggers: Vec<(QualifiedName, String, char)>,
    lock_timeout: std::time::Duration,
}

/// Why the target could not be refreshed before any data moved.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("another refresh of this staging database is running (advisory lock {LOCK_KEY} is held); try again when it has finished")]
    Locked,
}

impl Staging {
    /// Open the refresh transaction on a connection and take the lock without waiting. No statement
    /// of the refresh waits for a lock longer than `lock_timeout`.
    pub async fn begin_on(
        client: Client,
        lock_timeout: std::time::Duration,
    ) -> Result<Self, StagingError> {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'",
                lock_timeout.as_millis()
            ))
            .await
            .map_err(query_err("opening the staging transaction"))?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(query_err("taking the refresh lock on staging"))?
            .get(0);
        if !locked {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(StagingError::Locked);
        }
        Ok(Staging {
            client,
            dropped_fks: Vec::new(),
            rebuild: Vec::new(),
            triggers: Vec::new(),
            lock_timeout,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The columns staging has for each table, for comparing with what will be loaded.
    pub async fn columns(&self) -> Result<BTreeMap<QualifiedName, BTreeSet<String>>, DbError> {
        table_columns(&self.client).await
    }

    /// Drop every foreign key from or to these tables; [`Staging::restore_foreign_keys`] adds them back.
    pub async fn drop_foreign_keys(&mut self, tables: &[QualifiedName]) -> Result<(), DbError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let rows = self
            .client
            .query(
                "SELECT DISTINCT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid), \
                        rn.nspname, r.relname, c.relkind = 'p' OR r.relkind = 'p' \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace \
                 WHERE k.contype = 'f' AND k.conparentid = 0 \
                   AND (k.conrelid = ANY($1::text[]::regclass[]) OR k.confrelid = ANY($1::text[]::regclass[]) \
                        OR k.conrelid IN (SELECT inhparent FROM pg_inherits WHERE inhrelid = ANY($1::text[]::regclass[])) \
                        OR k.confrelid IN (SELECT inhparent FROM pg_inherits WHERE inhrelid = ANY($1::text[]::regclass[])))",
                &[&names],
            )
            .await
            .map_err(query_err("reading the staging foreign keys"))?;
        for r in rows {
            let table = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
            let name: String = r.get(2);
            let def: String = r.get(3);
            self.client
                .batch_execute(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {}",
                    quote_ident(&name)
                ))
                .await
                .map_err(query_err(&format!(
                    "dropping foreign key {name} of {table} for the load"
                )))?;
            log::debug!("staging: dropped foreign key {name} of {table} for the load");
            self.dropped_fks.push(DroppedKey {
                table,
                references: QualifiedName::new(r.get::<_, &str>(4), r.get::<_, &str>(5)),
                name,
                def,
                partitioned: r.get(6),
            });
        }
        log::info!(
            "staging: dropped {} foreign keys for the load",
            self.dropped_fks.len()
        );
        Ok(())
    }

    /// Drop the primary keys, unique and exclusion constraints and plain indexes of these tables, to
    /// build them once after the data instead of row by row (measured: about a fifth of a refresh's
    /// time on the benchmark). Partitions and partitioned tables keep theirs (their indexes are
    /// attached to each other), and so do clustered and replica-identity indexes, whose settings a
    /// rebuild would lose. Call after [`Staging::drop_foreign_keys`].
    pub async fn drop_indexes(&mut self, tables: &[QualifiedName]) -> Result<(), DbError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let rows = self
            .client
            .query(
                "SELECT n.nspname, c.relname, i.relname, k.conname, \
                        CASE WHEN k.oid IS NULL THEN pg_get_indexdef(x.indexrelid) ELSE pg_get_constraintdef(k.oid) END \
                 FROM pg_index x \
                 JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_class i ON i.oid = x.indexrelid \
                 LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x') \
                 WHERE x.indrelid = ANY($1::text[]::regclass[]) \
                   AND c.relkind = 'r' AND NOT c.relispartition \
                   AND NOT x.indisclustered AND NOT x.indisreplident AND x.indisvalid \
                 ORDER BY k.oid IS NULL, n.nspname, c.relname, i.relname",
                &[&names],
            )
            .await
            .map_err(query_err("reading the staging indexes"))?;
        for r in rows {
            let table = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
            let index: String = r.get(2);
            let constraint: Option<String> = r.get(3);
            let def: String = r.get(4);
            let index_name = QualifiedName::new(r.get::<_, &str>(0), &index);
            let (drop, build) = match constraint {
                Some(k) => (
                    format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote_ident(&k)),
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} {def}",
                        quote_ident(&k)
                    ),
                ),
                None => (format!("DROP INDEX {index_name}"), def),
            };
            self.client
                .batch_execute(&drop)
                .await
                .map_err(query_err(&format!(
                    "dropping index {index} of {table} for the load"
                )))?;
            log::debug!("staging: dropped index {index} of {table} for the load");
            let context = format!("rebuilding index {index} of {table}");
            self.rebuild.push((table, context, build));
        }
        log::info!(
            "staging: dropped {} indexes for the load",
            self.rebuild.len()
        );
        Ok(())
    }

    /// (indexes to rebuild, foreign keys to restore) after the load.
    pub fn pending_work(&self) -> (usize, usize) {
        (self.rebuild.len(), self.dropped_fks.len())
    }

    /// Build the keys and indexes dropped for the load; unique ones check every row here.
    pub async fn rebuild_indexes(&mut self) -> Result<(), DbError> {
        let started = std::time::Instant::now();
        let rebuild = std::mem::take(&mut self.rebuild);
        let n = rebuild.len();
        for (_, context, sql) in rebuild {
            log::debug!("staging: {context}");
            self.client
                .batch_execute(&sql)
                .await
                .map_err(query_err(&context))?;
        }
        log::info!(
            "staging: rebuilt {n} indexes in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The keys and indexes dropped for the load, for [`rebuild_on`] to build: (table, what it
    /// does, the statement).
    pub fn take_rebuild(&mut self) -> Vec<(QualifiedName, String, String)> {
        std::mem::take(&mut self.rebuild)
    }

    /// Keys and indexes taken by [`Staging::take_rebuild`] and not built, to be built later.
    pub fn give_back_rebuild(&mut self, rest: Vec<(QualifiedName, String, String)>) {
        self.rebuild.extend(rest);
    }

    /// Commit what the refresh did so far and go on in a new transaction: for a new database that
    /// no one else reads (a swap), so that other sessions can load it meanwhile.
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        self.client
            .batch_execute(&format!(
                "COMMIT; BEGIN; SET LOCAL lock_timeout = '{}ms'",
                self.lock_timeout.as_millis()
            ))
            .await
            .map_err(query_err("committing the preparation of the new staging"))
    }

    /// Empty the tables about to be loaded (and the skipped ones).
    pub async fn truncate(&self, tables: &[QualifiedName]) -> Result<(), DbError> {
        if tables.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        log::info!("staging: emptying {} tables", list.len());
        self.client
            .batch_execute(&format!("TRUNCATE {}", list.join(", ")))
            .await
            .map_err(query_err("emptying the staging tables"))
    }

    /// Start loading one table: a sink of COPY text; closing it ends the COPY.
    pub async fn copy_in(
        &self,
        table: &QualifiedName,
        columns: &[String],
    ) -> Result<impl futures_util::Sink<Bytes, Error = DbError> + Send, DbError> {
        copy_in_on(&self.client, table, columns, false).await
    }

    /// Add back the foreign keys dropped for the load; this checks every row against them.
    pub async fn restore_foreign_keys(&mut self) -> Result<(), DbError> {
        log::info!("staging: restoring {} foreign keys", self.dropped_fks.len());
        for key in std::mem::take(&mut self.dropped_fks) {
            self.add_foreign_key(&key, false).await?;
        }
        Ok(())
    }

    /// Add one dropped foreign key back (`not_valid`: without checking the rows yet).
    async fn add_foreign_key(&self, key: &DroppedKey, not_valid: bool) -> Result<(), DbError> {
        self.client
            .batch_execute(&key.add_sql(not_valid))
            .await
            .map_err(query_err(&key.context()))
    }

    /// The foreign keys dropped for the load that a swap's loading sessions may add back and check
    /// themselves as soon as both their tables are loaded ([`add_checked_on`]); the rest stay for
    /// [`Staging::add_foreign_keys_unchecked`].
    pub fn take_keys_checked_later(&mut self) -> Vec<DroppedKey> {
        let (later, rest) = std::mem::take(&mut self.dropped_fks)
            .into_iter()
            .partition(DroppedKey::checked_later);
        self.dropped_fks = rest;
        later
    }

    /// Keys taken by [`Staging::take_keys_checked_later`] and not added, to be added later.
    pub fn give_back_keys(&mut self, rest: Vec<DroppedKey>) {
        self.dropped_fks.extend(rest);
    }

    /// A swap's foreign keys, in two steps so that several sessions can check them at once: each
    /// is added here `NOT VALID` (a catalog change, no row read), and the statements that check
    /// the rows are returned, to run once this is committed (`VALIDATE CONSTRAINT` on different
    /// tables runs side by side; `ADD` of two keys to the same parent does not). A key on a
    /// partitioned table (which PostgreSQL cannot add `NOT VALID`) or one that was `NOT VALID` in
    /// the source is added whole here.
    pub async fn add_foreign_keys_unchecked(
        &mut self,
    ) -> Result<Vec<(QualifiedName, String, String)>, DbError> {
        let fks = std::mem::take(&mut self.dropped_fks);
        log::info!("staging: restoring {} foreign keys", fks.len());
        let mut checks = Vec::new();
        for key in fks {
            let later = key.checked_later();
            self.add_foreign_key(&key, later).await?;
            if later {
                checks.push((key.table.clone(), key.context(), key.validate_sql()));
            }
        }
        Ok(checks)
    }

    /// Set staging's sequences (those it has) to the given positions, inside the refresh
    /// transaction: `ALTER SEQUENCE … RESTART WITH n` (and `nextval` for a sequence that was
    /// called) is rolled back with the rest, where `setval` would not be. Two statements whatever
    /// the count. The one writer of positions into a database: the source's, and in a swap the old
    /// staging's first. Returns how many staging has.
    pub async fn set_sequences(&self, sequences: &[SequenceState]) -> Result<u64, DbError> {
        let names: Vec<String> = sequences.iter().map(|s| s.name.to_string()).collect();
        let present: std::collections::BTreeSet<String> = self
            .client
            .query(
                "SELECT n FROM unnest($1::text[]) n WHERE to_regclass(n) IS NOT NULL",
                &[&names],
            )
            .await
            .map_err(query_err("reading the staging sequences"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut sql = String::new();
        let mut set = 0;
        for (s, name) in sequences.iter().zip(&names) {
            if !present.contains(name) {
                continue;
            }
            set += 1;
            sql.push_str(&format!(
                "ALTER SEQUENCE {name} RESTART WITH {};\n",
                s.last_value
            ));
            if s.is_called {
                sql.push_str(&format!("SELECT nextval({});\n", quote_literal(name)));
            }
        }
        if sql.is_empty() {
            return Ok(0);
        }
        self.client
            .batch_execute(&sql)
            .await
            .map_err(query_err("setting the staging sequences"))?;
        Ok(set)
    }

    pub async fn commit(self) -> Result<(), DbError> {
        log::info!("staging: committing");
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(query_err("committing the staging transaction"))
    }

    /// Roll back; staging keeps what it had. Errors are moot: a lost connection rolls back too.
    pub async fn rollback(&self) {
        log::info!("staging: rolling back; staging keeps what it had");
        let _ = self.client.batch_execute("ROLLBACK").await;
    }

    /// After a rollback for a lock wait that ran out: what the error says, with who held a lock on
    /// the tables the refresh needed (pid, user, application, state, age; never their query).
    pub async fn lock_failure(&self, e: DbError, tables: &[QualifiedName]) -> DbError {
        let DbError::LockTimeout { context, .. } = e else {
            return e;
        };
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let held = crate::db::blockers(&self.client, &names, &[]).await;
        DbError::LockTimeout {
            context,
            message: format!(
                "waited {} s (--lock-timeout) for {held}; staging is as it was",
                self.lock_timeout.as_secs()
            ),
        }
    }

    /// These tables with each partitioned one replaced by its leaf partitions.
    pub async fn leaf_tables(
        &self,
        tables: &[QualifiedName],
    ) -> Result<Vec<QualifiedName>, DbError> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let rows = self
            .client
            .query(
                "SELECT n.nspname, c.relname FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i) \
                 LEFT JOIN LATERAL pg_catalog.pg_partition_tree(t.name::regclass) p ON true \
                 JOIN pg_catalog.pg_class c ON c.oid = coalesce(p.relid, t.name::regclass) \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE coalesce(p.isleaf, true) ORDER BY t.i, p.level, c.relname",
                &[&names],
            )
            .await
            .map_err(query_err("reading the partitions of the kept tables"))?;
        Ok(rows
            .iter()
            .map(|r| QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)))
            .collect())
    }

    /// Turn off the user triggers of these tables for the load (an insert trigger that writes an
    /// audit row or stamps a column would change what was loaded; pg_restore creates triggers after
    /// the data for the same reason). Foreign-key triggers stay: keys are checked as before.
    pub async fn disable_triggers(&mut self, tables: &[QualifiedName]) -> Result<(), DbError> {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let rows = self
            .client
            .query(
                "SELECT n.nspname, c.relname, t.tgname, t.tgenabled::text FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' \
                   AND t.tgrelid = ANY ($1::text[]::regclass[]) ORDER BY 1, 2, 3",
                &[&names],
            )
            .await
            .map_err(query_err("reading the staging triggers"))?;
        for r in rows {
            let table = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
            let name: String = r.get(2);
            let mode = r.get::<_, &str>(3).chars().next().unwrap_or('O');
            self.client
                .batch_execute(&format!(
                    "ALTER TABLE {table} DISABLE TRIGGER {}",
                    quote_ident(&name)
                ))
                .await
                .map_err(query_err(&format!(
                    "disabling trigger {name} of {table} for the load"
                )))?;
            log::debug!("staging: trigger {name} of {table} off for the load");
            self.triggers.push((table, name, mode));
        }
        log::info!(
            "staging: {} user triggers off for the load",
            self.triggers.len()
        );
        Ok(())
    }

    /// Turn the triggers disabled for the load back on, as they were.
    pub async fn restore_triggers(&mut self) -> Result<(), DbError> {
        for (table, name, mode) in std::mem::take(&mut self.triggers) {
            let how = match mode {
                'R' => "ENABLE REPLICA",
                'A' => "ENABLE ALWAYS",
                _ => "ENABLE",
            };
            self.client
                .batch_execute(&format!(
                    "ALTER TABLE {table} {how} TRIGGER {}",
                    quote_ident(&name)
                ))
                .await
                .map_err(query_err(&format!("enabling trigger {name} of {table}")))?;
        }
        Ok(())
    }

    /// Rebuild staging's materialized views from the data just loaded, each after those it reads:
    /// `unpopulated` names those that hold no rows in the source (`WITH NO DATA`), which are emptied
    /// (all of them when `empty`). Returns how many were refreshed.
    pub async fn refresh_matviews(
        &self,
        unpopulated: &std::collections::BTreeSet<QualifiedName>,
        empty: bool,
    ) -> Result<usize, DbError> {
        let views =
            crate::db::matviews(&self.client, "reading the staging materialized views").await?;
        let mut n = 0;
        for v in &views {
            let sql = if empty || unpopulated.contains(&v.name) {
                format!("REFRESH MATERIALIZED VIEW {} WITH NO DATA", v.name)
            } else {
                format!("REFRESH MATERIALIZED VIEW {}", v.name)
            };
            log::debug!("staging: {sql}");
            self.client
                .batch_execute(&sql)
                .await
                .map_err(query_err(&format!(
                    "refreshing materialized view {}",
                    v.name
                )))?;
            n += 1;
        }
        Ok(n)
    }

    /// What refreshing staging's materialized views would run beyond reading its tables.
    pub async fn matview_calls(&self) -> Result<Vec<(QualifiedName, String)>, DbError> {
        crate::db::matview_calls(
            &self.client,
            "reading what staging's materialized views call",
        )
        .await
    }

    /// Start a large object of this number anew (staging's own of that number goes).
    pub async fn create_large_object(&self, oid: u32) -> Result<(), DbError> {
        let oid = tokio_postgres::types::Oid::from(oid);
        let ctx = format!("copying large object {oid}");
        self.client
            .execute(
                "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = $1",
                &[&oid],
            )
            .await
            .map_err(query_err(&ctx))?;
        self.client
            .execute("SELECT lo_create($1)", &[&oid])
            .await
            .map_err(query_err(&ctx))?;
        Ok(())
    }

    /// Write a chunk of a large object at `offset`.
    pub async fn write_large_object(
        &self,
        oid: u32,
        offset: i64,
        chunk: &[u8],
    ) -> Result<(), DbError> {
        let oid = tokio_postgres::types::Oid::from(oid);
        self.client
            .execute("SELECT lo_put($1, $2, $3)", &[&oid, &offset, &chunk])
            .await
            .map_err(query_err(&format!("copying large object {oid}")))?;
        Ok(())
    }
}

/// Build the dropped keys and indexes on several sessions at once (a new database that no one
/// else reads, between two transactions of the refresh): the statements of one table in order
/// on one session, tables spread over the sessions as `pg_restore -j` spreads them.
pub async fn rebuild_on(
    sessions: &[&Client],
    rebuild: Vec<(QualifiedName, String, String)>,
) -> Result<(), DbError> {
    let started = std::time::Instant::now();
    let n = spread_on(sessions, rebuild).await?;
    log::info!(
        "staging: rebuilt {n} indexes on {} sessions in {:.2}s",
        sessions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run `work` (table, context for errors, statement) on several sessions at once, a table's
/// statements in order on one session; returns how many ran.
pub async fn spread_on(
    sessions: &[&Client],
    rebuild: Vec<(QualifiedName, String, String)>,
) -> Result<usize, DbError> {
    let mut groups: Vec<(QualifiedName, Vec<(String, String)>)> = Vec::new();
    for (table, context, sql) in rebuild {
        match groups.iter_mut().find(|g| g.0 == table) {
            Some(g) => g.1.push((context, sql)),
            None => groups.push((table, vec![(context, sql)])),
        }
    }
    let n: usize = groups.iter().map(|g| g.1.len()).sum();
    let queue = std::sync::Mutex::new(
        groups
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
    futures_util::future::try_join_all(sessions.iter().map(|client| async {
        while let Some((_, statements)) = next() {
            for (context, sql) in statements {
                log::debug!("staging: {context}");
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(query_err(&context))?;
            }
        }
        Ok::<_, DbError>(())
    }))
    .await?;
    Ok(n)
}

/// On a loading session of a new staging database (a swap), add a dropped foreign key back
/// `NOT VALID` and then check its rows, each in its own transaction. The short `ADD` takes SHARE
/// ROW EXCLUSIVE on both tables, which conflicts with itself: `adding` is held for it, so that two
/// sessions adding keys to the same referenced table never wait on each other; the long check runs
/// beside the others'.
pub async fn add_checked_on(
    client: &Client,
    key: &DroppedKey,
    adding: &tokio::sync::Mutex<()>,
) -> Result<(), DbError> {
    let context = key.context();
    log::debug!("staging: {context}");
    {
        let _only_adder = adding.lock().await;
        client
            .batch_execute(&key.add_sql(true))
            .await
            .map_err(query_err(&context))?;
    }
    client
        .batch_execute(&key.validate_sql())
        .await
        .map_err(query_err(&context))
}

/// On a loading session of a new staging database (a swap), open a transaction that empties a
/// plain table again, so that its COPY can write the rows frozen (`COPY … FREEZE`: hint bits and
/// the visibility map set by the load, as a VACUUM would). Returns whether it did; the caller
/// commits after the COPY. Partitioned tables cannot be frozen this way and are left alone.
pub async fn begin_frozen_load(client: &Client, table: &QualifiedName) -> Result<bool, DbError> {
    let context = format!("preparing {table} for a frozen load");
    let plain: bool = client
        .query_one(
            "SELECT relkind = 'r' FROM pg_catalog.pg_class WHERE oid = $1::text::regclass",
            &[&table.to_string()],
        )
        .await
        .map_err(query_err(&context))?
        .get(0);
    if plain {
        client
            .batch_execute(&format!("BEGIN; TRUNCATE ONLY {table}"))
            .await
            .map_err(query_err(&context))?;
    }
    Ok(plain)
}

/// Start loading one table on a session: a sink of COPY text; closing it ends the COPY. `frozen`
/// after [`begin_frozen_load`] said so.
pub async fn copy_in_on(
    client: &Client,
    table: &QualifiedName,
    columns: &[String],
    frozen: bool,
) -> Result<impl futures_util::Sink<Bytes, Error = DbError> + Send, DbError> {
    use futures_util::SinkExt;
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let err = |table: &QualifiedName, e: &tokio_postgres::Error| DbError::Query {
        context: format!("loading {table} into staging"),
        message: describe(e),
    };
    let sink: CopyInSink<Bytes> = client
        .copy_in(&format!(
            "COPY {table} ({}) FROM STDIN{}",
            cols.join(", "),
            if frozen { " (FREEZE)" } else { "" }
        ))
        .await
        .map_err(|e| err(table, &e))?;
    let table = table.clone();
    Ok(sink.sink_map_err(move |e| err(&table, &e)))
}

/// An SQL string constant, read the same whatever standard_conforming_strings is.
fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The columns each table of a database has (plain and partitioned tables), from its catalog.
pub async fn table_columns(
    client: &Client,
) -> Result<BTreeMap<QualifiedName, BTreeSet<String>>, DbError> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, a.attname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .map_err(query_err("reading the staging catalog"))?;
    let mut out: BTreeMap<QualifiedName, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        out.entry(QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)))
            .or_default()
            .insert(r.get::<_, &str>(2).to_string());
    }
    Ok(out)
}
