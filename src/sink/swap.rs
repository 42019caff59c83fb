//! The `swap` refresh strategy: the new staging is built as a database of its own beside the old
//! one (`<staging>__next`), loaded by the same refresh as `in-place`, and renamed into place in one
//! short transaction. The old staging stays readable and writable until then; any failure before
//! the cut-over drops `__next` and leaves the old staging as it was; a killed run leaves `__next`
//! behind, which the next run drops first.
//!
//! What belongs to staging and not to production comes across: the database's owner, encoding and
//! collation, its `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET` settings, its grants,
//! and — when the schema comes from staging (the default) — staging's own DDL with its owners,
//! grants and extensions.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::db::{describe, query_err, DbError};
use crate::endpoint::ConnInfo;
use crate::schema::quote_ident;

/// How the cut-over treats sessions still connected to the old staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapOptions {
    /// How long to wait for them to leave.
    pub cutover_wait: Duration,
    /// Then end them (`pg_terminate_backend`) instead of failing.
    pub terminate: bool,
    /// Drop the old staging after the cut-over instead of keeping it as `<staging>__prev`.
    pub drop_prev: bool,
}

impl Default for SwapOptions {
    fn default() -> Self {
        SwapOptions {
            cutover_wait: Duration::from_secs(30),
            terminate: false,
            drop_prev: false,
        }
    }
}

/// Why a swap could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Something the staging role or server does not allow: nothing was changed (exit 2).
    #[error("{0}")]
    NotAllowed(String),
    #[error(
        "another refresh of staging database {0} is running (swap or in-place); try again when it has finished"
    )]
    Locked(String),
}

/// A swap in progress: the maintenance connection (holding the swap lock), a session on the old
/// staging holding the in-place refresh's lock (so that neither strategy runs beside the other;
/// closed just before the cut-over), and the names.
pub struct Swap {
    admin: Client,
    guard: std::sync::Mutex<Option<Client>>,
    staging: ConnInfo,
    pub name: String,
    pub next: String,
    pub prev: String,
    options: SwapOptions,
    /// `CREATE DATABASE` of `__next`, and what gives it the old staging's settings and grants.
    create: (String, String),
}

/// How long the cut-over's renames may take before they are cancelled and tried again: they take
/// milliseconds, unless a session on the database makes PostgreSQL wait for it (up to 5 s) while
/// holding the database's lock, which every new connection to it then waits on and fails after.
const RENAME_TIMEOUT: &str = "SET LOCAL statement_timeout = '100ms';";

fn q(e: &str) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
    query_err(e)
}

impl Swap {
    /// Check what the swap needs on `staging_client` (a session on the old staging, closed by the
    /// caller before the cut-over), take the swap lock, drop a leftover `__next`, and read what
    /// [`Swap::create_next`] gives the new one: the old staging's owner, encoding, settings and
    /// grants.
    pub async fn prepare(
        staging: &ConnInfo,
        staging_client: &Client,
        options: SwapOptions,
    ) -> Result<Swap, SwapError> {
        let row = staging_client
            .query_one(
                "SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba), \
                        pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, \
                        pg_catalog.pg_has_role(d.datdba, 'MEMBER'), \
                        (SELECT r.rolcreatedb OR r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), \
                        to_jsonb(d) ->> 'datlocprovider', \
                        coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale') \
                 FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
                &[],
            )
            .await
            .map_err(q("reading the staging database's owner and privileges"))?;
        let name: String = row.get(0);
        let owner: String = row.get(1);
        let (encoding, collate, ctype): (String, String, String) =
            (row.get(2), row.get(3), row.get(4));
        let (owns, createdb): (bool, bool) = (row.get(5), row.get(6));
        // The locale provider (PostgreSQL 15+): an ICU (or, from 17, builtin) staging keeps it.
        let provider = match (
            row.get::<_, Option<String>>(7).as_deref(),
            row.get::<_, Option<String>>(8),
        ) {
            (Some("i"), Some(l)) => format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(&l)),
            (Some("b"), Some(l)) => {
                format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", literal(&l))
            }
            _ => String::new(),
        };
        if !owns || !createdb {
            return Err(SwapError::NotAllowed(format!(
                "--refresh swap builds a new database beside staging and renames it into place: \
                 the staging role needs CREATEDB and to own {name} (or be a member of its owner {owner}); \
                 grant them, or use --refresh in-place"
            )));
        }
        if name.len() > 63 - "__next".len() {
            return Err(SwapError::NotAllowed(
                "--refresh swap: the staging database's name is too long to add __next and __prev (at most 57 bytes)".into(),
            ));
        }
        let settings = staging_client
            .query(
                "SELECT coalesce(r.rolname, ''), c.setting \
                 FROM pg_catalog.pg_db_role_setting s \
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole, \
                 unnest(s.setconfig) AS c(setting) \
                 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database \
                                        WHERE datname = pg_catalog.current_database())",
                &[],
            )
            .await
            .map_err(q("reading the staging database's settings"))?;
        let grants = staging_client
            .query(
                "SELECT d.datacl IS NULL, a.privilege_type, coalesce(r.rolname, 'PUBLIC') \
                 FROM pg_catalog.pg_database d \
                 LEFT JOIN LATERAL pg_catalog.aclexplode(d.datacl) a ON true \
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
                 WHERE d.datname = pg_catalog.current_database()",
                &[],
            )
            .await
            .map_err(q("reading the staging database's grants"))?;

        let mut admin_info = staging.clone();
        admin_info.set("dbname", "postgres");
        let admin = crate::db::connect(&admin_info).await?;
        let locked: bool = admin
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended($1, 0))",
                &[&format!("anonymize swap {name}")],
            )
            .await
            .map_err(q("taking the swap lock"))?
            .get(0);
        if !locked {
            return Err(SwapError::Locked(name));
        }
        // The in-place refresh's lock, held for the whole swap on a session of the old staging.
        let guard = crate::db::connect(staging).await?;
        let locked: bool = guard
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock($1)",
                &[&crate::sink::postgres::LOCK_KEY],
            )
            .await
            .map_err(q("taking the refresh lock on staging"))?
            .get(0);
        if !locked {
            return Err(SwapError::Locked(name));
        }
        let next = format!("{name}__next");
        let create = format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}{provider}",
            quote_ident(&next),
            quote_ident(&owner),
            literal(&encoding),
            literal(&collate),
            literal(&ctype)
        );
        let settings_sql = database_sql(&next, &settings, &grants);
        let swap = Swap {
            admin,
            guard: std::sync::Mutex::new(Some(guard)),
            staging: staging.clone(),
            next,
            prev: format!("{name}__prev"),
            name,
            options,
            create: (create, settings_sql),
        };
        if swap.exists(&swap.next).await? {
            log::warn!(
                "staging: removing {}, left by an earlier run that did not finish",
                swap.next
            );
            swap.drop_next().await?;
        }
        Ok(swap)
    }

    /// Create the new staging database beside the old one, with the old one's settings and
    /// grants ([`Swap::prepare`] took the locks and read them).
    pub async fn create_next(&self) -> Result<(), SwapError> {
        let (create, sql) = &self.create;
        self.admin
            .batch_execute(create)
            .await
            .map_err(q("creating the new staging database"))?;
        if !sql.is_empty() {
            self.admin.batch_execute(sql).await.map_err(q(
                "giving the new staging database the old one's settings and grants",
            ))?;
        }
        log::info!("staging: {} created beside {}", self.next, self.name);
        Ok(())
    }

    /// A connection to the new staging database.
    pub async fn connect_next(&self) -> Result<Client, DbError> {
        let mut info = self.staging.clone();
        info.set("dbname", &self.next);
        crate::db::connect(&info).await
    }

    /// Whether the server has a database of this name.
    async fn exists(&self, database: &str) -> Result<bool, DbError> {
        Ok(self
            .admin
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = $1)",
                &[&database],
            )
            .await
            .map_err(q("looking for a database beside staging"))?
            .get(0))
    }

    /// Remove `__next` (a leftover of a killed run, or this run's after a failure).
    pub async fn drop_next(&self) -> Result<(), DbError> {
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.next)
            ))
            .await
            .map_err(q("dropping the unfinished new staging database"))
    }

    /// Rename the new staging into place: one transaction renames an older `__prev` aside, the
    /// old staging to `__prev` and `__next` to staging's name. Sessions on the old staging (or
    /// this run's own, still closing) make the renames fail; they are waited for up to
    /// `cutover_wait` (at least two seconds), then ended when `terminate` says so, else the swap
    /// fails and the old staging stays. Returns how many sessions were ended.
    pub async fn cut_over(&self) -> Result<u64, SwapError> {
        let (name, next, prev) = (
            quote_ident(&self.name),
            quote_ident(&self.next),
            quote_ident(&self.prev),
        );
        let old_prev = format!("{}__prev_old", self.name);
        let has_prev = self.exists(&self.prev).await?;
        // DROP DATABASE cannot run in a transaction: an older __prev is renamed aside, then
        // dropped after the commit.
        let sql = if has_prev {
            self.admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&old_prev)
                ))
                .await
                .map_err(q("dropping a leftover of an earlier cut-over"))?;
            format!(
                "BEGIN; {RENAME_TIMEOUT} ALTER DATABASE {prev} RENAME TO {}; ALTER DATABASE {name} RENAME TO {prev}; \
                 ALTER DATABASE {next} RENAME TO {name}; COMMIT",
                quote_ident(&old_prev)
            )
        } else {
            format!(
                "BEGIN; {RENAME_TIMEOUT} ALTER DATABASE {name} RENAME TO {prev}; ALTER DATABASE {next} RENAME TO {name}; COMMIT"
            )
        };
        // The session holding the in-place lock on the old staging would block the renames.
        let guard = self.guard.lock().ok().and_then(|mut g| g.take());
        drop(guard);
        let started = Instant::now();
        let wait = self.options.cutover_wait.max(Duration::from_secs(2));
        let mut terminated = 0u64;
        loop {
            // Ctrl-C or SIGTERM while sessions are waited for stops the run here, the old staging
            // in place (the caller drops `__next` and exits as the signal asks).
            if let Some(signal) = crate::interrupt::requested() {
                return Err(SwapError::Db(DbError::Busy(format!(
                    "cut-over: stopped by {} while waiting for the sessions on staging database {}; \
                     the old staging stays in place",
                    crate::interrupt::name(signal),
                    self.name
                ))));
            }
            // Rename only once no session is on the old staging. A rename that finds one waits
            // for it (up to 5 s) holding the database's lock, and every connection that arrives
            // meanwhile fails when the rename commits ("It seems to have just been dropped or
            // renamed"): a reader would see errors instead of the old staging or the new one.
            let free = self.sessions().await? == 0;
            if free {
                match self.admin.batch_execute(&sql).await {
                    Ok(()) => break,
                    // One arrived between the count and the rename (or a prepared transaction):
                    // the rename, which waits for it holding the database's lock, is cancelled
                    // after RENAME_TIMEOUT, so that connections queued behind it go on to the old
                    // staging instead of failing.
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                            || e.code()
                                == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) =>
                    {
                        let _ = self.admin.batch_execute("ROLLBACK").await;
                    }
                    Err(e) => {
                        let _ = self.admin.batch_execute("ROLLBACK").await;
                        return Err(SwapError::Db(DbError::Query {
                            context: "cut-over: renaming the new staging into place".into(),
                            message: describe(&e),
                        }));
                    }
                }
            }
            let elapsed = started.elapsed();
            if elapsed >= wait {
                // Ending sessions cannot help a prepared transaction: give up a minute later.
                if self.options.terminate && elapsed >= wait + Duration::from_secs(60) {
                    return Err(SwapError::Db(DbError::Busy(format!(
                        "cut-over: staging database {} could not be renamed a minute after its \
                         sessions were ended (a prepared transaction on it, or a session that \
                         keeps coming back?); the old staging stays in place",
                        self.name
                    ))));
                }
                if !self.options.terminate {
                    let n = self.sessions().await?;
                    return Err(SwapError::Db(DbError::Busy(format!(
                        "cut-over: {n} session(s) still use staging database {} after {} s \
                         (--cutover-wait); the old staging stays in place. Use \
                         --cutover-terminate to end them after the wait",
                        self.name,
                        wait.as_secs()
                    ))));
                }
                if !free {
                    terminated += self.terminate_sessions().await?;
                }
            }
            // The run's own session on the old staging, just closed, ends within a few
            // milliseconds, and readers come and go: look often.
            let pause = if elapsed < Duration::from_secs(1) {
                5
            } else {
                50
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        log::info!(
            "staging: cut over in {:.0} ms ({} is now the old staging{})",
            started.elapsed().as_secs_f64() * 1e3,
            self.prev,
            if self.options.drop_prev {
                ", dropped next"
            } else {
                ""
            }
        );
        let mut after = vec![old_prev];
        if self.options.drop_prev {
            after.push(self.prev.clone());
        }
        for db in after {
            if let Err(e) = self
                .admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&db)
                ))
                .await
            {
                log::warn!(
                    "staging: the old database {db} could not be dropped: {}",
                    describe(&e)
                );
            }
        }
        Ok(terminated)
    }

    async fn sessions(&self) -> Result<i64, DbError> {
        Ok(self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity \
                 WHERE datname = $1 AND backend_type <> 'autovacuum worker'",
                &[&self.name],
            )
            .await
            .map_err(q("counting the sessions on staging"))?
            .get(0))
    }

    async fn terminate_sessions(&self) -> Result<u64, DbError> {
        let rows = self
            .admin
            .query(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
                &[&self.name],
            )
            .await
            .map_err(q("ending the sessions on the old staging"))?;
        let n = rows.len() as u64;
        if n > 0 {
            log::warn!(
                "staging: cut-over ended {n} session(s) still on {}",
                self.name
            );
        }
        Ok(n)
    }
}

/// Staging's own schema, for the new staging: pg_dump's, with owners and grants, psql's
/// `\restrict` lines left out (the text is run as SQL).
pub fn staging_schema_sql(c: &ConnInfo) -> Result<String, DbError> {
    let text = crate::db::pg_dump_schema(c, None, true)?;
    Ok(text
        .split_inclusive('\n')
        .filter(|l| !l.starts_with('\\'))
        .collect())
}

/// What gives the new database the old one's `ALTER DATABASE … SET` and `ALTER ROLE … IN
/// DATABASE … SET` settings (rows of role, `name=value`) and its grants (rows of whether the
/// ACL is the default, privilege, grantee).
fn database_sql(
    next: &str,
    settings: &[tokio_postgres::Row],
    grants: &[tokio_postgres::Row],
) -> String {
    let next = quote_ident(next);
    let mut sql = String::new();
    for row in settings {
        let (role, setting): (String, String) = (row.get(0), row.get(1));
        let Some((k, v)) = setting.split_once('=') else {
            continue;
        };
        let value = if LIST_SETTINGS.contains(&k) {
            v.to_string()
        } else {
            literal(v)
        };
        if role.is_empty() {
            sql.push_str(&format!(
                "ALTER DATABASE {next} SET {} = {value};\n",
                quote_ident(k)
            ));
        } else {
            sql.push_str(&format!(
                "ALTER ROLE {} IN DATABASE {next} SET {} = {value};\n",
                quote_ident(&role),
                quote_ident(k)
            ));
        }
    }
    if grants.first().is_some_and(|r| !r.get::<_, bool>(0)) {
        sql.push_str(&format!("REVOKE ALL ON DATABASE {next} FROM PUBLIC;\n"));
        for row in grants {
            let (privilege, grantee): (Option<String>, String) = (row.get(1), row.get(2));
            let Some(privilege) = privilege else { continue };
            let grantee = if grantee == "PUBLIC" {
                grantee
            } else {
                quote_ident(&grantee)
            };
            sql.push_str(&format!(
                "GRANT {privilege} ON DATABASE {next} TO {grantee};\n"
            ));
        }
    }
    sql
}

/// Settings whose stored value is already a list of quoted items (pg_dumpall writes them as is).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Check that staging has every staging-only table of `[target] keep_tables` (before anything
/// moves; [`copy_kept_tables`] copies them after the load).
pub async fn check_kept_tables(
    staging_client: &Client,
    tables: &[crate::schema::QualifiedName],
) -> Result<(), SwapError> {
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    for t in &names {
        let present: bool = staging_client
            .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[t])
            .await
            .map_err(q("looking for a table of [target] keep_tables"))?
            .get(0);
        if !present {
            return Err(SwapError::NotAllowed(format!(
                "[target] keep_tables: staging has no table {t}"
            )));
        }
        // A partitioned table's rows are its partitions': listing both would copy them twice.
        let parent: Option<String> = staging_client
            .query_opt(
                "SELECT a.relid::regclass::text FROM pg_catalog.pg_partition_ancestors($1::text::regclass) a \
                 WHERE a.relid <> $1::text::regclass AND a.relid = ANY($2::text[]::regclass[]) LIMIT 1",
                &[t, &names],
            )
            .await
            .map_err(q("looking for a table of [target] keep_tables"))?
            .map(|r| r.get(0));
        if let Some(parent) = parent {
            return Err(SwapError::NotAllowed(format!(
                "[target] keep_tables: {t} is a partition of {parent}, which is listed too (the \
                 partitioned table brings its partitions' rows): list one of them"
            )));
        }
    }
    Ok(())
}

/// Copy staging-only tables (`[target] keep_tables`) from the old staging into the new one as they
/// are. The refresh does it after the load, once the tables a kept table's foreign keys reference
/// hold their rows (and with those keys dropped until the refresh adds them back and checks them).
pub async fn copy_kept_tables(
    old: &Client,
    next: &Client,
    tables: &[crate::schema::QualifiedName],
) -> Result<u64, DbError> {
    use futures_util::{SinkExt, StreamExt};
    let mut rows = 0;
    for t in tables {
        let context = format!("copying kept table {t} into the new staging");
        // The columns a COPY writes (not generated ones), and whether the table is partitioned,
        // whose rows are read through it (a plain table's own rows only, not its children's).
        let shape = old
            .query_one(
                "SELECT c.relkind = 'p', coalesce(array_agg(quote_ident(a.attname) ORDER BY a.attnum) \
                   FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}') \
                 FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                 WHERE c.oid = $1::text::regclass GROUP BY c.relkind",
                &[&t.to_string()],
            )
            .await
            .map_err(q(&context))?;
        let partitioned: bool = shape.get(0);
        let columns: Vec<String> = shape.get(1);
        if columns.is_empty() {
            continue;
        }
        let columns = columns.join(", ");
        let only = if partitioned { "" } else { "ONLY " };
        let out = old
            .copy_out(&format!("COPY (SELECT {columns} FROM {only}{t}) TO STDOUT"))
            .await
            .map_err(q(&context))?;
        let sink = next
            .copy_in::<_, bytes::Bytes>(&format!("COPY {t} ({columns}) FROM STDIN"))
            .await
            .map_err(q(&context))?;
        let mut out = std::pin::pin!(out);
        let mut sink = std::pin::pin!(sink);
        while let Some(chunk) = out.next().await {
            // Ctrl-C or SIGTERM stops a long copy here, not after it.
            if let Some(signal) = crate::interrupt::requested() {
                return Err(DbError::Busy(format!(
                    "stopped by {} while copying kept table {t}",
                    crate::interrupt::name(signal)
                )));
            }
            let chunk = chunk.map_err(q(&context))?;
            sink.send(chunk).await.map_err(q(&context))?;
        }
        rows += sink.as_mut().finish().await.map_err(q(&context))?;
    }
    Ok(rows)
}
