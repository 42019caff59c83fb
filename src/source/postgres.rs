//! Rows from a live PostgreSQL database, read in one consistent, read-only snapshot.
//!
//! The session is made read-only before anything else, then one `REPEATABLE READ, READ ONLY`
//! transaction holds the snapshot every table is read in. The catalog is read with a handful of
//! queries for the whole database (never one round trip per table). Rows come out as
//! `COPY (SELECT cols FROM t [WHERE ...]) TO STDOUT`, one CopyData message per row. This module knows
//! nothing of rules.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::db::{blockers, connect, query_err, DbError};
use crate::endpoint::ConnInfo;
use crate::schema::{ColumnMeta, MatView, QualifiedName, SequenceState, SourceTable, TypeKind};
pub use crate::sql::expr::{calls, Calls};

/// The tables a run would read, as the catalog has them now (outside any snapshot): what the
/// snapshot's transaction locks first.
const LOCKABLE_SQL: &str = "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1";

/// The source, opened for a run: one session in a read-only `REPEATABLE READ` transaction that
/// holds `ACCESS SHARE` on every table it will read, and the catalog as that transaction sees it.
pub struct Snapshot {
    /// The exported snapshot, for other reader sessions to join.
    pub id: String,
    pub catalog: Catalog,
}

/// Every source session: read-only, row security off (a hidden row stops the run instead), names
/// resolved in pg_catalog only, quotes as the standard says, and values written as pg_dump writes
/// them whatever the server, database or role sets (ISO dates, which the transforms and staging
/// read unambiguously, postgres intervals, exact floats, hex bytea): the text of a value, and so a subset's
/// sample of it, does not change with DateStyle.
/// How values print, set for the rest of a transaction: the source's settings, for reading
/// staging the same way (the leak audit compares the two).
pub const VALUE_SETTINGS_LOCAL: &str = "SET LOCAL row_security = off; \
    SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL standard_conforming_strings = on; \
    SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL extra_float_digits = 3; \
    SET LOCAL bytea_output = hex; SET LOCAL TimeZone = 'UTC'";

const SESSION_SETTINGS: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
    SET row_security = off; SET search_path = pg_catalog, pg_temp; \
    SET standard_conforming_strings = on; SET DateStyle = ISO; SET IntervalStyle = postgres; \
    SET extra_float_digits = 3; SET bytea_output = hex";

/// Open the source's snapshot the way no DDL can change a copied table under it: the tables are
/// listed, then locked (`ACCESS SHARE`, waiting at most `lock_timeout` for a migration that holds
/// an exclusive lock) at the start of the transaction — a lock takes no snapshot — and only then is
/// the snapshot taken, by reading the catalog. So the catalog read, every COPY and every reader
/// session see the same tables with the same columns until the run ends. Sessions run with
/// `row_security = off`: a policy that would hide rows makes reading fail instead of copying part of
/// a table. A table created or dropped between the list and the locks starts it over.
pub async fn open_snapshot(
    client: &Client,
    lock_timeout: std::time::Duration,
) -> Result<Snapshot, DbError> {
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(query_err("making the source session read-only"))?;
    for attempt in 1..=5 {
        let names: Vec<String> = client
            .query(LOCKABLE_SQL, &[])
            .await
            .map_err(query_err("listing the source tables"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL lock_timeout = '{}ms'",
                lock_timeout.as_millis()
            ))
            .await
            .map_err(query_err("opening a read-only snapshot on the source"))?;
        match lock_tables(client, &names).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                // Dropped or renamed since the list: list again.
                let _ = client.batch_execute("ROLLBACK").await;
                log::info!(
                    "source: a table changed before it was locked (attempt {attempt}); again"
                );
                continue;
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let held = blockers(client, &names, &["AccessExclusiveLock"]).await;
                return Err(DbError::Query {
                    context: format!(
                        "locking the {} source tables to read (ACCESS SHARE, as pg_dump does)",
                        names.len()
                    ),
                    message: format!(
                        "waited {} s (--lock-timeout) for {held}",
                        lock_timeout.as_secs()
                    ),
                });
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(query_err("locking the source tables")(e));
            }
        }
        client
            .batch_execute("SET LOCAL lock_timeout = 0")
            .await
            .map_err(query_err("opening a read-only snapshot on the source"))?;
        // The snapshot is taken here, after the locks.
        let catalog = read_catalog(client).await?;
        let locked: BTreeSet<String> = names.into_iter().collect();
        let unlocked = catalog
            .tables
            .iter()
            .any(|t| !t.partitioned && !t.foreign && !locked.contains(&t.name.to_string()));
        if unlocked {
            // A table created between the list and the locks: it is not locked. Start over.
            let _ = client.batch_execute("ROLLBACK").await;
            log::info!("source: a table appeared before the snapshot (attempt {attempt}); again");
            continue;
        }
        let row = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(query_err("exporting the source snapshot"))?;
        let id: String = row.get(0);
        log::info!(
            "source: {} tables locked, read-only snapshot {id} exported",
            locked.len()
        );
        return Ok(Snapshot { id, catalog });
    }
    Err(DbError::Query {
        context: "opening the source snapshot".into(),
        message: "the source's tables kept changing (created or dropped) while they were being locked; try again".into(),
    })
}

/// `LOCK TABLE … IN ACCESS SHARE MODE`, a few hundred tables per statement.
async fn lock_tables(client: &Client, names: &[String]) -> Result<(), tokio_postgres::Error> {
    for chunk in names.chunks(500) {
        client
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                chunk.join(", ")
            ))
            .await?;
    }
    Ok(())
}

/// Make the session read-only, open the snapshot every table is read in, and export it so other
/// reader sessions can join it. Returns the snapshot's id. (Without locks: for reading the catalog
/// only, as `check` and `scan` do.)
pub async fn begin_snapshot(client: &Client) -> Result<String, DbError> {
    client
        .batch_execute(&format!(
            "{SESSION_SETTINGS}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        ))
        .await
        .map_err(query_err("opening a read-only snapshot on the source"))?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(query_err("exporting the source snapshot"))?;
    let id: String = row.get(0);
    log::info!("source: read-only snapshot {id} exported");
    Ok(id)
}

/// Open a further read-only session on the source that sees exactly the exported snapshot.
pub async fn join_snapshot(c: &ConnInfo, snapshot: &str) -> Result<Client, DbError> {
    let client = connect(c).await?;
    // The id comes from pg_export_snapshot(): hex digits and dashes, safe inside quotes.
    let id: String = snapshot
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    client
        .batch_execute(&format!(
            "{SESSION_SETTINGS}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET TRANSACTION SNAPSHOT '{id}'"
        ))
        .await
        .map_err(query_err(
            "joining the source snapshot from a reader session",
        ))?;
    Ok(client)
}

/// One column as the catalog has it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    pub meta: ColumnMeta,
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub name: QualifiedName,
    /// A partitioned table holds no rows itself; its leaves are copied instead.
    pub partitioned: bool,
    /// A foreign table: never read (its rule is `skip`).
    pub foreign: bool,
    /// Row-level security would hide rows of it from the source role.
    pub rls_hides: bool,
    /// The source role may write to it.
    pub writable: bool,
    /// The top of the partition tree this leaf belongs to.
    pub partition_root: Option<QualifiedName>,
    pub columns: Vec<CatalogColumn>,
    /// The primary key, or else the narrowest unique index of NOT NULL columns.
    pub key: Option<Vec<String>>,
    pub row_estimate: i64,
    /// Its size in pages as the catalog last saw it (0 when never vacuumed or analyzed).
    pub pages: i64,
}

impl CatalogTable {
    /// The catalog's row estimate, None when it has none (`reltuples` is -1, read as 0, for a
    /// table never vacuumed or analyzed).
    pub fn rows_estimate(&self) -> Option<u64> {
        (self.row_estimate > 0).then_some(self.row_estimate as u64)
    }

    /// The columns that are copied: everything but generated columns (staging regenerates them).
    pub fn copied_columns(&self) -> Vec<&CatalogColumn> {
        self.columns.iter().filter(|c| !c.generated).collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<CatalogTable>,
    /// Materialized views in an order where each comes after those it reads.
    pub matviews: Vec<MatView>,
    /// What refreshing each materialized view would run beyond reading tables (see
    /// [`crate::db::matview_calls`]).
    pub matview_calls: Vec<(QualifiedName, String)>,
    /// Large objects in the source.
    pub large_objects: i64,
    /// The source role is a superuser.
    pub superuser: bool,
    pub sequences: Vec<SequenceState>,
    /// Sequences the source role may not read.
    pub unreadable_sequences: Vec<QualifiedName>,
    /// (referencing table, referenced table).
    pub foreign_keys: Vec<(QualifiedName, QualifiedName)>,
    /// Every foreign key once (on the partitioned table, not on each partition), with its columns.
    pub key_columns: Vec<ForeignKey>,
}

pub use crate::schema::ForeignKey;

impl Catalog {
    /// The tables whose rows are copied (plain tables and partition leaves), for binding rules.
    pub fn source_tables(&self) -> Vec<SourceTable> {
        self.tables
            .iter()
            .filter(|t| !t.partitioned)
            .map(|t| {
                let cols = t.copied_columns();
                SourceTable {
                    name: t.name.clone(),
                    columns: cols.iter().map(|c| c.name.clone()).collect(),
                    partition_of: t.partition_root.clone(),
                    meta: Some(cols.iter().map(|c| c.meta.clone()).collect()),
                    rows: t.rows_estimate(),
                    database: None,
                    foreign: t.foreign,
                    declared_types: Vec::new(),
                }
            })
            .collect()
    }

    /// Copied tables in an order where every referenced table comes before the tables referring to
    /// it (cycles are broken by name order), so the result loads with foreign keys in force.
    pub fn load_order(&self) -> Vec<&CatalogTable> {
        let leaves: Vec<&CatalogTable> = self.tables.iter().filter(|t| !t.partitioned).collect();
        let names: Vec<&QualifiedName> = leaves.iter().map(|t| &t.name).collect();
        // A reference to a partitioned table means a reference to each of its leaves.
        let expand = |name: &QualifiedName| -> Vec<usize> {
            match names.iter().position(|n| *n == name) {
                Some(i) => vec![i],
                None => leaves
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.partition_root.as_ref() == Some(name))
                    .map(|(i, _)| i)
                    .collect(),
            }
        };
        let mut edges = Vec::new();
        for (from, to) in &self.foreign_keys {
            for f in expand(from) {
                for t in expand(to) {
                    edges.push((f, t));
                }
            }
        }
        crate::schema::load_order(&names, &edges)
            .into_iter()
            .map(|i| leaves[i])
            .collect()
    }
}

fn type_kind(base: &str, category: &str) -> TypeKind {
    match (base, category) {
        ("date", _) => TypeKind::Date,
        ("timestamp" | "timestamptz", _) => TypeKind::Timestamp,
        ("json" | "jsonb", _) => TypeKind::Json,
        (_, "N") => TypeKind::Number,
        (_, "S") => TypeKind::Text,
        ("uuid" | "inet" | "cidr", _) => TypeKind::Other,
        _ => TypeKind::Other,
    }
}

const COLUMNS_SQL: &str = r#"
WITH RECURSIVE base(oid, typ, typmod) AS (
    SELECT t.oid, t.oid, -1 FROM pg_type t
    UNION ALL
    -- A domain's own typmod (varchar(4) under it) is the first one met on the way down.
    SELECT b.oid, t.typbasetype, CASE WHEN b.typmod >= 0 THEN b.typmod ELSE t.typtypmod END
    FROM base b JOIN pg_type t ON t.oid = b.typ WHERE t.typtype = 'd'
), resolved AS (
    SELECT b.oid, b.typ AS base, b.typmod, t.typname, t.typcategory
    FROM base b JOIN pg_type t ON t.oid = b.typ WHERE t.typtype <> 'd'
), single_unique AS (
    SELECT i.indrelid, i.indkey[0] AS attnum FROM pg_index i
    WHERE i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
)
SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::bigint,
       rn.nspname AS root_schema, rc.relname AS root_name,
       a.attname,
       -- A domain column is described by its base type and typmod (what bounds its values).
       CASE WHEN r.base = a.atttypid THEN format_type(a.atttypid, a.atttypmod)
            ELSE format_type(r.base, CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE r.typmod END) END,
       a.attnotnull, a.attgenerated <> '' AS generated,
       r.typname, r.typcategory::text,
       CASE WHEN r.typname IN ('varchar', 'bpchar')
            THEN nullif(greatest(CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE r.typmod END - 4, 0), 0) END AS max_len,
       EXISTS (SELECT 1 FROM single_unique u WHERE u.indrelid = c.oid AND u.attnum = a.attnum) AS is_unique,
       -- Row-level security that would hide rows from this role (pg_dump refuses such a table too).
       c.relrowsecurity AND NOT (me.rolsuper OR me.rolbypassrls)
           AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')) AS rls_hides,
       c.relkind = 'r' AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') AS writable,
       c.relpages::bigint
FROM pg_class c
CROSS JOIN (SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user) me
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN resolved r ON r.oid = a.atttypid
LEFT JOIN pg_class rc ON c.relispartition AND rc.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE c.relkind IN ('r', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname, c.relname, a.attnum
"#;

/// Materialized views, whether they hold rows, and the views and materialized views each one reads
/// (one row per dependency; none for a view that reads only tables).
const ROLE_SQL: &str = "SELECT rolsuper, \
     (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata) FROM pg_roles WHERE rolname = current_user";

const FOREIGN_KEYS_SQL: &str = "SELECT fn.nspname, f.relname, tn.nspname, t.relname, \
            k.conname::text, k.conparentid = 0, \
            ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o) \
                  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o), \
            ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o) \
                  JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o) \
     FROM pg_constraint k \
     JOIN pg_class f ON f.oid = k.conrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace \
     JOIN pg_class t ON t.oid = k.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
     WHERE k.contype = 'f'";

/// Unique indexes on plain columns: (schema, table, the indexed columns, primary key, partial, all
/// columns NOT NULL, index name). Expression indexes are left out (their columns are not named).
const UNIQUE_GROUPS_SQL: &str = "SELECT n.nspname, c.relname, \
            ARRAY(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o) \
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o), \
            i.indisprimary, i.indpred IS NOT NULL, \
            NOT EXISTS (SELECT 1 FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k(n) \
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n WHERE NOT a.attnotnull), \
            ic.relname::text \
     FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_class ic ON ic.oid = i.indexrelid \
     WHERE i.indisunique AND i.indexprs IS NULL \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
     ORDER BY 1, 2, 4 DESC, i.indnkeyatts, 7";

/// Read the whole catalog in three queries.
pub async fn read_catalog(client: &Client) -> Result<Catalog, DbError> {
    let rows = client
        .query(COLUMNS_SQL, &[])
        .await
        .map_err(query_err("reading the source catalog"))?;
    let mut tables: Vec<CatalogTable> = Vec::new();
    for row in rows {
        let name = QualifiedName::new(row.get::<_, &str>(0), row.get::<_, &str>(1));
        if tables.last().map(|t| &t.name) != Some(&name) {
            let root = match (row.get::<_, Option<&str>>(4), row.get::<_, Option<&str>>(5)) {
                (Some(s), Some(n)) => Some(QualifiedName::new(s, n)),
                _ => None,
            };
            tables.push(CatalogTable {
                name,
                partitioned: row.get::<_, &str>(2) == "p",
                foreign: row.get::<_, &str>(2) == "f",
                rls_hides: row.get(14),
                writable: row.get(15),
                partition_root: root,
                columns: Vec::new(),
                key: None,
                row_estimate: row.get::<_, i64>(3).max(0),
                pages: row.get::<_, i64>(16).max(0),
            });
        }
        let max_len: Option<i32> = row.get(12);
        tables
            .last_mut()
            .expect("pushed")
            .columns
            .push(CatalogColumn {
                name: row.get::<_, &str>(6).to_string(),
                generated: row.get(9),
                meta: ColumnMeta {
                    not_null: row.get(8),
                    unique: row.get(13),
                    kind: type_kind(row.get(10), row.get(11)),
                    max_len: max_len.map(|l| l as usize),
                    type_name: row.get::<_, &str>(7).to_string(),
                    unique_with: Vec::new(),
                },
            });
    }
    // Composite and partial unique indexes, on the columns they hold; each table's key (its
    // primary key, or the narrowest unique index of NOT NULL columns).
    for r in client
        .query(UNIQUE_GROUPS_SQL, &[])
        .await
        .map_err(query_err("reading the source's unique indexes"))?
    {
        let name = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        let group: Vec<String> = r.get(2);
        let (primary, partial, not_null): (bool, bool, bool) = (r.get(3), r.get(4), r.get(5));
        if let Some(t) = tables.iter_mut().find(|t| t.name == name) {
            if t.key.is_none() && !partial && (primary || not_null) {
                t.key = Some(group.clone());
            }
            if group.len() > 1 || partial {
                for c in t.columns.iter_mut().filter(|c| group.contains(&c.name)) {
                    c.meta.unique_with.push(group.clone());
                }
            }
        }
    }
    let (sequences, unreadable_sequences) =
        crate::db::sequences(client, "reading the source sequences").await?;
    let fk_rows = client
        .query(FOREIGN_KEYS_SQL, &[])
        .await
        .map_err(query_err("reading the source foreign keys"))?;
    let mut foreign_keys = Vec::with_capacity(fk_rows.len());
    let mut key_columns = Vec::new();
    for r in fk_rows {
        let from = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        let to = QualifiedName::new(r.get::<_, &str>(2), r.get::<_, &str>(3));
        if r.get::<_, bool>(5) {
            key_columns.push(ForeignKey {
                name: r.get(4),
                from: from.clone(),
                from_columns: r.get(6),
                to: to.clone(),
                to_columns: r.get(7),
            });
        }
        foreign_keys.push((from, to));
    }
    let role = client
        .query_one(ROLE_SQL, &[])
        .await
        .map_err(query_err("reading the source role"))?;
    let matviews = crate::db::matviews(client, "reading the source's materialized views").await?;
    let matview_calls =
        crate::db::matview_calls(client, "reading what the source's materialized views call")
            .await?;
    Ok(Catalog {
        tables,
        matviews,
        matview_calls,
        large_objects: role.get(1),
        superuser: role.get(0),
        sequences,
        unreadable_sequences,
        foreign_keys,
        key_columns,
    })
}

/// Keys of EXPLAIN's JSON whose values are expressions the server deparsed from its own parse.
const EXPRESSION_KEYS: &[&str] = &[
    "Filter",
    "Join Filter",
    "One-Time Filter",
    "Index Cond",
    "Recheck Cond",
    "TID Cond",
    "Hash Cond",
    "Merge Cond",
    "Output",
    "Sort Key",
    "Group Key",
    "Function Call",
    "Table Function Call",
    "Cache Key",
    "Presorted Key",
];

/// Stream the rows of `sql` (a `COPY … TO STDOUT`) as COPY text chunks.
pub async fn copy_out(
    client: &Client,
    sql: &str,
    table: &QualifiedName,
) -> Result<impl futures_util::Stream<Item = Result<bytes::Bytes, DbError>>, DbError> {
    use futures_util::StreamExt;
    let err = |table: &QualifiedName, e: &tokio_postgres::Error| DbError::Query {
        context: format!("reading {table} from the source"),
        message: crate::db::describe(e),
    };
    let stream = client.copy_out(sql).await.map_err(|e| err(table, &e))?;
    let table = table.clone();
    Ok(stream.map(move |r| r.map_err(|e| err(&table, &e))))
}

/// A `json` value as text.
struct JsonText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonText {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(String::from_utf8(raw.to_vec())?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSON
    }
}

/// Whether a table's `where` filter can only read: the server parses and plans it (EXPLAIN, which
/// runs nothing), and every function, operator and cast in what it planned must be immutable or
/// stable in the catalog — a volatile one (dblink_exec, lo_export, nextval, pg_sleep, …) could
/// change something, even in a read-only transaction. `None` when it may run; else why not.
pub async fn filter_problem(
    client: &Client,
    table: &QualifiedName,
    columns: &[String],
    filter: &str,
) -> Result<Option<String>, DbError> {
    // Judged on its text first: planning it would already run what it calls.
    if let Some(why) = super::filter::problem(filter, columns) {
        return Ok(Some(why));
    }
    // The extended protocol: one statement, whatever the filter holds.
    let text = match client
        .query_one(
            &format!("EXPLAIN (VERBOSE, FORMAT JSON) SELECT 1 FROM ONLY {table} WHERE ({filter})"),
            &[],
        )
        .await
    {
        Ok(row) => row.get::<_, JsonText>(0).0,
        Err(e) if e.as_db_error().is_some() => {
            return Ok(Some(format!(
                "does not run on the source: {}",
                crate::db::describe(&e)
            )));
        }
        Err(e) => return Err(query_err("checking a where filter")(e)),
    };
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut found = Calls::default();
    let mut walk = vec![&plan];
    while let Some(v) = walk.pop() {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if EXPRESSION_KEYS.contains(&k.as_str()) {
                        let exprs: Vec<&str> = match child {
                            serde_json::Value::String(s) => vec![s.as_str()],
                            serde_json::Value::Array(a) => {
                                a.iter().filter_map(|x| x.as_str()).collect()
                            }
                            _ => Vec::new(),
                        };
                        for e in exprs {
                            let c = calls(e);
                            found.functions.extend(c.functions);
                            found.operators.extend(c.operators);
                            found.casts.extend(c.casts);
                        }
                    } else {
                        walk.push(child);
                    }
                }
            }
            serde_json::Value::Array(a) => walk.extend(a),
            _ => {}
        }
    }
    let names: Vec<String> = found.functions.iter().map(|(_, n)| n.clone()).collect();
    let rows = client
        .query(
            "SELECT p.proname::text, n.nspname::text, p.provolatile::text FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = ANY ($1)",
            &[&names],
        )
        .await
        .map_err(query_err("checking a where filter"))?;
    let mut problems = Vec::new();
    for (schema, f) in &found.functions {
        let matching: Vec<&tokio_postgres::Row> = rows
            .iter()
            .filter(|r| {
                r.get::<_, &str>(0) == f
                    && schema.as_deref().is_none_or(|s| r.get::<_, &str>(1) == s)
            })
            .collect();
        let shown = match schema {
            Some(s) => format!("{s}.{f}"),
            None => f.clone(),
        };
        if matching.is_empty() {
            problems.push(format!(
                "calls {shown}(), which the source catalog does not list"
            ));
        } else if matching.iter().any(|r| r.get::<_, &str>(2) == "v") {
            problems.push(format!("calls the volatile function {shown}()"));
        }
    }
    let ops: Vec<String> = found.operators.iter().cloned().collect();
    for r in client
        .query(
            "SELECT DISTINCT o.oprname::text, p.proname::text FROM pg_operator o \
             JOIN pg_proc p ON p.oid = o.oprcode WHERE o.oprname = ANY ($1) \
               AND o.oprnamespace = 'pg_catalog'::regnamespace AND p.provolatile = 'v'",
            &[&ops],
        )
        .await
        .map_err(query_err("checking a where filter"))?
    {
        problems.push(format!(
            "uses the operator {}, which calls the volatile function {}()",
            r.get::<_, &str>(0),
            r.get::<_, &str>(1)
        ));
    }
    let types: Vec<String> = found.casts.iter().cloned().collect();
    for r in client
        .query(
            "SELECT DISTINCT t, p.proname::text FROM unnest($1::text[]) t \
             JOIN pg_type ty ON ty.oid = to_regtype(t) \
             LEFT JOIN pg_cast c ON c.casttarget = ty.oid \
             JOIN pg_proc p ON p.oid IN (c.castfunc, ty.typinput) WHERE p.provolatile = 'v'",
            &[&types],
        )
        .await
        .map_err(query_err("checking a where filter"))?
    {
        problems.push(format!(
            "casts to {}, which calls the volatile function {}()",
            r.get::<_, &str>(0),
            r.get::<_, &str>(1)
        ));
    }
    Ok((!problems.is_empty()).then(|| {
        format!(
            "{}: a filter may only read (immutable and stable functions)",
            problems.join("; ")
        )
    }))
}

/// The statement that streams one table's rows (the first `limit` the server finds, for a sample).
pub fn copy_out_sql(
    table: &QualifiedName,
    columns: &[String],
    filter: Option<&str>,
    limit: Option<usize>,
) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| crate::schema::quote_ident(c))
        .collect();
    let mut select = format!("SELECT {} FROM ONLY {table}", cols.join(", "));
    if let Some(f) = filter {
        select.push_str(&format!(" WHERE ({f})"));
    }
    if let Some(n) = limit {
        select.push_str(&format!(" LIMIT {n}"));
    }
    format!("COPY ({select}) TO STDOUT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_statements_quote_names_and_skip_nothing() {
        assert_eq!(
            copy_out_sql(
                &QualifiedName::new("public", "Users"),
                &["id".into(), "Full Name".into()],
                Some("id > 1"),
                Some(5)
            ),
            "COPY (SELECT id, \"Full Name\" FROM ONLY public.\"Users\" WHERE (id > 1) LIMIT 5) TO STDOUT"
        );
    }

    #[test]
    fn load_order_puts_referenced_tables_first() {
        let t = |n: &str| CatalogTable {
            name: QualifiedName::new("public", n),
            partitioned: n == "payment",
            partition_root: n
                .strip_prefix("payment_")
                .map(|_| QualifiedName::new("public", "payment")),
            columns: Vec::new(),
            key: None,
            row_estimate: 0,
            pages: 0,
            foreign: false,
            rls_hides: false,
            writable: false,
        };
        let q = |n: &str| QualifiedName::new("public", n);
        let catalog = Catalog {
            tables: [
                "orders",
                "customers",
                "payment",
                "payment_p1",
                "ledger",
                "a",
                "b",
            ]
            .map(t)
            .to_vec(),
            sequences: Vec::new(),
            unreadable_sequences: Vec::new(),
            foreign_keys: vec![
                (q("orders"), q("customers")),
                (q("payment"), q("orders")),
                (q("ledger"), q("payment")),
                (q("a"), q("b")),
                (q("b"), q("a")),
            ],
            key_columns: Vec::new(),
            matviews: Vec::new(),
            matview_calls: Vec::new(),
            large_objects: 0,
            superuser: false,
        };
        let order: Vec<String> = catalog
            .load_order()
            .iter()
            .map(|t| t.name.name.clone())
            .collect();
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert_eq!(
            order.len(),
            6,
            "the partitioned parent holds no rows: {order:?}"
        );
        assert!(pos("customers") < pos("orders"));
        assert!(pos("orders") < pos("payment_p1"));
        assert!(pos("payment_p1") < pos("ledger"));
    }

    #[test]
    fn calls_reads_casts_functions_and_operators() {
        let c = calls(
            "((deleted_at)::date IS NULL) AND (lower((email)::text) ~~ '%x'::character varying)",
        );
        assert!(c.casts.contains("date"), "{c:?}");
        assert!(c.casts.contains("text"), "{c:?}");
        assert!(c.casts.contains("character varying"), "{c:?}");
        assert!(c.functions.contains(&(None, "lower".to_string())), "{c:?}");
        assert!(c.operators.contains("~~"), "{c:?}");
        let c = calls("(created_at)::timestamp with time zone > now()");
        assert!(c.casts.contains("timestamp with time zone"), "{c:?}");
        let c = calls("public.f(id) > 0");
        assert!(
            c.functions.contains(&(Some("public".into()), "f".into())),
            "{c:?}"
        );
    }
}
