//! Rows from a live PostgreSQL database, read in one consistent, read-only snapshot.
//!
//! The session is made read-only before anything else, then one `REPEATABLE READ, READ ONLY`
//! transaction holds the snapshot every table is read in. The catalog is read with a handful of
//! queries for the whole database (never one round trip per table). Rows come out as
//! `COPY (SELECT cols FROM t [WHERE ...]) TO STDOUT`, one CopyData message per row. This module knows
//! nothing of rules.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::{Client, NoTls};

use crate::rules::{ColumnMeta, QualifiedName, SourceTable, TypeKind};

/// Why talking to a database failed. Connection strings are redacted; no row value is quoted.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connecting to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{context}: {message}")]
    Query { context: String, message: String },
}

/// A connection URL with its password replaced by `***`, fit for messages and reports.
pub fn redact(url: &str) -> String {
    match password_span(url) {
        Some((from, to)) => format!("{}***{}", &url[..from], &url[to..]),
        // A password can also be a query parameter or a key=value setting.
        None => redact_params(url),
    }
}

/// Where the password of `scheme://user:password@host/...` stands in the URL, if it has one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = rest[..auth_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((start + colon + 1, start + at))
}

fn redact_params(s: &str) -> String {
    let re = regex::Regex::new(r"(?i)(password\s*=\s*)('[^']*'|[^\s&]*)").expect("valid pattern");
    re.replace_all(s, "${1}***").into_owned()
}

/// A database error described without row values: PostgreSQL's messages for bad data quote the
/// value, so for data and integrity errors only the SQLSTATE, table, column and constraint are kept.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        // The driver's own text is only the kind ("error connecting to server"); the cause
        // (connection refused, timed out, no route) is in its source chain.
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        return redact(&msg);
    };
    let code = db.code().code();
    let mut msg = if code.starts_with("22") {
        format!("invalid data for the column type (SQLSTATE {code})")
    } else if code.starts_with("23") {
        // Integrity violations: the message names the constraint; the detail (not used) has values.
        format!("{} (SQLSTATE {code})", db.message())
    } else if code == "53200" {
        // The lock table is full: one transaction locks every table, index and constraint it
        // touches, and the server's lock table is sized by max_locks_per_transaction.
        format!(
            "{} (SQLSTATE {code}); raise max_locks_per_transaction on that server \
             (a refresh takes all its locks in one transaction)",
            db.message()
        )
    } else if code == "28000" && db.message().contains("no encryption") {
        format!(
            "{} (SQLSTATE {code}); the server requires TLS, which this build does not support \
             yet (see Known limitations in the README)",
            redact(db.message())
        )
    } else {
        format!("{} (SQLSTATE {code})", redact(db.message()))
    };
    if let Some(t) = db.table() {
        msg.push_str(&format!(", table {t}"));
    }
    if let Some(c) = db.column() {
        msg.push_str(&format!(", column {c}"));
    }
    if let Some(c) = db.constraint() {
        msg.push_str(&format!(", constraint {c}"));
    }
    if let Some(w) = db.where_() {
        // "COPY t, line 12, column c: <value>": keep the line and column, never the value.
        let re = regex::Regex::new(r"COPY [^,]+, line ([0-9]+)(, column [^:]+)?")
            .expect("valid pattern");
        if let Some(c) = re.captures(w) {
            msg.push_str(&format!(
                ", COPY line {}{}",
                &c[1],
                c.get(2).map_or("", |m| m.as_str())
            ));
        }
    }
    msg
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connect; the connection's driver runs on the current tokio runtime.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let failed = |message: String| DbError::Connect {
        url: redact(url),
        message,
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| failed(describe(&e)))?;
    if matches!(
        config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    ) {
        return Err(failed(
            "sslmode=require: this build connects without TLS (see Known limitations in the \
             README); use a TLS-terminating proxy, or sslmode=disable on a trusted network"
                .into(),
        ));
    }
    // A nightly job must not hang on an unreachable host: 30 s unless the URL says otherwise.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| failed(describe(&e)))?;
    tokio::spawn(async move {
        // Errors surface on the next query through the client.
        let _ = connection.await;
    });
    log::debug!("connected to {}", redact(url));
    Ok(client)
}

pub(crate) fn query_err(context: &str) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
    move |e| DbError::Query {
        context: context.to_string(),
        message: describe(&e),
    }
}

/// What identifies a database: the cluster (system identifier when this role may read it, else the
/// postmaster's start time and port) and the database name.
pub async fn identity(client: &Client) -> Result<String, DbError> {
    let row = client
        .query_one(
            "SELECT current_database(), coalesce(inet_server_port(), 0)::text, pg_postmaster_start_time()::text",
            &[],
        )
        .await
        .map_err(query_err("reading the database identity"))?;
    let (db, port, started): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let sysid = match client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
    {
        Ok(r) => r.get::<_, String>(0),
        Err(_) => format!("started {started} port {port}"),
    };
    Ok(format!("{sysid}/{db}"))
}

/// Make the session read-only, open the snapshot every table is read in, and export it so other
/// reader sessions can join it. Returns the snapshot's id.
pub async fn begin_snapshot(client: &Client) -> Result<String, DbError> {
    client
        .batch_execute(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )
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
pub async fn join_snapshot(url: &str, snapshot: &str) -> Result<Client, DbError> {
    let client = connect(url).await?;
    // The id comes from pg_export_snapshot(): hex digits and dashes, safe inside quotes.
    let id: String = snapshot
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    client
        .batch_execute(&format!(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
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
    /// The top of the partition tree this leaf belongs to.
    pub partition_root: Option<QualifiedName>,
    pub columns: Vec<CatalogColumn>,
    pub row_estimate: i64,
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

#[derive(Debug, Clone)]
pub struct SequenceState {
    pub name: QualifiedName,
    pub last_value: Option<i64>,
    pub start_value: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<CatalogTable>,
    pub sequences: Vec<SequenceState>,
    /// Sequences the source role may not read (pg_sequences shows them without a value).
    pub unreadable_sequences: Vec<QualifiedName>,
    /// (referencing table, referenced table).
    pub foreign_keys: Vec<(QualifiedName, QualifiedName)>,
}

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
                }
            })
            .collect()
    }

    /// Copied tables in an order where every referenced table comes before the tables referring to
    /// it (cycles are broken by name order), so the result loads with foreign keys in force.
    pub fn load_order(&self) -> Vec<&CatalogTable> {
        let leaves: BTreeMap<&QualifiedName, &CatalogTable> = self
            .tables
            .iter()
            .filter(|t| !t.partitioned)
            .map(|t| (&t.name, t))
            .collect();
        // A reference to a partitioned table means a reference to each of its leaves.
        let expand = |name: &QualifiedName| -> Vec<&QualifiedName> {
            if let Some((leaf, _)) = leaves.get_key_value(name) {
                vec![*leaf]
            } else {
                self.tables
                    .iter()
                    .filter(|t| !t.partitioned && t.partition_root.as_ref() == Some(name))
                    .map(|t| &t.name)
                    .collect()
            }
        };
        let mut deps: BTreeMap<&QualifiedName, BTreeSet<&QualifiedName>> =
            leaves.keys().map(|k| (*k, BTreeSet::new())).collect();
        for (from, to) in &self.foreign_keys {
            for f in expand(from) {
                for t in expand(to) {
                    if f != t {
                        deps.entry(f).or_default().insert(t);
                    }
                }
            }
        }
        let mut order = Vec::with_capacity(leaves.len());
        let mut done: BTreeSet<&QualifiedName> = BTreeSet::new();
        while order.len() < leaves.len() {
            let ready = deps
                .iter()
                .find(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
                .map(|(n, _)| *n)
                // A cycle: take the first remaining table by name.
                .or_else(|| deps.keys().find(|n| !done.contains(*n)).copied())
                .expect("tables remain");
            done.insert(ready);
            order.push(leaves[ready]);
        }
        order
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
WITH RECURSIVE base(oid, typ) AS (
    SELECT t.oid, t.oid FROM pg_type t
    UNION ALL
    SELECT b.oid, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.typ WHERE t.typtype = 'd'
), resolved AS (
    SELECT b.oid, t.typname, t.typcategory FROM base b JOIN pg_type t ON t.oid = b.typ WHERE t.typtype <> 'd'
), single_unique AS (
    SELECT i.indrelid, i.indkey[0] AS attnum FROM pg_index i
    WHERE i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
)
SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::bigint,
       rn.nspname AS root_schema, rc.relname AS root_name,
       a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> '' AS generated,
       r.typname, r.typcategory::text,
       CASE WHEN r.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS max_len,
       EXISTS (SELECT 1 FROM single_unique u WHERE u.indrelid = c.oid AND u.attnum = a.attnum) AS is_unique
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN resolved r ON r.oid = a.atttypid
LEFT JOIN pg_class rc ON c.relispartition AND rc.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
ORDER BY n.nspname, c.relname, a.attnum
"#;

const SEQUENCES_SQL: &str =
    "SELECT schemaname::text, sequencename::text, last_value, start_value, \
            has_sequence_privilege(format('%I.%I', schemaname, sequencename), 'SELECT') \
     FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2";

const FOREIGN_KEYS_SQL: &str = "SELECT fn.nspname, f.relname, tn.nspname, t.relname \
     FROM pg_constraint k \
     JOIN pg_class f ON f.oid = k.conrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace \
     JOIN pg_class t ON t.oid = k.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
     WHERE k.contype = 'f'";

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
                partition_root: root,
                columns: Vec::new(),
                row_estimate: row.get::<_, i64>(3).max(0),
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
                },
            });
    }
    let (mut sequences, mut unreadable_sequences) = (Vec::new(), Vec::new());
    for r in client
        .query(SEQUENCES_SQL, &[])
        .await
        .map_err(query_err("reading the source sequences"))?
    {
        let name = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        if r.get::<_, bool>(4) {
            sequences.push(SequenceState {
                name,
                last_value: r.get(2),
                start_value: r.get(3),
            });
        } else {
            unreadable_sequences.push(name);
        }
    }
    let foreign_keys = client
        .query(FOREIGN_KEYS_SQL, &[])
        .await
        .map_err(query_err("reading the source foreign keys"))?
        .into_iter()
        .map(|r| {
            (
                QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)),
                QualifiedName::new(r.get::<_, &str>(2), r.get::<_, &str>(3)),
            )
        })
        .collect();
    Ok(Catalog {
        tables,
        sequences,
        unreadable_sequences,
        foreign_keys,
    })
}

/// The source's schema as SQL, from `pg_dump --schema-only` (owners and grants left out, psql-only
/// `\restrict` lines removed so the text runs as plain SQL).
pub fn schema_sql(url: &str) -> Result<String, DbError> {
    let context = "running pg_dump --schema-only on the source";
    // The password goes through the environment, not the command line other users can read.
    let (url, password) = split_password(url);
    let mut cmd = std::process::Command::new("pg_dump");
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--dbname",
        &url,
    ]);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| DbError::Query {
            context: context.into(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "pg_dump is not installed or not on PATH (it comes with the PostgreSQL client, e.g. the postgresql-client package)".into()
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(DbError::Query {
            context: context.into(),
            message: redact(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    let text = String::from_utf8(out.stdout).map_err(|_| DbError::Query {
        context: context.into(),
        message: "pg_dump wrote invalid UTF-8".into(),
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// A URL without its `user:password@` password, and the password (percent-decoded).
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((from, to)) = password_span(url) else {
        return (url.to_string(), None);
    };
    let raw = &url.as_bytes()[from..to];
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                bytes.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    // Drop the ":password" part, keeping "user@".
    let without = format!("{}{}", &url[..from - 1], &url[to..]);
    (without, Some(String::from_utf8_lossy(&bytes).into_owned()))
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
        .map(|c| crate::rules::quote_ident(c))
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
    fn passwords_never_reach_messages() {
        let cases = [
            (
                "postgres://app:s3cr3t@db.internal:5432/prod",
                "postgres://app:***@db.internal:5432/prod",
            ),
            ("postgresql://app@db/prod", "postgresql://app@db/prod"),
            (
                "postgres://db/prod?user=app&password=s3cr3t",
                "postgres://db/prod?user=app&password=***",
            ),
            (
                "host=db user=app password=s3cr3t dbname=prod",
                "host=db user=app password=*** dbname=prod",
            ),
            (
                "host=db password='with space' dbname=prod",
                "host=db password=*** dbname=prod",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want);
        }
    }

    #[test]
    fn passwords_are_split_off_for_subprocesses() {
        assert_eq!(
            split_password("postgres://app:p%40ss%3Aw@db:5432/prod?sslmode=require"),
            (
                "postgres://app@db:5432/prod?sslmode=require".to_string(),
                Some("p@ss:w".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://app@db/prod"),
            ("postgres://app@db/prod".to_string(), None)
        );
        assert_eq!(
            split_password("postgres://db/prod"),
            ("postgres://db/prod".to_string(), None)
        );
    }

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
            row_estimate: 0,
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
}
