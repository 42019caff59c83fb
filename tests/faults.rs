//! Faults at every step: SIGINT or SIGTERM sent when the run says (in its `-v` lines) that it has
//! reached a step — the snapshot, dropping keys, emptying staging, the first and the last table,
//! rebuilding indexes, restoring foreign keys, setting sequences, committing — against a live
//! refresh, and at each step of a dump run. Staging then holds either what it held before or the
//! complete new data, a file target exists only when complete, and the exit code says which
//! happened. A run killed by the signal itself (no handler) fails the test: the tool must end on its
//! own terms.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::*;

const TABLES: [&str; 5] = ["customers", "addresses", "orders", "payments", "audit_log"];

fn fingerprint(db: &TestDb) -> String {
    TABLES
        .iter()
        .map(|t| db.query(&format!("SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a signalled run ended.
struct Ended {
    code: i32,
    /// Whether the step's line was seen (and the signal sent) before the run ended.
    hit: bool,
    stderr: String,
}

/// Run `cmd`, reading its stderr as it comes; send `signal` once a line contains `at`.
fn signal_at(cmd: &mut Command, at: &str, signal: i32) -> Ended {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut hit = false;
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap() > 0 {
        if !hit && line.contains(at) {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
            hit = true;
        }
        stderr.push_str(&line);
        line.clear();
    }
    let status = child.wait().unwrap();
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => panic!("the run was killed by signal {s} at {at:?}:\n{stderr}"),
        _ => unreachable!(),
    };
    Ended { code, hit, stderr }
}

/// The source: the demo database with an audit log large enough (60,000 rows) that its indexes are
/// dropped and rebuilt, so the refresh has every step, and 2,000 more sequences, so that the last
/// step before COMMIT takes long enough for a signal sent on its line to arrive during it.
fn source() -> TestDb {
    let src = TestDb::demo("sigsrc");
    src.query(
        "INSERT INTO audit_log (actor_email, action, client_ip, details, at) \
         SELECT 'user' || g || '@mail.test', 'login', '10.1.2.3', 'from 192.168.0.' || (g % 250), \
                timestamptz '2026-01-01' + g * interval '1 minute' \
         FROM generate_series(1, 60000) g; ANALYZE",
    );
    src.query(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format('CREATE SEQUENCE extra_seq_%s', i); \
         END LOOP; END $$",
    );
    src
}

/// The demo dump with its audit log 40 times over (60,000 rows), so the last table takes long
/// enough for a signal sent when it starts to arrive while it is written.
fn big_dump(dir: &std::path::Path) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let start = demo.find("COPY public.audit_log").unwrap();
    let rows_from = start + demo[start..].find('\n').unwrap() + 1;
    let rows_to = rows_from + demo[rows_from..].find("\\.\n").unwrap();
    let mut out = demo[..rows_from].to_string();
    for _ in 0..40 {
        out.push_str(&demo[rows_from..rows_to]);
    }
    out.push_str(&demo[rows_to..]);
    let path = dir.join("big.sql");
    std::fs::write(&path, out).unwrap();
    path
}

/// (the line that marks the step, whether a signal there must stop the run). Each line is printed
/// once the step is under way, after any check for a stop request before it: a signal on it proves
/// that a later check (or the step itself) stops the run.
const REFRESH_STEPS: [(&str, bool); 9] = [
    ("read-only snapshot", true),
    ("staging: dropped 3 foreign keys", true),
    ("staging: emptying", true),
    ("public.customers: started", true),
    ("public.audit_log: started", true),
    ("staging: rebuilding index", true),
    ("staging: restoring", true),
    ("staging: setting", true),
    // COMMIT is on its way: the run may complete.
    ("staging: committing", false),
];

#[test]
fn a_signal_at_any_step_of_a_refresh_leaves_staging_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = source();
    // Yesterday's staging: the raw rows (distinct from any anonymized state).
    let stg = TestDb::demo("sigstg");
    let expected = {
        let reference = TestDb::demo("sigref");
        let o = run(&mut demo_refresh(&src, &reference));
        assert!(o.status.success(), "{}", stderr(&o));
        fingerprint(&reference)
    };
    assert!(
        expected.contains("61500:"),
        "the audit log was refreshed whole: {expected}"
    );
    let mut completed = 0;
    for (i, (at, must_stop)) in REFRESH_STEPS.iter().enumerate() {
        let (signal, code) = if i % 2 == 0 {
            (libc::SIGINT, 130)
        } else {
            (libc::SIGTERM, 143)
        };
        let before = fingerprint(&stg);
        let report = dir.path().join(format!("report-{i}.json"));
        let mut cmd = anonymize();
        cmd.args([
            "--rules",
            "rules/customers.toml",
            "-vv",
            "--progress",
            "never",
        ])
        .args(["--source", &url(&src), "--target", &url(&stg), "--report"])
        .arg(&report);
        let ended = signal_at(&mut cmd, at, signal);
        assert!(ended.hit, "the run never reached {at:?}:\n{}", ended.stderr);
        let after = fingerprint(&stg);
        let doc = read_report(&report);
        if ended.code == code {
            assert_eq!(after, before, "interrupted at {at:?}");
            // The report of an interrupted run says so, whatever step it stopped in.
            assert_eq!(doc["status"], "failed", "{at:?}: {doc}");
            assert_eq!(doc["exit_code"], code, "{at:?}: {doc}");
            assert!(
                doc["error"].as_str().unwrap().contains("interrupted by"),
                "{at:?}: {doc}"
            );
            // (A signal noticed before staging's transaction began — the first step, on a
            // loaded machine — leaves nothing to roll back: no `staging:` line at all.)
            assert!(
                ended
                    .stderr
                    .contains("staging: rolling back; staging keeps what it had")
                    || !*must_stop
                    || !ended.stderr.contains("anonymize: info: staging: "),
                "{at:?}: {}",
                ended.stderr
            );
        } else {
            assert_eq!(ended.code, 0, "{at:?}: {}", ended.stderr);
            assert_eq!(doc["status"], "success", "{at:?}: {doc}");
            assert!(!must_stop, "a signal at {at:?} did not stop the run");
            assert_eq!(after, expected, "completed after a signal at {at:?}");
            completed += 1;
        }
    }
    eprintln!("{completed} run(s) completed after a signal at COMMIT");
}

#[test]
fn a_signal_at_any_step_of_a_dump_run_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = big_dump(dir.path());
    let complete_file = {
        let path = dir.path().join("reference.sql");
        let o = run(anonymize()
            .args(["--rules", "rules/customers.toml", "-q", "--source"])
            .arg(&source)
            .arg("--target")
            .arg(&path));
        assert!(o.status.success());
        std::fs::read(&path).unwrap()
    };
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let steps = [
        ("rules rules/customers.toml", true),
        ("first pass over", true),
        ("public.customers: started", true),
        ("public.orders: started", true),
        ("public.audit_log: started", true),
        // The output is complete and being renamed into place.
        ("renamed the finished output", false),
    ];
    for (i, (at, must_stop)) in steps.iter().enumerate() {
        let (signal, code) = if i % 2 == 0 {
            (libc::SIGINT, 130)
        } else {
            (libc::SIGTERM, 143)
        };
        let target = out_dir.join("staging.sql");
        let mut cmd = anonymize();
        cmd.args([
            "--rules",
            "rules/customers.toml",
            "-v",
            "--progress",
            "never",
        ])
        .arg("--source")
        .arg(&source)
        .arg("--target")
        .arg(&target);
        let ended = signal_at(&mut cmd, at, signal);
        assert!(ended.hit, "the run never reached {at:?}:\n{}", ended.stderr);
        let files: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if ended.code == code {
            assert!(*must_stop || files.is_empty(), "{at:?}");
            assert!(files.is_empty(), "interrupted at {at:?} left {files:?}");
        } else {
            assert_eq!(ended.code, 0, "{at:?}: {}", ended.stderr);
            assert!(!must_stop, "a signal at {at:?} did not stop the run");
            assert_eq!(std::fs::read(&target).unwrap(), complete_file, "{at:?}");
            assert_eq!(files.len(), 1, "{files:?}");
            std::fs::remove_file(&target).unwrap();
        }
    }
}

/// A panic in a transform worker (forced through the debug builds' hook) fails the run like any
/// error: exit 1, a report that says so, no temporary file and no target file; in a refresh,
/// staging stays as it was. The panic's own message is never shown.
#[test]
fn a_panicking_transform_fails_the_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.sql");
    let report = dir.path().join("report.json");
    let o = run(anonymize()
        .env("ANONYMIZE_DEBUG_PANIC_TABLE", "orders")
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&target)
        .arg("--report")
        .arg(&report));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("transforming public.orders: a transform worker panicked"),
        "{err}"
    );
    assert!(
        !err.contains("on purpose"),
        "the panic's message is shown: {err}"
    );
    let doc = read_report(&report);
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["exit_code"], 1, "{doc}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "report.json")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let src = TestDb::demo("panicsrc");
    let stg = TestDb::demo("panicstg");
    let before = fingerprint(&stg);
    let o = run(demo_refresh(&src, &stg).env("ANONYMIZE_DEBUG_PANIC_TABLE", "orders"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("a transform worker panicked"), "{err}");
    assert_eq!(fingerprint(&stg), before);
}
