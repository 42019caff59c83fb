//! External command transforms (`command = [...]`): an upper-casing command gives the same output
//! in dump mode and database mode, run after run and whatever `--jobs`; the README's examples
//! (rules/tokenize.py and the sed one-liner) work; a command that crashes mid-stream, hangs past
//! its timeout or answers one line too few fails the run with exit 1, a message that names the
//! command and no value, and staging as it was; `check` and `--dry-run` start the command.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The demo rules with `customers.notes` (NULLs, escapes, emails inside) and `customers.phone`
/// given `notes` and `phone` rules.
fn rules(dir: &Path, name: &str, notes: &str, phone: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap();
    let mut out = String::new();
    let mut in_customers = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_customers = line == "[tables.customers.columns]";
        }
        if in_customers && line.starts_with("notes ") {
            out.push_str(&format!("notes = {notes}\n"));
        } else if in_customers && line.starts_with("phone ") {
            out.push_str(&format!("phone = {phone}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

fn command(script: &str, extra: &str) -> String {
    format!("{{ command = [\"python3\", \"tests/fixtures/commands/{script}\"]{extra} }}")
}

/// A COPY text field's value (the escapes this data has).
fn decode(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

const PHONE: &str = "{ mask = { keep_last = 4 } }";

/// customers' values of one column by id, as COPY text.
fn customer_column(dump: &str, column: &str) -> Vec<(String, String)> {
    let blocks = copy_blocks(dump);
    let (cols, rows) = &blocks["public.customers"];
    let at = cols.iter().position(|c| c == column).unwrap();
    rows.iter().map(|r| (r[0].clone(), r[at].clone())).collect()
}

fn to_file(rules: &Path, dir: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    run(anonymize()
        .arg("--rules")
        .arg(rules)
        .arg("--target")
        .arg(dir.join(name))
        .args(extra)
        .arg("-q"))
}

#[test]
fn an_upper_casing_command_is_the_same_in_both_modes_runs_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let upper = rules(dir.path(), "upper.toml", &command("upper.py", ""), PHONE);
    let original = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let mut outputs = Vec::new();
    for (name, jobs) in [("a.sql", "1"), ("b.sql", "2"), ("c.sql", "2")] {
        let o = to_file(&upper, dir.path(), name, &["--jobs", jobs]);
        assert!(o.status.success(), "{}", stderr(&o));
        outputs.push(std::fs::read_to_string(dir.path().join(name)).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "--jobs 1 and 2 agree");
    assert_eq!(outputs[1], outputs[2], "two runs agree");
    let before = customer_column(&original, "notes");
    let after = customer_column(&outputs[0], "notes");
    assert_eq!(before.len(), after.len());
    let mut nulls = 0;
    for ((id, b), (_, a)) in before.iter().zip(&after) {
        if b == "\\N" {
            nulls += 1;
            assert_eq!(a, "\\N", "NULL stays NULL ({id})");
        } else {
            assert_eq!(decode(a), decode(b).to_uppercase(), "{id}");
        }
    }
    assert!(nulls > 10 && nulls < before.len(), "{nulls}");

    // Database mode writes the same values.
    let src = TestDb::demo("cmdsrc");
    let stg = TestDb::demo("cmdstg");
    let o = run(&mut refresh_with(&upper, &src, &stg));
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = customer_column(
        &pg_dump(&stg, &["--data-only", "-t", "public.customers"]),
        "notes",
    );
    let mut staged = staged;
    staged.sort();
    let mut dumped = after.clone();
    dumped.sort();
    assert_eq!(staged, dumped);

    // The dry run starts the command and shows its answers.
    let o = run(anonymize()
        .arg("--rules")
        .arg(&upper)
        .args(["--dry-run", "--sample", "5"]));
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        shown.contains("command = [\"python3\", \"tests/fixtures/commands/upper.py\"]"),
        "{shown}"
    );
}

#[test]
fn the_readme_examples_keep_shapes_and_are_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let sed = r#"{ command = ["sh", "-c", '''stdbuf -oL sed -E 's/^\{"value":".*","seed":"([0-9a-f]{16})[0-9a-f]*"\}$/{"value":"note-\1"}/' '''] }"#;
    let r = rules(
        dir.path(),
        "examples.toml",
        sed,
        "{ command = [\"python3\", \"rules/tokenize.py\"], domain = \"phone\" }",
    );
    let o = to_file(&r, dir.path(), "out.sql", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = std::fs::read_to_string(dir.path().join("out.sql")).unwrap();
    let original = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let shape = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '0'..='9' => '9',
                'a'..='z' => 'a',
                'A'..='Z' => 'A',
                other => other,
            })
            .collect()
    };
    let before = customer_column(&original, "phone");
    let after = customer_column(&out, "phone");
    let mut changed = 0;
    for ((_, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(shape(a), shape(b));
        changed += usize::from(a != b);
    }
    assert!(changed * 10 > before.len() * 9, "{changed}");
    let notes = customer_column(&out, "notes");
    let re = regex::Regex::new(r"^(\\N|note-[0-9a-f]{16})$").unwrap();
    assert!(notes.iter().all(|(_, n)| re.is_match(n)), "{notes:?}");
    // The same note gets the same token; another key, another token.
    let o = run(anonymize()
        .env("ANONYMIZE_KEY", "another-key-not-secret-0123456789")
        .arg("--rules")
        .arg(&r)
        .arg("--target")
        .arg(dir.path().join("other.sql"))
        .arg("-q"));
    assert!(o.status.success(), "{}", stderr(&o));
    let other = customer_column(
        &std::fs::read_to_string(dir.path().join("other.sql")).unwrap(),
        "phone",
    );
    assert!(other.iter().zip(&after).filter(|(x, y)| x.1 == y.1).count() < before.len() / 10);
}

#[test]
fn broken_commands_fail_the_run_and_leave_staging_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("cmdfsrc");
    let stg = TestDb::demo("cmdfstg");
    let before = demo_fingerprint(&stg);
    let original = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let values: Vec<String> = customer_column(&original, "last_name")
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v.len() > 4)
        .collect();
    let cases = [
        (
            "crash.py",
            "",
            "exited (exit status: 3) after answering 3 of",
        ),
        ("hang.py", ", timeout = 2", "within the 2 s timeout"),
        (
            "short.py",
            ", timeout = 2",
            "answered 999 of 1000 values within the 2 s timeout",
        ),
    ];
    for (script, extra, expected) in cases {
        let r = rules(dir.path(), "broken.toml", "{ scrub = [\"email\"] }", PHONE);
        // The command on last_name (NOT NULL, every row a value).
        let text = std::fs::read_to_string(&r).unwrap().replace(
            "last_name  = { fake = \"last_name\" }",
            &format!("last_name = {}", command(script, extra)),
        );
        std::fs::write(&r, text).unwrap();
        for strategy in ["in-place", "swap"] {
            let started = std::time::Instant::now();
            let o = run(anonymize().arg("--rules").arg(&r).args([
                "--source",
                &url(&src),
                "--target",
                &url(&stg),
                "--refresh",
                strategy,
                "-q",
            ]));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{script} {strategy}: {err}");
            assert!(
                err.contains(expected),
                "{script}: {expected:?} not in {err}"
            );
            assert!(err.contains("tests/fixtures/commands/"), "{err}");
            assert!(err.contains("last_name"), "{err}");
            assert!(occurring(&err, &values).is_empty(), "a value in: {err}");
            assert!(
                started.elapsed().as_secs() < 30,
                "{script} took {:?}",
                started.elapsed()
            );
            assert_eq!(
                demo_fingerprint(&stg),
                before,
                "{script} {strategy}: staging as it was"
            );
            assert!(!next_left_behind(&stg));
        }
        // Dump mode: exit 1, no output file.
        let o = to_file(&r, dir.path(), "never.sql", &[]);
        assert_eq!(o.status.code(), Some(1), "{script}: {}", stderr(&o));
        assert!(!dir.path().join("never.sql").exists());
    }
    // A command that cannot start: `check` says so (exit 2), a run fails (exit 1).
    let r = rules(
        dir.path(),
        "missing.toml",
        "{ command = [\"no-such-program-anonymize\"] }",
        PHONE,
    );
    let o = run(anonymize().arg("check").arg("--rules").arg(&r));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot start command `no-such-program-anonymize`"),
        "{}",
        stderr(&o)
    );
    let o = to_file(&r, dir.path(), "never.sql", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // `check` feeds a working command one made-up value.
    let r = rules(dir.path(), "ok.toml", &command("upper.py", ""), PHONE);
    let o = run(anonymize().arg("check").arg("--rules").arg(&r));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// (id, notes, first_name, country) of every customer, as JSON from the database.
fn customers_of(db: &TestDb) -> Vec<(i64, Option<String>, String, Option<String>)> {
    let json = db.query(
        "SELECT json_agg(json_build_array(id, notes, first_name, country) ORDER BY id) FROM customers",
    );
    serde_json::from_str(&json).unwrap()
}

#[test]
fn insert_dumps_batch_commands_and_branch_too() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("cmdisrc");
    let dump = dir.path().join("inserts.sql");
    std::fs::write(&dump, pg_dump(&src, &["--inserts"])).unwrap();
    let r = rules(dir.path(), "r.toml", &command("upper.py", ""), PHONE);
    let text = std::fs::read_to_string(&r).unwrap().replace(
        "first_name = { fake = \"first_name\" }",
        "first_name = { fake = \"first_name\", when = [{ if = \"country = 'GB'\", then = \"keep\" }] }",
    );
    assert!(text.contains("country = 'GB'"));
    std::fs::write(&r, text).unwrap();
    let o = run(anonymize()
        .arg("--rules")
        .arg(&r)
        .arg("--source")
        .arg(&dump)
        .arg("--target")
        .arg(dir.path().join("out.sql"))
        .arg("-q"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = std::fs::read_to_string(dir.path().join("out.sql")).unwrap();
    assert!(
        out.contains("INSERT INTO public.customers"),
        "still INSERTs"
    );
    let stg = TestDb::new("cmdistg");
    stg.load(&dir.path().join("out.sql"));
    let (before, after) = (customers_of(&src), customers_of(&stg));
    assert_eq!(before.len(), after.len());
    let mut kept = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.1, b.1.as_ref().map(|n| n.to_uppercase()), "{}", b.0);
        if b.3.as_deref() == Some("GB") {
            kept += 1;
            assert_eq!(a.2, b.2);
        } else {
            assert_ne!(a.2, b.2);
        }
    }
    assert!(kept > 100, "{kept}");
}

/// The processes whose command line mentions `needle` (from /proc).
fn processes_running(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

#[test]
fn a_signal_stops_a_wait_on_a_command_and_no_command_outlives_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of hang.py under a name no other test uses, to count its processes.
    let script = dir.path().join("hang-for-signals.py");
    std::fs::copy(root().join("tests/fixtures/commands/hang.py"), &script).unwrap();
    let rule = format!(
        "{{ command = [\"python3\", \"{}\"], timeout = 600 }}",
        script.display()
    );
    let r = rules(dir.path(), "hang.toml", &rule, PHONE);
    let needle = script.display().to_string();
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let mut child = anonymize()
            .arg("--rules")
            .arg(&r)
            .arg("--target")
            .arg(dir.path().join("never.sql"))
            .arg("-q")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while processes_running(&needle) == 0 {
            assert!(
                started.elapsed().as_secs() < 30,
                "the command never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let stopped = std::time::Instant::now();
        let status = child.wait().unwrap();
        assert!(stopped.elapsed().as_secs() < 5, "{:?}", stopped.elapsed());
        if signal == libc::SIGINT {
            assert_eq!(status.code(), Some(130));
        }
        assert!(!dir.path().join("never.sql").exists());
        let gone = std::time::Instant::now();
        while processes_running(&needle) > 0 {
            assert!(
                gone.elapsed().as_secs() < 5,
                "a command outlived anonymize ({signal})"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
