//! Shared helpers for the end-to-end tests: the binary, throwaway databases on the suite's own
//! server (see `cluster`), dump parsing.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub mod cluster;
pub mod leaks;

#[allow(unused_imports)] // Each test binary uses its own subset.
pub use cluster::{server, Cluster, ClusterConfig, Server};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const KEY: &str = "test-key-not-secret-0123456789";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn pagila_dir() -> PathBuf {
    root().join("tests/fixtures/pagila")
}

/// The binary, with a key set and nothing else inherited that could change its behaviour (no
/// `PG*` variable, no URL variables of the deploy examples), and the server's programs first on
/// `PATH` (it runs pg_dump).
pub fn anonymize() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anonymize"));
    cluster::clear_pg_env(&mut c);
    c.env("ANONYMIZE_KEY", KEY)
        .env_remove("PROD_DATABASE_URL")
        .env_remove("STAGING_DATABASE_URL")
        .current_dir(root());
    c.env("PATH", cluster::path_env());
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run the binary")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// psql's arguments for the suite's server: no psqlrc, quiet, host, port and superuser.
pub fn pg_args() -> Vec<String> {
    let mut args = vec!["-X".to_string(), "-q".to_string()];
    args.extend(server().client_args());
    args
}

/// A client program of the suite's server (`psql`, `pg_dump`, …), with its connection arguments.
pub fn client(program: &str) -> Command {
    let s = server();
    let mut c = s.program(program);
    c.args(s.client_args());
    c
}

/// A database created for one test and dropped when the value goes out of scope, on the suite's
/// server or on a cluster of the test's own.
pub struct TestDb {
    pub name: String,
    pub server: Server,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub fn new(tag: &str) -> Self {
        TestDb::on(server(), tag)
    }

    /// A new database on another server.
    pub fn on(server: &Server, tag: &str) -> Self {
        let name = format!(
            "anon_test_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let db = TestDb {
            name,
            server: server.clone(),
        };
        succeeded(
            db.client("createdb").arg(&db.name),
            &format!("createdb {}", db.name),
        );
        db
    }

    /// A new database loaded with the demo dump, `examples/production.sql`.
    pub fn demo(tag: &str) -> Self {
        let db = TestDb::new(tag);
        db.load(&root().join("examples/production.sql"));
        db
    }

    /// A client program connected to this database's server.
    pub fn client(&self, program: &str) -> Command {
        let mut c = self.server.program(program);
        c.args(self.server.client_args());
        c
    }

    /// The URL of this database, as the superuser.
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    /// Run SQL from a file with ON_ERROR_STOP; panics with psql's stderr on failure.
    pub fn load(&self, file: &Path) {
        succeeded(
            self.client("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.name, "-f"])
                .arg(file)
                .stdout(Stdio::null()),
            &format!("loading {} failed", file.display()),
        );
    }

    /// One query, unaligned, tuples only.
    pub fn query(&self, sql: &str) -> String {
        let out = succeeded(
            self.client("psql").args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-d",
                &self.name,
                "-c",
                sql,
            ]),
            sql,
        );
        out.trim_end().to_string()
    }

    /// Rows read from each user table so far (sequential and index fetches), from the statistics
    /// as they stand once every session of `application` has ended (a session hands its counts in
    /// when it ends).
    pub fn rows_read(&self, application: &str) -> BTreeMap<String, i64> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.query(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}' \
             AND pid <> pg_backend_pid()"
        )) != "0"
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{application} still connected"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.query(
            "SELECT relid::regclass::text || '=' || (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) \
             FROM pg_stat_user_tables ORDER BY 1",
        )
        .lines()
        .map(|l| {
            let (t, n) = l.rsplit_once('=').unwrap();
            (t.to_string(), n.parse().unwrap())
        })
        .collect()
    }
}

/// The stdout of a command that must succeed; panics with `what` and its stderr when it does not.
pub fn succeeded(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().expect("a client program runs");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self
            .client("dropdb")
            .args(["--if-exists", "--force", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// The rows of each COPY block of a plain dump: table → rows → decoded-enough fields (escapes kept).
pub fn copy_blocks(dump: &str) -> BTreeMap<String, (Vec<String>, Vec<Vec<String>>)> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, Vec<String>, Vec<Vec<String>>)> = None;
    for line in dump.lines() {
        if let Some((name, cols, rows)) = current.as_mut() {
            if line == "\\." {
                let (name, cols, rows) = (name.clone(), cols.clone(), std::mem::take(rows));
                blocks.insert(name, (cols, rows));
                current = None;
            } else {
                rows.push(line.split('\t').map(String::from).collect());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("COPY ") {
            let (name, tail) = rest.split_once(" (").unwrap();
            let cols = tail
                .split_once(")")
                .unwrap()
                .0
                .split(", ")
                .map(String::from)
                .collect();
            current = Some((name.to_string(), cols, Vec::new()));
        }
    }
    blocks
}

/// The values of one column of one table.
pub fn column(
    blocks: &BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>,
    table: &str,
    col: &str,
) -> Vec<String> {
    let (cols, rows) = &blocks[table];
    let i = cols
        .iter()
        .position(|c| c == col)
        .unwrap_or_else(|| panic!("{table}.{col}"));
    rows.iter()
        .map(|r| r[i].clone())
        .filter(|v| v != "\\N" && !v.is_empty())
        .collect()
}

/// The needles that occur anywhere in the haystack (one pass, whatever the number of needles).
pub fn occurring<'a>(haystack: &str, needles: &'a [String]) -> Vec<&'a str> {
    let ac = aho_corasick::AhoCorasick::new(needles).unwrap();
    let mut found: Vec<&str> = ac
        .find_overlapping_iter(haystack)
        .map(|m| needles[m.pattern().as_usize()].as_str())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Write a rules file into `dir`.
pub fn write_rules(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rules.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// How many rows each table gained in `after` over `before`.
pub fn reads_between(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(t, n)| (t.clone(), n - before.get(t).copied().unwrap_or(0)))
        .collect()
}

/// Read one row of `table` in a session of its own, and wait until the statistics show it: proof
/// that the statistics of sessions that ended before it are in too.
pub fn control_read(db: &TestDb, table: &str) {
    let before = db.rows_read("anon_control");
    let mut c = db.client("psql");
    c.args(["-X", "-q", "-At", "-d", &db.name, "-c"])
        .arg(format!("SELECT 1 FROM {table} LIMIT 1"))
        .env("PGAPPNAME", "anon_control");
    succeeded(&mut c, "the control read");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let after = db.rows_read("anon_control");
        if reads_between(&before, &after)
            .get(table)
            .copied()
            .unwrap_or(0)
            >= 1
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the statistics never showed the control read"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Wait until a session with this application name streams a table out of `db`.
pub fn wait_until_copying(db: &TestDb, application: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}' \
         AND query LIKE 'COPY (SELECT%' AND state = 'active'"
    );
    while db.query(&sql) == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never started copying"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The URL of a test database, as the superuser.
pub fn url(db: &TestDb) -> String {
    db.url()
}

/// One md5 over every row of the demo's customers, orders and addresses: "staging as it was".
pub fn demo_fingerprint(db: &TestDb) -> String {
    db.query(
        "SELECT md5(string_agg(t, ',' ORDER BY t)) FROM \
         (SELECT c::text AS t FROM customers c UNION ALL SELECT o::text FROM orders o \
          UNION ALL SELECT a::text FROM addresses a) x",
    )
}

/// Whether a swap left its `<staging>__next` database behind.
pub fn next_left_behind(db: &TestDb) -> bool {
    db.query(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{}__next'",
        db.name
    )) != "0"
}

/// pg_dump of a test database with extra arguments (e.g. `--data-only`), as text.
pub fn pg_dump(db: &TestDb, extra: &[&str]) -> String {
    succeeded(db.client("pg_dump").args(extra).arg(&db.name), "pg_dump")
}

/// A run's JSON report.
pub fn read_report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The report of a run that succeeded.
pub fn success_report(path: &Path) -> serde_json::Value {
    let doc = read_report(path);
    assert_eq!(doc["status"], "success", "{doc}");
    assert_eq!(doc["exit_code"], 0, "{doc}");
    doc
}

/// The report of a run that failed with exit code 1 for a reason whose text contains `because`.
pub fn failed_report(path: &Path, because: &str) -> serde_json::Value {
    let doc = read_report(path);
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["exit_code"], 1, "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains(because),
        "{because:?} not in {doc}"
    );
    doc
}

/// A refresh of the demo database `src` into `stg` with the demo rules, quiet.
pub fn demo_refresh(src: &TestDb, stg: &TestDb) -> Command {
    let mut c = anonymize();
    c.args(["--rules", "rules/customers.toml", "-q"]).args([
        "--source",
        &url(src),
        "--target",
        &url(stg),
    ]);
    c
}

/// A refresh of `src` into `stg` with the rules file at `rules`, quiet.
pub fn refresh_with(rules: &Path, src: &TestDb, stg: &TestDb) -> Command {
    let mut c = anonymize();
    c.arg("--rules")
        .arg(rules)
        .args(["--source", &url(src), "--target", &url(stg), "-q"]);
    c
}

/// pagila's schema and data as one plain dump in `dir`: its path and text.
pub fn pagila_dump(dir: &Path) -> (PathBuf, String) {
    let dump = dir.join("pagila.sql");
    let mut text = std::fs::read_to_string(pagila_dir().join("pagila-schema.sql")).unwrap();
    text.push_str(&std::fs::read_to_string(pagila_dir().join("pagila-data.sql")).unwrap());
    std::fs::write(&dump, &text).unwrap();
    (dump, text)
}

/// Anonymize a dump file into `dir/out.sql`; returns the output text.
pub fn anonymize_file(rules: &str, source: &Path, dir: &Path) -> String {
    let target = dir.join("out.sql");
    let o = run(anonymize()
        .args(["--rules", rules, "--source"])
        .arg(source)
        .arg("--target")
        .arg(&target));
    assert!(o.status.success(), "anonymize failed: {}", stderr(&o));
    std::fs::read_to_string(&target).unwrap()
}

/// Run a command to its end; its exit code and its peak resident memory in KB (from the kernel's
/// accounting of the child, as `wait4` reports it).
pub fn peak_rss_kb(cmd: &mut Command) -> (Option<i32>, u64) {
    // Waited on below with wait4, which the Child handle cannot do.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child, whose Child handle is never waited on again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as u64)
}

/// The demo dump with every COPY block's rows repeated `times` times.
pub fn demo_times(times: usize) -> String {
    let demo = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let mut out = String::with_capacity(demo.len() * times);
    let mut rows = String::new();
    let mut inside = false;
    for line in demo.split_inclusive('\n') {
        if inside {
            if line == "\\.\n" {
                for _ in 0..times {
                    out.push_str(&rows);
                }
                rows.clear();
                inside = false;
                out.push_str(line);
            } else {
                rows.push_str(line);
            }
            continue;
        }
        inside = line.starts_with("COPY ");
        out.push_str(line);
    }
    out
}

/// The lines a child writes to its stderr, as they come (a thread reads them).
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
