//! Database plumbing shared by the source and the staging sink: connection strings to driver
//! configurations, connecting, the async runtime, and describing a server's errors without the
//! values they may quote. Knows nothing of rules, sources or sinks.

mod connect;
pub mod settings;
pub mod tls;

pub use connect::{connect, connect_with};

use tokio_postgres::Client;

use std::collections::{BTreeMap, BTreeSet};

use crate::endpoint::ConnInfo;
use crate::schema::{MatView, QualifiedName, SequenceState};

/// A database's schema as SQL, from `pg_dump --schema-only`: the source's without owners and
/// grants (`owners` false), in the run's exported snapshot when there is one, so schema and data
/// are one moment; staging's with them (a swap refresh keeps staging's own). The connection goes
/// to pg_dump without its password, which travels in pg_dump's environment only: nothing secret is
/// on a command line other users can read. pg_dump reads the same `PG*` variables, service and
/// password files and TLS settings as the run.
pub fn pg_dump_schema(
    c: &ConnInfo,
    snapshot: Option<&str>,
    owners: bool,
) -> Result<String, DbError> {
    let context = if owners {
        "running pg_dump --schema-only on staging"
    } else {
        "running pg_dump --schema-only on the source"
    };
    let mut cmd = std::process::Command::new("pg_dump");
    cmd.arg("--schema-only");
    if !owners {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    if let Some(id) = snapshot {
        cmd.arg(format!("--snapshot={id}"));
    }
    // pg_dump gets the settings the run resolved (string, service file, PG* variables), spelled
    // out, so that it reaches the server the way the run did and takes the same password: the
    // service is not read again (a service password would outrank PGPASSWORD in libpq).
    let resolved =
        settings::resolve(c, &|k| std::env::var(k).ok()).map_err(|message| DbError::Connect {
            url: c.to_string(),
            message,
        })?;
    cmd.arg("--dbname").arg(resolved.for_child());
    cmd.env_remove("PGSERVICE").env_remove("PGSERVICEFILE");
    if let Some(p) = resolved.password_for_first_host() {
        cmd.env("PGPASSWORD", p.expose());
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
    String::from_utf8(out.stdout).map_err(|_| DbError::Query {
        context: context.into(),
        message: "pg_dump wrote invalid UTF-8".into(),
    })
}

/// Why talking to a database failed. Connection strings are redacted; no row value is quoted.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connecting to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{context}: {message}")]
    Query { context: String, message: String },
    /// A lock wait ran out (`lock_timeout`): who held it is added once the transaction is gone.
    #[error("{context}: {message}")]
    LockTimeout { context: String, message: String },
    /// Another run holds what this one needs (said in full).
    #[error("{0}")]
    Busy(String),
}

pub use crate::endpoint::redact;

/// SQLSTATEs whose message is shown (with every double-quoted part hidden, and names added from
/// the error's own fields): connection, authentication, permissions, locks, resources,
/// cancellation, serialization, read-only transactions, integrity violations (whose detail, with
/// the values, is never shown), and messages that quote a name — which a cast of a value
/// (`::regclass`, `has_column_privilege(…, value, …)`) can make a value, hence the hiding.
fn message_is_shown(code: &str) -> bool {
    matches!(&code[..2], "08" | "28" | "53" | "57" | "23")
        || matches!(
            code,
            "55P03"
                | "22001"
                | "22003"
                | "55006"
                | "40001"
                | "40P01"
                | "25006"
                | "25P02"
                | "3D000"
                | "3F000"
                | "42P01"
                | "42703"
                | "42704"
                | "42883"
                | "42P07"
                | "42710"
                | "42602"
                | "2BP01"
                | "42501"
        )
}
/// What a SQLSTATE means, for the messages built without the server's text.
fn sqlstate_meaning(code: &str) -> &'static str {
    match code {
        "P0001" => "an exception raised by a function or trigger",
        "P0004" => "an assertion failed in a function",
        "XX000" => "an internal error of the server",
        "42804" => "a type mismatch",
        "42P10" => "an invalid column reference",
        "21000" => "a subquery returned more than one row",
        _ => match &code[..2] {
            "22" => "invalid data for the column type",
            "2B" => "dependent objects still exist",
            "38" | "39" => "an error in an external routine",
            "40" => "a transaction rollback",
            "42" => "a syntax error or access rule violation",
            "44" => "a WITH CHECK OPTION violation",
            "54" => "a program limit exceeded",
            "55" => "an object not in the state needed",
            "58" => "a system error on the server",
            "F0" => "a server configuration file error",
            "HV" => "a foreign-data wrapper error",
            "P0" => "an error in a PL/pgSQL function",
            "XX" => "an internal error of the server",
            _ => "an error",
        },
    }
}

/// A server message with everything from its first double quote to its last as `"…"`: a quoted
/// name is not escaped in messages, so a value with a quote in it could otherwise end the hiding
/// early.
fn hide_quoted(message: &str) -> String {
    match (message.find('"'), message.rfind('"')) {
        (Some(first), Some(last)) if first < last => {
            format!("{}\"…\"{}", &message[..first], &message[last + 1..])
        }
        (Some(first), _) => format!("{}\"…", &message[..first]),
        _ => message.to_string(),
    }
}

/// The server's message as it is (passwords hidden), for errors that cannot involve a row: those of
/// connecting (which name the database and role asked for) and of planning a `where` filter.
pub fn describe_verbatim(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        // (Those come with a hint of what to do.)
        Some(db) if !matches!(db.code().code(), "28000" | "53200") => {
            format!("{} (SQLSTATE {})", redact(db.message()), db.code().code())
        }
        _ => describe(e),
    }
}

/// A database error described without row values. PostgreSQL's messages for bad data quote the
/// value, and a raised exception says whatever its function says: the server's text is shown only
/// for SQLSTATEs known to quote no data; for every other one the message is built from the
/// SQLSTATE, its meaning and the table, column and constraint names.
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
    // Raised by a function (a staging CHECK, trigger or domain calling PL/pgSQL or SQL): it chooses
    // its SQLSTATE, message and even the table, column and constraint it names, so none of them is
    // shown — only the SQLSTATE's meaning and where the COPY was.
    let from_function = db
        .where_()
        .is_some_and(|w| w.contains("function ") || w.contains(" at RAISE"));
    let mut msg = if from_function {
        format!(
            "{} (SQLSTATE {code}), raised inside a function",
            sqlstate_meaning(code)
        )
    } else if code == "53200" {
        // The lock table is full: one transaction locks every table, index and constraint it
        // touches, and the server's lock table is sized by max_locks_per_transaction.
        format!(
            "{} (SQLSTATE {code}); raise max_locks_per_transaction on that server \
             (a refresh takes all its locks in one transaction)",
            db.message()
        )
    } else if code == "28000" && db.message().contains("no encryption") {
        format!("{} (SQLSTATE {code})", redact(db.message()))
    } else if code.len() == 5
        && (message_is_shown(code)
            || (code == "42601" && db.message().starts_with("syntax error at")))
    {
        format!("{} (SQLSTATE {code})", hide_quoted(&redact(db.message())))
    } else if code.len() == 5 {
        format!("{} (SQLSTATE {code})", sqlstate_meaning(code))
    } else {
        format!("an error (SQLSTATE {code})")
    };
    if !from_function {
        if let Some(t) = db.table() {
            msg.push_str(&format!(", table {t}"));
        }
        if let Some(c) = db.column() {
            msg.push_str(&format!(", column {c}"));
        }
        if let Some(c) = db.constraint() {
            msg.push_str(&format!(", constraint {c}"));
        }
    }
    if let Some(position) = db.where_().and_then(copy_position) {
        msg.push_str(&position);
    }
    msg
}

/// From a COPY error's context, `COPY t, line 12, column c: <value>`, the line and column only:
/// `, COPY line 12, column c`. Never the value.
fn copy_position(context: &str) -> Option<String> {
    let rest = &context[context.find("COPY ")? + 5..];
    let (table, rest) = rest.split_once(", line ")?;
    if table.is_empty() || table.contains(',') {
        return None;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (line, rest) = rest.split_at(digits);
    let column = rest
        .strip_prefix(", column ")
        .map(|c| c.split(':').next().unwrap_or(""))
        .filter(|c| !c.is_empty())
        .map(|c| format!(", column {c}"))
        .unwrap_or_default();
    Some(format!(", COPY line {line}{column}"))
}

pub fn query_err(context: &str) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
    move |e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return DbError::LockTimeout {
                context: context.to_string(),
                message: describe(&e),
            };
        }
        DbError::Query {
            context: context.to_string(),
            message: describe(&e),
        }
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

/// The async runtime the database work runs on (the transforms stay on rayon).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build()
}

/// Who holds a lock (of `modes`, or any when empty) on these tables: pid, user, application, state
/// and for how long — never what they run. For a message after a lock wait timed out.
pub async fn blockers(client: &Client, tables: &[String], modes: &[&str]) -> String {
    let modes: Vec<String> = modes.iter().map(|m| m.to_string()).collect();
    let rows = client
        .query(
            "SELECT DISTINCT a.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''), \
                    coalesce(a.state, '?'), \
                    extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start))::bigint \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND l.pid <> pg_backend_pid() \
               AND l.relation = ANY (SELECT to_regclass(t)::oid FROM unnest($1::text[]) t) \
               AND (cardinality($2::text[]) = 0 OR l.mode = ANY ($2::text[])) \
             ORDER BY 1 LIMIT 5",
            &[&tables, &modes],
        )
        .await;
    match rows {
        Ok(rows) if !rows.is_empty() => {
            let who: Vec<String> = rows
                .iter()
                .map(|r| {
                    let app: &str = r.get(2);
                    format!(
                        "pid {} (user {}, application {}, {} for {} s)",
                        r.get::<_, i32>(0),
                        r.get::<_, &str>(1),
                        if app.is_empty() { "unnamed" } else { app },
                        r.get::<_, &str>(3),
                        r.get::<_, i64>(4)
                    )
                })
                .collect();
            format!("a lock held by {}", who.join(", "))
        }
        _ => "a lock another session held (it has let go since)".into(),
    }
}

const MATVIEWS_SQL: &str = r#"
SELECT vn.nspname, v.relname, v.relkind::text, v.relispopulated, dn.nspname, dep.relname
FROM pg_class v
JOIN pg_namespace vn ON vn.oid = v.relnamespace
LEFT JOIN pg_rewrite r ON r.ev_class = v.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
LEFT JOIN pg_class dep ON dep.oid = d.refobjid AND dep.relkind IN ('v', 'm')
LEFT JOIN pg_namespace dn ON dn.oid = dep.relnamespace
WHERE v.relkind IN ('v', 'm')
  AND vn.nspname NOT IN ('pg_catalog', 'information_schema') AND vn.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2
"#;

/// The sequences of a database (not the system's, not another session's temporary ones) whose
/// position this session may read, each read from the sequence itself (`last_value, is_called`,
/// a few hundred per query), and apart, those it may not read. `pg_sequences` shows no value for a
/// sequence set back with `setval(…, false)` or `RESTART`, which loses where it restarts. The one
/// reader of positions: the source's, and the old staging's in a swap.
pub async fn sequences(
    client: &Client,
    context: &str,
) -> Result<(Vec<SequenceState>, Vec<QualifiedName>), DbError> {
    let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
    for r in client
        .query(
            "SELECT n.nspname::text, c.relname::text, \
                    CASE WHEN c.relkind = 'S' \
                         THEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT') END \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND NOT pg_catalog.pg_is_other_temp_schema(n.oid) \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(query_err(context))?
    {
        let name = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        if r.get::<_, bool>(2) {
            readable.push(name);
        } else {
            unreadable.push(name);
        }
    }
    let mut positions = Vec::with_capacity(readable.len());
    for chunk in readable.chunks(500) {
        let read = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| format!("SELECT {i}, last_value, is_called FROM {s}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut rows = client.query(&read, &[]).await.map_err(query_err(context))?;
        rows.sort_by_key(|r| r.get::<_, i32>(0));
        positions.extend(rows.iter().map(|r| SequenceState {
            name: chunk[r.get::<_, i32>(0) as usize].clone(),
            last_value: r.get(1),
            is_called: r.get(2),
        }));
    }
    Ok((positions, unreadable))
}

/// The materialized views of a database, each after those it reads.
pub async fn matviews(client: &Client, context: &str) -> Result<Vec<MatView>, DbError> {
    let rows = client
        .query(MATVIEWS_SQL, &[])
        .await
        .map_err(query_err(context))?;
    Ok(matviews_in_order(rows))
}

/// Each materialized view (`root`) and what its refresh reads (`rel`): itself, the views it reads
/// and the foreign tables they read, directly or through other views. One definition for the
/// queries below.
macro_rules! matview_reach {
    () => {
        r#"WITH RECURSIVE reach(root, rel) AS (
    SELECT v.oid, v.oid FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
    WHERE v.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_%'
  UNION
    SELECT reach.root, c.oid FROM reach
    JOIN pg_rewrite r ON r.ev_class = reach.rel
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         AND d.refclassid = 'pg_class'::regclass
    JOIN pg_class c ON c.oid = d.refobjid AND c.oid <> reach.rel AND c.relkind IN ('v', 'f')
)
"#
    };
}

/// What the materialized views of a database would do beyond reading its own tables when
/// refreshed: the volatile functions and operators they call (`dblink`, `lo_import`, a function of
/// the schema that nobody marked `STABLE`, …) and the foreign tables they read, directly or
/// through views. The built-ins that only make up a value (`random`, `clock_timestamp`, …) are
/// left out.
const MATVIEW_CALLS_SQL: &str = concat!(
    matview_reach!(),
    r#"
, called(root, fn) AS (
    SELECT reach.root, d.refobjid FROM reach
    JOIN pg_rewrite r ON r.ev_class = reach.rel
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         AND d.refclassid = 'pg_proc'::regclass
  UNION
    SELECT reach.root, o.oprcode FROM reach
    JOIN pg_rewrite r ON r.ev_class = reach.rel
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         AND d.refclassid = 'pg_operator'::regclass
    JOIN pg_operator o ON o.oid = d.refobjid
)
SELECT vn.nspname, v.relname, 'function ' || pn.nspname || '.' || p.proname || '()'
FROM called JOIN pg_proc p ON p.oid = called.fn JOIN pg_namespace pn ON pn.oid = p.pronamespace
JOIN pg_class v ON v.oid = called.root JOIN pg_namespace vn ON vn.oid = v.relnamespace
WHERE p.provolatile = 'v'
  AND NOT (pn.nspname = 'pg_catalog' AND p.proname IN
      ('random', 'random_normal', 'clock_timestamp', 'timeofday', 'gen_random_uuid'))
UNION
SELECT vn.nspname, v.relname, 'foreign table ' || fn.nspname || '.' || f.relname
FROM reach JOIN pg_class f ON f.oid = reach.rel AND f.relkind = 'f'
JOIN pg_namespace fn ON fn.oid = f.relnamespace
JOIN pg_class v ON v.oid = reach.root JOIN pg_namespace vn ON vn.oid = v.relnamespace
ORDER BY 1, 2, 3
"#
);

/// The definitions a materialized view's refresh runs: its own and those of the views it reads,
/// directly or through other views, and the row-level security policies of the tables they read
/// (a policy's expression runs for a role that does not bypass it).
const MATVIEW_DEFS_SQL: &str = concat!(
    matview_reach!(),
    r#"
SELECT vn.nspname, v.relname, pg_catalog.pg_get_viewdef(reach.rel)
FROM reach JOIN pg_class v ON v.oid = reach.root JOIN pg_namespace vn ON vn.oid = v.relnamespace
WHERE reach.rel IN (SELECT oid FROM pg_class WHERE relkind IN ('m', 'v'))
UNION ALL
SELECT vn.nspname, v.relname,
       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || ' ' ||
       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM reach
JOIN pg_rewrite r ON r.ev_class = reach.rel
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_class'::regclass
JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p') AND t.relrowsecurity
JOIN pg_policy p ON p.polrelid = t.oid
JOIN pg_class v ON v.oid = reach.root JOIN pg_namespace vn ON vn.oid = v.relnamespace
"#
);

/// Of these function names, those that may change something or reach outside the database when
/// called: a volatile function by that name in any schema (any overload: the text does not say
/// which one is meant), or an aggregate whose state or final function is volatile (the catalog
/// calls every aggregate immutable). Built-ins PostgreSQL records no dependency on are found this
/// way; the harmless value makers (`random()`, `clock_timestamp()`, …) are left out.
const VOLATILE_BY_NAME_SQL: &str = r#"
SELECT DISTINCT p.proname::text FROM pg_proc p
WHERE p.proname = ANY ($1)
  AND p.proname NOT IN ('random', 'random_normal', 'clock_timestamp', 'timeofday', 'gen_random_uuid')
  AND (p.provolatile = 'v'
       OR EXISTS (SELECT 1 FROM pg_aggregate a JOIN pg_proc f
                  ON f.oid IN (a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                               a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn)
                  WHERE a.aggfnoid = p.oid AND f.provolatile = 'v'))
"#;

/// Of these type names, the domains whose CHECK constraints (as text) a cast to them runs.
const DOMAIN_CHECKS_SQL: &str = r#"
SELECT t.typname::text, pg_catalog.pg_get_constraintdef(c.oid)
FROM pg_type t JOIN pg_constraint c ON c.contypid = t.oid
WHERE t.typtype = 'd' AND t.typname = ANY ($1)
"#;

/// For each materialized view whose refresh would do more than read this database's tables, what
/// it calls or reads: what the catalog records a dependency on (see [`MATVIEW_CALLS_SQL`]), and
/// the functions its definitions (and those of the views it reads, and the CHECKs of the domains
/// they cast to) name, by name.
pub async fn matview_calls(
    client: &Client,
    context: &str,
) -> Result<Vec<(QualifiedName, String)>, DbError> {
    let rows = client
        .query(MATVIEW_CALLS_SQL, &[])
        .await
        .map_err(query_err(context))?;
    let mut out: BTreeSet<(QualifiedName, String)> = rows
        .iter()
        .map(|r| {
            (
                QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1)),
                r.get::<_, String>(2),
            )
        })
        .collect();
    // What each view's text names.
    let defs = client
        .query(MATVIEW_DEFS_SQL, &[])
        .await
        .map_err(query_err(context))?;
    let mut named: BTreeMap<QualifiedName, BTreeSet<String>> = BTreeMap::new();
    let mut casts: BTreeMap<QualifiedName, BTreeSet<String>> = BTreeMap::new();
    for r in &defs {
        let view = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        let Some(def) = r.get::<_, Option<&str>>(2) else {
            continue;
        };
        let c = crate::sql::expr::calls(def);
        let entry = named.entry(view.clone()).or_default();
        entry.extend(c.functions.into_iter().map(|(_, f)| f));
        casts.entry(view).or_default().extend(
            c.casts
                .iter()
                .map(|t| t.rsplit(' ').next().unwrap_or(t).to_string()),
        );
    }
    // The CHECKs of domains cast to (and of domains those name, a few levels down).
    for (view, types) in &casts {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut next: Vec<String> = types.iter().cloned().collect();
        for _ in 0..4 {
            next.retain(|t| seen.insert(t.clone()));
            if next.is_empty() {
                break;
            }
            let checks = client
                .query(DOMAIN_CHECKS_SQL, &[&next])
                .await
                .map_err(query_err(context))?;
            next = Vec::new();
            for r in &checks {
                let c = crate::sql::expr::calls(r.get::<_, &str>(1));
                named
                    .entry(view.clone())
                    .or_default()
                    .extend(c.functions.into_iter().map(|(_, f)| f));
                next.extend(
                    c.casts
                        .iter()
                        .map(|t| t.rsplit(' ').next().unwrap_or(t).to_string()),
                );
            }
        }
    }
    let all: Vec<String> = named.values().flatten().cloned().collect();
    let volatile: BTreeSet<String> = client
        .query(VOLATILE_BY_NAME_SQL, &[&all])
        .await
        .map_err(query_err(context))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (view, names) in named {
        for f in names.intersection(&volatile) {
            let qualified = format!(".{f}()");
            if !out
                .iter()
                .any(|(v, s)| *v == view && s.ends_with(&qualified))
            {
                out.insert((view.clone(), format!("function {f}()")));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Why refreshing these materialized views in staging would run more than a read of staging's
/// own tables, or `None`.
pub fn matview_problem(calls: &[(QualifiedName, String)]) -> Option<String> {
    if calls.is_empty() {
        return None;
    }
    let list: Vec<String> = calls
        .iter()
        .take(10)
        .map(|(v, what)| format!("{v} calls {what}"))
        .collect();
    Some(format!(
        "refreshing materialized views in staging would run more than a read of staging's own \
         tables ({}{}) — a volatile function may reach another server or write, a foreign table \
         reads another server: leave them unpopulated with `materialized_views = \"empty\"` under \
         [policy], or mark a function that only reads STABLE in production",
        list.join("; "),
        if calls.len() > 10 { "; …" } else { "" }
    ))
}

/// Materialized views from the rows of [`MATVIEWS_SQL`], each after the materialized views it
/// reads, directly or through views.
fn matviews_in_order(rows: Vec<tokio_postgres::Row>) -> Vec<MatView> {
    let mut kinds: BTreeMap<QualifiedName, (bool, bool)> = BTreeMap::new();
    let mut deps: BTreeMap<QualifiedName, BTreeSet<QualifiedName>> = BTreeMap::new();
    for r in rows {
        let name = QualifiedName::new(r.get::<_, &str>(0), r.get::<_, &str>(1));
        kinds.insert(name.clone(), (r.get::<_, &str>(2) == "m", r.get(3)));
        let dep = deps.entry(name).or_default();
        if let (Some(s), Some(n)) = (r.get::<_, Option<&str>>(4), r.get::<_, Option<&str>>(5)) {
            dep.insert(QualifiedName::new(s, n));
        }
    }
    crate::schema::order_matviews(&kinds, &deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_positions_keep_line_and_column_never_the_value() {
        assert_eq!(
            copy_position("COPY customers, line 12, column email: \"a@b.c\"").as_deref(),
            Some(", COPY line 12, column email")
        );
        assert_eq!(
            copy_position("COPY t, line 3: \"1\t2\"").as_deref(),
            Some(", COPY line 3")
        );
        assert_eq!(copy_position("SQL statement \"x\""), None);
        assert_eq!(copy_position("COPY a, b, line 3"), None);
    }

    #[test]
    fn quoted_names_are_hidden() {
        assert_eq!(
            hide_quoted("schema \"john@x\" does not exist"),
            "schema \"…\" does not exist"
        );
        // A quote inside the value does not end the hiding.
        assert_eq!(
            hide_quoted("relation \"\"john@x\" does not exist"),
            "relation \"…\" does not exist"
        );
        assert_eq!(
            hide_quoted("column \"a\" of relation \"b\" does not exist"),
            "column \"…\" does not exist"
        );
    }
}
