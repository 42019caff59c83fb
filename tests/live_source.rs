//! A live source fails closed too: every relation kind and object that holds data is covered
//! (materialized views, foreign tables, large objects, rows hidden by row-level security), the
//! source cannot change under a run, `where` filters cannot write, and no secret or value reaches
//! a message, a report or a child's arguments.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `anonymize check` of these rules against the source database.
fn check(rules: &Path, src: &TestDb) -> Output {
    run(anonymize()
        .arg("check")
        .arg("--rules")
        .arg(rules)
        .args(["--source", &url(src)]))
}

/// A fingerprint of a database's customers emails, to show it did not change.
fn customers_md5(db: &TestDb) -> String {
    db.query("SELECT md5(string_agg(email, ',' ORDER BY id)) FROM public.customers")
}

/// The demo rules with extra lines after them.
fn rules_with(dir: &Path, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap();
    write_rules(dir, &format!("{base}\n{extra}"))
}

fn refresh(rules: &Path, src: &str, stg: &str, extra: &[&str]) -> Output {
    run(anonymize()
        .arg("--rules")
        .arg(rules)
        .args(["--source", src, "--target", stg])
        .args(extra))
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A psql session that runs SQL inside an open transaction and holds its locks until released.
struct Holder {
    child: Child,
    stdin: ChildStdin,
}

impl Holder {
    /// Start a transaction in `db` as `application`, run `sql`, and wait until it is idle in the
    /// transaction (its locks granted).
    fn start(db: &TestDb, application: &str, sql: &str) -> Holder {
        let mut child = db
            .client("psql")
            .args(["-X", "-q", "-d", &db.name])
            .env("PGAPPNAME", application)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "BEGIN;\n{sql}").unwrap();
        stdin.flush().unwrap();
        let q = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}' \
             AND state = 'idle in transaction'"
        );
        wait_for("the holder's transaction", || db.query(&q) == "1");
        Holder { child, stdin }
    }

    fn release(mut self) {
        let _ = writeln!(self.stdin, "COMMIT;");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// Waiting on a lock: a session of this application in `db`.
fn waiting_on_lock(db: &TestDb, application: &str) -> bool {
    db.query(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}' \
         AND wait_event_type = 'Lock'"
    )) != "0"
}

fn emails(db: &TestDb, sql: &str) -> std::collections::BTreeSet<String> {
    db.query(sql).lines().map(str::to_string).collect()
}

#[test]
fn materialized_views_are_rebuilt_from_anonymized_rows_and_unpopulated_ones_stay_empty() {
    let views = "CREATE MATERIALIZED VIEW public.customer_mail AS \
                   SELECT id, email, last_name FROM public.customers;\
                 CREATE MATERIALIZED VIEW public.mail_domains AS \
                   SELECT split_part(email, '@', 2) AS domain, count(*) AS n \
                   FROM public.customer_mail GROUP BY 1;\
                 CREATE MATERIALIZED VIEW public.cold AS SELECT email FROM public.customers WITH NO DATA;";
    let src = TestDb::demo("mvsrc");
    src.query(views);
    let originals = emails(&src, "SELECT email FROM public.customers");
    // Yesterday's staging: the same views, all holding original rows (even `cold`).
    let stg = TestDb::demo("mvstg");
    stg.query(views);
    stg.query("REFRESH MATERIALIZED VIEW public.cold");
    let o = run(&mut demo_refresh(&src, &stg));
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = emails(&stg, "SELECT email FROM public.customer_mail");
    assert_eq!(staged.len(), originals.len());
    assert!(staged.is_disjoint(&originals), "original emails in a view");
    assert_eq!(
        staged,
        emails(&stg, "SELECT email FROM public.customers"),
        "the view is built from the anonymized table"
    );
    assert_eq!(
        stg.query("SELECT string_agg(domain, ',' ORDER BY domain) FROM public.mail_domains"),
        stg.query(
            "SELECT string_agg(DISTINCT split_part(email, '@', 2), ',' ORDER BY split_part(email, '@', 2)) \
             FROM public.customers"
        ),
        "a view over a view is refreshed after it"
    );
    assert_eq!(
        stg.query("SELECT relispopulated FROM pg_class WHERE oid = 'public.cold'::regclass"),
        "f",
        "unpopulated in the source, unpopulated in staging"
    );

    // scan names them (they need no rule).
    let o = run(anonymize().args(["scan", "--source", &url(&src)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = String::from_utf8(o.stdout).unwrap();
    let line = draft
        .lines()
        .find(|l| l.starts_with("# Materialized views"))
        .expect("the materialized views line");
    for view in ["public.cold", "public.customer_mail", "public.mail_domains"] {
        assert!(line.contains(view), "{line}");
    }

    // --create-schema into an empty database: the same.
    let empty = TestDb::new("mvnew");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let o = refresh(&rules, &url(&src), &url(&empty), &["--create-schema", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = emails(&empty, "SELECT email FROM public.customer_mail");
    assert_eq!(staged.len(), originals.len());
    assert!(staged.is_disjoint(&originals));
    assert_eq!(
        empty.query("SELECT relispopulated FROM pg_class WHERE oid = 'public.cold'::regclass"),
        "f"
    );
}

/// A wrapper for pg_dump, first on PATH, that records its arguments and its environment's names.
fn recording_pg_dump(dir: &Path) -> (std::ffi::OsString, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("pg_dump.args");
    let real = server().program("pg_dump").get_program().to_owned();
    let script = bin.join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexec '{}' \"$@\"\n",
            record.display(),
            Path::new(&real).display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(common::cluster::path_env());
    (path, record)
}

#[test]
fn create_schema_carries_no_production_secret_and_foreign_data_needs_a_rule() {
    let src = TestDb::demo("fdwsrc");
    src.query(
        "CREATE EXTENSION postgres_fdw;\
         CREATE SERVER prod_link FOREIGN DATA WRAPPER postgres_fdw \
           OPTIONS (host '127.0.0.1', dbname 'prod');\
         CREATE USER MAPPING FOR postgres SERVER prod_link \
           OPTIONS (user 'mapping_user', password 'MAPPING-SECRET');\
         CREATE FOREIGN TABLE public.remote_people (email text) SERVER prod_link;\
         CREATE PUBLICATION pub FOR TABLE public.customers;\
         CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 dbname=prod password=SUB-SECRET' \
           PUBLICATION pub WITH (connect = false);",
    );
    let dir = tempfile::tempdir().unwrap();

    // A foreign table no rule covers stops the run: it would read another server.
    let stg = TestDb::new("fdwstg");
    let rules = rules_with(dir.path(), "");
    let o = refresh(&rules, &url(&src), &url(&stg), &["--create-schema"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("public.remote_people"), "{err}");
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_class WHERE relname = 'customers'"),
        "0"
    );
    // check says so too, before any run.
    let o = check(&rules, &src);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("public.remote_people"),
        "{}",
        stderr(&o)
    );

    // scan drafts `skip` for it, and sampling does not read through it.
    let o = run(anonymize().args(["scan", "--source", &url(&src)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = String::from_utf8(o.stdout).unwrap();
    assert!(
        draft.contains("[tables.remote_people]\nskip = true  # a foreign table"),
        "{draft}"
    );

    // pg_dump writes the extension's comment: comments need a policy, as in a dump.
    let rules = rules_with(dir.path(), "[tables.remote_people]\nskip = true\n");
    let o = refresh(&rules, &url(&src), &url(&stg), &["--create-schema"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--create-schema: the source's schema (pg_dump --schema-only) dump line"),
        "{err}"
    );
    assert!(err.contains("comments = \"keep\""), "{err}");

    // Skipped: never read; the schema comes without server, mapping, foreign table or secrets.
    let rules = rules_with(
        dir.path(),
        "[tables.remote_people]\nskip = true\n[policy]\ncomments = \"drop\"\n",
    );
    let (path, record) = recording_pg_dump(dir.path());
    let report = dir.path().join("report.json");
    let with_password = src
        .server
        .url_as("postgres", Some("URL-SECRET"), &src.name)
        .replace("URL-SECRET@", "@")
        + "?password=URL-SECRET";
    let o = run(anonymize()
        .env("PATH", &path)
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &with_password, "--target", &url(&stg)])
        .args(["--create-schema", "-v", "--report"])
        .arg(&report));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let args = std::fs::read_to_string(&record).unwrap();
    let report_text = std::fs::read_to_string(&report).unwrap();
    for secret in ["MAPPING-SECRET", "SUB-SECRET", "URL-SECRET", "mapping_user"] {
        assert!(
            !args.contains(secret),
            "{secret} in pg_dump's arguments: {args}"
        );
        assert!(!err.contains(secret), "{secret} in stderr");
        assert!(!report_text.contains(secret), "{secret} in the report");
    }
    // pg_dump read the run's own snapshot.
    let snapshot = err
        .lines()
        .find_map(|l| l.split("read-only snapshot ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the snapshot line");
    assert!(
        args.lines().any(|a| a == format!("--snapshot={snapshot}")),
        "{args}"
    );
    assert_eq!(stg.query("SELECT count(*) FROM pg_foreign_server"), "0");
    assert_eq!(stg.query("SELECT count(*) FROM pg_user_mappings"), "0");
    assert_eq!(stg.query("SELECT count(*) FROM pg_foreign_table"), "0");
    // (pg_subscription is shared by the databases of a server: staging's own row only.)
    assert_eq!(
        stg.query(
            "SELECT string_agg(subname || '=' || subconninfo, ',') FROM pg_subscription \
             WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        "sub="
    );
    assert_eq!(stg.query("SELECT count(*) FROM public.customers"), "1000");
}

#[test]
fn rows_hidden_by_row_level_security_stop_the_run() {
    let src = TestDb::demo("rlssrc");
    src.query(
        "DO $$ BEGIN CREATE ROLE anon_rls_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\
         GRANT USAGE ON SCHEMA public TO anon_rls_reader;\
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon_rls_reader;\
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO anon_rls_reader;\
         ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;\
         CREATE POLICY few ON public.orders USING (id < 10);",
    );
    let stg = TestDb::demo("rlsstg");
    let before = stg.query("SELECT count(*), sum(id) FROM public.orders");
    let reader = src.server.url_as("anon_rls_reader", None, &src.name);
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let o = refresh(&rules, &reader, &url(&stg), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("row-level security would hide rows of public.orders"),
        "{err}"
    );
    assert_eq!(
        stg.query("SELECT count(*), sum(id) FROM public.orders"),
        before
    );
    // The table's owner (here the superuser) reads every row: the run goes through.
    let o = refresh(&rules, &url(&src), &url(&stg), &["-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stg.query("SELECT count(*) FROM public.orders"),
        src.query("SELECT count(*) FROM public.orders")
    );
}

#[test]
fn the_source_cannot_change_under_a_run_and_a_staging_lock_times_out_with_who_holds_it() {
    let src = TestDb::demo("locksrc");
    let stg = TestDb::demo("lockstg");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let before = customers_md5(&stg);

    // A reader in staging holds a lock the load needs: the run waits for it.
    let holder = Holder::start(
        &stg,
        "anon_test_holder",
        "SELECT count(*) /* HOLDER-QUERY-TEXT */ FROM public.customers;",
    );
    let target = format!("{}?application_name=anon_locked_run", url(&stg));
    let child = anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target", &target, "-q"])
        .args(["--lock-timeout", "60"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run waiting on staging's lock", || {
        waiting_on_lock(&stg, "anon_locked_run")
    });
    // Meanwhile production's DDL on a table being copied cannot go through: the run holds
    // ACCESS SHARE on it from before its snapshot to its end.
    let ddl = src.client("psql").args([
        "-X", "-q", "-d", &src.name, "-c",
        "SET lock_timeout = '300ms'; ALTER TABLE public.customers RENAME COLUMN phone TO phone_number;",
    ]).output().unwrap();
    assert!(!ddl.status.success());
    assert!(String::from_utf8_lossy(&ddl.stderr).contains("lock timeout"));
    holder.release();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        src.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'phone'"),
        "1"
    );

    // Held past --lock-timeout: the run fails with who holds it, and staging is as it was.
    let stg2 = TestDb::demo("lockstg2");
    let holder = Holder::start(
        &stg2,
        "anon_test_holder",
        "SELECT count(*) /* HOLDER-QUERY-TEXT */ FROM public.customers;",
    );
    let report = dir.path().join("report.json");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target", &url(&stg2), "-q"])
        .args(["--lock-timeout", "1", "--report"])
        .arg(&report));
    holder.release();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for part in [
        "lock",
        "pid ",
        "anon_test_holder",
        "idle in transaction",
        "postgres",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(!err.contains("HOLDER-QUERY-TEXT"), "{err}");
    assert!(!std::fs::read_to_string(&report)
        .unwrap()
        .contains("HOLDER-QUERY-TEXT"));
    assert_eq!(customers_md5(&stg2), before);
}

#[test]
fn where_filters_may_not_call_volatile_functions_whoever_runs_them() {
    let src = TestDb::demo("wheresrc");
    src.query("CREATE EXTENSION dblink; CREATE SEQUENCE public.probe;");
    let stg = TestDb::demo("wherestg");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lo_export_marker");
    for (filter, function) in [
        (
            format!(
                "dblink_exec('dbname={}', 'DROP TABLE public.payments') IS NOT NULL",
                src.name
            ),
            "dblink_exec",
        ),
        (
            format!("lo_export(0, '{}') IS NOT NULL", marker.display()),
            "lo_export",
        ),
        ("nextval('public.probe') > 0".to_string(), "nextval"),
        ("pg_sleep(0) IS NOT NULL".to_string(), "pg_sleep"),
    ] {
        let rules = with_where(dir.path(), &filter);
        let o = check(&rules, &src);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "check, {function}: {err}");
        assert!(err.contains(function), "{function} not named: {err}");
        let o = refresh(&rules, &url(&src), &url(&stg), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "run, {function}: {err}");
        assert!(err.contains(function), "{function} not named: {err}");
    }
    assert_eq!(
        src.query("SELECT count(*) FROM pg_class WHERE relname = 'payments'"),
        "1"
    );
    assert!(!marker.exists());
    assert_eq!(src.query("SELECT last_value FROM public.probe"), "1");
    assert_eq!(src.query("SELECT is_called FROM public.probe"), "f");
    // Planning runs stable functions too: a filter may only name the table's columns, constants
    // and pure built-ins, so nothing can read another table or a privilege by name.
    let originals = emails(&src, "SELECT email FROM public.customers");
    for filter in [
        "table_to_xml('public.customers', true, false, '')::text <> ''",
        "has_column_privilege('public.customers', 'email', 'SELECT')",
        "id IN (VALUES (1))",
        "id IN (SELECT id FROM public.customers TABLESAMPLE SYSTEM (50))",
        "email = current_setting('application_name')",
        "email::regclass IS NOT NULL",
    ] {
        let rules = with_where(dir.path(), filter);
        let o = check(&rules, &src);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "check, {filter}: {err}");
        assert!(err.contains("where"), "{filter}: {err}");
        assert!(!originals.iter().any(|e| err.contains(e.as_str())), "{err}");
    }
    // A stable function is fine.
    let rules = with_where(dir.path(), "created_at < now()");
    let o = check(&rules, &src);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The demo rules with `where = filter` for the customers table.
fn with_where(dir: &Path, filter: &str) -> PathBuf {
    rules_with(
        dir,
        &format!("[tables.customers]\nwhere = {}\n", toml_string(filter)),
    )
}

#[test]
fn server_errors_that_could_quote_a_value_are_described_without_it() {
    let src = TestDb::demo("errsrc");
    let originals = emails(&src, "SELECT email FROM public.customers");
    let stg = TestDb::demo("errstg");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");

    // A filter that casts a value to a number: the server's message would quote the value.
    let rules = with_where(dir.path(), "email::integer IS NOT NULL");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target", &url(&stg), "--report"])
        .arg(&report));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let report_text = std::fs::read_to_string(&report).unwrap();
    for text in [&err, &report_text] {
        assert!(text.contains("SQLSTATE"), "{text}");
        let leaked: Vec<&String> = originals
            .iter()
            .filter(|e| {
                let local = e.split('@').next().unwrap();
                text.contains(e.as_str()) || text.contains(local)
            })
            .collect();
        assert!(leaked.is_empty(), "{leaked:?} in {text}");
    }

    // A staging check that raises with the row: the message is not the function's.
    stg.query(
        "CREATE FUNCTION public.no_example(e text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS \
         $$ BEGIN IF e LIKE '%example%' THEN RAISE EXCEPTION 'refused value %', e; END IF; RETURN true; END $$;\
         ALTER TABLE public.customers ADD CONSTRAINT no_example CHECK (public.no_example(email)) NOT VALID;",
    );
    let before = customers_md5(&stg);
    let rules = rules_with(dir.path(), "");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target", &url(&stg), "--report"])
        .arg(&report));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("P0001"), "{err}");
    assert!(
        err.contains("an exception raised by a function or trigger"),
        "{err}"
    );
    assert!(!err.contains("refused value"), "{err}");
    assert!(!err.contains('@'), "{err}");
    let doc = read_report(&report);
    assert!(!doc["error"].as_str().unwrap().contains('@'), "{doc}");
    assert_eq!(customers_md5(&stg), before);
}

#[test]
fn staging_user_triggers_do_not_fire_during_the_load() {
    let src = TestDb::demo("trgsrc");
    let stg = TestDb::demo("trgstg");
    stg.query(
        "CREATE TABLE public.stg_audit (n bigint);\
         CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN INSERT INTO public.stg_audit VALUES (NEW.id); RETURN NEW; END $$;\
         CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN NEW.notes := 'STAMPED'; RETURN NEW; END $$;\
         CREATE TRIGGER audit AFTER INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION public.audit_row();\
         CREATE TRIGGER stamp BEFORE INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION public.stamp();\
         CREATE TRIGGER replica_only BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION public.stamp();\
         ALTER TABLE public.orders ENABLE REPLICA TRIGGER replica_only;",
    );
    let o = run(&mut demo_refresh(&src, &stg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stg.query("SELECT count(*) FROM public.stg_audit"), "0");
    assert_eq!(
        stg.query("SELECT count(*) FROM public.customers WHERE notes = 'STAMPED'"),
        "0"
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM public.customers"),
        src.query("SELECT count(*) FROM public.customers")
    );
    // Back on, each as it was.
    assert_eq!(
        stg.query(
            "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger \
             WHERE NOT tgisinternal"
        ),
        "audit=O,replica_only=R,stamp=O"
    );
    // Foreign keys are still checked (their triggers are internal).
    assert_eq!(
        stg.query("SELECT count(*) FROM public.orders o LEFT JOIN public.customers c ON c.id = o.customer_id WHERE c.id IS NULL"),
        "0"
    );
}

#[test]
fn large_objects_need_a_policy_and_follow_it() {
    let src = TestDb::demo("losrc");
    let oid = src.query("SELECT lo_from_bytea(0, convert_to('LO-SECRET-CONTENT', 'UTF8'))");
    let dir = tempfile::tempdir().unwrap();
    let stg = TestDb::demo("lostg");

    let rules = rules_with(dir.path(), "");
    let o = refresh(&rules, &url(&src), &url(&stg), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("1 large object(s)"), "{err}");
    let o = check(&rules, &src);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("large object"));

    let rules = rules_with(dir.path(), "[policy]\nlarge_objects = \"drop\"\n");
    let o = refresh(&rules, &url(&src), &url(&stg), &["-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_largeobject_metadata"),
        "0"
    );

    let rules = rules_with(dir.path(), "[policy]\nlarge_objects = \"keep\"\n");
    let o = refresh(&rules, &url(&src), &url(&stg), &["-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stg.query(&format!("SELECT convert_from(lo_get({oid}), 'UTF8')")),
        "LO-SECRET-CONTENT"
    );
    // Into a dump file: as pg_dump writes them.
    let out = dir.path().join("out.sql");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target"])
        .arg(&out)
        .arg("-q"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(&format!("SELECT pg_catalog.lo_create('{oid}');")));
}

#[test]
fn connection_strings_never_show_their_password() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let port = server()
        .url("x")
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // key=value: recognised as a database, its password hidden.
    let kv = format!(
        "host=127.0.0.1 port={port} dbname=anon_no_such_db user=postgres password=KV-SECRET"
    );
    let o = refresh(&rules, &kv, "-", &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("KV-SECRET"), "{err}");
    assert!(err.contains("password=***"), "{err}");
    assert!(err.contains("anon_no_such_db"), "{err}");
    // A mistyped scheme: a usage error, not a file name, without its password.
    let o = refresh(
        &rules,
        "postgress://app:SCHEME-SECRET@db.internal/app",
        "-",
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown scheme"), "{err}");
    assert!(!err.contains("SCHEME-SECRET"), "{err}");
    // Passwords written in any of the ways a URL or key=value string allows.
    for (conn, secret) in [
        (
            format!("postgres://postgres:pass%77ordPCT@127.0.0.1:{port}/anon_no_such_db"),
            "passwordPCT",
        ),
        (
            format!("postgres://postgres:pass%77ordPCT@127.0.0.1:{port}/anon_no_such_db"),
            "pass%77ordPCT",
        ),
        (
            format!("postgres://postgres:SLASH/SECRET@127.0.0.1:{port}/anon_no_such_db"),
            "SLASH",
        ),
        (
            format!("postgres://postgres:SLASH/SECRET@127.0.0.1:{port}/anon_no_such_db"),
            "SECRET",
        ),
        (
            format!(
                "postgres://postgres@127.0.0.1:{port}/anon_no_such_db?sslpassword=SSLPW-SECRET"
            ),
            "SSLPW-SECRET",
        ),
        (
            format!("postgres://postgres@127.0.0.1:{port}/anon_no_such_db?password=Q-SECRET"),
            "Q-SECRET",
        ),
        (
            format!(
                "host=127.0.0.1 port={port} dbname=anon_no_such_db password='NL
SECRET'"
            ),
            "SECRET",
        ),
        (
            format!("host=127.0.0.1 port={port} dbname=anon_no_such_db sslpassword=KVSSL-SECRET"),
            "KVSSL-SECRET",
        ),
    ] {
        let o = refresh(&rules, &conn, "-", &[]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{conn:?}: {err}");
        assert!(!err.contains(secret), "{secret} in: {err}");
    }
    // A rules file that fails to load writes its report without the password either.
    let report = dir.path().join("report.json");
    let bad = write_rules(dir.path(), "[tables.x]\nnope = 1\n");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&bad)
        .args(["--source", &kv, "--target", "-", "--report"])
        .arg(&report));
    assert_eq!(o.status.code(), Some(2));
    assert!(!std::fs::read_to_string(&report)
        .unwrap()
        .contains("KV-SECRET"));
}

#[test]
fn superuser_and_writable_source_roles_are_warned_about_and_reported() {
    let src = TestDb::demo("rolesrc");
    src.query(
        "DO $$ BEGIN CREATE ROLE anon_writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\
         GRANT USAGE ON SCHEMA public TO anon_writer;\
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon_writer;\
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO anon_writer;\
         GRANT INSERT ON public.orders TO anon_writer;",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let report = dir.path().join("report.json");
    let out = dir.path().join("out.sql");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target"])
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("the source role is a superuser"));
    assert!(std::fs::read_to_string(&report)
        .unwrap()
        .contains("the source role is a superuser"));
    let writer = src.server.url_as("anon_writer", None, &src.name);
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &writer, "--target"])
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    let warning = "the source role may write to 1 source table(s) (public.orders)";
    assert!(stderr(&o).contains(warning), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&report).unwrap().contains(warning));
}

#[test]
fn source_sessions_are_capped_by_their_own_setting() {
    let src = TestDb::demo("capsrc");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    let out = dir.path().join("out.sql");
    for (connections, jobs, readers) in [("1", "8", 1), ("3", "1", 3), ("2", "2", 2)] {
        let o = run(anonymize()
            .arg("--rules")
            .arg(&rules)
            .args(["--source", &url(&src), "--target"])
            .arg(&out)
            .args(["--source-connections", connections, "--jobs", jobs, "-v"]));
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "source: {readers} reader sessions on one snapshot"
            )),
            "{err}"
        );
    }
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", &url(&src), "--target"])
        .arg(&out)
        .args(["--source-connections", "0"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_report_that_cannot_be_written_stops_the_run_before_it_starts() {
    let src = TestDb::demo("repsrc");
    let stg = TestDb::demo("repstg");
    let before = customers_md5(&stg);
    let o = run(demo_refresh(&src, &stg).args(["--report", "/nonexistent-dir/report.json"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--report /nonexistent-dir/report.json: cannot write it"),
        "{err}"
    );
    assert_eq!(customers_md5(&stg), before);
}

#[test]
fn a_second_signal_exits_at_once_and_still_writes_the_report() {
    let src = TestDb::demo("sig2src");
    let stg = TestDb::demo("sig2stg");
    let before = customers_md5(&stg);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    // Held on a staging lock, so the run is mid-way when the signals come.
    let holder = Holder::start(
        &stg,
        "anon_test_holder2",
        "LOCK TABLE public.customers IN ACCESS SHARE MODE;",
    );
    let target = format!("{}?application_name=anon_sig2_run", url(&stg));
    let child: Child = anonymize()
        .args([
            "--rules",
            "rules/customers.toml",
            "-q",
            "--source",
            &url(&src),
        ])
        .args(["--target", &target, "--report"])
        .arg(&report)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run waiting on staging's lock", || {
        waiting_on_lock(&stg, "anon_sig2_run")
    });
    // Two different signals back to back (two of the same kind may merge into one): the second
    // comes while the first is still cancelling and rolling back.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    holder.release();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = read_report(&report);
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("interrupted by SIGTERM"),
        "{doc}"
    );
    // The server rolled the transaction of the closed session back.
    wait_for("staging's sessions gone", || {
        !waiting_on_lock(&stg, "anon_sig2_run")
    });
    assert_eq!(customers_md5(&stg), before);
}

/// A materialized view whose refresh would run more than a read of the database's own tables —
/// a volatile function of the schema (which could call dblink and read production from staging),
/// or a foreign table — is refused (exit 2, naming it) before anything is written, in the source
/// and in staging, unless `[policy] materialized_views = "empty"` leaves every view unpopulated.
#[test]
fn materialized_views_that_call_volatile_functions_need_a_policy() {
    let reach = "CREATE FUNCTION public.reach() RETURNS SETOF text LANGUAGE sql VOLATILE \
                   AS $$ SELECT email FROM public.customers $$;\
                 CREATE VIEW public.reach_view AS SELECT r AS email FROM public.reach() AS r;\
                 CREATE MATERIALIZED VIEW public.reached AS SELECT email FROM public.reach_view;\
                 CREATE MATERIALIZED VIEW public.harmless AS SELECT random() AS r, now() AS t;";
    let src = TestDb::demo("mvvsrc");
    src.query(reach);
    let stg = TestDb::demo("mvvstg");
    let before = customers_md5(&stg);
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    for check in [true, false] {
        let mut cmd = anonymize();
        if check {
            cmd.arg("check");
        }
        cmd.arg("--rules")
            .arg(&rules)
            .args(["--source", &url(&src)]);
        if !check {
            cmd.args(["--target", &url(&stg)]);
        }
        let o = run(&mut cmd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "check {check}: {err}");
        assert!(
            err.contains("public.reached calls function public.reach()"),
            "{err}"
        );
        assert!(
            !err.contains("harmless"),
            "random() and now() only make up values: {err}"
        );
        assert!(err.contains("materialized_views = \"empty\""), "{err}");
    }
    assert_eq!(customers_md5(&stg), before);
    // With the policy: copied, every view left unpopulated, nothing of theirs run in staging.
    let empty = TestDb::new("mvvnew");
    let rules = rules_with(dir.path(), "[policy]\nmaterialized_views = \"empty\"\n");
    let o = refresh(&rules, &url(&src), &url(&empty), &["--create-schema", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        empty.query(
            "SELECT string_agg(relname || '=' || relispopulated, ',' ORDER BY relname) \
             FROM pg_class WHERE relkind = 'm'"
        ),
        "harmless=false,reached=false"
    );

    // The same view only in staging (its own definition is what would run there): refused too,
    // and staging stays as it was.
    let src = TestDb::demo("mvvsrc2");
    let stg = TestDb::demo("mvvstg2");
    stg.query(reach);
    let rules = rules_with(dir.path(), "");
    let o = refresh(&rules, &url(&src), &url(&stg), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("staging: refreshing materialized views"),
        "{err}"
    );
    assert_eq!(customers_md5(&stg), before);
}

/// A refresh that fails after the sequences were set (here at a staging view that divides by
/// zero) leaves staging's sequences where they were: they are set inside the refresh's
/// transaction.
#[test]
fn a_failed_refresh_leaves_staging_sequences_where_they_were() {
    let src = TestDb::demo("seqsrc");
    let stg = TestDb::demo("seqstg");
    stg.query(
        "SELECT setval('public.customers_id_seq', 5, true);\
         CREATE MATERIALIZED VIEW public.boom AS \
           SELECT 1 / (count(*) - count(*)) AS x FROM public.customers WITH NO DATA;",
    );
    let seq = "SELECT last_value || '/' || is_called FROM public.customers_id_seq";
    let before = stg.query(seq);
    assert_eq!(before, "5/true");
    let o = run(&mut demo_refresh(&src, &stg));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refreshing materialized view public.boom"),
        "{err}"
    );
    assert_eq!(stg.query(seq), before);
}

/// stderr closed early (`2>&1 | head -1`): the run neither panics nor loses its report.
#[test]
fn a_closed_stderr_does_not_stop_the_run_or_its_report() {
    let src = TestDb::demo("errpipesrc");
    let stg = TestDb::demo("errpipestg");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    // Not quiet: the summary and the source-role warnings go to stderr.
    let mut child = anonymize()
        .args([
            "--rules",
            "rules/customers.toml",
            "--source",
            &url(&src),
            "--target",
            &url(&stg),
        ])
        .arg("--report")
        .arg(&report)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Closed before the run writes anything to it.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let doc = read_report(&report);
    assert_eq!(doc["status"], "success", "{doc}");
}

/// Built-in volatile functions (PostgreSQL records no dependency on them), a domain whose CHECK
/// calls a volatile function, and an aggregate with a volatile state function: each found in a
/// materialized view's definition, refused by `check` and the run.
#[test]
fn materialized_views_calling_built_in_or_hidden_volatile_functions_are_refused() {
    let src = TestDb::demo("mvbsrc");
    src.query(
        "CREATE TABLE public.spy_log (v text);\
         CREATE FUNCTION public.spy(v text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS \
           $$ BEGIN INSERT INTO public.spy_log VALUES (v); RETURN true; END $$;\
         CREATE DOMAIN public.spydom AS text CHECK (public.spy(VALUE));\
         CREATE FUNCTION public.spy_acc(s text, v text) RETURNS text LANGUAGE plpgsql VOLATILE AS \
           $$ BEGIN INSERT INTO public.spy_log VALUES (v); RETURN v; END $$;\
         CREATE AGGREGATE public.spy_agg(text) (SFUNC = public.spy_acc, STYPE = text);",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(dir.path(), "");
    for (view, function) in [
        (
            "CREATE MATERIALIZED VIEW public.mv_xml AS SELECT query_to_xml('SELECT 1', true, false, '') AS x",
            "query_to_xml",
        ),
        (
            "CREATE MATERIALIZED VIEW public.mv_seq AS SELECT nextval('public.customers_id_seq') AS n",
            "nextval",
        ),
        (
            "CREATE MATERIALIZED VIEW public.mv_dom AS SELECT country::public.spydom AS c FROM public.customers",
            "spy",
        ),
        (
            "CREATE MATERIALIZED VIEW public.mv_agg AS SELECT public.spy_agg(email) AS a FROM public.customers",
            "spy_agg",
        ),
    ] {
        src.query(view);
        let o = check(&rules, &src);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{view}: {err}");
        assert!(err.contains(&format!("{function}()")), "{view}: {err}");
        src.query(&format!(
            "DROP MATERIALIZED VIEW {}",
            view.split_whitespace().nth(3).unwrap()
        ));
    }
}

/// A source database whose `standard_conforming_strings` is off cannot make a filter's quotes end
/// elsewhere than the allow-list read them: the source sessions set it on.
#[test]
fn a_filter_is_read_with_standard_strings_whatever_the_source_database_says() {
    let src = TestDb::demo("scssrc");
    src.query(&format!(
        "ALTER DATABASE {} SET standard_conforming_strings = off",
        src.name
    ));
    let dir = tempfile::tempdir().unwrap();
    // Read with standard strings (as the allow-list does), the subquery is inside a string and the
    // filter is not valid SQL; read with backslash escapes, it would read the orders table.
    let filter = "id < 0 AND email <> 'a\\' OR ' OR id IN (SELECT o.customer_id FROM public.orders o WHERE o.total > 400) --'";
    let rules = with_where(dir.path(), filter);
    let o = check(&rules, &src);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("does not run on the source"), "{err}");
}

/// A row-level security policy on a table a materialized view reads runs its expression during
/// the refresh (for an owner that does not bypass it): a volatile function there is refused too.
#[test]
fn materialized_views_over_tables_whose_policies_call_volatile_functions_are_refused() {
    let src = TestDb::demo("mvrlssrc");
    src.query(
        "CREATE TABLE public.marker_log (at timestamptz);\
         CREATE FUNCTION public.side() RETURNS boolean LANGUAGE plpgsql VOLATILE AS \
           $$ BEGIN INSERT INTO public.marker_log VALUES (now()); RETURN true; END $$;\
         CREATE TABLE public.t2 (id int PRIMARY KEY);\
         ALTER TABLE public.t2 ENABLE ROW LEVEL SECURITY;\
         CREATE POLICY p ON public.t2 USING (public.side());\
         CREATE MATERIALIZED VIEW public.mv AS SELECT id FROM public.t2;",
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with(
        dir.path(),
        "[tables.marker_log]\nskip = true\n[tables.t2.columns]\nid = \"keep\"\n",
    );
    let o = check(&rules, &src);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("public.mv calls function side()"), "{err}");
}

/// A staging function chooses its SQLSTATE: raised with one whose server messages are shown
/// (42501 here), its text — holding the row's values — is still not shown.
#[test]
fn an_error_a_function_raises_is_never_quoted_whatever_its_sqlstate() {
    let src = TestDb::demo("fnerrsrc");
    let stg = TestDb::demo("fnerrstg");
    stg.query(
        "CREATE FUNCTION public.chk(v text, e text) RETURNS boolean LANGUAGE plpgsql AS $$ \
         BEGIN IF v IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = '42501', \
         MESSAGE = 'permission denied for value ' || v || ' / ' || e, TABLE = e; END IF; \
         RETURN true; END $$;\
         ALTER TABLE public.customers ADD CONSTRAINT c_chk CHECK (public.chk(country, email)) NOT VALID;",
    );
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let o = run(demo_refresh(&src, &stg).arg("--report").arg(&report));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("SQLSTATE 42501"), "{err}");
    assert!(err.contains("raised inside a function"), "{err}");
    let doc = read_report(&report);
    for text in [err.as_str(), doc["error"].as_str().unwrap()] {
        assert!(!text.contains('@'), "{text}");
        assert!(!text.contains("permission denied for value"), "{text}");
    }
}

#[test]
fn scan_of_the_demo_database_drafts_rules_that_check_and_refresh_as_written() {
    let src = TestDb::demo("scan_demo_src");
    let stg = TestDb::demo("scan_demo_stg");
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["scan", "--source", &url(&src)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = String::from_utf8(o.stdout).unwrap();
    assert!(draft.contains("\n# Summary: 5 tables, "), "{draft}");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("draft.toml");
    std::fs::write(&rules, &draft).unwrap();
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["check", "--rules"])
        .arg(&rules)
        .args(["--source", &url(&src), "--target", &url(&stg)]));
    assert!(o.status.success(), "{}\n{draft}", stderr(&o));
    let o = run(anonymize().arg("--rules").arg(&rules).args([
        "-q",
        "--source",
        &url(&src),
        "--target",
        &url(&stg),
    ]));
    assert!(o.status.success(), "{}\n{draft}", stderr(&o));
    let emails =
        |db: &TestDb| db.query("SELECT md5(string_agg(email, ',' ORDER BY id)) FROM customers");
    assert_ne!(emails(&stg), emails(&src));
    assert_eq!(
        stg.query("SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id"),
        src.query("SELECT count(*) FROM orders")
    );
}
