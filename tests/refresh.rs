//! End-to-end: database source → staging database (and → dump file), against the local server.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn pagila_source() -> TestDb {
    let db = TestDb::new("src");
    db.load(&pagila_dir().join("pagila-schema.sql"));
    db.load(&pagila_dir().join("pagila-data.sql"));
    db
}

fn pagila_staging() -> TestDb {
    let db = TestDb::new("stg");
    db.load(&pagila_dir().join("pagila-schema.sql"));
    db
}

fn refresh(rules: &str, source: &str, target: &str) -> std::process::Output {
    run(anonymize().args([
        "--rules", rules, "-q", "--source", source, "--target", target,
    ]))
}

/// A fingerprint of every row of the tables, to prove staging did not change.
fn fingerprint(db: &TestDb, tables: &[&str]) -> String {
    tables
        .iter()
        .map(|t| db.query(&format!("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {t} x")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn pagila_refresh_keeps_counts_keys_sequences_partitions_and_hides_pii() {
    let src = pagila_source();
    let stg = pagila_staging();
    let o = refresh("tests/fixtures/pagila.toml", &url(&src), &url(&stg));
    assert!(o.status.success(), "{}", stderr(&o));
    pagila_is_whole_and_anonymized(&src, &stg);
}

#[test]
fn a_swap_refresh_of_pagila_on_three_sessions_is_the_same_staging() {
    let src = pagila_source();
    let stg = pagila_staging();
    let o = run(anonymize().args([
        "--rules",
        "tests/fixtures/pagila.toml",
        "-q",
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
        "--refresh",
        "swap",
        "--load-connections",
        "3",
        "--drop-prev",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    pagila_is_whole_and_anonymized(&src, &stg);
    assert_eq!(
        stg.query(&format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_\\_%'",
            stg.name
        )),
        "0",
        "nothing left beside staging"
    );
}

#[test]
fn pagila_with_transformed_customer_ids_loads_when_every_reference_gets_the_same_rule() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string("tests/fixtures/pagila.toml").unwrap();
    let rule = "customer_id = { hash = { format = \"preserve\" }, unique = true }";
    // And the rental's dates moved by an offset per customer: each rental keeps its order.
    let shift = "{ shift = { days = 120, by = \"customer_id\" } }";
    let all = base
        .lines()
        .map(|l| match l.split_whitespace().next() {
            _ if l.starts_with("customer_id ") => rule.to_string(),
            Some(c @ ("rental_date" | "return_date")) => format!("{c} = {shift}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(all.matches(rule).count(), 3);
    // Only the key itself: check refuses, naming both columns, before anything is written.
    let mut lines = base.lines().map(String::from).collect::<Vec<_>>();
    let first = lines
        .iter()
        .position(|l| l.starts_with("customer_id "))
        .unwrap();
    lines[first] = rule.into();
    let key_only = write_rules(dir.path(), &lines.join("\n"));
    let src = pagila_source();
    let o = run(anonymize()
        .args(["check", "--rules"])
        .arg(&key_only)
        .args(["--source", &url(&src)]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("foreign key rental_customer_id_fkey of public.rental: column public.rental.customer_id is keep, but the key it references, public.customer.customer_id, is hash (preserve)")
            && err.contains("foreign key payment_p2022_01_customer_id_fkey of public.payment_p2022_01: column public.payment_p2022_01.customer_id is keep"),
        "{err}"
    );
    // The same rule everywhere: the refresh restores every foreign key over the new ids.
    let rules = dir.path().join("all.toml");
    std::fs::write(&rules, all).unwrap();
    let stg = pagila_staging();
    let o = refresh(rules.to_str().unwrap(), &url(&src), &url(&stg));
    assert!(o.status.success(), "{}", stderr(&o));
    let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated";
    assert_eq!(stg.query(fks), src.query(fks));
    let moved = "SELECT count(*) FROM customer";
    assert_eq!(stg.query(moved), src.query(moved));
    // The ids are others (the permutation has no fixed point), still within three digits, and
    // each customer keeps their rentals.
    let ids = |db: &TestDb| {
        db.query("SELECT string_agg(customer_id::text, ',' ORDER BY customer_id) FROM customer")
    };
    assert_ne!(ids(&stg), ids(&src));
    assert_eq!(
        stg.query("SELECT count(*) FROM customer WHERE customer_id > 999"),
        "0"
    );
    let per_customer = "SELECT string_agg(n::text, ',' ORDER BY n) FROM (SELECT count(*) n FROM rental GROUP BY customer_id) x";
    assert_eq!(stg.query(per_customer), src.query(per_customer));
    // Every rental's two dates moved by the same offset: the order of each pair is the source's,
    // and so is each rental's length; the dates themselves moved.
    let order = "SELECT count(*) FILTER (WHERE rental_date < return_date) || ' ' || count(*) FILTER (WHERE return_date IS NULL) FROM rental";
    assert_eq!(stg.query(order), src.query(order));
    let lengths = "SELECT md5(string_agg((return_date - rental_date)::text, ',' ORDER BY rental_id)) FROM rental";
    assert_eq!(stg.query(lengths), src.query(lengths));
    // One offset per (original) customer, within ±120 days and never 0, for all their rentals.
    let rows = |db: &TestDb| -> Vec<(i64, i64)> {
        db.query("SELECT string_agg(rental_id || ':' || (rental_date::date - date '2000-01-01'), ',' ORDER BY rental_id) FROM rental")
            .split(',')
            .map(|p| {
                let (id, day) = p.split_once(':').unwrap();
                (id.parse().unwrap(), day.parse().unwrap())
            })
            .collect()
    };
    let customer_of: std::collections::BTreeMap<i64, String> = src
        .query("SELECT string_agg(rental_id || ':' || customer_id, ',') FROM rental")
        .split(',')
        .map(|p| {
            let (id, c) = p.split_once(':').unwrap();
            (id.parse().unwrap(), c.to_string())
        })
        .collect();
    let mut offsets: std::collections::BTreeMap<String, std::collections::BTreeSet<i64>> =
        Default::default();
    for ((id, before), (id2, after)) in rows(&src).into_iter().zip(rows(&stg)) {
        assert_eq!(id, id2);
        offsets
            .entry(customer_of[&id].clone())
            .or_default()
            .insert(after - before);
    }
    assert_eq!(offsets.len(), 599);
    for (customer, o) in &offsets {
        assert_eq!(o.len(), 1, "customer {customer}: offsets {o:?}");
        let d = *o.iter().next().unwrap();
        assert!(d != 0 && d.abs() <= 120, "customer {customer}: {d}");
    }
}

/// Every table of pagila holds the source's row count, keys, indexes, partitions and sequences,
/// and no person's original data.
fn pagila_is_whole_and_anonymized(src: &TestDb, stg: &TestDb) {
    let tables = src.query(
        "SELECT string_agg(c.oid::regclass::text, ' ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r'",
    );
    let tables: Vec<&str> = tables.split(' ').collect();
    assert_eq!(tables.len(), 21);
    for t in &tables {
        let q = format!("SELECT count(*) FROM ONLY {t}");
        assert_eq!(src.query(&q), stg.query(&q), "{t}");
    }
    // Partitions hold the same rows as in the source, and the parent sees them once.
    assert_eq!(stg.query("SELECT count(*) FROM payment"), "16049");
    assert_eq!(
        stg.query("SELECT string_agg(tableoid::regclass::text || '=' || n, ',' ORDER BY tableoid::regclass::text) FROM (SELECT tableoid, count(*) n FROM payment GROUP BY 1) s"),
        src.query("SELECT string_agg(tableoid::regclass::text || '=' || n, ',' ORDER BY tableoid::regclass::text) FROM (SELECT tableoid, count(*) n FROM payment GROUP BY 1) s")
    );
    // Every foreign key is back and valid.
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        src.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"),
        "0"
    );
    // Keys and indexes dropped for the load are all back, with the same definitions.
    let indexes = "SELECT md5(string_agg(indexdef, ';' ORDER BY indexdef)) || count(*) FROM pg_indexes WHERE schemaname = 'public'";
    assert_eq!(stg.query(indexes), src.query(indexes));
    let keys = "SELECT string_agg(conname || ':' || contype::text || ':' || pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint WHERE connamespace = 'public'::regnamespace";
    assert_eq!(stg.query(keys), src.query(keys));
    // Sequences advanced: an insert without an id succeeds and gets the next id.
    assert_eq!(
        stg.query("INSERT INTO actor (first_name, last_name) VALUES ('A', 'B') RETURNING actor_id"),
        "201"
    );
    // The tsvector kept by a trigger matches the (unchanged) titles.
    assert_eq!(stg.query("SELECT count(*) FROM film WHERE fulltext IS NULL OR fulltext <> to_tsvector('english', title || ' ' || description)"), "0");
    // No original PII value from a covered column is in staging.
    for (table, col) in [
        ("customer", "email"),
        ("staff", "email"),
        ("staff", "username"),
        ("address", "phone"),
    ] {
        let originals = values_list(src, table, col);
        let leaked = stg.query(&format!(
            "SELECT count(*) FROM {table} WHERE {col} IN (VALUES {originals})"
        ));
        assert_eq!(leaked, "0", "{table}.{col}");
    }
    for table in ["customer", "actor", "staff"] {
        let id = format!("{table}_id");
        let src_names = src.query(&format!(
            "SELECT string_agg(first_name || ' ' || last_name, '|' ORDER BY {id}) FROM {table}"
        ));
        let stg_names = stg.query(&format!(
            "SELECT string_agg(first_name || ' ' || last_name, '|' ORDER BY {id}) FROM {table}"
        ));
        let kept = src_names
            .split('|')
            .zip(stg_names.split('|'))
            .filter(|(a, b)| a == b)
            .count();
        assert_eq!(kept, 0, "{table}: somebody kept their name");
    }
}

/// The non-empty values of a source column as an SQL VALUES list.
fn values_list(db: &TestDb, table: &str, col: &str) -> String {
    db.query(&format!(
        "SELECT string_agg('(' || quote_literal({col}) || ')', ',') FROM {table} WHERE coalesce({col}, '') <> ''"
    ))
}

#[test]
fn a_failed_load_leaves_staging_exactly_as_it_was() {
    let src = pagila_source();
    let stg = pagila_staging();
    let first = refresh("tests/fixtures/pagila.toml", &url(&src), &url(&stg));
    assert!(first.status.success(), "{}", stderr(&first));
    let tables = ["customer", "staff", "address", "payment", "rental", "actor"];
    let before = fingerprint(&stg, &tables);
    // A staging-only constraint that the anonymized emails violate.
    stg.query("ALTER TABLE customer ADD CONSTRAINT no_example CHECK (email NOT LIKE '%@example.%') NOT VALID");
    src.query("UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1");
    let o = refresh("tests/fixtures/pagila.toml", &url(&src), &url(&stg));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("loading public.customer into staging") && err.contains("no_example"),
        "{err}"
    );
    assert!(!err.contains("@example."), "no value in the message: {err}");
    assert_eq!(fingerprint(&stg, &tables), before);
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        "36"
    );
    // A staging-only unique index broken by the new data fails when it is rebuilt after the load:
    // rolled back too, with the index still in place. (A second source customer with the same email
    // gets the same pseudonym: the rules are deterministic.)
    stg.query("ALTER TABLE customer DROP CONSTRAINT no_example");
    stg.query("CREATE UNIQUE INDEX customer_email_key ON customer (email)");
    src.query(
        "INSERT INTO customer (store_id, first_name, last_name, email, address_id, activebool, create_date, active) \
         SELECT store_id, first_name, last_name, email, address_id, activebool, create_date, active FROM customer WHERE customer_id = 1",
    );
    let o = refresh("tests/fixtures/pagila.toml", &url(&src), &url(&stg));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rebuilding index customer_email_key of public.customer"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fingerprint(&stg, &tables), before);
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'customer_email_key'"),
        "1"
    );
}

#[test]
fn killing_the_source_mid_table_rolls_back() {
    let big = BigRefresh::new("kill");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let child = big.spawn_with(
        "anon_kill_me",
        &["-q", "--report", report.to_str().unwrap()],
    );
    big.wait_until_loading("anon_kill_me");
    big.src.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'anon_kill_me'");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reading public.big from the source"),
        "{}",
        stderr(&o)
    );
    failed_report(&report, "reading public.big from the source");
    big.assert_staging_unchanged();
}

/// A source with a table big enough to interrupt mid-copy, and a staging holding yesterday's row.
struct BigRefresh {
    src: TestDb,
    stg: TestDb,
    _dir: tempfile::TempDir,
    rules: PathBuf,
}

impl BigRefresh {
    fn new(tag: &str) -> Self {
        let src = TestDb::new(&format!("{tag}src"));
        src.query("CREATE TABLE big (id int PRIMARY KEY, email text NOT NULL)");
        src.query(
            "INSERT INTO big SELECT g, 'user' || g || '@corp.test' FROM generate_series(1, 1500000) g",
        );
        src.query("VACUUM ANALYZE big");
        let stg = TestDb::new(&format!("{tag}stg"));
        stg.query("CREATE TABLE big (id int PRIMARY KEY, email text NOT NULL)");
        stg.query("INSERT INTO big VALUES (1, 'yesterday@example.com')");
        let dir = tempfile::tempdir().unwrap();
        let rules = write_rules(
            dir.path(),
            "[tables.big.columns]\nid = \"keep\"\nemail = { fake = \"email\", unique = true }\n",
        );
        BigRefresh {
            src,
            stg,
            _dir: dir,
            rules,
        }
    }

    /// Start a quiet refresh whose source sessions carry this application name.
    fn spawn(&self, application: &str) -> std::process::Child {
        self.spawn_with(application, &["-q"])
    }

    /// Start a refresh whose source sessions carry this application name, and its staging session
    /// the name with `_stg` added.
    fn spawn_with(&self, application: &str, args: &[&str]) -> std::process::Child {
        anonymize()
            .args(["--rules", self.rules.to_str().unwrap(), "--source"])
            .arg(format!("{}?application_name={application}", url(&self.src)))
            .arg("--target")
            .arg(format!(
                "{}?application_name={application}_stg",
                url(&self.stg)
            ))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Wait until staging has taken rows of the table being loaded: the refresh is mid-table.
    fn wait_until_loading(&self, application: &str) {
        let sql = format!(
            "SELECT coalesce(max(p.tuples_processed), 0) FROM pg_stat_progress_copy p \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{application}_stg'"
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.stg.query(&sql) == "0" {
            assert!(Instant::now() < deadline, "staging never started loading");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn assert_staging_unchanged(&self) {
        assert_eq!(
            self.stg
                .query("SELECT count(*) || ' ' || min(email) FROM big"),
            "1 yesterday@example.com"
        );
    }
}

#[test]
fn a_second_refresh_fails_fast_on_the_lock_and_same_database_is_refused() {
    let src = pagila_source();
    let stg = pagila_staging();
    // Hold the refresh lock from another session, as a running refresh would.
    let mut holder = client("psql")
        .args(["-X", "-q"])
        .args(["-d", &stg.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(
        stdin,
        "SELECT pg_advisory_lock({});",
        anonymize::sink::postgres::LOCK_KEY
    )
    .unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") != "1"
    {
        assert!(Instant::now() < deadline, "lock holder did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    let o = refresh("tests/fixtures/pagila.toml", &url(&src), &url(&stg));
    assert_eq!(o.status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(
        stderr(&o),
        format!(
            "anonymize: error: another refresh of this staging database is running (advisory lock {} is held); try again when it has finished\n",
            anonymize::sink::postgres::LOCK_KEY
        )
    );
    drop(stdin);
    let _ = holder.wait();
    assert_eq!(stg.query("SELECT count(*) FROM customer"), "0");

    let o = refresh(
        "tests/fixtures/pagila.toml",
        &url(&src),
        &format!(
            "postgresql://postgres@localhost:{}/{}",
            server().port,
            src.name
        ),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("anonymize: error: source and target are the same database"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn database_to_file_writes_a_loadable_fk_ordered_dump() {
    let src = pagila_source();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("staging.sql");
    let o = refresh(
        "tests/fixtures/pagila.toml",
        &url(&src),
        out.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("SELECT pg_catalog.setval('public.actor_actor_id_seq', 200, true);"));
    // Loads with every foreign key of the schema already in force.
    let stg = pagila_staging();
    stg.load(&out);
    assert_eq!(stg.query("SELECT count(*) FROM rental"), "16044");
    assert_eq!(
        stg.query("SELECT count(*) FROM customer WHERE email LIKE '%@example.%'"),
        "599"
    );
}

#[test]
fn rules_are_checked_against_the_real_schema_before_anything_moves() {
    let src = TestDb::new("schsrc");
    src.query(
        "CREATE TABLE users (id int PRIMARY KEY, email varchar(40) UNIQUE NOT NULL, code char(8), born date, score int, doc jsonb, nick text NOT NULL)",
    );
    let stg = TestDb::new("schstg");
    stg.query("CREATE TABLE users (id int PRIMARY KEY, email varchar(40) UNIQUE NOT NULL, code char(8), born date, score int, doc jsonb)");
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[tables.users.columns]
id = \"keep\"
email = { fake = \"email\" }
code = { hash = { length = 12 } }
born = { noise = { percent = 5 } }
score = { shift = { days = 3 } }
doc = \"keep\"
nick = \"null\"
",
    );
    let o = refresh(rules.to_str().unwrap(), &url(&src), &url(&stg));
    assert_eq!(o.status.code(), Some(2));
    let r = rules.display();
    assert_eq!(
        stderr(&o),
        format!(
            "anonymize: error: {r}:3:9: column public.users.email has a UNIQUE constraint or primary key; its rule must promise distinct values (\"keep\", hash = {{ format = \"preserve\" }}, a hash or fake with unique = true)
{r}:4:8: column public.users.code is character(8) (at most 8 characters), and this rule writes up to 12 characters: use hash = {{ length = 8 }}
{r}:5:8: column public.users.born is of type date, which this rule cannot read
{r}:6:9: column public.users.score is of type integer, which this rule cannot read
{r}:8:8: column public.users.nick is NOT NULL, so \"null\" would fail the load; use a rule that writes a value
"
        )
    );
    // Fixed rules, but staging lacks a column: refused before anything is written.
    std::fs::write(
        &rules,
        "[tables.users.columns]\nid = \"keep\"\nemail = { fake = \"email\", unique = true }\ncode = { hash = { length = 8 } }\nborn = { shift = { days = 3 } }\nscore = { noise = { percent = 5 } }\ndoc = \"keep\"\nnick = { fake = \"username\" }\n",
    )
    .unwrap();
    let o = refresh(rules.to_str().unwrap(), &url(&src), &url(&stg));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "anonymize: error: staging table public.users lacks column(s) nick\n"
    );
    // `check --target` finds the same in CI, without the key and without writing.
    let check = |target: &str| {
        run(anonymize()
            .args(["check", "--rules"])
            .arg(&rules)
            .args(["--source", &url(&src), "--target", target])
            .env_remove("ANONYMIZE_KEY"))
    };
    let o = check(&url(&stg));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "anonymize: error: staging table public.users lacks column(s) nick\n"
    );
    stg.query("ALTER TABLE users ADD COLUMN nick text");
    let o = check(&url(&stg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("; staging postgres://")
            && stderr(&o).contains("has every table and column"),
        "{}",
        stderr(&o)
    );
    stg.query("DROP TABLE users");
    assert_eq!(
        stderr(&check(&url(&stg))),
        "anonymize: error: staging has no table public.users (run its migrations first)\n"
    );
    let o = check("staging.sql");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("check --target takes a staging database"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn passwords_never_reach_any_output() {
    let secret = "Sup3rS3cretPw";
    let o = refresh(
        "tests/fixtures/pagila.toml",
        &server().url_as("postgres", Some(secret), "anon_no_such_db"),
        "-",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&server().redacted_url("postgres", "anon_no_such_db")),
        "{err}"
    );
    assert!(!err.contains(secret) && o.stdout.is_empty());
    let stg = TestDb::new("pwstg");
    let src = pagila_source();
    let o = refresh(
        "tests/fixtures/pagila.toml",
        &url(&src),
        &server().url_as("postgres", Some(secret), &stg.name),
    );
    // Staging has no schema: refused with exit 2, and the summary-free error has no password.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains(secret));

    // A whole successful run with both URLs holding it, logging every step, with a report.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let with_pw = |db: &TestDb| server().url_as("postgres", Some(secret), &db.name);
    let o = run(anonymize()
        .args([
            "--rules",
            "tests/fixtures/pagila.toml",
            "--create-schema",
            "-vv",
        ])
        .args([
            "--progress",
            "always",
            "--source",
            &with_pw(&src),
            "--target",
        ])
        .arg(with_pw(&stg))
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(&report).unwrap();
    for out in [
        stderr(&o),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        report,
    ] {
        assert!(!out.contains(secret), "{out}");
        assert!(out.contains(&server().redacted_url("postgres", &stg.name)) || out.is_empty());
    }
    assert!(stderr(&o).contains("anonymize: debug: connected to postgres://postgres:***@"));
}

#[test]
fn create_schema_builds_an_empty_staging_and_names_a_missing_pg_dump() {
    let src = pagila_source();
    let create = |target: &TestDb, path: Option<&str>| {
        let mut cmd = anonymize();
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        run(cmd.args([
            "--rules",
            "tests/fixtures/pagila.toml",
            "-q",
            "--create-schema",
            "--source",
            &url(&src),
            "--target",
            &url(target),
        ]))
    };
    let stg = TestDb::new("newstg");
    let o = create(&stg, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stg.query("SELECT count(*) FROM payment"), "16049");
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        "36"
    );
    // A second --create-schema finds the schema there: refused, rolled back, data kept.
    let o = create(&stg, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--create-schema needs an empty target"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stg.query("SELECT count(*) FROM payment"), "16049");

    let o = create(&TestDb::new("nopgdump"), Some("/nonexistent"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("pg_dump is not installed or not on PATH"),
        "{}",
        stderr(&o)
    );
    // A dump source has its schema already.
    let o = run(anonymize().args(["--rules", "rules/customers.toml", "--create-schema"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn parallel_readers_share_one_snapshot() {
    let src = TestDb::new("snapsrc");
    let stg = TestDb::new("snapstg");
    for db in [&src, &stg] {
        db.query("CREATE TABLE a0 (id int); CREATE TABLE a1 (id int PRIMARY KEY, v text); CREATE TABLE a2 (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY)");
    }
    src.query("INSERT INTO a1 SELECT g, md5(g::text) FROM generate_series(1, 600000) g");
    src.query("INSERT INTO a2 SELECT g, md5(g::text) FROM generate_series(1, 600000) g");
    src.query("INSERT INTO b VALUES (1)");
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), "[tables.a0.columns]\nid = \"keep\"\n[tables.a1.columns]\nid = \"keep\"\nv = { hash = {} }\n[tables.a2.columns]\nid = \"keep\"\nv = { hash = {} }\n[tables.b.columns]\nid = \"keep\"\n");
    let child = anonymize()
        .args([
            "--rules",
            rules.to_str().unwrap(),
            "-q",
            "--jobs",
            "2",
            "--source",
        ])
        .arg(format!("{}?application_name=anon_snap", url(&src)))
        .arg("--target")
        .arg(url(&stg))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_copying(&src, "anon_snap");
    // Committed after the snapshot was taken: no reader session may see it (b goes to the session
    // that joined the snapshot, after a1).
    src.query("INSERT INTO b VALUES (2)");
    // Two sessions stream tables at the same moment: the readers really are parallel.
    let mut most = 0;
    let copying = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'anon_snap' \
                   AND query LIKE 'COPY (SELECT%' AND state = 'active'";
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        most = most.max(src.query(copying).parse::<u32>().unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(most, 2, "two reader sessions copied at once");
    assert_eq!(stg.query("SELECT string_agg(id::text, ',') FROM b"), "1");
    assert_eq!(stg.query("SELECT count(*) FROM a1"), "600000");
    assert_eq!(stg.query("SELECT count(*) FROM a2"), "600000");
}

#[test]
fn a_joined_reader_sees_the_exported_snapshot_and_cannot_write() {
    use anonymize::db::connect;
    use anonymize::source::postgres::{begin_snapshot, join_snapshot};
    async fn count(c: &tokio_postgres::Client) -> i64 {
        c.query_one("SELECT count(*) FROM public.t", &[])
            .await
            .unwrap()
            .get(0)
    }
    let db = TestDb::new("join");
    db.query("CREATE TABLE t (id int)");
    let u = match anonymize::endpoint::Endpoint::parse(&url(&db)).unwrap() {
        anonymize::endpoint::Endpoint::Database(c) => c,
        other => panic!("{other}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let main = connect(&u).await.unwrap();
        let snapshot = begin_snapshot(&main).await.unwrap();
        db.query("INSERT INTO t VALUES (1)");
        let joined = join_snapshot(&u, &snapshot).await.unwrap();
        let fresh = connect(&u).await.unwrap();
        assert_eq!(count(&main).await, 0);
        assert_eq!(
            count(&joined).await,
            0,
            "the joined session sees the exported snapshot"
        );
        assert_eq!(count(&fresh).await, 1);
        let write = joined
            .batch_execute("INSERT INTO public.t VALUES (2)")
            .await
            .unwrap_err();
        assert_eq!(
            write.code(),
            Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
        );
    });
}

#[test]
fn generated_columns_are_regenerated_from_anonymized_values() {
    let src = TestDb::demo("gensrc");
    let stg = TestDb::new("genstg");
    let o = run(anonymize().args([
        "--rules",
        "rules/customers.toml",
        "-q",
        "--create-schema",
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stg.query("SELECT count(*) FROM customers"), "1000");
    assert_eq!(
        stg.query("SELECT count(*) FROM customers WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name"),
        "0"
    );
    // Not a single source name survives in the generated column.
    assert_eq!(
        stg.query(&format!(
            "SELECT count(*) FROM customers WHERE full_name IN (VALUES {})",
            src.query(
                "SELECT string_agg('(' || quote_literal(full_name) || ')', ',') FROM customers"
            )
        )),
        "0"
    );
}

#[test]
fn row_filters_apply_to_database_sources_and_their_partitions() {
    let src = TestDb::new("wheresrc");
    let stg = TestDb::new("wherestg");
    for db in [&src, &stg] {
        db.query(
            "CREATE TABLE ev (id int, kind text) PARTITION BY RANGE (id); \
             CREATE TABLE ev_low PARTITION OF ev FOR VALUES FROM (0) TO (100); \
             CREATE TABLE ev_high PARTITION OF ev FOR VALUES FROM (100) TO (200)",
        );
    }
    src.query("INSERT INTO ev SELECT g, CASE WHEN g % 2 = 0 THEN 'keep' ELSE 'drop' END FROM generate_series(0, 199) g");
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), "[tables.ev]\nwhere = \"kind = 'keep'\"\n[tables.ev.columns]\nid = \"keep\"\nkind = \"keep\"\n");
    let o = refresh(rules.to_str().unwrap(), &url(&src), &url(&stg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stg.query("SELECT count(*) || ' ' || count(*) FILTER (WHERE kind = 'keep') FROM ev"),
        "100 100"
    );
    assert_eq!(stg.query("SELECT count(*) FROM ONLY ev_high"), "50");
}

#[test]
fn check_catches_a_new_production_column_from_the_catalog() {
    let src = pagila_source();
    let check = || {
        run(anonymize().env_remove("ANONYMIZE_KEY").args([
            "check",
            "--rules",
            "tests/fixtures/pagila.toml",
            "--source",
            &format!("{}?application_name=anon_check", url(&src)),
        ]))
    };
    let before = src.rows_read("anon_check");
    let o = check();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("anonymize: check passed: 21 tables (0 skipped)"),
        "{}",
        stderr(&o)
    );
    // No data was read: not one row of any table, by the server's own statistics (with a
    // control read after it, so the check's counts are in).
    let after = src.rows_read("anon_check");
    control_read(&src, "actor");
    let read: Vec<(String, i64)> = reads_between(&before, &after)
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .collect();
    assert!(read.is_empty(), "check read rows: {read:?}");
    src.query(
        "ALTER TABLE customer ADD COLUMN phone_backup text, \
         ADD COLUMN loyalty_points int NOT NULL DEFAULT 0, ADD COLUMN badge varchar(12) NOT NULL DEFAULT 'x'",
    );
    let o = check();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("  column public.customer.phone_backup\n"),
        "{err}"
    );
    // The lines say where they go, and suit each column: no "null" on NOT NULL.
    let marker = "# under [tables.customer.columns], the rules of public.customer at tests/fixtures/pagila.toml:";
    let block: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with(marker))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        block,
        [
            "phone_backup   = \"null\"  # text",
            "loyalty_points = { noise = { percent = 10 } }  # integer, NOT NULL",
            "badge          = { hash = { format = \"preserve\" } }  # character varying(12), NOT NULL",
        ],
        "{err}"
    );
    // Pasted where they say, check passes.
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string("tests/fixtures/pagila.toml")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let at = lines
        .iter()
        .position(|l| l == "[tables.customer.columns]")
        .unwrap();
    for (k, l) in block.iter().enumerate() {
        lines.insert(at + 1 + k, l.to_string());
    }
    let pasted = write_rules(dir.path(), &lines.join("\n"));
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["check", "--rules"])
        .arg(&pasted)
        .args(["--source", &url(&src)]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn dry_run_on_a_database_samples_cheaply_and_touches_no_target() {
    let src = pagila_source();
    let stg = pagila_staging();
    let before = src.rows_read("anon_dry");
    let o = run(anonymize().args([
        "--rules",
        "tests/fixtures/pagila.toml",
        "--dry-run",
        "--format",
        "json",
        "--sample",
        "5",
        "--source",
        &format!("{}?application_name=anon_dry", url(&src)),
        "--target",
        &url(&stg),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    // Cheap: at most the sample of 5 rows read from any table (the server's statistics), and
    // every table with rows gave its sample.
    let after = src.rows_read("anon_dry");
    control_read(&src, "actor");
    let reads = reads_between(&before, &after);
    let too_many: Vec<_> = reads.iter().filter(|(_, n)| **n > 5).collect();
    assert!(
        too_many.is_empty(),
        "more than the sample was read: {too_many:?}"
    );
    assert_eq!(reads["customer"], 5, "{reads:?}");
    assert_eq!(reads["payment_p2022_01"], 5, "{reads:?}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tables = doc["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 21);
    let customer = tables
        .iter()
        .find(|t| t["name"] == "public.customer")
        .unwrap();
    let email = customer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "email")
        .unwrap();
    assert_eq!(email["samples"].as_array().unwrap().len(), 5);
    assert!(email["samples"][0]["anonymized"]
        .as_str()
        .unwrap()
        .contains("@example."));
    assert_eq!(doc["warnings"], 0);
    assert_eq!(
        stg.query("SELECT count(*) FROM customer"),
        "0",
        "staging untouched"
    );
    // It never connects to the target: one that does not exist is no obstacle.
    let o = run(anonymize().args([
        "--rules",
        "tests/fixtures/pagila.toml",
        "--dry-run",
        "--tables",
        "actor",
        "--sample",
        "2",
        "--source",
        &url(&src),
        "--target",
        &server().url("anon_no_such_staging"),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    // The row count of a database is the catalog's estimate (no count(*)), so only the shape is fixed.
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("public.actor  ("), "{text}");
    // (pagila was just loaded: the catalog may have no estimate yet, which the dry run says.)
    assert!(
        text.contains(" rows)\n  first_name  fake = \"first_name\"\n")
            || text.contains(" never analyzed)\n  first_name  fake = \"first_name\"\n"),
        "{text}"
    );
}

#[test]
fn scan_finds_pagila_people_and_its_draft_passes_check() {
    let src = pagila_source();
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["scan", "--source", &url(&src)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = String::from_utf8(o.stdout).unwrap();
    let section = |table: &str| -> String {
        let start = draft
            .find(&format!("[tables.{table}.columns]"))
            .unwrap_or_else(|| panic!("no {table} in\n{draft}"));
        let rest = &draft[start..];
        rest[..rest[1..].find("\n[").map_or(rest.len(), |e| e + 1)].to_string()
    };
    for (table, line) in [
        (
            "customer",
            "email       = { fake = \"email\", unique = true }",
        ),
        ("customer", "first_name  = { fake = \"first_name\" }"),
        ("customer", "last_name   = { fake = \"last_name\" }"),
        ("address", "address     = { fake = \"street_address\" }"),
        (
            "address",
            "phone       = { hash = { format = \"preserve\" } }  # phone numbers",
        ),
        ("staff", "email       = { fake = \"email\", unique = true }"),
        ("actor", "first_name  = { fake = \"first_name\" }"),
    ] {
        let s = section(table);
        assert!(s.contains(line), "{table}: {line:?} missing in\n{s}");
    }
    // Partitions get one section, under their partitioned table.
    assert!(
        draft.contains("[tables.payment.columns]") && !draft.contains("payment_p2022"),
        "{draft}"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path(), &draft);
    let o = run(anonymize().env_remove("ANONYMIZE_KEY").args([
        "check",
        "--rules",
        rules.to_str().unwrap(),
        "--source",
        &url(&src),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}\n{draft}", stderr(&o));
    // A closing summary, and the derived search vector is not kept.
    assert!(draft.contains("\n# Summary: 15 tables, "), "{draft}");
    assert!(
        section("film").contains("fulltext             = { set = \"\" }  # a search vector"),
        "{}",
        section("film")
    );
    // And the draft runs as written: a real refresh, every key and foreign key restored.
    let stg = pagila_staging();
    let o = run(anonymize()
        .args([
            "--rules",
            rules.to_str().unwrap(),
            "-q",
            "--source",
            &url(&src),
            "--target",
            &url(&stg),
        ])
        .env("STAGING_DATABASE_URL", url(&stg)));
    assert!(o.status.success(), "{}\n{draft}", stderr(&o));
    assert_eq!(stg.query("SELECT count(*) FROM rental"), "16044");
    assert_eq!(
        stg.query("SELECT count(*) FROM customer c JOIN address a USING (address_id)"),
        "599"
    );
}

#[test]
fn sigint_and_sigterm_during_a_refresh_roll_back_with_130_and_143() {
    let big = BigRefresh::new("sig");
    for (signal, code, app) in [("-INT", 130, "anon_sigint"), ("-TERM", 143, "anon_sigterm")] {
        let child = big.spawn(app);
        big.wait_until_loading(app);
        assert!(Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        big.assert_staging_unchanged();
    }
}

#[test]
fn the_report_of_a_failed_connection_names_it_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let secret = "Rep0rtS3cret";
    let o = run(anonymize()
        .args([
            "--rules",
            "tests/fixtures/pagila.toml",
            "-q",
            "--target",
            "-",
            "--source",
        ])
        .arg(server().url_as("postgres", Some(secret), "anon_no_such_db"))
        .arg("--report")
        .arg(&report));
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(!text.contains(secret), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["status"], "failed");
    assert_eq!(
        doc["source"],
        server().redacted_url("postgres", "anon_no_such_db")
    );
    assert!(doc["error"].as_str().unwrap().contains("anon_no_such_db"));
}

#[test]
fn a_target_lost_mid_load_fails_with_a_report_and_plain_progress_lines() {
    let big = BigRefresh::new("tgtkill");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let app = "anon_tgt_kill";
    let mut child = big.spawn_with(
        app,
        &[
            "--progress-interval",
            "1",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    // Once a periodic progress line is out, the staging session goes away.
    let lines = stderr_lines(&mut child);
    let mut err = String::new();
    for line in lines.iter() {
        err.push_str(&line);
        err.push('\n');
        if line.starts_with("anonymize: progress: ") && line.contains("copying public.big") {
            break;
        }
    }
    big.stg.query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}_stg'"
    ));
    for line in lines.iter() {
        err.push_str(&line);
        err.push('\n');
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    // The catalog's estimate, exact after VACUUM.
    assert!(
        err.contains("anonymize: copying 1 tables (1500000 rows expected)\n"),
        "{err}"
    );
    assert!(
        err.contains("anonymize: public.big: started (1500000 rows expected)\n"),
        "{err}"
    );
    let progress = err
        .lines()
        .find(|l| l.starts_with("anonymize: progress: "))
        .unwrap_or_else(|| panic!("no periodic line in {err}"));
    assert!(
        progress.contains(" rows/s), 0/1 tables done; copying public.big (")
            && progress.ends_with("/1500000 rows)"),
        "{progress}"
    );
    assert!(err.contains("loading public.big into staging"), "{err}");
    assert!(
        !err.contains("@corp.test"),
        "a cell value in the output: {err}"
    );

    let doc = failed_report(&report, "loading public.big into staging");
    assert_eq!(doc["rows_written"], 0, "no table finished: {doc}");
    big.assert_staging_unchanged();
}

/// A staging server that gives up on the load mid-COPY (here the statement is cancelled on the
/// server once staging has taken rows, standing in for a full disk or any server-side failure):
/// rolled back, exit 1, the report says what failed.
#[test]
fn a_staging_server_failing_mid_load_rolls_back_with_a_report() {
    let big = BigRefresh::new("stmtcancel");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let app = "anon_stmt_cancel";
    let child = big.spawn_with(app, &["-q", "--report", report.to_str().unwrap()]);
    big.wait_until_loading(app);
    big.stg.query(&format!(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}_stg'"
    ));
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("anonymize: error: loading public.big into staging: canceling statement due to user request (SQLSTATE 57014)"),
        "{err}"
    );
    failed_report(&report, "canceling statement due to user request");
    big.assert_staging_unchanged();
}

/// Roles are global to the server: dropped after the databases that hold their grants.
struct Roles(Vec<String>);

impl Drop for Roles {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = client("psql")
                .args([
                    "-X",
                    "-q",
                    "-d",
                    "postgres",
                    "-c",
                    &format!("DROP ROLE IF EXISTS {r}"),
                ])
                .output();
        }
    }
}

/// The grants the README documents are enough: a source role with SELECT only (and no way to
/// write), a target role that owns the staging tables.
#[test]
fn a_select_only_source_role_and_an_owning_target_role_are_enough() {
    let pid = std::process::id();
    let (reader, loader) = (format!("anon_reader_{pid}"), format!("anon_loader_{pid}"));
    let _roles = Roles(vec![reader.clone(), loader.clone()]);
    let src = TestDb::demo("rosrc");
    let stg = TestDb::demo("rostg");
    src.query(&format!(
        "CREATE ROLE {reader} LOGIN; \
         GRANT USAGE ON SCHEMA public TO {reader}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}; \
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {reader}"
    ));
    stg.query(&format!("CREATE ROLE {loader} LOGIN"));
    stg.query(&format!(
        "DO $$ DECLARE t text; BEGIN \
           FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP \
             EXECUTE format('ALTER TABLE public.%I OWNER TO {loader}', t); \
           END LOOP; END $$"
    ));
    let source = server().url_as(&reader, None, &src.name);
    let target = server().url_as(&loader, None, &stg.name);
    let o = refresh("rules/customers.toml", &source, &target);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stg.query("SELECT count(*) FROM customers"), "1000");
    let seq = "SELECT last_value FROM customers_id_seq";
    assert_eq!(stg.query(seq), src.query(seq));

    // Without SELECT on a sequence the run still succeeds, says so, and leaves staging's value.
    src.query(&format!(
        "REVOKE SELECT ON SEQUENCE customers_id_seq FROM {reader}"
    ));
    stg.query("SELECT setval('customers_id_seq', 5)");
    let o = run(anonymize().args([
        "--rules",
        "rules/customers.toml",
        "--source",
        &source,
        "--target",
        &target,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("anonymize: warning: the source role may not read 1 sequence(s) (public.customers_id_seq): the target keeps their positions"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stg.query(seq), "5");
    // Long steps that copy no rows are announced, so they do not look like a hang.
    for step in [
        "anonymize: dropping foreign keys and indexes of the tables to load\n",
        "anonymize: rebuilding 0 indexes\n",
        "anonymize: restoring 3 foreign keys (checks every row)\n",
        "anonymize: setting sequences\n",
        "anonymize: committing\n",
    ] {
        assert!(stderr(&o).contains(step), "{step:?} in {}", stderr(&o));
    }
}

/// Production sequences set back (`setval(…, false)`, `ALTER SEQUENCE … RESTART WITH n`) restart in
/// staging where production's do, in place, in a swap and in a dump written from the database:
/// `pg_sequences` shows no value for them, and reading it restarted them at their start value.
#[test]
fn sequences_set_back_in_production_restart_where_production_does() {
    let src = TestDb::demo("seqbacksrc");
    src.query(
        "SELECT setval('public.orders_id_seq', 4242, false);\
         ALTER SEQUENCE public.customers_id_seq RESTART WITH 5000;\
         SELECT setval('public.payments_id_seq', 7777, true);",
    );
    let next = |db: &TestDb| {
        db.query(
            "SELECT nextval('public.orders_id_seq') || '/' || nextval('public.customers_id_seq') \
             || '/' || nextval('public.payments_id_seq')",
        )
    };
    let expected = "4242/5000/7778";
    for strategy in ["in-place", "swap"] {
        let stg = TestDb::demo(&format!("seqback{}", &strategy[..2]));
        // Staging's own positions are elsewhere before the refresh.
        stg.query("SELECT setval('public.orders_id_seq', 9, true)");
        let o = run(demo_refresh(&src, &stg).args(["--refresh", strategy]));
        assert!(o.status.success(), "{strategy}: {}", stderr(&o));
        assert_eq!(next(&stg), expected, "{strategy}");
    }
    // To a file: pg_dump's own setval form, which loads to the same positions.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("staging.sql");
    let o = refresh("rules/customers.toml", &url(&src), out.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    for line in [
        "SELECT pg_catalog.setval('public.orders_id_seq', 4242, false);",
        "SELECT pg_catalog.setval('public.customers_id_seq', 5000, false);",
        "SELECT pg_catalog.setval('public.payments_id_seq', 7777, true);",
    ] {
        assert!(text.contains(line), "{line}");
    }
    let loaded = TestDb::demo("seqbackfile");
    loaded.query(
        "TRUNCATE public.customers, public.addresses, public.orders, public.payments, \
         public.audit_log",
    );
    loaded.load(&out);
    assert_eq!(next(&loaded), expected);
}
