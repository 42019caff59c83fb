//! Faults at arbitrary points: SIGINT and SIGTERM after a range of delays, against a live refresh and
//! a dump run. Whatever the moment, staging holds either what it held before or the complete new
//! data, a file target exists only when complete, and the exit code says which happened.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const TABLES: [&str; 5] = ["customers", "addresses", "orders", "payments", "audit_log"];

fn fingerprint(db: &TestDb) -> String {
    TABLES
        .iter()
        .map(|t| db.query(&format!("SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 0 when the run completed, the signal's code (130, 143) when it stopped; a run killed before its
/// handlers were installed counts as stopped by that signal.
fn outcome(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => unreachable!(),
    }
}

const DELAYS_MS: [u64; 9] = [1, 30, 80, 150, 250, 400, 600, 900, 1400];

#[test]
fn signals_at_any_moment_leave_staging_whole_and_files_complete() {
    let src = TestDb::demo("sigsrc");
    // Yesterday's staging: the raw rows (distinct from any anonymized state).
    let stg = TestDb::demo("sigstg");
    let expected = {
        let reference = TestDb::demo("sigref");
        let o = run(&mut demo_refresh(&src, &reference));
        assert!(o.status.success(), "{}", stderr(&o));
        fingerprint(&reference)
    };
    let dir = tempfile::tempdir().unwrap();
    let complete_file = {
        let path = dir.path().join("reference.sql");
        let o = run(anonymize()
            .args(["--rules", "rules/customers.toml", "-q", "--target"])
            .arg(&path));
        assert!(o.status.success());
        std::fs::read(&path).unwrap()
    };
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();

    let mut seen = std::collections::BTreeMap::new();
    for (i, delay) in DELAYS_MS.iter().enumerate() {
        let (signal, code) = if i % 2 == 0 {
            ("-INT", 130)
        } else {
            ("-TERM", 143)
        };
        // Start the run, signal it after the delay, wait for it.
        let interrupted = |cmd: &mut Command| {
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(*delay));
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            child.wait_with_output().unwrap()
        };

        // A live refresh.
        let before = fingerprint(&stg);
        let o = interrupted(&mut demo_refresh(&src, &stg));
        let after = fingerprint(&stg);
        match outcome(o.status) {
            0 => assert_eq!(after, expected, "completed at {delay} ms"),
            c if c == code => {
                assert_eq!(after, before, "interrupted at {delay} ms: {}", stderr(&o))
            }
            c => panic!("exit {c} at {delay} ms: {}", stderr(&o)),
        }
        *seen.entry(("refresh", outcome(o.status))).or_insert(0) += 1;

        // A dump run into a file.
        let target = out_dir.join("staging.sql");
        let o = interrupted(
            anonymize()
                .args(["--rules", "rules/customers.toml", "-q", "--target"])
                .arg(&target),
        );
        let files: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        match outcome(o.status) {
            0 => {
                assert_eq!(
                    std::fs::read(&target).unwrap(),
                    complete_file,
                    "at {delay} ms"
                );
                assert_eq!(files.len(), 1, "{files:?}");
                std::fs::remove_file(&target).unwrap();
            }
            c if c == code => assert!(files.is_empty(), "interrupted at {delay} ms left {files:?}"),
            c => panic!("exit {c} at {delay} ms: {}", stderr(&o)),
        }
        *seen.entry(("dump", outcome(o.status))).or_insert(0) += 1;
    }
    eprintln!("outcomes: {seen:?}");
    // The delays span the whole run: some runs were interrupted, and the last ones completed.
    assert!(
        seen.keys().any(|(m, c)| *m == "refresh" && *c != 0),
        "{seen:?}"
    );
    assert!(seen.contains_key(&("refresh", 0)), "{seen:?}");
}
