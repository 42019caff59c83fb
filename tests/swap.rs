//! `--refresh swap`: the new staging is built beside the old one and renamed into place. Staging
//! answers every reader throughout (measured against `in-place` on a million rows); what belongs to
//! staging (settings, grants, its own schema) survives; a run killed during the load, the index
//! builds or just before the cut-over leaves the old staging intact and the next run succeeds; the
//! cut-over waits for, ends, or gives up on sessions still on the old staging.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const RULES: &str = "[target]\nkeep_tables = [\"qa_notes\"]\n\n[tables.big.columns]\nid = \"keep\"\nn = \"keep\"\nnote = \"null\"\n";

fn source(rows: u64) -> TestDb {
    let db = TestDb::new("swap_src");
    db.query(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, n int NOT NULL, note text); \
         CREATE INDEX big_n ON big (n); \
         INSERT INTO big SELECT g, g % 1000, 'secret note ' || g FROM generate_series(1, {rows}) g; \
         ANALYZE big"
    ));
    db
}

/// Staging with the source's schema and things of its own: a setting, a reader role's grants.
fn staging(src: &TestDb) -> TestDb {
    let stg = TestDb::new("swap_stg");
    let schema = pg_dump(src, &["--schema-only"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), schema).unwrap();
    stg.load(file.path());
    stg.query(&format!(
        "DO $$ BEGIN CREATE ROLE swap_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         GRANT SELECT ON big TO swap_reader; \
         CREATE TABLE qa_notes (id int PRIMARY KEY, note text); \
         INSERT INTO qa_notes VALUES (1, 'qa account'), (2, 'flag'), (3, 'edge case'); \
         ALTER DATABASE {0} SET work_mem = '7MB'; \
         REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO swap_reader",
        stg.name
    ));
    stg
}

fn refresh(dir: &std::path::Path, src: &TestDb, stg: &TestDb, extra: &[&str]) -> Command {
    let rules = write_rules(dir, RULES);
    let mut c = anonymize();
    c.arg("--rules")
        .arg(rules)
        .args(["--source", &src.url(), "--target", &stg.url()])
        .args(extra);
    c
}

fn exists(stg: &TestDb, name: &str) -> bool {
    stg.query(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    )) == "1"
}

/// Drop what a swap leaves beside staging (its `__prev`, a killed run's `__next`).
fn drop_beside(stg: &TestDb) {
    for suffix in ["__prev", "__next"] {
        let _ = stg
            .client("dropdb")
            .args(["--if-exists", "--force", &format!("{}{suffix}", stg.name)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A reader that opens a new connection every 200 ms and counts `big`, until stopped: the time
/// each attempt took and whether it answered.
fn reader(stg: &TestDb, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(Duration, bool)>> {
    let name = stg.name.clone();
    let server = stg.server.clone();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let t0 = Instant::now();
            let o = server
                .program("psql")
                .args(server.client_args())
                .args(["-X", "-At", "-d", &name, "-c", "SELECT count(*) FROM big"])
                .env("PGCONNECT_TIMEOUT", "10")
                .output()
                .unwrap();
            seen.push((t0.elapsed(), o.status.success()));
            std::thread::sleep(Duration::from_millis(200));
        }
        seen
    })
}

/// Time lost by readers: failed attempts count whole, answered ones beyond half a second (a new
/// connection and a count of a million rows take 0.1–0.4 s on a two-core machine busy with the
/// refresh itself).
fn lost(seen: &[(Duration, bool)]) -> (usize, Duration) {
    let failed = seen.iter().filter(|(_, ok)| !ok).count();
    let lost = seen
        .iter()
        .map(|(d, ok)| {
            if *ok {
                d.saturating_sub(Duration::from_millis(500))
            } else {
                *d
            }
        })
        .sum();
    (failed, lost)
}

#[test]
fn a_swap_keeps_a_million_row_staging_readable_and_what_is_staging_s_own() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000_000);
    let stg = staging(&src);
    // First fill (in-place), then the measured runs.
    succeeded(
        &mut refresh(dir.path(), &src, &stg, &["-q"]),
        "first refresh",
    );
    src.query("UPDATE big SET n = n + 1 WHERE id <= 10");

    let measure = |strategy: &str| {
        let stop = Arc::new(AtomicBool::new(false));
        let r = reader(&stg, Arc::clone(&stop));
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let out = succeeded(
            &mut refresh(dir.path(), &src, &stg, &["-q", "--refresh", strategy]),
            strategy,
        );
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let seen = r.join().unwrap();
        let (failed, lost) = lost(&seen);
        eprintln!(
            "{strategy}: refresh {:.1} s; {} reader attempts, {failed} failed, {:.1} s lost (longest {:.1} s)",
            took.as_secs_f64(),
            seen.len(),
            lost.as_secs_f64(),
            seen.iter().map(|s| s.0).max().unwrap_or_default().as_secs_f64()
        );
        drop(out);
        (seen.len(), failed, lost)
    };
    let (n, failed, lost_swap) = measure("swap");
    assert!(n >= 3, "the reader ran {n} times");
    assert_eq!(failed, 0, "a reader failed during the swap");
    assert!(
        lost_swap <= Duration::from_secs(1),
        "readers lost {lost_swap:?} during the swap"
    );
    // The new staging holds the anonymized rows; the old one is kept beside it.
    assert_eq!(
        stg.query("SELECT count(*), count(note) FROM big"),
        "1000000|0"
    );
    assert_eq!(stg.query("SELECT n FROM big WHERE id = 1"), "2");
    assert!(exists(&stg, &format!("{}__prev", stg.name)));
    assert!(!exists(&stg, &format!("{}__next", stg.name)));
    // Staging's own setting, grants, owner and index came across, and the kept table's rows.
    assert_eq!(stg.query("SELECT count(*) FROM qa_notes"), "3");
    assert_eq!(
        stg.query(&format!(
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting \
             WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = '{}')",
            stg.name
        )),
        "work_mem=7MB"
    );
    assert_eq!(
        stg.query(&format!(
            "SELECT has_database_privilege('swap_reader', '{0}', 'CONNECT'), \
                    has_database_privilege('public', '{0}', 'CONNECT'), \
                    has_table_privilege('swap_reader', 'big', 'SELECT'), \
                    (SELECT count(*) FROM pg_indexes WHERE tablename = 'big')",
            stg.name
        )),
        "t|f|t|2"
    );
    // In-place, for the record: the load holds the table, and readers wait.
    let (_, _, lost_in_place) = measure("in-place");
    assert!(
        lost_in_place > lost_swap,
        "in-place lost {lost_in_place:?}, swap {lost_swap:?}"
    );
    drop_beside(&stg);
}

#[test]
fn a_swap_killed_anywhere_leaves_the_old_staging_and_the_next_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(20_000);
    let stg = staging(&src);
    succeeded(
        &mut refresh(dir.path(), &src, &stg, &["-q", "--refresh", "swap"]),
        "first swap",
    );
    for (i, point) in ["load", "indexes", "cutover"].into_iter().enumerate() {
        let before = stg.query("SELECT count(*), sum(n) FROM big");
        src.query(&format!("UPDATE big SET n = n + 1 WHERE id = {}", i + 1));
        let mut child = refresh(dir.path(), &src, &stg, &["--refresh", "swap"])
            .env("ANONYMIZE_DEBUG_PAUSE", point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = stderr_lines(&mut child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("never paused at {point}"));
            if line.contains(&format!("paused at {point}")) {
                break;
            }
        }
        if point == "load" {
            // Neither strategy runs beside the other on the same staging.
            let o = run(
                refresh(dir.path(), &src, &stg, &["-q", "--refresh", "in-place"])
                    .stdin(Stdio::null()),
            );
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(
                stderr(&o).contains("another refresh of this staging database is running"),
                "{}",
                stderr(&o)
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The old staging, intact and readable under its name.
        assert_eq!(
            stg.query("SELECT count(*), sum(n) FROM big"),
            before,
            "{point}"
        );
        // The next run drops the leftover __next, says so, and succeeds.
        let o = run(&mut refresh(dir.path(), &src, &stg, &["--refresh", "swap"]));
        assert!(
            o.status.success(),
            "the run after a kill at {point}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(&format!(
                "removing {}__next, left by an earlier run that did not finish",
                stg.name
            )),
            "{}",
            stderr(&o)
        );
        assert!(!exists(&stg, &format!("{}__next", stg.name)));
        assert_eq!(
            stg.query(&format!("SELECT n FROM big WHERE id = {}", i + 1)),
            src.query(&format!("SELECT n FROM big WHERE id = {}", i + 1)),
        );
    }
    // And a swap does not start while an in-place refresh runs.
    let mut child = refresh(dir.path(), &src, &stg, &["--refresh", "in-place"])
        .env("ANONYMIZE_DEBUG_PAUSE", "load")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    while !lines
        .recv_timeout(Duration::from_secs(120))
        .expect("in-place never paused at load")
        .contains("paused at load")
    {}
    let o = run(refresh(dir.path(), &src, &stg, &["-q", "--refresh", "swap"]).stdin(Stdio::null()));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another refresh of staging database")
            && stderr(&o).contains("(swap or in-place)"),
        "{}",
        stderr(&o)
    );
    assert!(!exists(&stg, &format!("{}__next", stg.name)));
    drop_beside(&stg);
}

#[test]
fn the_cut_over_waits_then_fails_or_ends_the_sessions_still_on_staging() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1000);
    let stg = staging(&src);
    succeeded(
        &mut refresh(dir.path(), &src, &stg, &["-q", "--refresh", "swap"]),
        "first swap",
    );
    // A session that stays on staging (an idle application connection), with a temporary
    // sequence of its own, which the swap's reading of staging's sequences must pass by.
    let hold = || {
        stg.client("psql")
            .args(["-X", "-q", "-d", &stg.name])
            .args([
                "-c",
                "CREATE TEMP SEQUENCE held",
                "-c",
                "SELECT pg_sleep(60)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut holder = hold();
    std::thread::sleep(Duration::from_millis(500));
    src.query("UPDATE big SET n = 5000 WHERE id = 1");
    let o = run(&mut refresh(
        dir.path(),
        &src,
        &stg,
        &["--refresh", "swap", "--cutover-wait", "2"],
    ));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("session(s) still use staging database") && err.contains("--cutover-wait"),
        "{err}"
    );
    assert_ne!(stg.query("SELECT n FROM big WHERE id = 1"), "5000");
    assert!(!exists(&stg, &format!("{}__next", stg.name)));
    // Ctrl-C during a long wait stops the run at once, as the signal asks, staging as it was.
    let mut child = refresh(
        dir.path(),
        &src,
        &stg,
        &["-v", "--refresh", "swap", "--cutover-wait", "120"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut line, mut err, mut signalled) = (String::new(), String::new(), None);
    while std::io::BufRead::read_line(&mut lines, &mut line).unwrap() > 0 {
        if signalled.is_none() && line.contains("cutting over") {
            // Past the first polls: the run is waiting for the session.
            std::thread::sleep(Duration::from_millis(1500));
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            signalled = Some(Instant::now());
        }
        err.push_str(&line);
        line.clear();
    }
    let status = child.wait().unwrap();
    let signalled = signalled.unwrap_or_else(|| panic!("no cut-over line:\n{err}"));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert_ne!(stg.query("SELECT n FROM big WHERE id = 1"), "5000");
    assert!(!exists(&stg, &format!("{}__next", stg.name)));
    // With --cutover-terminate the session is ended after the wait and the swap completes.
    let o = run(&mut refresh(
        dir.path(),
        &src,
        &stg,
        &[
            "--refresh",
            "swap",
            "--cutover-wait",
            "1",
            "--cutover-terminate",
            "--drop-prev",
        ],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stg.query("SELECT n FROM big WHERE id = 1"), "5000");
    assert!(!holder.wait().unwrap().success(), "the session was ended");
    assert!(!exists(&stg, &format!("{}__prev", stg.name)), "--drop-prev");
    let _ = hold().kill();
    drop_beside(&stg);
}

#[test]
fn a_role_that_may_not_create_databases_is_told_to_use_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(10);
    let stg = staging(&src);
    stg.query(
        "DO $$ BEGIN CREATE ROLE swap_loader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         GRANT ALL ON big TO swap_loader",
    );
    stg.query(&format!(
        "GRANT CONNECT ON DATABASE {} TO swap_loader",
        stg.name
    ));
    stg.query("SELECT 1");
    let url = stg.server.url_as("swap_loader", None, &stg.name);
    let rules = write_rules(dir.path(), RULES);
    let o = run(anonymize().arg("--rules").arg(rules).args([
        "--source",
        &src.url(),
        "--target",
        &url,
        "--refresh",
        "swap",
    ]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs CREATEDB") && err.contains("--refresh in-place"),
        "{err}"
    );
    assert!(!exists(&stg, &format!("{}__next", stg.name)));
}

#[test]
fn an_icu_staging_stays_icu_after_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(1_000);
    let stg = TestDb::new("swap_icu");
    // Staging made again with the ICU locale provider (PostgreSQL 15+).
    src.query(&format!("DROP DATABASE {}", stg.name));
    src.query(&format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu \
         ICU_LOCALE 'en-US' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
        stg.name
    ));
    let schema = pg_dump(&src, &["--schema-only"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), schema).unwrap();
    stg.load(file.path());
    stg.query("CREATE TABLE qa_notes (id int PRIMARY KEY, note text)");
    succeeded(
        &mut refresh(
            dir.path(),
            &src,
            &stg,
            &["-q", "--refresh", "swap", "--drop-prev"],
        ),
        "a swap of an ICU staging",
    );
    assert_eq!(
        stg.query(&format!(
            "SELECT datlocprovider::text || ' ' || daticulocale || ' ' || datcollate FROM pg_database WHERE datname = '{}'",
            stg.name
        )),
        "i en-US C.UTF-8"
    );
    assert_eq!(stg.query("SELECT count(*) FROM big"), "1000");
    drop_beside(&stg);
}

/// A swap checks the foreign keys on several sessions after committing them unchecked into
/// `__next`: rows that break one (a `where` filter on the parent, as the README warns) fail the
/// refresh with the key's name, the old staging stays as it was and no `__next` is left.
#[test]
fn a_foreign_key_broken_by_a_filter_fails_the_swap_and_keeps_staging() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("swfksrc");
    let stg = TestDb::demo("swfkstg");
    let ok = run(demo_refresh(&src, &stg).args(["--refresh", "swap", "--drop-prev"]));
    assert!(ok.status.success(), "{}", stderr(&ok));
    let before = demo_fingerprint(&stg);
    let rules = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.customers.columns]",
            "[tables.customers]\nwhere = \"id > 500\"\n\n[tables.customers.columns]",
        );
    let path = write_rules(dir.path(), &rules);
    let o = run(refresh_with(&path, &src, &stg).args(["--refresh", "swap"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("restoring foreign key") && err.contains("customer_id_fkey"),
        "{err}"
    );
    assert!(!err.contains(")=("), "a key value in: {err}");
    assert_eq!(demo_fingerprint(&stg), before);
    assert!(!next_left_behind(&stg));
}

/// Staging's foreign keys, as (table, name, validated, definition), for comparing with the source's.
fn foreign_keys(db: &TestDb) -> String {
    db.query(
        "SELECT string_agg(format('%s %s %s %s', conrelid::regclass, conname, convalidated, \
                pg_get_constraintdef(oid)), ' | ' ORDER BY conname) \
         FROM pg_constraint WHERE contype = 'f'",
    )
}

#[test]
fn foreign_keys_are_checked_while_other_tables_load_unless_fixtures_come_after_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("swekeysrc");
    let stg = TestDb::demo("swekeystg");
    let swap = |rules: &std::path::Path| {
        let mut c = anonymize();
        c.arg("--rules").arg(rules).args([
            "-v",
            "--source",
            &src.url(),
            "--target",
            &stg.url(),
            "--refresh",
            "swap",
            "--drop-prev",
        ]);
        run(&mut c)
    };
    let expected = foreign_keys(&src);
    assert_eq!(expected.matches(" t FOREIGN KEY").count(), 3, "{expected}");

    // No fixtures: every key is added and checked by a loading session once both its tables are in.
    let o = swap(&root().join("rules/customers.toml"));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("staging: checked 3 foreign keys during the load"),
        "{err}"
    );
    assert!(err.contains("restoring 0 foreign keys"), "{err}");
    assert_eq!(foreign_keys(&stg), expected);
    // Every table was analyzed in the new database before it took staging's name (the sessions
    // share that with the last key checks), so its planner has statistics from the first query.
    assert_eq!(
        stg.query(
            "SELECT string_agg(relname || ':' || (last_analyze IS NOT NULL \
             AND EXISTS (SELECT FROM pg_stats s WHERE s.tablename = relname)), ' ' ORDER BY relname) \
             FROM pg_stat_user_tables"
        ),
        "addresses:true audit_log:true customers:true orders:true payments:true"
    );
    let before = demo_fingerprint(&stg);

    // A fixture adds rows after the load: the keys wait for it, and check its rows too.
    let rules_with = |sql: &str| {
        let fixture = dir.path().join("fixture.sql");
        std::fs::write(&fixture, sql).unwrap();
        let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap()
            + &format!("\n[[fixtures]]\nsql = \"{}\"\n", fixture.display());
        write_rules(dir.path(), &text)
    };
    let good = rules_with(
        "INSERT INTO addresses (customer_id, street, city, country) \
         SELECT min(id), '1 Test Street', 'Testville', 'DE' FROM customers;\n",
    );
    let o = swap(&good);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("during the load"), "{err}");
    assert!(err.contains("restoring 3 foreign keys"), "{err}");
    // The statistics count the fixture's row: the tables were analyzed after it.
    assert_eq!(
        stg.query(
            "SELECT reltuples::bigint = (SELECT count(*) FROM addresses) FROM pg_class \
             WHERE oid = 'addresses'::regclass"
        ),
        "t"
    );
    assert_eq!(foreign_keys(&stg), expected);
    assert_eq!(
        stg.query("SELECT count(*) FROM addresses WHERE street = '1 Test Street'"),
        "1"
    );
    let before_bad = demo_fingerprint(&stg);
    assert_ne!(before, before_bad);

    // A fixture row that breaks a key fails the swap, and staging stays as it was.
    let bad = rules_with(
        "INSERT INTO addresses (customer_id, street, city, country) \
         VALUES (987654321, '2 Nowhere Road', 'Testville', 'DE');\n",
    );
    let o = swap(&bad);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("restoring foreign key addresses_customer_id_fkey"),
        "{err}"
    );
    assert!(!err.contains("987654321"), "a key value in: {err}");
    assert_eq!(demo_fingerprint(&stg), before_bad);
    assert!(!next_left_behind(&stg));
    drop_beside(&stg);
}

#[test]
fn a_kept_table_whose_key_references_a_loaded_table_comes_across_and_its_key_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("swkeptsrc");
    let stg = TestDb::demo("swkeptstg");
    let ok = run(demo_refresh(&src, &stg).args(["--refresh", "in-place"]));
    assert!(ok.status.success(), "{}", stderr(&ok));
    // qa_notes references qa_flags, and is listed first: kept tables' keys between themselves
    // are checked once all are copied.
    stg.query(
        "CREATE TABLE qa_flags (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), \
         flag text); INSERT INTO qa_flags VALUES (1, 1, 'vip'), (2, 2, 'slow payer'), (3, 1, 'beta'); \
         CREATE TABLE qa_notes (id serial PRIMARY KEY, flag_id int NOT NULL REFERENCES qa_flags(id), \
         note text); INSERT INTO qa_notes (flag_id, note) VALUES (3, 'new checkout'), (1, 'call first'); \
         CREATE FUNCTION qa_stamp() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN NEW.note := NEW.note || ' (stamped)'; RETURN NEW; END $$; \
         CREATE TRIGGER qa_stamp BEFORE INSERT ON qa_notes FOR EACH ROW EXECUTE FUNCTION qa_stamp(); \
         CREATE TABLE qa_events (d date NOT NULL, what text) PARTITION BY RANGE (d); \
         CREATE TABLE qa_events_2026 PARTITION OF qa_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); \
         INSERT INTO qa_events VALUES ('2026-03-01', 'launch'), ('2026-05-01', 'migration'); \
         CREATE FUNCTION qa_event_stamp() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN NEW.what := NEW.what || '!'; RETURN NEW; END $$; \
         CREATE TRIGGER qa_event_stamp BEFORE INSERT ON qa_events FOR EACH ROW \
         EXECUTE FUNCTION qa_event_stamp(); \
         ALTER TABLE qa_events_2026 DISABLE TRIGGER qa_event_stamp; \
         CREATE SEQUENCE qa_ticket; SELECT setval('qa_ticket', 777, false)",
    );
    let keep = |tables: &str| {
        let rules = std::fs::read_to_string(root().join("rules/customers.toml"))
            .unwrap()
            .replace(
                "[target]\n",
                &format!("[target]\nkeep_tables = [{tables}]\n"),
            );
        write_rules(dir.path(), &rules)
    };
    // A partitioned table and one of its partitions both listed: refused before anything.
    let o = run(
        refresh_with(&keep("\"qa_events\", \"qa_events_2026\""), &src, &stg)
            .args(["--refresh", "swap"]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a partition of"), "{}", stderr(&o));
    // Without -q, to see the warnings.
    let path = keep("\"qa_notes\", \"qa_flags\", \"qa_events\"");
    let o = run(anonymize().arg("--rules").arg(&path).args([
        "--source",
        &src.url(),
        "--target",
        &stg.url(),
        "--refresh",
        "swap",
        "--drop-prev",
    ]));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("anonymize: "), "{err}");
    assert!(!err.contains("qa_events"), "not a table left empty: {err}");
    // Kept rows as they were (their insert trigger did not stamp them again), the partitioned
    // table's rows, and the serial going on from where it was; the trigger is on again.
    assert_eq!(
        stg.query("SELECT string_agg(d || ':' || what, ',' ORDER BY d) FROM qa_events"),
        "2026-03-01:launch,2026-05-01:migration"
    );
    assert_eq!(
        stg.query(
            "INSERT INTO qa_notes (flag_id, note) VALUES (2, 'late') RETURNING id || ':' || note"
        ),
        "3:late (stamped)"
    );
    stg.query("DELETE FROM qa_notes WHERE id = 3");
    // A staging-only sequence set back (not called) stays where it was, and a trigger one
    // partition had off stays off.
    assert_eq!(stg.query("SELECT nextval('qa_ticket')"), "777");
    assert_eq!(
        stg.query(
            "SELECT string_agg(tgrelid::regclass || ':' || tgenabled::text, ',' ORDER BY tgrelid::regclass::text) \
             FROM pg_trigger WHERE tgname = 'qa_event_stamp'"
        ),
        "qa_events:O,qa_events_2026:D"
    );
    assert_eq!(
        stg.query("SELECT string_agg(id || ':' || customer_id || ':' || flag, ',' ORDER BY id) FROM qa_flags"),
        "1:1:vip,2:2:slow payer,3:1:beta"
    );
    assert_eq!(
        stg.query(
            "SELECT string_agg(id || ':' || flag_id || ':' || note, ',' ORDER BY id) FROM qa_notes"
        ),
        "1:3:new checkout,2:1:call first"
    );
    assert_eq!(
        stg.query(
            "SELECT string_agg(conname || ':' || convalidated, ',' ORDER BY conname) FROM pg_constraint \
             WHERE conrelid IN ('qa_flags'::regclass, 'qa_notes'::regclass) AND contype = 'f'"
        ),
        "qa_flags_customer_id_fkey:true,qa_notes_flag_id_fkey:true"
    );
    // A kept row whose customer only the old staging has (a staging-only customer, which the
    // refresh replaces with production's) fails the swap; staging stays as it was.
    stg.query(
        "INSERT INTO customers (id, email, first_name, last_name, created_at) \
         VALUES (987654321, 'qa-only@acme.test', 'Q', 'A', now()); \
         INSERT INTO qa_flags VALUES (4, 987654321, 'gone')",
    );
    let before = demo_fingerprint(&stg);
    let o = run(refresh_with(&path, &src, &stg).args(["--refresh", "swap"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("qa_flags_customer_id_fkey"), "{err}");
    assert!(!err.contains("987654321"), "a key value in: {err}");
    assert_eq!(demo_fingerprint(&stg), before);
    assert!(!next_left_behind(&stg));
    drop_beside(&stg);
}
