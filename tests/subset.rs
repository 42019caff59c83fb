//! Subsets end to end: the demo database and pagila with 10 % of their customers, in dump mode
//! (COPY and INSERT dumps) and database mode (in place and swap): every foreign key validated in
//! staging, the same rows chosen by every mode and any --jobs, another key choosing other rows,
//! and the refusals (no key, `always` on a dump, bad options) with their locations.

mod common;

use std::path::Path;

use common::*;

/// The demo rules with a subset on customers.
fn demo_rules(dir: &Path, subset: &str) -> String {
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.customers.columns]",
            &format!("[tables.customers]\nsubset = {subset}\n\n[tables.customers.columns]"),
        );
    write_rules(dir, &text).display().to_string()
}

/// The pagila rules with 10 % of customers and only the addresses kept rows use.
fn pagila_rules(dir: &Path) -> String {
    let text = std::fs::read_to_string(root().join("tests/fixtures/pagila.toml"))
        .unwrap()
        .replace(
            "[tables.customer.columns]",
            "[tables.customer]\nsubset = { percent = 10 }\n\n[tables.customer.columns]",
        )
        .replace(
            "[tables.address.columns]",
            "[tables.address]\nsubset = { only_referenced = true }\n\n[tables.address.columns]",
        );
    write_rules(dir, &text).display().to_string()
}

/// The keys of a table in staging, sorted, as one string.
fn ids(db: &TestDb, table: &str, key: &str) -> String {
    db.query(&format!(
        "SELECT coalesce(string_agg({key}::text, ',' ORDER BY {key}), '') FROM {table}"
    ))
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.query(sql).parse().unwrap()
}

/// Anonymize a dump file into `target` with extra arguments; panics on failure.
fn dump_run(rules: &str, source: &Path, target: &Path, extra: &[&str]) -> String {
    let o = to_file(rules, source.as_os_str(), target, extra);
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

/// Anonymize a source (a dump file or a database URL) into the file `target`.
fn to_file(
    rules: &str,
    source: &std::ffi::OsStr,
    target: &Path,
    extra: &[&str],
) -> std::process::Output {
    run(anonymize()
        .args(["--rules", rules, "--source"])
        .arg(source)
        .arg("--target")
        .arg(target)
        .args(extra))
}

/// Anonymize a database, with the schema, into the file `target`; panics on failure.
fn database_run(rules: &str, src: &TestDb, target: &Path, extra: &[&str]) -> String {
    let o = to_file(
        rules,
        url(src).as_ref(),
        target,
        &[&["--create-schema"], extra].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o)
}

/// A database loaded from a dump file (its constraints, foreign keys included, are checked as
/// they are added).
fn loaded(tag: &str, file: &Path) -> TestDb {
    let db = TestDb::new(tag);
    db.load(file);
    db
}

/// Every foreign key of a database is validated (none left NOT VALID) and holds.
fn foreign_keys_hold(db: &TestDb) {
    assert_eq!(
        db.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated"),
        "0"
    );
    let fks: Vec<String> = db
        .query("SELECT conrelid::regclass::text || '|' || conname FROM pg_constraint WHERE contype = 'f'")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!fks.is_empty());
    for fk in fks {
        let (table, name) = fk.split_once('|').unwrap();
        // Re-validating proves every row's reference holds.
        db.query(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {}",
            db.query(&format!(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = '{name}' AND conrelid = '{table}'::regclass"
            ))
        ));
    }
}

#[test]
fn demo_subset_is_closed_and_the_same_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let rules = demo_rules(dir.path(), "{ percent = 10 }");
    let production = root().join("examples/production.sql");
    let src = TestDb::demo("subsrc");

    // Dump mode, with two --jobs values: identical files.
    let (a, b) = (dir.path().join("a.sql"), dir.path().join("b.sql"));
    let report = dir.path().join("report.json");
    dump_run(
        &rules,
        &production,
        &a,
        &["--jobs", "1", "--report", report.to_str().unwrap()],
    );
    dump_run(&rules, &production, &b, &["--jobs", "2"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let from_dump = loaded("subdump", &a);
    foreign_keys_hold(&from_dump);

    // 10 % ± 2 points of the 1000 customers.
    let kept = count(&from_dump, "SELECT count(*) FROM customers");
    assert!((80..=120).contains(&kept), "{kept} customers kept");
    // The report: rows read and kept per table, and why.
    let report = success_report(&report);
    let entry = |name: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let customers = entry("public.customers");
    assert_eq!(customers["rows_read"], 1000);
    assert_eq!(customers["rows_written"], kept);
    assert_eq!(
        customers["subset"],
        format!("{kept} of 1000 rows: {kept} sample")
    );
    let orders = entry("public.orders");
    assert_eq!(
        orders["rows_written"],
        count(&from_dump, "SELECT count(*) FROM orders")
    );
    let orders_kept = orders["rows_written"].as_i64().unwrap();
    assert_eq!(
        orders["subset"],
        format!("{orders_kept} of 3000 rows: {orders_kept} following kept rows")
    );
    assert!(entry("public.audit_log").get("subset").is_none());
    // Every order, payment and address of a kept customer is there, nothing of a dropped one.
    for (table, of_kept) in [("orders", "customer_id"), ("addresses", "customer_id")] {
        let kept_ids = ids(&from_dump, "customers", "id");
        let expected = count(
            &src,
            &format!(
                "SELECT count(*) FROM {table} WHERE {of_kept} = ANY('{{{kept_ids}}}'::bigint[])"
            ),
        );
        assert_eq!(
            count(&from_dump, &format!("SELECT count(*) FROM {table}")),
            expected,
            "{table}"
        );
    }
    let kept_orders = ids(&from_dump, "orders", "id");
    assert_eq!(
        count(&from_dump, "SELECT count(*) FROM payments"),
        count(
            &src,
            &format!(
                "SELECT count(*) FROM payments WHERE order_id = ANY('{{{kept_orders}}}'::bigint[])"
            )
        )
    );

    // Database mode, in place into a staging with the schema and its foreign keys: same rows.
    let live_report = dir.path().join("live.json");
    let stg = TestDb::new("substg");
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, pg_dump(&src, &["--schema-only"])).unwrap();
    stg.load(&schema);
    let o = run(anonymize().args([
        "--rules",
        &rules,
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
        "--jobs",
        "1",
        "--report",
        live_report.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    foreign_keys_hold(&stg);
    // The server streamed only the kept customers and orders (their keys pushed down), and the
    // report says why as the dump run did.
    let live = success_report(&live_report);
    for (name, doc) in [("public.customers", &customers), ("public.orders", &orders)] {
        let e = live["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap();
        assert_eq!(e["rows_read"], e["rows_written"], "{name}");
        assert_eq!(e["rows_written"], doc["rows_written"], "{name}");
        assert_eq!(e["subset"], doc["subset"], "{name}");
    }
    for (table, key) in [
        ("customers", "id"),
        ("orders", "id"),
        ("payments", "id"),
        ("addresses", "id"),
        ("audit_log", "id"),
    ] {
        assert_eq!(
            ids(&stg, table, key),
            ids(&from_dump, table, key),
            "{table}"
        );
    }

    // Swap with --create-schema into a database that does not exist yet: same rows.
    let swapped = TestDb::new("subswap");
    let o = run(anonymize().args([
        "--rules",
        &rules,
        "--source",
        &url(&src),
        "--target",
        &url(&swapped),
        "--refresh",
        "swap",
        "--create-schema",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    foreign_keys_hold(&swapped);
    assert_eq!(
        ids(&swapped, "customers", "id"),
        ids(&from_dump, "customers", "id")
    );
    assert_eq!(
        ids(&swapped, "payments", "id"),
        ids(&from_dump, "payments", "id")
    );

    // Another key chooses other customers.
    let other = dir.path().join("other.sql");
    let o = run(anonymize()
        .env("ANONYMIZE_KEY", "another-key-not-secret-987654")
        .args(["--rules", &rules, "--source"])
        .arg(&production)
        .arg("--target")
        .arg(&other));
    assert!(o.status.success(), "{}", stderr(&o));
    let other_db = loaded("subother", &other);
    let same = count(
        &other_db,
        &format!(
            "SELECT count(*) FROM customers WHERE id = ANY('{{{}}}'::bigint[])",
            ids(&from_dump, "customers", "id")
        ),
    );
    assert!(
        same < kept / 2,
        "{same} of {kept} customers chosen by both keys"
    );
}

#[test]
fn insert_dumps_choose_the_same_rows_as_copy_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let rules = demo_rules(dir.path(), "{ percent = 10, always_keys = [1, 2] }");
    let src = TestDb::demo("subins");
    let copy = dir.path().join("copy.sql");
    std::fs::write(&copy, pg_dump(&src, &[])).unwrap();
    let copy_out = dir.path().join("copy-out.sql");
    dump_run(&rules, &copy, &copy_out, &[]);
    let reference = loaded("subinsref", &copy_out);
    assert_eq!(
        count(
            &reference,
            "SELECT count(*) FROM customers WHERE id IN (1, 2)"
        ),
        2
    );
    for (i, args) in [
        vec!["--inserts"],
        vec!["--rows-per-insert=7"],
        vec!["--column-inserts"],
    ]
    .iter()
    .enumerate()
    {
        let input = dir.path().join(format!("in{i}.sql"));
        std::fs::write(&input, pg_dump(&src, args)).unwrap();
        let out = dir.path().join(format!("out{i}.sql"));
        dump_run(&rules, &input, &out, &[]);
        let db = loaded("subinsout", &out);
        foreign_keys_hold(&db);
        for table in ["customers", "orders", "payments", "addresses", "audit_log"] {
            assert_eq!(
                ids(&db, table, "id"),
                ids(&reference, table, "id"),
                "{args:?} {table}"
            );
        }
    }
}

#[test]
fn pagila_subset_keeps_partitions_and_referenced_addresses_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rules = pagila_rules(dir.path());
    let src = TestDb::new("subpag");
    src.load(&pagila_dir().join("pagila-schema.sql"));
    src.load(&pagila_dir().join("pagila-data.sql"));
    let dump = dir.path().join("pagila.sql");
    std::fs::write(&dump, pg_dump(&src, &[])).unwrap();
    let out = dir.path().join("out.sql");
    let log = dump_run(&rules, &dump, &out, &["-v"]);
    assert!(log.contains("public.customer: "), "{log}");
    let from_dump = loaded("subpagout", &out);
    foreign_keys_hold(&from_dump);

    let kept = count(&from_dump, "SELECT count(*) FROM customer");
    let total = count(&src, "SELECT count(*) FROM customer");
    let percent = kept as f64 * 100.0 / total as f64;
    assert!((8.0..=12.0).contains(&percent), "{kept} of {total}");
    let customers = ids(&from_dump, "customer", "customer_id");
    // Every rental of a kept customer; nothing of a dropped one.
    let of_kept = format!("customer_id = ANY('{{{customers}}}'::int[])");
    assert_eq!(
        count(&from_dump, "SELECT count(*) FROM rental"),
        count(
            &src,
            &format!("SELECT count(*) FROM rental WHERE {of_kept}")
        )
    );
    // Every payment (all partitions) of a kept customer whose rental is kept too: pagila has
    // payments whose rental is another customer's, and such a payment references two rows that
    // must both be kept (the downward rule).
    assert!(
        count(
            &src,
            "SELECT count(*) FROM payment p JOIN rental r USING (rental_id) WHERE p.customer_id <> r.customer_id"
        ) > 0
    );
    assert_eq!(
        count(&from_dump, "SELECT count(*) FROM payment"),
        count(
            &src,
            &format!(
                "SELECT count(*) FROM payment WHERE {of_kept} AND rental_id IN (SELECT rental_id FROM rental WHERE {of_kept})"
            )
        )
    );
    // Addresses: exactly those of kept customers, staff and stores.
    assert_eq!(
        ids(&from_dump, "address", "address_id"),
        src.query(&format!(
            "SELECT string_agg(address_id::text, ',' ORDER BY address_id) FROM address WHERE address_id IN \
             (SELECT address_id FROM customer WHERE customer_id = ANY('{{{customers}}}'::int[]) \
              UNION SELECT address_id FROM staff UNION SELECT address_id FROM store)"
        ))
    );
    // Tables without a subset are whole.
    assert_eq!(
        count(&from_dump, "SELECT count(*) FROM film"),
        count(&src, "SELECT count(*) FROM film")
    );

    // Database mode: the same rows.
    let stg = TestDb::new("subpagstg");
    let o = run(anonymize().args([
        "--rules",
        &rules,
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
        "--refresh",
        "swap",
        "--create-schema",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    foreign_keys_hold(&stg);
    for (table, key) in [
        ("customer", "customer_id"),
        ("payment", "payment_id"),
        ("rental", "rental_id"),
        ("address", "address_id"),
    ] {
        assert_eq!(
            ids(&stg, table, key),
            ids(&from_dump, table, key),
            "{table}"
        );
    }
}

#[test]
fn where_applies_before_the_subset_and_always_adds_rows() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("subwhere");
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.customers.columns]",
            "[tables.customers]\nwhere = \"id <= 500\"\nsubset = { percent = 10, always = \"(country = 'PT' AND id < 100) OR id = 900\" }\n\n[tables.customers.columns]",
        );
    let rules = write_rules(dir.path(), &text).display().to_string();
    let out = dir.path().join("out.sql");
    database_run(&rules, &src, &out, &[]);
    let db = loaded("subwhereout", &out);
    foreign_keys_hold(&db);
    assert_eq!(
        count(&db, "SELECT count(*) FROM customers WHERE id > 500"),
        0
    );
    // `always` adds rows within the `where` only (id 900 is outside it).
    // Every Portuguese customer under 100 is there, whatever the sample says.
    let de = src.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM customers WHERE id < 100 AND country = 'PT'");
    assert!(!de.is_empty());
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM customers WHERE id = ANY('{{{de}}}'::bigint[])")
        ),
        de.split(',').count() as i64
    );
    let kept = count(&db, "SELECT count(*) FROM customers");
    assert!(kept > de.split(',').count() as i64 && kept < 250, "{kept}");
}

#[test]
fn refusals_name_the_rule_and_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let production = root().join("examples/production.sql");
    let fails = |rules: &str, source: &str, expected: &[&str]| {
        let o = run(anonymize()
            .args(["--rules", rules, "--source", source, "--target"])
            .arg(dir.path().join("never.sql")));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        for e in expected {
            assert!(err.contains(e), "{e:?} not in {err}");
        }
        assert!(!dir.path().join("never.sql").exists());
    };
    let p = production.to_str().unwrap();
    // The line of the subset in the demo rules, for the locations.
    let line = |rules: &str| {
        1 + std::fs::read_to_string(rules)
            .unwrap()
            .lines()
            .position(|l| l.starts_with("subset = "))
            .unwrap()
    };
    // `always` needs a database.
    let rules = demo_rules(dir.path(), "{ percent = 10, always = \"id < 3\" }");
    fails(
        &rules,
        p,
        &[
            &format!("rules.toml:{}:10", line(&rules)),
            "always is an SQL condition",
        ],
    );
    // Out of range, misspelled, contradictory.
    let rules = demo_rules(dir.path(), "{ percent = 0 }");
    fails(
        &rules,
        p,
        &[
            &format!("rules.toml:{}:22", line(&rules)),
            "above 0 and at most 100",
        ],
    );
    let rules = demo_rules(dir.path(), "{ percnt = 10 }");
    fails(&rules, p, &["did you mean `percent`"]);
    let rules = demo_rules(dir.path(), "{ percent = 10, follow = false }");
    fails(&rules, p, &["follow = false copies the table whole"]);
    let rules = demo_rules(dir.path(), "{ percent = 10, always_keys = [[1, 2]] }");
    fails(&rules, p, &["always_keys entry of 2 value(s)"]);

    // A table without a key, in a database.
    let src = TestDb::demo("subnokey");
    src.query("ALTER TABLE payments DROP CONSTRAINT payments_pkey");
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.payments.columns]",
            "[tables.payments]\nsubset = { percent = 5 }\n\n[tables.payments.columns]",
        );
    let rules = write_rules(dir.path(), &text).display().to_string();
    fails(
        &rules,
        &url(&src),
        &["public.payments", "needs a primary key"],
    );
    // Naming a key makes it work.
    let text = text.replace(
        "subset = { percent = 5 }",
        "subset = { percent = 5, key = [\"id\"] }",
    );
    let rules = write_rules(dir.path(), &text).display().to_string();
    let o = run(anonymize()
        .args(["--rules", &rules, "--source", &url(&src), "--target"])
        .arg(dir.path().join("ok.sql")));
    assert!(o.status.success(), "{}", stderr(&o));

    // A reference to a table the source does not have.
    let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap()
        + "\n[[references]]\nfrom = \"audit_log.id\"\nto = \"clients.id\"\n";
    let rules = write_rules(dir.path(), &text).display().to_string();
    fails(
        &rules,
        p,
        &["[[references]]: public.clients is not a table of the source"],
    );
}

#[test]
fn declared_references_make_children_follow() {
    // The demo's audit_log has no foreign key; a reference in the rules makes it follow
    // customers (here by its id, for the test's sake).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.customers.columns]",
            "[tables.customers]\nsubset = { percent = 10 }\n\n[tables.customers.columns]",
        )
        + "\n[[references]]\nfrom = [\"audit_log.id\"]\nto = [\"public.customers.id\"]\n";
    let rules = write_rules(dir.path(), &text).display().to_string();
    let out = dir.path().join("out.sql");
    dump_run(&rules, &root().join("examples/production.sql"), &out, &[]);
    let db = loaded("subrefs", &out);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_log WHERE id NOT IN (SELECT id FROM customers)"
        ),
        0
    );
    assert!(count(&db, "SELECT count(*) FROM audit_log") > 0);
}

/// A live source streams only the kept rows of a subset table (`key = ANY ('{…}')` on its key):
/// text keys holding quotes, backslashes, commas, braces, spaces, newlines, `NULL` and accents read
/// back as the same rows as a dump of the same database chooses, and the kept keys never appear in
/// the log, even at its most verbose.
#[test]
fn pushed_down_keys_read_back_exactly_and_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::new("subpush");
    src.query(
        "CREATE TABLE codes (code text PRIMARY KEY, n int NOT NULL);
         CREATE TABLE uses (id int PRIMARY KEY, code text REFERENCES codes, note text);
         INSERT INTO codes SELECT 'k' || i || (ARRAY['\"', '\\', '''', ',', '{', '}', ' x ', 'NULL',
             'é', E'\\n', E'\\t', '\\\"'])[1 + i % 12], i FROM generate_series(1, 600) i;
         INSERT INTO uses SELECT i, (SELECT code FROM codes WHERE n = 1 + i % 600), 'n' || i
             FROM generate_series(1, 1200) i;
         ANALYZE",
    );
    let rules = write_rules(
        dir.path(),
        "[tables.codes]\nsubset = { percent = 10 }\n[tables.codes.columns]\ncode = \"keep\"\nn = \"keep\"\n\
         [tables.uses.columns]\nid = \"keep\"\ncode = \"keep\"\nnote = \"keep\"\n",
    )
    .display()
    .to_string();
    // Database mode, into a staging database with the source's schema.
    let stg = TestDb::new("subpushstg");
    let schema = dir.path().join("schema.sql");
    std::fs::write(&schema, pg_dump(&src, &["--schema-only"])).unwrap();
    stg.load(&schema);
    let o = run(anonymize().args([
        "--rules",
        &rules,
        "-vv",
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
    ]));
    // The rules file's random directory name ("/tmp/.tmpXk21ab") could hold a short key such as
    // "k21" by chance: it is not a value.
    let log = stderr(&o).replace(&dir.path().display().to_string(), "<dir>");
    assert!(o.status.success(), "{log}");
    assert!(log.contains("<key among the "), "{log}");
    let kept = count(&stg, "SELECT count(*) FROM codes");
    assert!((30..=90).contains(&kept), "{kept}");
    // Each key without its newline or tab (psql prints those as they are).
    for code in stg
        .query("SELECT translate(code, E'\\n\\t', '') FROM codes")
        .lines()
    {
        assert!(!log.contains(code), "a kept key is in the log");
    }
    foreign_keys_hold(&stg);
    // Dump mode reads every row and filters them all here: the same rows.
    let dump = dir.path().join("src.sql");
    std::fs::write(&dump, pg_dump(&src, &[])).unwrap();
    let out = dir.path().join("out.sql");
    dump_run(&rules, &dump, &out, &[]);
    let db = loaded("subpushout", &out);
    for (table, key) in [("codes", "code"), ("uses", "id")] {
        assert_eq!(ids(&db, table, key), ids(&stg, table, key), "{table}");
    }
}

/// What a subset cannot follow is refused before anything is written (exit 2), never copied
/// whole: a key or a foreign key on a generated column, and foreign keys between types that write
/// equal values differently (`numeric(10,3)` → `numeric`, `varchar` → `char(4)`).
#[test]
fn generated_columns_and_mismatched_key_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |tag: &str, schema: &str, rules: &str, expected: &str| {
        let src = TestDb::new(tag);
        src.query(schema);
        let rules = write_rules(dir.path(), rules).display().to_string();
        let out = dir.path().join(format!("{tag}.sql"));
        let o = to_file(&rules, url(&src).as_ref(), &out, &["--create-schema"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{tag}: {err}");
        assert!(err.contains(expected), "{tag}: {expected:?} not in {err}");
        assert!(!out.exists(), "{tag}");
    };
    refused(
        "subgenkey",
        "CREATE TABLE acct (n int NOT NULL, code text GENERATED ALWAYS AS ('A' || n) STORED PRIMARY KEY);
         INSERT INTO acct (n) SELECT generate_series(1, 300)",
        "[tables.acct]\nsubset = { percent = 10 }\n[tables.acct.columns]\nn = \"keep\"\n",
        "needs a primary key or a unique key",
    );
    refused(
        "subgenfk",
        "CREATE TABLE acct (code text PRIMARY KEY);
         CREATE TABLE note (id int PRIMARY KEY, n int,
             acct_code text GENERATED ALWAYS AS ('A' || n) STORED REFERENCES acct);
         INSERT INTO acct SELECT 'A' || generate_series(1, 300);
         INSERT INTO note (id, n) SELECT i, i FROM generate_series(1, 300) i",
        "[tables.acct]\nsubset = { percent = 10 }\n[tables.acct.columns]\ncode = \"keep\"\n\
         [tables.note.columns]\nid = \"keep\"\nn = \"keep\"\n",
        "reference of public.note (acct_code) → public.acct cannot be followed",
    );
    let numeric = "CREATE TABLE price (k numeric PRIMARY KEY);
         CREATE TABLE item (id int PRIMARY KEY, k numeric(10,3) NOT NULL REFERENCES price);
         INSERT INTO price SELECT g::numeric / 4 FROM generate_series(1, 200) g;
         INSERT INTO item SELECT g, ((g % 200) + 1)::numeric / 4 FROM generate_series(1, 1000) g";
    refused(
        "subnum",
        numeric,
        "[tables.item]\nsubset = { percent = 10 }\n[tables.item.columns]\nid = \"keep\"\nk = \"keep\"\n\
         [tables.price]\nsubset = { only_referenced = true }\n[tables.price.columns]\nk = \"keep\"\n",
        "public.item.k is numeric(10,3) and public.price.k is numeric",
    );
    refused(
        "subchar",
        "CREATE TABLE tag (code char(4) PRIMARY KEY);
         CREATE TABLE item_tag (id int PRIMARY KEY, code varchar(4) REFERENCES tag);
         INSERT INTO tag SELECT 't' || g FROM generate_series(1, 50) g;
         INSERT INTO item_tag SELECT g, 't' || ((g % 50) + 1) FROM generate_series(1, 500) g",
        "[tables.tag]\nsubset = { percent = 10 }\n[tables.tag.columns]\ncode = \"keep\"\n\
         [tables.item_tag.columns]\nid = \"keep\"\ncode = \"keep\"\n",
        "public.item_tag.code is character varying(4) and public.tag.code is character(4)",
    );
    // A partition's own `where`, which the key scan (through the root) would not see.
    refused(
        "subpartwhere",
        "CREATE TABLE cust (id int PRIMARY KEY);
         CREATE TABLE ev (id int, region text, cust_id int REFERENCES cust, PRIMARY KEY (id, region))
             PARTITION BY LIST (region);
         CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
         CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
         INSERT INTO cust SELECT generate_series(1, 400);
         INSERT INTO ev SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g % 400 + 1
             FROM generate_series(1, 2000) g",
        "[tables.cust]\nsubset = { percent = 20 }\n[tables.cust.columns]\nid = \"keep\"\n\
         [tables.ev.columns]\nid = \"keep\"\nregion = \"keep\"\ncust_id = \"keep\"\n\
         [tables.ev_us]\nwhere = \"id > 1000\"\n\
         [tables.ev_us.columns]\nid = \"keep\"\nregion = \"keep\"\ncust_id = \"keep\"\n",
        "public.ev_us: with a subset on public.ev, a partition cannot have its own `where`",
    );
    refused(
        "subdatets",
        "CREATE TABLE day (d date PRIMARY KEY);
         CREATE TABLE event (id int PRIMARY KEY, at timestamp REFERENCES day);
         INSERT INTO day VALUES ('2020-01-01'), ('2020-01-02');
         INSERT INTO event VALUES (1, '2020-01-01'), (2, '2020-01-02')",
        "[defaults]\nuncovered = \"keep\"\n[tables.day]\nsubset = { percent = 100 }\n",
        "public.event.at is timestamp without time zone and public.day.d is date",
    );
    // Between tables the subset does not reach, such foreign keys are no concern: the run goes on.
    let src = TestDb::new("subunrelated");
    src.query(
        "CREATE TABLE s (id int PRIMARY KEY);
         CREATE TABLE tag (code char(4) PRIMARY KEY);
         CREATE TABLE item_tag (id int PRIMARY KEY, code varchar(4) REFERENCES tag);
         CREATE TABLE p (id int, r text, PRIMARY KEY (id, r)) PARTITION BY LIST (r);
         CREATE TABLE p_a PARTITION OF p FOR VALUES IN ('a');
         INSERT INTO s SELECT generate_series(1, 100);
         INSERT INTO tag VALUES ('t1'); INSERT INTO item_tag VALUES (1, 't1');
         INSERT INTO p VALUES (1, 'a'), (2, 'a')",
    );
    let rules = write_rules(
        dir.path(),
        "[defaults]\nuncovered = \"keep\"\n[tables.s]\nsubset = { percent = 10 }\n\
         [tables.p_a]\nwhere = \"id > 1\"\n",
    )
    .display()
    .to_string();
    let out = dir.path().join("unrelated.sql");
    database_run(&rules, &src, &out, &[]);
    let db = loaded("subunrelatedout", &out);
    assert_eq!(db.query("SELECT count(*) FROM item_tag"), "1");
    assert_eq!(db.query("SELECT count(*) FROM p"), "1");
    assert!(count(&db, "SELECT count(*) FROM s") < 40);
}

/// The source's DateStyle does not change which rows are chosen nor how dates are written (the
/// source sessions write ISO as pg_dump does); keys that a rule transforms are not written into
/// the statement the source server runs (and may log).
#[test]
fn date_keys_ignore_the_source_datestyle_and_transformed_keys_stay_off_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::new("subdate");
    src.query(
        "CREATE TABLE day (d date PRIMARY KEY, note text);
         CREATE TABLE visit (id int PRIMARY KEY, d date REFERENCES day, email text UNIQUE);
         INSERT INTO day SELECT DATE '2020-01-01' + i, 'n' FROM generate_series(0, 399) i;
         INSERT INTO visit SELECT i, DATE '2020-01-01' + i % 400, 'p' || i || '@corp.example'
             FROM generate_series(1, 1200) i;
         CREATE TABLE member (email text PRIMARY KEY, n int);
         INSERT INTO member SELECT 'm' || i || '@corp.example', i FROM generate_series(1, 500) i;
         ANALYZE",
    );
    let rules = write_rules(
        dir.path(),
        "[tables.day]\nsubset = { percent = 10 }\n[tables.day.columns]\nd = \"keep\"\nnote = \"keep\"\n\
         [tables.visit]\nsubset = { percent = 50 }\n[tables.visit.columns]\nid = \"keep\"\nd = \"keep\"\n\
         email = { fake = \"email\", unique = true }\n\
         [tables.member]\nsubset = { percent = 10 }\n[tables.member.columns]\n\
         email = { fake = \"email\", unique = true }\nn = \"keep\"\n",
    )
    .display()
    .to_string();
    // A dump (pg_dump writes ISO whatever the database says) before the DateStyle changes.
    let dump = dir.path().join("src.sql");
    std::fs::write(&dump, pg_dump(&src, &[])).unwrap();
    let from_dump = dir.path().join("from_dump.sql");
    dump_run(&rules, &dump, &from_dump, &[]);
    let name = src.query("SELECT current_database()");
    src.query(&format!(
        "ALTER DATABASE \"{name}\" SET DateStyle = 'SQL, DMY'; ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Kolkata'"
    ));
    let from_db = dir.path().join("from_db.sql");
    let log = database_run(&rules, &src, &from_db, &["-vv"]);
    // day's kept dates (kept as they are) went to the server; visit's key is id, but its
    // email is transformed: no email is in the log either way.
    assert!(log.contains("<key among the "), "{log}");
    assert!(
        !log.contains("@corp.example"),
        "a source email is in the log"
    );
    let member = log
        .lines()
        .find(|l| l.contains("public.member: COPY"))
        .expect("member's statement is logged");
    assert!(!member.contains("<key among"), "{member}");
    assert_eq!(
        ids(&loaded("subdatem", &from_db), "member", "n"),
        ids(&loaded("subdaten", &from_dump), "member", "n")
    );
    let (a, b) = (loaded("subdatea", &from_dump), loaded("subdateb", &from_db));
    for (table, key) in [("day", "d"), ("visit", "id")] {
        assert_eq!(ids(&a, table, key), ids(&b, table, key), "{table}");
    }
    let kept = count(&b, "SELECT count(*) FROM day");
    assert!((24..=56).contains(&kept), "{kept}");
    assert!(ids(&b, "day", "d").starts_with("2020-"));
    foreign_keys_hold(&b);
}

/// A hand-written dump's foreign keys without a constraint name or referenced columns (the
/// primary key) are followed like pg_dump's: the same rows as the original dump.
#[test]
fn unnamed_foreign_keys_of_a_dump_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let rules = demo_rules(dir.path(), "{ percent = 10 }");
    let production = root().join("examples/production.sql");
    let text = std::fs::read_to_string(&production).unwrap();
    let hand = text
        .replace(
            "ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id);",
            "ADD FOREIGN KEY (customer_id) REFERENCES public.customers;",
        )
        .replace(
            "ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);",
            "ADD FOREIGN KEY (order_id) REFERENCES public.orders;",
        );
    assert_ne!(hand, text);
    let hand_dump = dir.path().join("hand.sql");
    std::fs::write(&hand_dump, hand).unwrap();
    let (a, b) = (dir.path().join("a.sql"), dir.path().join("b.sql"));
    dump_run(&rules, &production, &a, &[]);
    dump_run(&rules, &hand_dump, &b, &[]);
    let (a, b) = (loaded("subhanda", &a), loaded("subhandb", &b));
    foreign_keys_hold(&b);
    for table in ["customers", "orders", "payments"] {
        assert_eq!(ids(&a, table, "id"), ids(&b, table, "id"), "{table}");
    }
    assert!(count(&b, "SELECT count(*) FROM orders") < 1000);

    // Forms this reader does not follow: refused (exit 2, nothing written), unless the rules
    // declare the reference.
    let inline = text
        .replace(
            "ALTER TABLE ONLY public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id);\n",
            "",
        )
        .replace(
            "    customer_id integer NOT NULL,\n    total numeric(10,2)",
            "    customer_id integer NOT NULL REFERENCES public.customers(id),\n    total numeric(10,2)",
        );
    let several = text.replace(
        "ALTER TABLE ONLY public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id);",
        "ALTER TABLE ONLY public.orders ADD COLUMN extra int, ADD FOREIGN KEY (customer_id) REFERENCES public.customers(id);",
    );
    for (name, dump) in [("inline", inline), ("several", several)] {
        assert_ne!(dump, text, "{name}");
        let path = dir.path().join(format!("{name}.sql"));
        std::fs::write(&path, &dump).unwrap();
        let out = dir.path().join(format!("{name}.out.sql"));
        let o = run(anonymize()
            .args(["--rules", &rules, "--source"])
            .arg(&path)
            .arg("--target")
            .arg(&out));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("declares a foreign key of public.orders inside CREATE TABLE"),
            "{name}: {err}"
        );
        assert!(!out.exists());
    }
    // Declared in the rules, the reference is followed: the same rows again.
    let declared = format!(
        "{}\n[[references]]\nfrom = \"orders.customer_id\"\nto = \"customers.id\"\n",
        std::fs::read_to_string(&rules).unwrap()
    );
    let declared_rules = dir.path().join("declared.toml");
    std::fs::write(&declared_rules, declared).unwrap();
    let c = dir.path().join("c.sql");
    dump_run(
        declared_rules.to_str().unwrap(),
        &dir.path().join("several.sql"),
        &c,
        &[],
    );
    let c = loaded("subhandc", &c);
    for table in ["customers", "orders", "payments"] {
        assert_eq!(ids(&a, table, "id"), ids(&c, table, "id"), "{table}");
    }
}

/// A dry run reads stdin once, for its samples: with a subset it says so (exit 2) instead of
/// failing on an empty second read.
#[test]
fn a_dry_run_of_stdin_with_a_subset_asks_for_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = demo_rules(dir.path(), "{ percent = 10 }");
    let o = anonymize()
        .args(["--rules", &rules, "--source", "-", "--dry-run"])
        .stdin(std::fs::File::open(root().join("examples/production.sql")).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs the dump as a file"),
        "{}",
        stderr(&o)
    );
    // From the file, the dry run shows the subset.
    let o = run(anonymize()
        .args(["--rules", &rules, "--dry-run", "--source"])
        .arg(root().join("examples/production.sql")));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("public.customers: ") && out.contains(" sample"),
        "{out}"
    );
}

/// An `always_keys` entry that matches no row (a QA account that is gone) is said, as a warning
/// and in the report, without stopping the run.
#[test]
fn always_keys_matching_no_row_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rules = demo_rules(dir.path(), "{ percent = 10, always_keys = [1, 99999] }");
    let (out, report) = (dir.path().join("out.sql"), dir.path().join("r.json"));
    let log = dump_run(
        &rules,
        &root().join("examples/production.sql"),
        &out,
        &["--report", report.to_str().unwrap()],
    );
    assert!(
        log.contains("subset of public.customers: 1 always_keys entry matches no row"),
        "{log}"
    );
    let report = success_report(&report);
    let customers = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "public.customers")
        .unwrap()
        .clone();
    let why = customers["subset"].as_str().unwrap();
    assert!(
        why.contains("1 always, 1 always_keys entry matching no row"),
        "{why}"
    );
    assert!(loaded("subalways", &out).query("SELECT count(*) FROM customers WHERE id = 1") == "1");
}
