//! Soak: consecutive refreshes of the demo database into staging while the source changes between
//! runs (rows inserted, updated, deleted). Every run succeeds; staging equals the anonymized source
//! each time (checked against dump mode on a pg_dump of the source, which agrees byte for byte);
//! rows that did not change get the same output every night; peak memory stays flat.
//!
//! CI runs a few rounds; `bash tests/soak.sh` runs 20 (ANONYMIZE_SOAK_RUNS).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

/// A table's rows in staging as COPY text, for the columns of `cols`.
fn staged_rows(db: &TestDb, table: &str, cols: &[String]) -> Vec<String> {
    let out = client("psql")
        .args(["-X", "-q", "-d", &db.name, "-c"])
        .arg(format!(
            "COPY (SELECT {} FROM {table}) TO STDOUT",
            cols.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

/// Change the source as a day of production would.
fn a_day_passes(src: &TestDb, day: usize) {
    src.query(&format!(
        "INSERT INTO customers (email, first_name, last_name, phone, birth_date, notes, profile, salary, country, created_at) \
         SELECT 'soak{day}_' || g || '@mail.test', 'Soakfirst' || g, 'Soaklast{day}', '+1 555 01' || lpad(g::text, 2, '0'), \
                date '1990-01-01' + g, 'reach me at soak{day}_' || g || '@mail.test', '{{\"newsletter\": true}}', 1000 + g, 'US', \
                timestamptz '2026-01-01' + {day} * interval '1 day' \
         FROM generate_series(1, 25) g; \
         INSERT INTO orders (customer_id, total, status, ordered_at, shipping_note) \
         SELECT id, 10 + id % 7, 'new', timestamptz '2026-01-01' + {day} * interval '1 day', NULL FROM customers ORDER BY id DESC LIMIT 10; \
         UPDATE customers SET notes = 'updated on day {day}, mail x{day}@mail.test' WHERE id = {a}; \
         UPDATE customers SET email = 'changed{day}@mail.test' WHERE id = {b}; \
         DELETE FROM audit_log WHERE id = {day}",
        a = day * 7,
        b = day * 11,
    ));
}

#[test]
fn nightly_refreshes_of_a_changing_source_stay_exact_deterministic_and_flat() {
    let runs: usize = std::env::var("ANONYMIZE_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let src = TestDb::demo("soaksrc");
    let stg = TestDb::demo("soakstg");
    let dir = tempfile::tempdir().unwrap();

    let mut first_customers: BTreeMap<String, String> = BTreeMap::new();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut rss = Vec::new();
    for day in 1..=runs {
        if day > 1 {
            a_day_passes(&src, day);
            changed.insert((day * 7).to_string());
            changed.insert((day * 11).to_string());
        }
        // The nightly run, with its peak memory.
        let (code, peak) = peak_rss_kb(anonymize().args([
            "--rules",
            "rules/customers.toml",
            "-q",
            "--source",
            &url(&src),
            "--target",
            &url(&stg),
        ]));
        assert_eq!(code, Some(0), "day {day}");
        rss.push(peak);

        // What staging must hold: the same source through dump mode.
        let dump = dir.path().join("source.sql");
        std::fs::write(&dump, pg_dump(&src, &["--data-only"])).unwrap();
        let blocks = copy_blocks(&anonymize_file("rules/customers.toml", &dump, dir.path()));
        assert_eq!(blocks.len(), 5);
        for (table, (cols, rows)) in &blocks {
            let mut want: Vec<String> = rows.iter().map(|r| r.join("\t")).collect();
            want.sort();
            let have = staged_rows(&stg, table, cols);
            assert_eq!(have.len(), want.len(), "day {day}: {table} row count");
            assert!(
                have == want,
                "day {day}: {table} differs from the anonymized source"
            );
        }

        // Unchanged customers keep their pseudonyms night after night.
        let (cols, rows) = &blocks["public.customers"];
        let id = cols.iter().position(|c| c == "id").unwrap();
        for r in rows {
            let line = r.join("\t");
            match first_customers.get(&r[id]) {
                None => {
                    first_customers.insert(r[id].clone(), line);
                }
                Some(before) if !changed.contains(&r[id]) => {
                    assert_eq!(before, &line, "day {day}: customer {} changed", r[id]);
                }
                Some(_) => {}
            }
        }
    }
    eprintln!("peak RSS per run (KB): {rss:?}");
    let (first, max) = (rss[0], *rss.iter().max().unwrap());
    assert!(max <= first + first / 2 + 8 * 1024, "memory grew: {rss:?}");
}

#[test]
fn memory_does_not_grow_with_the_dump() {
    // The same rules over the demo dump and over 10 and 40 times its rows (90,000 and 360,000 rows,
    // 10 and 38 MB of output). Memory is bounded by the batches in flight and a pool of buffers that
    // fills up to its cap on a dump of some size: from 10× on the peak stays put, while a run that
    // held rows, batches or output would grow by the 28 MB between the two.
    let dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for times in [1, 10, 40] {
        let source = dir.path().join(format!("x{times}.sql"));
        std::fs::write(&source, demo_times(times)).unwrap();
        let target = dir.path().join(format!("x{times}.out.sql"));
        let (code, peak) = peak_rss_kb(
            anonymize()
                .args(["--rules", "rules/customers.toml", "-q", "--source"])
                .arg(&source)
                .arg("--target")
                .arg(&target),
        );
        assert_eq!(code, Some(0));
        let written = std::fs::metadata(&target).unwrap().len();
        std::fs::remove_file(&source).unwrap();
        std::fs::remove_file(&target).unwrap();
        peaks.push((times, peak, written));
    }
    eprintln!("peak RSS (KB) by dump size: {peaks:?}");
    let (ten, forty) = (peaks[1].1, peaks[2].1);
    assert!(peaks[2].2 > peaks[1].2 + 25_000_000);
    assert!(
        forty <= ten + 14 * 1024,
        "memory grew with the dump: {peaks:?}"
    );
}
