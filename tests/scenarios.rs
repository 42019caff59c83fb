//! `[[fixtures]]`: QA accounts (SQL) and their address (CSV) are in staging after every refresh, in
//! place and by swap, the same each time; a dump gets them appended and psql loads them; a fixture
//! with an SQL error fails the refresh (exit 1, file and line) with staging as it was; a broken
//! fixture file stops the run before anything is written (exit 2).

mod common;

use std::path::Path;

use common::*;

const FIXTURES: &str = "\n[[fixtures]]\nsql = \"tests/fixtures/qa/accounts.sql\"\n\n\
    [[fixtures]]\ncsv = \"tests/fixtures/qa/addresses.csv\"\ntable = \"public.addresses\"\n\n\
    [[fixtures]]\nsql = \"tests/fixtures/qa/session.sql\"\n";

fn rules_with(dir: &Path, extra: &str) -> String {
    let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap() + extra;
    write_rules(dir, &text).display().to_string()
}

/// The QA rows of staging, as text.
fn qa_rows(db: &TestDb) -> String {
    db.query(
        "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ( \
           SELECT c::text AS x FROM customers c WHERE id >= 900000 \
           UNION ALL SELECT o::text FROM orders o WHERE id >= 900000 \
           UNION ALL SELECT a::text FROM addresses a WHERE id >= 900000) q",
    )
}

fn refresh(rules: &str, src: &TestDb, stg: &TestDb, extra: &[&str]) -> std::process::Output {
    run(anonymize()
        .args([
            "--rules",
            rules,
            "--source",
            &src.url(),
            "--target",
            &stg.url(),
        ])
        .args(extra))
}

#[test]
fn fixtures_are_in_staging_after_every_refresh_and_a_failing_one_changes_nothing() {
    let src = TestDb::demo("fxsrc");
    let stg = TestDb::demo("fxstg");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), FIXTURES);
    let report = dir.path().join("r.json");
    let mut seen = None;
    for strategy in ["in-place", "in-place", "swap"] {
        let o = refresh(
            &rules,
            &src,
            &stg,
            &[
                "-q",
                "--refresh",
                strategy,
                "--drop-prev",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{strategy}: {}", stderr(&o));
        let rows = qa_rows(&stg);
        assert!(rows.contains("qa.admin@acme.test") && rows.contains("qa.buyer@acme.test"));
        assert!(rows.contains("1 Test Street, Suite \"\"A\"\""), "{rows}");
        assert!(rows.contains("edge case; no address"), "{rows}");
        // The last fixture ran (its last statement without `;`, a comment at its end), and the settings it
        // changed (search_path, TimeZone) did not break the rest of the refresh.
        assert!(
            rows.contains("qa.buyer@acme.test") && rows.contains(",DE,"),
            "{rows}"
        );
        // Deterministic: the same rows every night, never twice.
        assert_eq!(
            seen.get_or_insert_with(|| rows.clone()),
            &rows,
            "{strategy}"
        );
        assert_eq!(
            stg.query("SELECT count(*) FROM customers"),
            (src.query("SELECT count(*) FROM customers")
                .parse::<u64>()
                .unwrap()
                + 2)
            .to_string()
        );
        let doc = success_report(&report);
        assert_eq!(doc["fixtures"][0]["file"], "tests/fixtures/qa/accounts.sql");
        assert_eq!(doc["fixtures"][0]["rows"], 4);
        assert_eq!(doc["fixtures"][1]["kind"], "csv");
        assert_eq!(doc["fixtures"][1]["rows"], 1);
    }
    // Sequences were set before the fixtures: the next id an application draws is after
    // production's.
    let next: i64 = stg
        .query("SELECT nextval('customers_id_seq')")
        .parse()
        .unwrap();
    let max: i64 = src.query("SELECT max(id) FROM customers").parse().unwrap();
    assert!(next > max);

    let before = demo_fingerprint(&stg);
    let broken = rules_with(
        dir.path(),
        &format!("{FIXTURES}\n[[fixtures]]\nsql = \"tests/fixtures/qa/broken.sql\"\n"),
    );
    for strategy in ["in-place", "swap"] {
        let o = refresh(&broken, &src, &stg, &["-q", "--refresh", strategy]);
        assert_eq!(o.status.code(), Some(1), "{strategy}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("fixture tests/fixtures/qa/broken.sql:5: column \"…\" does not exist"),
            "{err}"
        );
        assert_eq!(demo_fingerprint(&stg), before, "{strategy}");
        assert!(!next_left_behind(&stg), "{strategy}");
    }
}

#[test]
fn a_dump_gets_the_fixtures_appended_and_psql_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), FIXTURES);
    let out = dir.path().join("staging.sql");
    let o = run(anonymize()
        .args(["--rules", &rules, "-q", "--report"])
        .arg(dir.path().join("r.json"))
        .arg("--target")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = success_report(&dir.path().join("r.json"));
    assert_eq!(doc["fixtures"].as_array().unwrap().len(), 3);
    let db = TestDb::new("fxdump");
    db.load(&out);
    let rows = qa_rows(&db);
    assert!(
        rows.contains("qa.admin@acme.test") && rows.contains("Testville"),
        "{rows}"
    );
    // A database source into a file appends them too.
    let src = TestDb::demo("fxdsrc");
    let out2 = dir.path().join("from_db.sql");
    let o = run(anonymize()
        .args([
            "--rules",
            &rules,
            "-q",
            "--create-schema",
            "--source",
            &src.url(),
            "--target",
        ])
        .arg(&out2));
    assert!(o.status.success(), "{}", stderr(&o));
    let db2 = TestDb::new("fxdump2");
    db2.load(&out2);
    assert_eq!(qa_rows(&db2), rows);
}

#[test]
fn a_broken_fixture_file_stops_the_run_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let commit = write("commit.sql", "INSERT INTO customers VALUES (1);\nCOMMIT;\n");
    // `begin` as a function's name would read as BEGIN ATOMIC and hide the COMMIT after it.
    let hidden = write(
        "hidden.sql",
        "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1';\nCOMMIT;\nSELECT 1;\n",
    );
    let meta = write(
        "meta.sql",
        "INSERT INTO customers VALUES (1)\n  \\! touch pwned\n;\n",
    );
    let short = write("short.csv", "id,email\n1,a@acme.test\n2\n");
    let cases = [
        (
            "[[fixtures]]\nsql = \"no/such/file.sql\"\n".to_string(),
            "cannot read no/such/file.sql".to_string(),
        ),
        (
            format!("[[fixtures]]\nsql = \"{commit}\"\n"),
            format!("fixture {commit}:2: COMMIT statements are not run in a fixture"),
        ),
        (
            format!("[[fixtures]]\nsql = \"{hidden}\"\n"),
            format!("fixture {hidden}:1: reads as several statements in one"),
        ),
        (
            format!("[[fixtures]]\nsql = \"{meta}\"\n"),
            format!("fixture {meta}:2: psql meta-commands"),
        ),
        (
            format!("[[fixtures]]\ncsv = \"{short}\"\ntable = \"customers\"\n"),
            format!("fixture {short}:3: 1 field(s) where the header names 2"),
        ),
        (
            format!("[[fixtures]]\ncsv = \"{short}\"\n"),
            "a csv fixture needs table =".to_string(),
        ),
        (
            "[[fixtures]]\nsq = \"x.sql\"\n".to_string(),
            "unknown key `sq`".to_string(),
        ),
    ];
    let out = dir.path().join("out.sql");
    for (entry, expected) in cases {
        let rules = rules_with(dir.path(), &format!("\n{entry}"));
        let o = run(anonymize()
            .args(["--rules", &rules, "-q", "--target"])
            .arg(&out));
        assert_eq!(o.status.code(), Some(2), "{entry}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&expected), "{expected}:\n{err}");
        assert!(err.contains("rules.toml:"), "{err}");
        assert!(!out.exists());
        // `check` finds the same problem.
        let o = run(anonymize().args(["check", "--rules", &rules]));
        assert_eq!(o.status.code(), Some(2), "{entry}");
    }
}
