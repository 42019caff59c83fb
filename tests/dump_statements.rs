//! Dump mode fails closed on every statement: each kind of statement that can carry personal data
//! or a secret, appended to the demo dump one at a time, is anonymized, stripped of its secret, or
//! refused with exit 2 and its line — never passed through with exit 0. Also: a FIFO target gets
//! the whole output and stays a FIFO, a symlink target stays a link.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn demo_dump() -> String {
    std::fs::read_to_string(root().join("examples/production.sql")).unwrap()
}

/// The demo rules with extra lines (a `[policy]` section, more tables).
fn rules_with(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("rules.toml");
    let base = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap();
    std::fs::write(&path, format!("{base}\n{extra}")).unwrap();
    path
}

/// Anonymize the demo dump with `appended` at its end: (exit code, stderr, output if written).
fn with_appended(appended: &str, extra_rules: &str) -> (i32, String, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.sql");
    std::fs::write(&dump, format!("{}\n{appended}", demo_dump())).unwrap();
    let rules = rules_with(dir.path(), extra_rules);
    let out = dir.path().join("out.sql");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .arg("--source")
        .arg(&dump)
        .arg("--target")
        .arg(&out)
        .arg("-q"));
    let written = std::fs::read_to_string(&out).ok();
    (o.status.code().unwrap_or(-1), stderr(&o), written)
}

/// A new database with `sql` loaded as a user would, statement by statement (psql without
/// ON_ERROR_STOP: an error stops nothing but its statement).
fn loaded_as_a_user_would(tag: &str, sql: &str) -> TestDb {
    let db = TestDb::new(tag);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sql).unwrap();
    let _ = db
        .client("psql")
        .args(["-X", "-q", "-d", &db.name, "-f"])
        .arg(file.path())
        .output()
        .unwrap();
    db
}

/// The line the appended text starts on.
fn appended_line() -> usize {
    demo_dump().lines().count() + 2
}

#[test]
fn each_kind_of_statement_is_anonymized_stripped_or_refused() {
    let line = appended_line();
    // An INSERT row: anonymized by the table's rules, as a COPY row would be.
    let (code, err, out) = with_appended(
        "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) \
         VALUES (90001, 'insert.leak@corp.test', 'login', '192.168.7.7', 'from 192.168.8.8', '2024-01-01 00:00:00+00');\n",
        "",
    );
    assert_eq!(code, 0, "{err}");
    let out = out.unwrap();
    assert!(out.contains("INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (90001, '"));
    for leak in ["insert.leak@corp.test", "192.168.7.7", "192.168.8.8"] {
        assert!(!out.contains(leak), "{leak}");
    }

    // A CSV COPY block: decoded, anonymized, written back as CSV.
    let (code, err, out) = with_appended(
        "COPY public.orders (id, customer_id, total, status, ordered_at, shipping_note) FROM stdin WITH (FORMAT csv, HEADER);\n\
         id,customer_id,total,status,ordered_at,shipping_note\n\
         9001,1,10.00,new,2024-01-01 00:00:00+00,\"ring +1 415 555 0134, or\nmail csv.leak@corp.test\"\n\\.\n",
        "",
    );
    assert_eq!(code, 0, "{err}");
    let out = out.unwrap();
    // The header line is written from the column list.
    assert!(out.contains(
        "\"id\",\"customer_id\",\"total\",\"status\",\"ordered_at\",\"shipping_note\"\n9001,1,10.00,new,"
    ));
    for leak in ["415 555 0134", "csv.leak@corp.test"] {
        assert!(!out.contains(leak), "{leak}");
    }

    // A large object: refused until the rules say, then dropped or kept as said.
    let lo = "SELECT pg_catalog.lo_create('16401');\nALTER LARGE OBJECT 16401 OWNER TO postgres;\n\
              BEGIN;\nSELECT pg_catalog.lo_open('16401', 131072);\n\
              SELECT pg_catalog.lowrite(0, '\\x6c6f2e6c65616b40636f72702e74657374');\n\
              SELECT pg_catalog.lo_close(0);\nCOMMIT;\n";
    let (code, err, out) = with_appended(lo, "");
    assert_eq!(code, 2, "{err}");
    assert!(out.is_none());
    assert!(
        err.contains(&format!("dump line {line}: a large object, whose data would be copied as it is: choose with `large_objects = \"drop\"` or `\"keep\"` under [policy] in the rules file")),
        "{err}"
    );
    let (code, err, out) = with_appended(lo, "[policy]\nlarge_objects = \"drop\"\n");
    assert_eq!(code, 0, "{err}");
    let out = out.unwrap();
    assert!(!out.contains("6c6f2e6c65616b") && !out.contains("16401"));
    // The transaction pg_dump wraps the data in stays, empty.
    let last: Vec<&str> = out.split_whitespace().rev().take(2).collect();
    assert_eq!(last, ["COMMIT;", "BEGIN;"]);
    let (code, _, out) = with_appended(lo, "[policy]\nlarge_objects = \"keep\"\n");
    assert_eq!(code, 0);
    assert!(out.unwrap().contains("lowrite(0, '\\x6c6f2e6c65616b"));

    // A comment with an email: the same.
    let comment = "COMMENT ON TABLE public.customers IS 'owner: comment.leak@corp.test';\n";
    let (code, err, _) = with_appended(comment, "");
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("dump line {line}: a COMMENT ON or SECURITY LABEL")),
        "{err}"
    );
    assert!(!err.contains("comment.leak"), "{err}");
    let (code, _, out) = with_appended(comment, "[policy]\ncomments = \"drop\"\n");
    assert_eq!(code, 0);
    assert!(!out.unwrap().contains("comment.leak@corp.test"));

    // A role with a password and a user mapping with one: stripped, always, the statements stay.
    let (code, err, out) = with_appended(
        "CREATE ROLE app_user;\nALTER ROLE app_user WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$role-secret';\n\
         CREATE USER MAPPING FOR app_user SERVER prod OPTIONS (\n    password 'mapping-secret',\n    \"user\" 'mapping-user'\n);\n",
        "",
    );
    assert_eq!(code, 0, "{err}");
    let out = out.unwrap();
    // The role stays without its password; the user mapping is foreign data, dropped by default.
    assert!(out.contains("ALTER ROLE app_user WITH LOGIN ;\n"), "{out}");
    assert!(!out.contains("USER MAPPING"));
    for secret in ["role-secret", "mapping-secret", "mapping-user", "SCRAM"] {
        assert!(!out.contains(secret), "{secret}");
    }

    // A table whose quoted column name holds a newline: its rows are data like any other, so an
    // uncovered one stops the run (its header used to be missed and its rows passed as SQL).
    let odd = "CREATE TABLE public.odd (\"line\nbreak\" text);\n\
               COPY public.odd (\"line\nbreak\") FROM stdin;\nnewline.leak@corp.test\n\\.\n";
    let (code, err, out) = with_appended(odd, "");
    assert_eq!(code, 2, "{err}");
    assert!(out.is_none());
    assert!(err.contains("table public.odd has no rules"), "{err}");
    let (code, err, out) = with_appended(
        odd,
        "[tables.odd.columns]\n\"line\\nbreak\" = { fake = \"email\" }\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.unwrap().contains("newline.leak@corp.test"));

    // Statements no rule sees: refused, each with its line.
    for (statement, what) in [
        ("UPDATE public.customers SET email = 'update.leak@corp.test';", "a UPDATE statement"),
        ("DO $$ BEGIN INSERT INTO public.customers (email) VALUES ('do.leak@corp.test'); END $$;", "a DO statement"),
        ("INSERT INTO public.customers (id, email) SELECT 1, 'select.leak@corp.test';", "an INSERT without a VALUES list"),
        ("INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, lower('fn.leak@corp.test'), 'x', NULL, NULL, now());", "an INSERT whose VALUES tuple has an expression or function call as element 2"),
        ("CREATE TABLE public.copy_of AS SELECT * FROM public.customers;", "CREATE TABLE … AS"),
        ("\\! cat /etc/passwd", "the psql meta-command \\!"),
    ] {
        let (code, err, out) = with_appended(&format!("{statement}\n"), "");
        assert_eq!(code, 2, "{statement}: {err}");
        assert!(out.is_none(), "{statement}");
        assert!(err.contains(what), "{statement}: {err}");
        assert!(!err.contains(".leak@"), "{err}");
        assert!(err.contains(&format!("dump line {line}: ")), "{err}");
    }
}

#[test]
fn scan_check_and_dry_run_see_the_rows_of_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("seed.sql");
    std::fs::write(
        &dump,
        "CREATE TABLE public.people (id integer, email text, note text);\n\
         INSERT INTO public.people VALUES (1, 'ann.seed@corp.test', 'call +1 415 555 0100');\n\
         INSERT INTO public.people VALUES (2, 'bob.seed@corp.test', NULL);\n",
    )
    .unwrap();
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["scan", "--source"])
        .arg(&dump));
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = String::from_utf8(o.stdout).unwrap();
    assert!(
        draft.contains("[tables.people.columns]  # 2 rows"),
        "{draft}"
    );
    assert!(
        draft.contains("email = { fake = \"email\", unique = true }"),
        "{draft}"
    );
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, &draft).unwrap();
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .arg("check")
        .arg("--rules")
        .arg(&rules)
        .arg("--source")
        .arg(&dump));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("anonymize: check passed: 1 tables"),
        "{}",
        stderr(&o)
    );
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--dry-run", "--format", "json", "--source"])
        .arg(&dump));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let email = &doc["tables"][0]["columns"][1];
    assert_eq!(email["name"], "email");
    assert_eq!(email["samples"][0]["original"], "ann.seed@corp.test");
    assert!(email["samples"][0]["anonymized"]
        .as_str()
        .unwrap()
        .contains("@example."));
}

#[test]
fn a_fifo_target_gets_the_whole_output_and_stays_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.sql");
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&reference));
    assert!(o.status.success());
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path and mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&fifo));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(reader.join().unwrap(), std::fs::read(&reference).unwrap());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // No temporary file was made beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_symlink_target_stays_a_link_and_its_target_gets_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let link = dir.path().join("staging.sql");
    std::os::unix::fs::symlink("real/today.sql", &link).unwrap();
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&link));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let text = std::fs::read_to_string(real_dir.join("today.sql")).unwrap();
    assert!(text.contains("COPY public.customers"));
}

#[test]
fn an_archive_without_pg_restore_says_what_to_install() {
    let src = TestDb::demo("fcsrc");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("demo.dump");
    succeeded(
        src.client("pg_dump")
            .args(["-Fc", "-f"])
            .arg(&archive)
            .arg(&src.name),
        "pg_dump -Fc",
    );
    let o = run(anonymize()
        .env("PATH", "/nonexistent")
        .args(["--rules", "rules/customers.toml", "--source"])
        .arg(&archive)
        .args(["--target", "-"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "anonymize: error: {} is a pg_dump archive, read through pg_restore, which is not installed or not on PATH (it comes with the PostgreSQL client, e.g. the postgresql-client package); or give a plain-SQL dump (pg_dump -Fp)\n",
            archive.display()
        )
    );
    assert!(o.stdout.is_empty());
}

/// What an attacker (or an odd dump) can put after the demo dump to make the reader pass text it
/// did not examine: each case is refused (exit 2) or passes without the marked text, and no marked
/// text reaches stderr or the output.
#[test]
fn reader_attacks_fail_closed() {
    let rows = "\t\\N\tlogin\t\\N\t\\N\t2024-01-01 00:00:00+00\n";
    // (what, appended text, extra rules, exit code, texts that must appear nowhere, expected output)
    type Case<'a> = (
        &'a str,
        String,
        &'a str,
        i32,
        &'a [&'a str],
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        // psql meta-commands: only pg_dump's forms, nothing after them on the line.
        ("a second command after \\connect", "\\connect shop \\\\ \\! echo LEAKME1\n".into(), "", 2, &["LEAKME1"], None),
        ("a password in \\connect", "\\connect -reuse-previous=on \"dbname='shop' password=LEAKME2\"\n".into(), "", 2, &["LEAKME2"], None),
        ("backquotes in \\restrict", "\\restrict `echo LEAKME3`\n".into(), "", 2, &["LEAKME3"], None),
        ("an unknown meta-command", "\\LEAKME4\n".into(), "", 2, &["LEAKME4"], None),
        // pg_dump's SELECTs in their exact forms only.
        ("more after setval", "SELECT pg_catalog.setval('public.customers_id_seq', 1, true), 'LEAKME5';\n".into(), "", 2, &["LEAKME5"], None),
        ("set_config of something else", "SELECT pg_catalog.set_config('application_name', 'LEAKME6', false);\n".into(), "", 2, &["LEAKME6"], None),
        // standard_conforming_strings that is no longer known, or changed where it may roll back.
        ("a backslash string after RESET", "RESET standard_conforming_strings;\nINSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, 'x\\', 'LEAKME7', NULL, NULL, now());\n".to_string(), "", 2, &["LEAKME7"], None),
        ("SET inside a transaction", "BEGIN;\nSET standard_conforming_strings = off;\nROLLBACK;\n".into(), "", 2, &[], None),
        ("SET LOCAL", "SET LOCAL standard_conforming_strings = off;\n".into(), "", 2, &[], None),
        // client encodings whose multibyte characters hold quote and backslash bytes.
        ("SET NAMES", "SET NAMES 'SJIS';\n".into(), "", 2, &[], None),
        ("a quoted client_encoding", "SET \"client_encoding\" = 'BIG5';\n".into(), "", 2, &[], None),
        ("ALTER DATABASE SET client_encoding", "ALTER DATABASE shop SET client_encoding = 'SJIS';\n".into(), "", 2, &[], None),
        ("non-ASCII after RESET client_encoding", "RESET client_encoding;\nCOMMENT ON TABLE public.customers IS 'LEAKME8 é';\n".into(), "[policy]\ncomments = \"keep\"\n", 2, &["LEAKME8"], None),
        // Unqualified names under a search_path this reader does not follow.
        ("an unqualified INSERT under another search_path", "SET search_path = other, public;\nINSERT INTO audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, 'LEAKME9@corp.test', 'x', NULL, NULL, now());\n".into(), "", 2, &["LEAKME9"], None),
        ("an unqualified COPY under another search_path", format!("SET search_path = other, public;\nCOPY audit_log (id, actor_email, action, client_ip, details, at) FROM stdin;\n1{rows}LEAKME10@corp.test\n\\.\n"), "", 2, &["LEAKME10"], None),
        // Columns renamed after CREATE TABLE: positional data is refused.
        ("a column renamed before positional data", "ALTER TABLE public.audit_log RENAME COLUMN actor_email TO action_x;\nALTER TABLE public.audit_log RENAME COLUMN action TO actor_email;\nINSERT INTO public.audit_log VALUES (1, 'LEAKME11@corp.test', 'x', NULL, NULL, now());\n".into(), "", 2, &["LEAKME11"], None),
        ("a column added before positional data", format!("ALTER TABLE public.audit_log ADD COLUMN extra text;\nCOPY public.audit_log FROM stdin;\n1{rows}"), "", 2, &[], None),
        // A role password spread over two adjacent strings.
        ("an adjacent-string password", "ALTER ROLE app_user PASSWORD ''\n'LEAKME12';\n".into(), "", 0, &["LEAKME12"], Some("ALTER ROLE app_user ;")),
        // User-mapping options under any name, with foreign data kept.
        ("user-mapping options", "CREATE USER MAPPING FOR app_user SERVER prod OPTIONS (username 'LEAKME13', api_key 'LEAKME14');\n".into(), "[policy]\nforeign_servers = \"keep\"\n", 0, &["LEAKME13", "LEAKME14"], Some("CREATE USER MAPPING FOR app_user SERVER prod;")),
        // Comments: never inside data statements, never between statements.
        ("a comment inside a tuple", "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, /* LEAKME15 */ 'x', 'y', NULL, NULL, now());\n".into(), "", 2, &["LEAKME15"], None),
        ("a comment between tuples", "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, 'x', 'y', NULL, NULL, '2024-01-01'), -- LEAKME16\n(2, 'x', 'y', NULL, NULL, '2024-01-01');\n".into(), "", 2, &["LEAKME16"], None),
        ("a comment in an INSERT header", "INSERT INTO public.audit_log /* LEAKME17 */ (id, actor_email, action, client_ip, details, at) VALUES (1, 'x', 'y', NULL, NULL, '2024-01-01');\n".into(), "", 2, &["LEAKME17"], None),
        ("a comment in a COPY statement", format!("COPY public.audit_log (id, actor_email, action, client_ip, details, at) /* LEAKME18 */ FROM stdin;\n1{rows}\\.\n"), "", 2, &["LEAKME18"], None),
        ("a pg_dump-looking comment line", "-- Name: LEAKME19@corp.test; Type: TABLE\nSELECT pg_catalog.setval('public.customers_id_seq', 1, true);\n".into(), "", 0, &["LEAKME19"], None),
        // A CSV header line is written from the column list, not copied.
        ("a CSV header", "COPY public.audit_log (id, actor_email, action, client_ip, details, at) FROM stdin WITH (FORMAT csv, HEADER true);\nLEAKME20@corp.test,b,c,d,e,f\n1,,login,,,2024-01-01 00:00:00+00\n\\.\n".into(), "", 0, &["LEAKME20"], Some("\"id\",\"actor_email\",\"action\",\"client_ip\",\"details\",\"at\"\n")),
        // The rows of a refused COPY are skipped, never read as statements or quoted.
        ("rows after a refused COPY", "COPY public.audit_log (id) FROM stdin WITH (FORMAT csv, FORCE_NULL (id));\nLEAKMEJOHN SMITH;\nLEAKME21 x\n\\.\n".into(), "", 2, &["LEAKMEJOHN", "LEAKME21"], None),
        // Text that psql and this reader could split differently.
        ("a NUL byte", "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, 'x', 'LEAKME22\0', NULL, NULL, now());\n".into(), "", 2, &["LEAKME22"], None),
        ("a psql variable in a tuple", "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, :'LEAKME23', 'x', NULL, NULL, now());\n".into(), "", 2, &["LEAKME23"], None),
        ("a psql variable in a statement", "SELECT pg_catalog.setval(:LEAKME24, 1, true);\n".into(), "", 2, &["LEAKME24"], None),
        ("a quoted psql variable as a name", "INSERT INTO :\"LEAKME25\" VALUES (1);\n".into(), "", 2, &["LEAKME25"], None),
        ("SET after COMMIT AND CHAIN", "BEGIN;\nCOMMIT AND CHAIN;\nSET standard_conforming_strings = off;\nCOMMIT;\n".into(), "", 2, &[], None),
        ("a `\\.` line inside a quoted CSV field", "COPY public.audit_log (id, actor_email, action, client_ip, details, at) FROM stdin WITH (FORMAT csv);\n1,,\"a\n\\.\nSELECT 'LEAKME26';\n\",,,2024-01-01 00:00:00+00\n\\.\n".into(), "", 2, &["LEAKME26"], None),
        // Secrets of foreign servers under other names, and ALTERs left with nothing to change.
        ("a server option named pwd", "CREATE SERVER prod2 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', pwd 'LEAKME27');\n".into(), "[policy]\nforeign_servers = \"keep\"\n", 0, &["LEAKME27"], Some("CREATE SERVER prod2 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h');")),
        ("a SET of standard_conforming_strings with more on its line", "SET standard_conforming_strings = off; CREATE VIEW public.v AS SELECT 'x\\';\nCOPY public.audit_log (id) FROM stdin;\n1\n\\.\n-- ';\n".into(), "", 2, &[], None),
        ("a number with trailing junk before a quote", "CREATE VIEW public.v AS SELECT 1E'\\';\n-- ';\n".into(), "", 2, &[], None),
        ("a SET of a setting named like a secret", "SET app.jwt_secret = 'LEAKME29';\nSELECT pg_catalog.setval('public.customers_id_seq', 1, true);\n".into(), "", 0, &["LEAKME29"], Some("SELECT pg_catalog.setval('public.customers_id_seq', 1, true);")),
        ("rows of a COPY the lexer's checks refuse", "COPY public.audit_log (id) FROM stdin WITH (FORMAT :'fmt');\nCOPY public.\"LEAKME30@x.test\" FROM stdin;\n\\.\n".into(), "", 2, &["LEAKME30"], None),
        ("an array slice in a view", "CREATE VIEW public.sl AS SELECT t.x[1:t.n] AS s, t.x[:t.n] AS s2 FROM (SELECT ARRAY[1,2] AS x, 1 AS n) t;\n".into(), "", 0, &[], Some("x[1:t.n]")),
        ("SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION 'app_user';\n".into(), "", 0, &[], Some("SET SESSION AUTHORIZATION 'app_user';")),
        ("an ALTER USER MAPPING of a password only", "ALTER USER MAPPING FOR app_user SERVER prod OPTIONS (SET password 'LEAKME28');\nSELECT pg_catalog.setval('public.customers_id_seq', 1, true);\n".into(), "[policy]\nforeign_servers = \"keep\"\n", 0, &["LEAKME28", "ALTER USER MAPPING"], Some("SELECT pg_catalog.setval('public.customers_id_seq', 1, true);")),
    ];
    for (what, appended, rules, code, markers, expect) in cases {
        let (got, err, out) = with_appended(&appended, rules);
        assert_eq!(got, code, "{what}: {err}");
        for m in markers {
            assert!(!err.contains(m), "{what}: {m} in stderr: {err}");
            if let Some(out) = &out {
                assert!(!out.contains(m), "{what}: {m} in the output");
            }
        }
        if code == 2 {
            assert!(out.is_none(), "{what}: output written");
            assert!(err.contains("dump line "), "{what}: {err}");
        }
        if let Some(e) = expect {
            assert!(
                out.as_deref().unwrap_or("").contains(e),
                "{what}: {e} not in the output"
            );
        }
    }
    // The refused COPY's rows are not refused as statements of their own.
    let (_, err, _) = with_appended(
        "COPY public.audit_log (id) FROM stdin WITH (FORMAT csv, FORCE_NULL (id));\nDROP TABLE x;\nUPDATE y SET z = 1;\n\\.\n",
        "",
    );
    assert!(!err.contains("UPDATE"), "{err}");
}

/// Whatever the dump does to a table's columns before its data — a CREATE TABLE IF NOT EXISTS that
/// changes nothing, a DROP and CREATE rolled back, renames through ALTER VIEW or `ALTER TABLE t *`,
/// a temporary table of the same name — the data statements written name every column, so the
/// server puts each value in the column whose rule made it. Loaded with psql, no original email
/// reaches `actor_email`, whose rule fakes it.
#[test]
fn column_order_tricks_cannot_move_a_value_into_another_column() {
    let def = "(id bigint, action text, actor_email text, client_ip inet, details text, at timestamp with time zone)";
    // The reader is made to believe `action` (kept) is the second column, where the server has
    // `actor_email`; the value written there is an original email.
    let insert = "INSERT INTO public.audit_log VALUES (777, 'LEAKORDER@corp.test', 'login', NULL, NULL, '2024-01-01 00:00:00+00');\n";
    let copy = "COPY public.audit_log FROM stdin;\n778\tLEAKORDER@corp.test\tlogin\t\\N\t\\N\t2024-01-01 00:00:00+00\n\\.\n";
    let renames = |alter: &str| {
        format!(
            "{alter} RENAME COLUMN actor_email TO tmp_x;\n{alter} RENAME COLUMN action TO actor_email;\n{alter} RENAME COLUMN tmp_x TO action;\n"
        )
    };
    let tricks: Vec<(&str, String)> = vec![
        ("CREATE TABLE IF NOT EXISTS", format!("CREATE TABLE IF NOT EXISTS public.audit_log {def};\n")),
        ("DROP and CREATE rolled back", format!("BEGIN;\nDROP TABLE public.audit_log;\nCREATE TABLE public.audit_log {def};\nROLLBACK;\n")),
        ("renames through ALTER VIEW", renames("ALTER VIEW public.audit_log")),
        ("renames through ALTER TABLE t *", renames("ALTER TABLE public.audit_log *")),
        ("renames through ALTER MATERIALIZED VIEW", renames("ALTER MATERIALIZED VIEW public.audit_log")),
        ("a temporary table of the same name", format!("CREATE TEMP TABLE audit_log {def};\n")),
    ];
    for (what, trick) in tricks {
        for data in [insert, copy] {
            let (code, err, out) = with_appended(&format!("{trick}{data}"), "");
            assert!(code == 0 || code == 2, "{what}: {code} {err}");
            assert!(!err.contains("LEAKORDER"), "{what}: {err}");
            let Some(out) = out else {
                assert_eq!(code, 2, "{what}");
                continue;
            };
            let db = loaded_as_a_user_would("order", &out);
            let leaked = db.query(
                "SELECT count(*) FROM public.audit_log WHERE actor_email LIKE '%LEAKORDER%'",
            );
            assert_eq!(leaked, "0", "{what}: an original email reached actor_email");
        }
    }
}

/// `[policy] materialized_views = "empty"` leaves the dump's REFRESH MATERIALIZED VIEW statements
/// out; by default they pass.
#[test]
fn materialized_views_policy_empty_leaves_refresh_out() {
    let refresh = "REFRESH MATERIALIZED VIEW public.order_totals;\n";
    let (code, err, out) = with_appended(refresh, "");
    assert_eq!(code, 0, "{err}");
    assert!(out.unwrap().contains(refresh));
    let (code, err, out) = with_appended(refresh, "[policy]\nmaterialized_views = \"empty\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(!out.unwrap().contains("REFRESH MATERIALIZED VIEW"));
    let (code, err, _) = with_appended(refresh, "[policy]\nmaterialized_views = \"emty\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did you mean") || err.contains("empty"),
        "{err}"
    );
}

/// Text that psql hands the server in one piece and the server splits into several statements
/// (a function named `begin` holding psql's `;`), a string continued on the next line (read with
/// its first piece's escapes), a comment ended by a bare carriage return: each could carry a
/// whole INSERT past the reader as schema text. Each is refused, or its output, loaded with psql,
/// holds no original value.
#[test]
fn text_the_server_reads_otherwise_than_psql_splits_it_cannot_carry_rows() {
    let insert = "INSERT INTO public.customers (id, email, first_name, last_name, phone, ssn, birth_date, salary, created_at) \
                  VALUES (5002, 'galeth.quilworth2@postal.invalid', 'Galeth', 'Quilworth', '+1 463-738-5992', '236-27-4464', '1983-08-20', 144738.67, '2024-07-03 13:45:33+00');";
    let attacks = [
        (
            "a function named begin",
            format!("CREATE FUNCTION public.begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$; {insert} CREATE FUNCTION public.end() RETURNS int LANGUAGE sql AS $$SELECT 1$$;\n"),
        ),
        (
            "an E'' string continued on the next line",
            format!("CREATE VIEW public.zz AS SELECT E'x'\n'\\' AS a, ' AS b; {insert} --' AS c\n;\n"),
        ),
        (
            "a comment ended by a carriage return",
            format!("CREATE VIEW public.vv AS SELECT 1 AS a -- c\r; {insert} SELECT 1\n;\n"),
        ),
        (
            "an INSERT tuple with a continued string",
            "INSERT INTO public.audit_log (id, actor_email, action, client_ip, details, at) VALUES (1, E'x'\n'\\', ''galeth.quilworth2@postal.invalid'', ''y'', NULL, NULL, now()) --', 'a', NULL, NULL, now());\n".to_string(),
        ),
    ];
    for (what, attack) in attacks {
        let (code, err, out) = with_appended(&attack, "");
        assert!(!err.contains("galeth"), "{what}: {err}");
        let Some(out) = out else {
            assert_eq!(code, 2, "{what}: {err}");
            assert!(err.contains("dump line "), "{what}: {err}");
            continue;
        };
        assert_eq!(code, 0, "{what}: {err}");
        let db = loaded_as_a_user_would("split", &out);
        let dump = db.query("SELECT count(*) FROM public.customers WHERE email LIKE 'galeth%' OR ssn = '236-27-4464'");
        assert_eq!(dump, "0", "{what}: the original row was loaded");
    }
}

/// Rows for a name the dump made a view (or gave an INSERT rule) would land in another table,
/// under its name but not its rules: refused.
#[test]
fn data_for_a_view_is_refused() {
    for setup in [
        "CREATE TABLE public.people (id int, email text);\nCREATE VIEW public.t AS SELECT id, email AS note FROM public.people;\n",
        "CREATE TABLE public.people (id int, email text);\nCREATE TABLE public.t (id int, note text);\nCREATE RULE r AS ON INSERT TO public.t DO INSTEAD INSERT INTO public.people VALUES (NEW.id, NEW.note);\n",
    ] {
        for data in [
            "INSERT INTO public.t (id, note) VALUES (2, 'alice@real.example');\n",
            "COPY public.t (id, note) FROM stdin;\n2\talice@real.example\n\\.\n",
        ] {
            let (code, err, out) = with_appended(
                &format!("{setup}{data}"),
                "[tables.people.columns]\nid = \"keep\"\nemail = { fake = \"email\" }\n[tables.t.columns]\nid = \"keep\"\nnote = \"keep\"\n",
            );
            assert_eq!(code, 2, "{setup}{data}: {err}");
            assert!(err.contains("view or gave an INSERT rule"), "{err}");
            assert!(out.is_none());
            assert!(!err.contains("alice"), "{err}");
        }
    }
}

/// A COPY statement whose `;` is the last byte of a read (256 KiB chunks): the reader takes its
/// position again after reading on, and neither refuses nor panics.
#[test]
fn a_copy_statement_ending_at_a_read_boundary_is_read_whole() {
    let copy =
        "COPY public.audit_log (id, actor_email, action, client_ip, details, at) FROM stdin;";
    let start = demo_dump().len() + 1;
    for k in 1..=3usize {
        let boundary = (start / (256 * 1024) + k) * 256 * 1024;
        // A comment line pads the text so that the COPY's `;` is the boundary's last byte.
        let pad = boundary - start - copy.len() - 1;
        let appended = format!(
            "--{}\n{copy}\n90{k}\tcopy.boundary@corp.test\tlogin\t\\N\t\\N\t2024-01-01 00:00:00+00\n\\.\n",
            "x".repeat(pad - 2)
        );
        assert_eq!(start + appended.find(';').unwrap() + 1, boundary);
        let (code, err, out) = with_appended(&appended, "");
        assert_eq!(code, 0, "boundary {boundary}: {err}");
        assert!(!out.unwrap().contains("copy.boundary@corp.test"));
    }
}

/// Two quotes deleted by hand (one opens a default's `nextval('…')`, one a `setval('…')` after the
/// data): psql, and the reader, take everything between as quoted strings of one ALTER TABLE, every
/// COPY block included. That statement carried the whole demo's rows out verbatim with exit 0; it
/// is refused with exit 2, its line, and no value in the message, and nothing is written.
#[test]
fn a_quote_lost_before_the_data_does_not_carry_the_rows_out_as_schema() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.sql");
    let text = demo_dump()
        .replacen(
            "nextval('public.customers_id_seq'",
            "nextval(public.customers_id_seq'",
            1,
        )
        .replacen(
            "setval('public.orders_id_seq'",
            "setval(public.orders_id_seq'",
            1,
        );
    let line = 1 + text[..text.find("nextval(public.customers").unwrap()]
        .matches('\n')
        .count();
    std::fs::write(&dump, &text).unwrap();
    let out = dir.path().join("out.sql");
    let o = run(anonymize()
        .arg("--rules")
        .arg(root().join("rules/customers.toml"))
        .arg("--source")
        .arg(&dump)
        .arg("--target")
        .arg(&out));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("dump line {line}: a quoted string, quoted name or comment that holds what a dump writes between statements")),
        "{err}"
    );
    assert!(!err.contains('@') && !err.contains("\t"), "{err}");
    assert!(!out.exists());
}
