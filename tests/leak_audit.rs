//! Leak audit: after a database refresh, search all of staging (a data-only pg_dump of it) for every
//! original value of every transformed text column of the source, and for every email, phone and card
//! number that independent detectors find anywhere in the source's text. Zero hits, for the demo
//! database and for pagila with their rules.

mod common;

use common::leaks::assert_no_leaks;
use common::*;

fn data_dump(db: &TestDb) -> String {
    pg_dump(db, &["--data-only"])
}

/// Refresh `src` into `stg` with `rules` and audit staging. Returns how many original values and
/// detected strings were searched for, and how many columns were compared row by row.
fn audit(src: &TestDb, stg: &TestDb, rules: &str) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let o = run(anonymize()
        .args([
            "--rules",
            rules,
            "-q",
            "--source",
            &url(src),
            "--target",
            &url(stg),
        ])
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    // The report of a successful refresh counts what each table really holds.
    let doc = success_report(&report);
    let mut total = 0;
    for t in doc["tables"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let count: u64 = src
            .query(&format!("SELECT count(*) FROM ONLY {name}"))
            .parse()
            .unwrap();
        assert_eq!(t["rows_read"], count, "{name}");
        assert_eq!(t["rows_written"], count, "{name}");
        assert!(t["seconds"].as_f64().unwrap() >= 0.0);
        total += count;
    }
    assert_eq!(doc["rows_written"], total);
    assert_eq!(doc["target"], url(stg));

    assert_no_leaks(src, stg, &doc, &data_dump(stg))
}

#[test]
fn the_demo_database_leaks_nothing_into_staging() {
    let src = TestDb::demo("leaksrc");
    let stg = TestDb::demo("leakstg");
    let (needles, hits, per_row) = audit(&src, &stg, "rules/customers.toml");
    eprintln!("demo: {needles} original values and {hits} detected strings, none in staging; {per_row} columns compared row by row");
    assert!(needles > 5000 && hits > 1000, "{needles} {hits}");
}

#[test]
fn pagila_leaks_nothing_into_staging() {
    let src = TestDb::new("leakpsrc");
    src.load(&pagila_dir().join("pagila-schema.sql"));
    src.load(&pagila_dir().join("pagila-data.sql"));
    let stg = TestDb::new("leakpstg");
    stg.load(&pagila_dir().join("pagila-schema.sql"));
    let (needles, hits, per_row) = audit(&src, &stg, "tests/fixtures/pagila.toml");
    eprintln!("pagila: {needles} original values and {hits} detected strings, none in staging; {per_row} columns compared row by row");
    assert!(needles > 1000 && hits > 500, "{needles} {hits}");
}
