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

    let counts = assert_no_leaks(src, stg, &doc, &data_dump(stg));
    builtin_audit_is_clean(src, stg, rules, &doc);
    counts
}

/// `anonymize audit` on the same staging: exit 0, and its report lists every transformed column
/// of the run's report with no finding.
fn builtin_audit_is_clean(src: &TestDb, stg: &TestDb, rules: &str, run: &serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("audit.json");
    let o = run_audit(rules, src, stg, &report);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = read_report(&report);
    assert_eq!(doc["findings"], 0, "{doc}");
    let audited: std::collections::BTreeSet<String> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["unchanged"], 0, "{c}");
            assert_eq!(c["found"].as_array().unwrap().len(), 0, "{c}");
            format!(
                "{}.{}",
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .collect();
    let transformed: std::collections::BTreeSet<String> = run["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            let table = t["name"].as_str().unwrap().to_string();
            t["rules"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, r)| {
                    let r = r.as_str().unwrap();
                    r != "keep" && r != "skip" && !r.starts_with("uncovered")
                })
                .map(move |(c, _)| format!("{table}.{c}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(audited, transformed);
    assert!(doc["kept"].as_array().unwrap().is_empty(), "{doc}");
    assert!(doc["unmentioned"].as_array().unwrap().is_empty(), "{doc}");
    eprintln!(
        "anonymize audit: {} transformed columns, no finding, in {}s",
        audited.len(),
        doc["seconds"]
    );
}

fn run_audit(
    rules: &str,
    src: &TestDb,
    stg: &TestDb,
    report: &std::path::Path,
) -> std::process::Output {
    run(anonymize()
        .args([
            "audit",
            "--rules",
            rules,
            "--source",
            &url(src),
            "--target",
            &url(stg),
        ])
        .arg("--report")
        .arg(report))
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
