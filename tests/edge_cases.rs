//! End-to-end: data and schema edge cases (tests/fixtures/edge.sql) through a database refresh and
//! through dump mode, which must agree byte for byte; plus the catalog of a 600-table schema.

mod common;

use std::time::Instant;

use common::*;

/// count and md5 of every row of a table, in a stable order.
fn fingerprint(db: &TestDb, table: &str) -> String {
    db.query(&format!(
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM {table} x"
    ))
}

/// md5 of one column over the rows ordered by `order`.
fn column_md5(db: &TestDb, table: &str, col: &str, order: &str) -> String {
    db.query(&format!(
        "SELECT md5(string_agg(coalesce({col}::text, '<null>'), ',' ORDER BY {order})) FROM {table}"
    ))
}

const TABLES: [&str; 9] = [
    "people",
    "\"Ünïcode Tàble\"",
    "\"Odd Schema\".\"Order Lines\"",
    "event_log",
    "empty_table",
    "employees",
    "teams",
    "members",
    "visits",
];

#[test]
fn edge_cases_survive_a_refresh_and_dump_mode_alike() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::new("edgesrc");
    src.load(&root().join("tests/fixtures/edge.sql"));

    // Database → database, schema created from the source's.
    let stg = TestDb::new("edgestg");
    let o = run(anonymize()
        .args([
            "--rules",
            "tests/fixtures/edge.toml",
            "-q",
            "--create-schema",
        ])
        .args(["--source", &url(&src), "--target", &url(&stg)]));
    assert!(o.status.success(), "{}", stderr(&o));

    // pg_dump → anonymize → psql gives exactly the same staging.
    let dump = dir.path().join("edge.sql");
    std::fs::write(&dump, pg_dump(&src, &[])).unwrap();
    anonymize_file("tests/fixtures/edge.toml", &dump, dir.path());
    let dmp = TestDb::new("edgedmp");
    dmp.load(&dir.path().join("out.sql"));
    for t in TABLES {
        assert_eq!(fingerprint(&stg, t), fingerprint(&dmp, t), "{t}");
        let count = |db: &TestDb| db.query(&format!("SELECT count(*) FROM {t}"));
        assert_eq!(count(&stg), count(&src), "{t}");
    }

    // Kept columns are byte-identical: arrays with NULLs and quotes, enums, domains, numeric(60,30),
    // cidr, quoted and reserved column names, a table without a key (with duplicate rows).
    for (table, cols, order) in [
        (
            "people",
            &["id", "blob", "tags", "scores", "feeling", "precise", "net"][..],
            "id",
        ),
        (
            "\"Odd Schema\".\"Order Lines\"",
            &["\"ID\"", "\"select\""][..],
            "\"ID\"",
        ),
        ("event_log", &["at", "payload"][..], "at, payload"),
        ("teams", &["id", "lead_id", "name"][..], "id"),
        ("employees", &["manager_id"][..], "id"),
    ] {
        for col in cols {
            assert_eq!(
                column_md5(&stg, table, col, order),
                column_md5(&src, table, col, order),
                "{table}.{col} was kept"
            );
        }
    }
    // Transformed columns differ on every non-NULL value.
    for (table, col) in [
        ("people", "email"),
        ("people", "name"),
        ("people", "token"),
        ("people", "ip"),
        ("people", "nick"),
        ("people", "login"),
        ("\"Ünïcode Tàble\"", "\"Имя\""),
        ("\"Odd Schema\".\"Order Lines\"", "\"e-mail\""),
        ("\"Odd Schema\".\"Order Lines\"", "\"Straße\""),
        ("members", "email"),
        ("visits", "visitor_email"),
    ] {
        let originals = src.query(&format!("SELECT string_agg({col}::text, E'\\n') FROM {table} WHERE {col} IS NOT NULL AND {col}::text <> ''"));
        let staged = stg.query(&format!(
            "SELECT string_agg({col}::text, E'\\n') FROM {table}"
        ));
        let originals: Vec<String> = originals.lines().map(String::from).collect();
        assert!(!originals.is_empty());
        assert_eq!(
            occurring(&staged, &originals),
            Vec::<&str>::new(),
            "{table}.{col}"
        );
    }

    // NULL stays NULL under every rule; empty strings and 4-byte UTF-8 come through.
    let nulls = "email IS NULL AND name IS NULL AND note IS NULL AND profile IS NULL AND raw_json IS NULL \
                 AND born IS NULL AND seen_at IS NULL AND token IS NULL AND ip IS NULL AND nick IS NULL \
                 AND balance IS NULL";
    assert_eq!(
        stg.query(&format!("SELECT count(*) FROM people WHERE {nulls}")),
        "1"
    );
    assert_eq!(
        stg.query("SELECT note || '|' || big_note || '|' || tags::text FROM people WHERE id = 202"),
        "||{}"
    );
    let crab = stg.query(
        "SELECT length(big_note) > 1000000, big_note NOT LIKE '%person@example.org%', \
                profile->'k'->>'emoji', tags[1] FROM people WHERE id = 203",
    );
    assert_eq!(crab, "t|t|𝔘|🦀");
    let note = "SELECT note FROM people WHERE id = 203";
    assert_eq!(
        stg.query(note),
        src.query(note),
        "no PII in it: scrub keeps it"
    );
    // Text escapes: tab, newline, carriage return and backslash survive scrub untouched.
    assert_eq!(
        stg.query("SELECT count(*) FROM people WHERE strpos(note, chr(9)) > 0 AND strpos(note, chr(10)) > 0 AND strpos(note, chr(13)) > 0 AND strpos(note, chr(92)) > 0"),
        "200"
    );
    assert_eq!(
        column_md5(&stg, "people", "note", "id"),
        column_md5(&src, "people", "note", "id")
    );
    // Dates: infinity passes, BC dates move but stay BC, timestamps keep their time of day.
    assert_eq!(
        stg.query("SELECT born || ' ' || seen_at || ' ' || local_at FROM people WHERE id = 202"),
        "infinity infinity -infinity"
    );
    assert_eq!(
        stg.query("SELECT born < '0001-01-01' AND born <> '0044-03-15 BC' AND seen_at < '0001-01-01' FROM people WHERE id = 203"),
        "t"
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM people WHERE seen_at::time <> ((timestamptz '2024-03-10 12:00:00+00' + id * interval '1 hour') AT TIME ZONE current_setting('TimeZone'))::time AND id <= 200"),
        "0"
    );
    // JSON: only the paths change; numbers, nesting and other keys stay.
    assert_eq!(
        stg.query("SELECT count(*) FROM people WHERE id <= 200 AND profile->'nested' = '{\"deep\": [1, 2.5, true, null]}' AND profile->>'email' NOT LIKE 'person%' AND (raw_json->>'n')::int = id"),
        "200"
    );
    // Domains and enums still check; the generated column is regenerated from the new name.
    assert_eq!(
        stg.query("SELECT count(*) FROM people WHERE balance <= 0"),
        "0"
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM people WHERE name_upper IS DISTINCT FROM upper(name)"),
        "0"
    );
    // Identity: staging's sequence continues after the source's last value.
    assert_eq!(
        stg.query("SELECT nextval(pg_get_serial_sequence('people', 'id'))"),
        "204"
    );
    // Self-referencing and cyclic foreign keys hold (they were checked when restored).
    assert_eq!(
        stg.query("SELECT count(*) FROM employees e JOIN employees m ON m.id = e.manager_id"),
        "39"
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        "3"
    );
    // Partitions: every leaf loaded through its own COPY, rows in the right partition.
    assert_eq!(
        stg.query("SELECT string_agg(t || ':' || n, ' ' ORDER BY t) FROM (SELECT tableoid::regclass::text t, count(*) n FROM visits GROUP BY 1) x"),
        src.query("SELECT string_agg(t || ':' || n, ' ' ORDER BY t) FROM (SELECT tableoid::regclass::text t, count(*) n FROM visits GROUP BY 1) x"),
    );
}

#[test]
fn invalid_json_under_a_json_rule_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[tables.docs.columns]\nid = \"keep\"\nbody = { json = { \"$.email\" = { fake = \"email\" } } }\n",
    );
    // A dump knows no types: the bad document is found in the data, by table, column and row.
    let dump = dir.path().join("in.sql");
    std::fs::write(
        &dump,
        "CREATE TABLE public.docs (id int, body text);\nCOPY public.docs (id, body) FROM stdin;\n1\t{\"email\": \"a@example.org\"}\n2\t{\"email\": \"b@example.org\",}\n\\.\n",
    )
    .unwrap();
    let out = dir.path().join("out.sql");
    let o = run(anonymize()
        .args(["--rules", rules.to_str().unwrap(), "--source"])
        .arg(&dump)
        .arg("--target")
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("public.docs row 2"), "{err}");
    assert!(err.contains("column body"), "{err}");
    assert!(!err.contains("b@example.org"), "{err}");
    assert!(!out.exists());

    // From a database: a json rule may sit on a text column (JSON kept as text), so the bad
    // document is found in the data too, and the refresh rolls back.
    let src = TestDb::new("jsonsrc");
    src.query("CREATE TABLE docs (id int, body text); INSERT INTO docs VALUES (1, '{}'), (2, '{\"email\": \"b@example.org\",}')");
    let stg = TestDb::new("jsonstg");
    stg.query("CREATE TABLE docs (id int, body text); INSERT INTO docs VALUES (7, 'yesterday')");
    let o = run(anonymize()
        .args(["--rules", rules.to_str().unwrap(), "--target", &url(&stg)])
        .args(["--source", &url(&src)]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("public.docs row 2") && err.contains("column body"),
        "{err}"
    );
    assert!(!err.contains("b@example.org"), "{err}");
    assert_eq!(stg.query("SELECT id || body FROM docs"), "7yesterday");
}

/// 600 tables: the catalog is read in a fixed number of queries, so it stays fast, and the whole
/// refresh finishes in seconds.
#[test]
fn a_schema_of_600_tables_is_read_without_a_query_per_table() {
    // A server of its own that logs every statement, to count them.
    let cluster = Cluster::start(
        &ClusterConfig::default()
            .setting("log_statement", "all")
            .setting("log_line_prefix", "%d|%a|"),
    );
    let server = cluster.tcp();
    let src = TestDb::on(&server, "manysrc");
    src.query(
        "DO $$ BEGIN FOR i IN 1..600 LOOP \
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, email text UNIQUE, ref int REFERENCES t%s (id))', i, greatest(i - 1, 1)); \
           EXECUTE format('INSERT INTO t%s SELECT g, ''u'' || g || ''@corp.test'', NULL FROM generate_series(1, 3) g', i); \
         END LOOP; END $$; ANALYZE",
    );
    let stg = TestDb::on(&server, "manystg");
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[defaults]\nuncovered = \"keep\"\n[tables.t1.columns]\nemail = { fake = \"email\", unique = true }\n",
    );
    // The statements a session of `application` sent to `db`, as the server logged them.
    let statements = |db: &TestDb, application: &str| -> Vec<String> {
        let prefix = format!("{}|{application}|LOG:  ", db.name);
        cluster
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter(|l| l.starts_with("statement: ") || l.starts_with("execute "))
            .map(String::from)
            .collect()
    };
    let o = run(anonymize().env_remove("ANONYMIZE_KEY").args([
        "check",
        "--rules",
        rules.to_str().unwrap(),
        "--source",
        &format!("{}?application_name=anon_check600", src.url()),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let check = statements(&src, "anon_check600");
    assert!(
        !check.is_empty() && check.len() <= 11, // (one more since the unique-index groups query)
        "check sent {} statements for 600 tables:\n{}",
        check.len(),
        check.join("\n")
    );

    // Staging's schema by pg_dump here, not --create-schema: pg_dump's own statements are not
    // the tool's.
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, pg_dump(&src, &["--schema-only"])).unwrap();
    stg.load(&schema);
    let t0 = Instant::now();
    let o = run(anonymize()
        .args(["--rules", rules.to_str().unwrap(), "-v"])
        .args([
            "--source",
            &format!("{}?application_name=anon_refresh600", src.url()),
            "--target",
            &stg.url(),
        ]));
    let seconds = t0.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", stderr(&o));
    // One COPY per table is the data; everything else (session set-up, snapshot, catalog,
    // identity) is a handful of statements whatever the number of tables.
    let refresh = statements(&src, "anon_refresh600");
    let (copies, others): (Vec<&String>, Vec<&String>) =
        refresh.iter().partition(|s| s.contains("COPY (SELECT"));
    assert_eq!(copies.len(), 600, "one COPY per table");
    assert!(
        others.len() <= 20,
        "{} other statements:\n{}",
        others.len(),
        others
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        stg.query(
            "SELECT sum(n) FROM (SELECT count(*) n FROM t1 UNION ALL SELECT count(*) FROM t600) x"
        ),
        "6"
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM t1 WHERE email LIKE '%@corp.test'"),
        "0"
    );
    eprintln!(
        "600 tables: check {} statements, refresh {} besides the COPYs, {seconds:.1} s",
        check.len(),
        others.len()
    );
}

#[test]
fn fakes_fit_their_column_and_a_value_too_long_for_staging_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::new("fit_src");
    // (A domain's length and a domain over smallint bound their columns too.)
    let ddl = "CREATE DOMAIN short_town AS varchar(6); CREATE DOMAIN qty AS smallint; \
               CREATE TABLE shop (id int PRIMARY KEY, city varchar(15) NOT NULL, label varchar(40), \
               town short_town, stock qty)";
    src.query(&format!(
        "{ddl}; INSERT INTO shop SELECT g, 'Town ' || g, 'label-secret-' || g, 'T' || (g % 100), 32000 - g % 50 \
         FROM generate_series(1, 3000) g"
    ));
    let stg = TestDb::new("fit_stg");
    stg.query(ddl);
    let rules = write_rules(
        dir.path(),
        "[tables.shop.columns]\nid = \"keep\"\ncity = { fake = \"city\" }\nlabel = \"keep\"\n\
         town = { fake = \"city\" }\nstock = { noise = { percent = 50 } }\n",
    );
    let check = run(anonymize()
        .args(["check", "--rules"])
        .arg(&rules)
        .args(["--source", &src.url()]));
    assert!(check.status.success(), "{}", stderr(&check));
    succeeded(
        anonymize().arg("--rules").arg(&rules).args([
            "-q",
            "--source",
            &src.url(),
            "--target",
            &stg.url(),
        ]),
        "a fake city into varchar(15)",
    );
    assert_eq!(
        stg.query("SELECT count(*), max(length(city)) <= 15, count(DISTINCT city) > 100, max(length(town)) <= 6, count(DISTINCT stock) > 10 FROM shop"),
        "3000|t|t|t|t"
    );
    // Staging narrower than production: the load stops with the limit, table and column named,
    // and no value.
    stg.query("TRUNCATE shop; ALTER TABLE shop ALTER label TYPE varchar(5)");
    let o = run(anonymize().arg("--rules").arg(&rules).args([
        "-q",
        "--source",
        &src.url(),
        "--target",
        &stg.url(),
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("value too long for type character varying(5) (SQLSTATE 22001)")
            && err.contains("public.shop")
            && err.contains("column label"),
        "{err}"
    );
    assert!(!err.contains("label-secret"), "{err}");
    assert_eq!(stg.query("SELECT count(*) FROM shop"), "0");
}

#[test]
fn a_dry_run_says_unknown_for_a_table_never_analyzed() {
    let src = TestDb::new("unanalyzed");
    // Autovacuum waits a minute by default before it looks; the dry run comes first.
    src.query(
        "CREATE TABLE fresh (id int PRIMARY KEY, note text); \
         INSERT INTO fresh SELECT g, 'n' || g FROM generate_series(1, 50) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[tables.fresh.columns]\nid = \"keep\"\nnote = { scrub = [\"email\"] }\n",
    );
    let o = run(anonymize().arg("--rules").arg(&rules).args([
        "--dry-run",
        "--strict",
        "--sample",
        "3",
        "--source",
        &src.url(),
    ]));
    // Notes without personal data come out as they went in: not a weak spot, even with --strict.
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(
            "public.fresh  (rows unknown: no estimate, the table was never analyzed)\n"
        ),
        "{out}"
    );
    assert!(out.contains("0 warnings"), "{out}");
}

#[test]
fn composite_and_partial_unique_indexes_are_checked_from_the_catalog() {
    let src = TestDb::new("uniq_src");
    src.query(
        "CREATE TABLE cu (id int PRIMARY KEY, d date NOT NULL, k int NOT NULL, email text, deleted bool, \
         UNIQUE (d, k)); CREATE UNIQUE INDEX cu_live_email ON cu (email) WHERE NOT deleted; \
         INSERT INTO cu SELECT g, date '2024-01-01' + g, g % 3, 'u' || g || '@corp.example', false \
         FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let check = |rules: &str| {
        let path = write_rules(dir.path(), rules);
        run(anonymize()
            .env_remove("ANONYMIZE_KEY")
            .args(["check", "--rules"])
            .arg(&path)
            .args(["--source", &src.url()]))
    };
    let o = check(
        "[tables.cu.columns]\nid = \"keep\"\nd = { truncate = \"month\" }\nk = \"keep\"\n\
         email = { fake = \"email\" }\ndeleted = \"keep\"\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("column public.cu.d is in the unique index on (d, k)")
            && err.contains("column public.cu.email is in the unique index on (email)"),
        "{err}"
    );
    let o = check(
        "[tables.cu.columns]\nid = \"keep\"\nd = { shift = { days = 30, by = \"k\" } }\nk = \"keep\"\n\
         email = { fake = \"email\", unique = true }\ndeleted = \"keep\"\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
