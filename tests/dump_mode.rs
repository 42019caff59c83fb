//! End-to-end: the binary on dumps, loaded into real PostgreSQL databases.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn demo_input() -> String {
    std::fs::read_to_string(root().join("examples/production.sql")).unwrap()
}

#[test]
fn demo_output_loads_keeps_shape_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = demo_input();
    let out = anonymize_file(
        "rules/customers.toml",
        &root().join("examples/production.sql"),
        dir.path(),
    );
    let db = TestDb::new("demo");
    db.load(&dir.path().join("out.sql"));

    let before = copy_blocks(&input);
    for (table, (_, rows)) in &before {
        let count: usize = db
            .query(&format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        assert_eq!(count, rows.len(), "{table}");
    }
    // Keys, UNIQUE(email) and FKs were created after the data by the dump itself; check them anyway.
    assert_eq!(
        db.query("SELECT count(*) = count(DISTINCT email) FROM customers"),
        "t"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL"),
        "0"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM pg_constraint WHERE conrelid::regclass::text IN ('customers','addresses','orders','payments') AND contype = 'f'"),
        "3"
    );
    // The generated column was regenerated from the anonymized names.
    assert_eq!(
        db.query(
            "SELECT count(*) FROM customers WHERE full_name <> first_name || ' ' || last_name"
        ),
        "0"
    );
    // Emails agree across tables (same domain): every actor email is some customer's email.
    assert_eq!(
        db.query("SELECT count(*) FROM audit_log a WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.email = a.actor_email)"),
        "0"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM customers WHERE email NOT LIKE '%@example.%'"),
        "0"
    );

    // No original email, phone, card number or name appears anywhere in the output.
    let mut secrets = Vec::new();
    for (table, col) in [
        ("public.customers", "email"),
        ("public.customers", "phone"),
        ("public.customers", "first_name"),
        ("public.customers", "last_name"),
        ("public.customers", "ssn"),
        ("public.payments", "card_number"),
        ("public.addresses", "street"),
        ("public.audit_log", "client_ip"),
    ] {
        secrets.extend(column(&before, table, col));
    }
    assert!(secrets.len() > 9000, "{}", secrets.len());
    // The demo's names are invented from syllables no fake list holds, so any occurrence is a leak.
    let leaked = occurring(&out, &secrets);
    assert!(leaked.is_empty(), "{} original values leaked", leaked.len());
    // Free-text phones, cards and SSNs written in the input notes are gone too.
    let note_numbers = regex_numbers(&column(&before, "public.customers", "notes").join("\n"));
    assert!(note_numbers.len() > 100);
    assert!(occurring(&out, &note_numbers).is_empty());
}

/// Card numbers and phone numbers written in free text (digits with separators).
fn regex_numbers(text: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"\+1 [0-9]{3}-[0-9]{3}-[0-9]{4}|\b4[0-9]{15}\b|\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    )
    .unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn pagila_output_loads_with_counts_fks_and_no_pii() {
    let dir = tempfile::tempdir().unwrap();
    let (dump, text) = pagila_dump(dir.path());
    let out = anonymize_file("tests/fixtures/pagila.toml", &dump, dir.path());
    let db = TestDb::new("pagila");
    db.load(&dir.path().join("out.sql"));

    let before = copy_blocks(&text);
    let mut total = 0;
    for (table, (_, rows)) in &before {
        let count: usize = db
            .query(&format!("SELECT count(*) FROM ONLY {table}"))
            .parse()
            .unwrap();
        assert_eq!(count, rows.len(), "{table}");
        total += count;
    }
    assert_eq!(total, 49_636);
    // The FKs of the schema were live during the load; the partitioned parent sees every row.
    assert_eq!(db.query("SELECT count(*) FROM payment"), "16049");
    assert_eq!(
        db.query("SELECT count(*) FROM customer WHERE email NOT LIKE '%@example.%'"),
        "0"
    );
    // tsvector and array columns came through unchanged: the same checksum as in the source.
    let source = TestDb::new("pagila_src");
    source.load(&pagila_dir().join("pagila-schema.sql"));
    source.load(&pagila_dir().join("pagila-data.sql"));
    let sums = "SELECT md5(string_agg(film_id || ':' || fulltext::text || ':' || \
                coalesce(special_features::text, 'NULL'), ',' ORDER BY film_id)) FROM film";
    assert_eq!(db.query(sums), source.query(sums));

    // Identifiers: no original email, phone or username anywhere (emails as substrings, the others
    // as whole cells, since a short username can be a fair part of an invented email).
    let emails: Vec<String> = ["public.customer", "public.staff"]
        .iter()
        .flat_map(|t| column(&before, t, "email"))
        .collect();
    assert!(emails.len() > 2000);
    assert!(occurring(&out, &emails).is_empty());
    let after = copy_blocks(&out);
    for (table, col) in [("public.address", "phone"), ("public.staff", "username")] {
        let cells: std::collections::HashSet<String> = after
            .values()
            .flat_map(|(_, rows)| rows.iter().flatten().cloned())
            .collect();
        let originals = column(&before, table, col);
        assert!(!originals.is_empty());
        assert!(
            originals.iter().all(|v| !cells.contains(v)),
            "{table}.{col}"
        );
    }
    // Names: pagila's staff were themselves made with a fake-name list, so an invented name can
    // match somebody else's by chance; what must never happen is a person keeping their own name.
    for table in ["public.customer", "public.actor", "public.staff"] {
        let name = |b: &std::collections::BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>| {
            column(b, table, "first_name")
                .into_iter()
                .zip(column(b, table, "last_name"))
                .collect::<Vec<_>>()
        };
        let (old, new) = (name(&before), name(&after));
        assert_eq!(old.len(), new.len());
        let kept = old.iter().zip(&new).filter(|(o, n)| o == n).count();
        assert_eq!(kept, 0, "{table}");
    }
}

#[test]
fn pg_dump_to_stdin_stdout_to_psql() {
    let src = TestDb::demo("pipe_src");
    let staging = TestDb::new("pipe_dst");
    let conn = server().client_args().join(" ");
    let script = format!(
        "set -o pipefail; pg_dump {conn} {} | {} --rules rules/customers.toml --source - --target - | psql -X -q -v ON_ERROR_STOP=1 {conn} -d {} >/dev/null",
        src.name,
        env!("CARGO_BIN_EXE_anonymize"),
        staging.name
    );
    let mut bash = Command::new("bash");
    common::cluster::clear_pg_env(&mut bash);
    let o = bash
        .args(["-c", &script])
        .env("ANONYMIZE_KEY", KEY)
        .env("PATH", common::cluster::path_env())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for (table, want) in [
        ("customers", "1000"),
        ("orders", "3000"),
        ("payments", "2500"),
        ("audit_log", "1500"),
    ] {
        assert_eq!(
            staging.query(&format!("SELECT count(*) FROM {table}")),
            want,
            "{table}"
        );
    }
    assert_eq!(
        staging.query("SELECT count(*) FROM customers WHERE email NOT LIKE '%@example.%'"),
        "0"
    );
    assert_ne!(
        staging.query("SELECT email FROM customers WHERE id = 1"),
        src.query("SELECT email FROM customers WHERE id = 1")
    );
}

#[test]
fn output_is_deterministic_and_key_dependent() {
    let run_with = |key: &str| {
        let o = run(anonymize().env("ANONYMIZE_KEY", key).args([
            "--rules",
            "rules/customers.toml",
            "--target",
            "-",
            "--quiet",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stderr.is_empty(), "--quiet prints nothing on success");
        o.stdout
    };
    let a = run_with(KEY);
    assert_eq!(a, run_with(KEY));
    // Key rotation: a new key redraws every keyed pseudonym, row by row. Values drawn from a
    // dictionary (names, cities) or a range (shifted dates, noise) can come out the same under both
    // keys by chance, at about one in the dictionary's or range's size; keyed hashes, unique fakes,
    // cards and addresses never do. `mask` and `truncate` are not keyed, and free text without a
    // finding is kept as it was, so those are left out.
    let rotated = run_with("another-key-not-secret-0123456789");
    let input = copy_blocks(&demo_input());
    let (old, new) = (
        copy_blocks(&String::from_utf8(a.clone()).unwrap()),
        copy_blocks(&String::from_utf8(rotated).unwrap()),
    );
    for (table, col, most) in [
        ("public.customers", "email", 0.0),
        ("public.customers", "first_name", 0.03),
        ("public.customers", "last_name", 0.03),
        ("public.customers", "ssn", 0.0),
        ("public.customers", "birth_date", 0.02),
        ("public.customers", "notes", 0.0),
        ("public.customers", "profile", 0.0),
        ("public.customers", "salary", 0.01),
        ("public.addresses", "street", 0.01),
        ("public.addresses", "city", 0.03),
        ("public.addresses", "zip", 0.0),
        ("public.orders", "shipping_note", 0.0),
        ("public.payments", "card_number", 0.0),
        ("public.payments", "client_ip", 0.001),
        ("public.audit_log", "actor_email", 0.0),
        ("public.audit_log", "client_ip", 0.001),
        ("public.audit_log", "details", 0.0),
    ] {
        let (i, o, n) = (
            column(&input, table, col),
            column(&old, table, col),
            column(&new, table, col),
        );
        assert_eq!((i.len(), o.len()), (n.len(), n.len()), "{table}.{col}");
        // Only cells the rule changed count: a note without any finding is kept as written.
        let changed: Vec<(&String, &String)> = i
            .iter()
            .zip(o.iter().zip(&n))
            .filter(|(i, (o, _))| i != o)
            .map(|(_, pair)| pair)
            .collect();
        assert!(
            changed.len() * 10 >= i.len(),
            "{table}.{col}: few cells changed"
        );
        let same = changed.iter().filter(|(x, y)| x == y).count();
        let rate = same as f64 / changed.len() as f64;
        eprintln!(
            "rotation: {table}.{col}: {same} of {} the same",
            changed.len()
        );
        assert!(
            rate <= most,
            "{table}.{col}: {same} of {} pseudonyms survived a key rotation",
            changed.len()
        );
    }
    // Same key with other thread counts: the same bytes.
    for jobs in ["1", "2", "3", "8"] {
        let o = run(anonymize().args([
            "--rules",
            "rules/customers.toml",
            "--target",
            "-",
            "--jobs",
            jobs,
            "-q",
        ]));
        assert!(o.status.success());
        assert!(o.stdout == a, "--jobs {jobs} changed the output");
    }
}

#[test]
fn uncovered_columns_stop_the_run_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("drift.sql");
    let input = demo_input().replace(
        "COPY public.orders (id, customer_id, total, status, ordered_at, shipping_note) FROM stdin;",
        "COPY public.orders (id, customer_id, total, status, ordered_at, shipping_note, gift_message) FROM stdin;",
    );
    std::fs::write(&dump, input).unwrap();
    let target = dir.path().join("out.sql");
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "--source"])
        .arg(&dump)
        .arg("--target")
        .arg(&target));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "anonymize: error: uncovered columns: every column of every copied table needs a rule or \"keep\" (schema drift in the source?)
  column public.orders.gift_message
add these lines to rules/customers.toml (each rule writes what its column accepts: review them; \"null\" hides the value, \"keep\" only for data that is not personal, skip = true skips a table):

# under [tables.orders.columns], the rules of public.orders at rules/customers.toml:52:9:
gift_message = \"null\"
"
    );
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn broken_dumps_fail_with_line_numbers_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = demo_input();
    let header = "COPY public.orders (id, customer_id, total, status, ordered_at, shipping_note) FROM stdin;\n";
    let at = full.find(header).unwrap() + header.len();
    let header_line = full[..at].lines().count();
    let cases = [
        // Cut in the middle of the orders block.
        (full[..at + 200].to_string(), format!("dump line {}: the COPY block of public.orders (started on line {header_line}) has no end marker `\\.`: the dump is truncated", full[..at + 200].lines().count())),
        // One field too many in the first order.
        ({
            let mut s = full.clone();
            s.insert_str(at, "99\t1\t1.00\tnew\t2024-01-01 00:00:00+00\t\\N\textra\n");
            s
        }, format!("public.orders row 1 (dump line {}): 7 fields, expected 6", header_line + 1)),
        // A date that is not a date under a shift rule.
        (full.replacen("\t1991-", "\tnot-a-date-", 1), String::new()),
    ];
    let mut cases: Vec<(Vec<u8>, String)> = cases
        .into_iter()
        .map(|(t, w)| (t.into_bytes(), w))
        .collect();
    // A Latin-1 byte in the second order row.
    let mut latin1 = full.as_bytes().to_vec();
    let second_row = at + full[at..].find('\n').unwrap() + 1;
    latin1.insert(second_row + 2, 0xe9);
    cases.push((
        latin1,
        format!(
            "public.orders row 2 (dump line {}): invalid UTF-8",
            header_line + 2
        ),
    ));
    // Escapes that decode to nothing valid, in a transformed column (customers.email): `\xff` (not
    // UTF-8) and a lone backslash at the end of the field.
    let first_customer = {
        let h = full.find("COPY public.customers (").unwrap();
        h + full[h..].find('\n').unwrap() + 1
    };
    let customer_line = full[..first_customer].lines().count() + 1;
    let email = first_customer + full[first_customer..].find('\t').unwrap() + 1;
    let email_end = email + full[email..].find('\t').unwrap();
    for (at, insert, what) in [
        (email, "bad\\xff", "invalid UTF-8 in a COPY field"),
        (email_end, "\\", "a COPY field ends with a lone backslash"),
    ] {
        let mut s = full.clone();
        s.insert_str(at, insert);
        cases.push((
            s.into_bytes(),
            format!("public.customers row 1 (dump line {customer_line}), column email: {what}"),
        ));
    }
    for (i, (text, want)) in cases.iter().enumerate() {
        let dump = dir.path().join(format!("broken{i}.sql"));
        std::fs::write(&dump, text).unwrap();
        let target = dir.path().join(format!("out{i}.sql"));
        let o = run(anonymize()
            .args(["--rules", "rules/customers.toml", "-q", "--source"])
            .arg(&dump)
            .arg("--target")
            .arg(&target));
        assert_eq!(o.status.code(), Some(1), "case {i}: {}", stderr(&o));
        let err = stderr(&o);
        if want.is_empty() {
            assert!(
                err.contains(", column birth_date: value is not a date or timestamp"),
                "{err}"
            );
            assert!(
                !err.contains("not-a-date"),
                "the value itself must not be printed: {err}"
            );
        } else {
            assert!(
                err.starts_with(&format!("anonymize: error: {want}")),
                "case {i}: {err}"
            );
        }
        assert!(!target.exists(), "case {i}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bad_rules_and_keys_exit_2_with_exact_messages() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.toml");
    std::fs::write(
        &rules,
        "[tables.customers.columns]\nemail = { fake = \"emial\" }\n",
    )
    .unwrap();
    let o = run(anonymize().arg("--rules").arg(&rules));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "anonymize: error: {}:2:18: unknown fake kind \"emial\" (did you mean \"email\"?)\n",
            rules.display()
        )
    );

    let o = run(anonymize()
        .env("ANONYMIZE_KEY", "demo")
        .args(["--rules", "rules/customers.toml"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "anonymize: error: ANONYMIZE_KEY: the secret key is 4 bytes long; at least 16 bytes are required\n"
    );
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["--rules", "rules/customers.toml"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o)
        .starts_with("anonymize: error: the secret key is not set: export ANONYMIZE_KEY="));

    let o = run(anonymize().args([
        "--rules",
        "rules/customers.toml",
        "--source",
        "examples/production.sql",
        "--target",
        "./examples/../examples/production.sql",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("source and target are the same file"));

    let o = run(anonymize().args(["--rules", "rules/customers.toml", "--jobs", "0"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn closed_stdout_ends_quietly() {
    let mut child = anonymize()
        .args(["--rules", "rules/customers.toml", "--target", "-", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn row_filters_are_reported_for_dump_sources() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.toml");
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "[tables.customers.columns]",
            "[tables.customers]\nwhere = \"deleted_at IS NULL\"\n[tables.customers.columns]",
        );
    std::fs::write(&rules, text).unwrap();
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--target", "-"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("anonymize: warning: public.customers: `where` filters apply to database sources only; a dump is copied whole\n"),
        "{}",
        stderr(&o)
    );
    // The whole table is there.
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(copy_blocks(&out)["public.customers"].1.len(), 1000);
}

#[test]
fn check_validates_without_a_key_and_catches_drift() {
    let o = run(anonymize().env_remove("ANONYMIZE_KEY").args([
        "check",
        "--rules",
        "rules/customers.toml",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "anonymize: check passed: 5 tables (0 skipped), 38 columns (19 transformed, 19 kept) in examples/production.sql\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("drift.sql");
    std::fs::write(
        &dump,
        demo_input().replace(
            "COPY public.payments (id, order_id, card_number, amount, paid_at, client_ip) FROM stdin;",
            "COPY public.payments (id, order_id, card_number, amount, paid_at, client_ip, cvv) FROM stdin;",
        ),
    )
    .unwrap();
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["check", "--rules", "rules/customers.toml", "--source"])
        .arg(&dump));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("  column public.payments.cvv\n"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("# under [tables.payments.columns], the rules of public.payments at rules/customers.toml:60:9:\ncvv = \"null\""),
        "{}",
        stderr(&o)
    );
    // A short key is still a configuration error, key or no key needed.
    let o = run(anonymize().env("ANONYMIZE_KEY", "short").args([
        "check",
        "--rules",
        "rules/customers.toml",
    ]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dry_run_previews_samples_writes_nothing_and_flags_weak_rules() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("never.sql");
    let o = run(anonymize()
        .args([
            "--rules",
            "rules/customers.toml",
            "--dry-run",
            "--sample",
            "3",
            "--tables",
            "customers,payments",
            "--target",
        ])
        .arg(&target));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!target.exists(), "a dry run creates no file");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let text = String::from_utf8(o.stdout).unwrap();
    let first_email = column(&copy_blocks(&demo_input()), "public.customers", "email")[0].clone();
    assert!(
        text.starts_with("public.customers  (1000 rows)\n  email  fake = \"email\", unique\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("    {first_email} ")),
        "originals are shown side by side"
    );
    assert!(text.contains("public.payments  (2500 rows)"));
    assert!(
        !text.contains("public.orders"),
        "--tables limits the preview"
    );
    assert!(
        text.lines().all(|l| l.chars().count() <= 120),
        "fits a 120-column terminal"
    );
    assert!(text.ends_with("0 warnings\n"), "{text}");

    // JSON for scripts, and a weak rule: `set` that leaves "US" as "US".
    let rules = dir.path().join("weak.toml");
    let weak = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace("country    = \"keep\"", "country    = { set = \"US\" }");
    std::fs::write(&rules, weak).unwrap();
    let o = run(anonymize().arg("--rules").arg(&rules).args([
        "--source",
        "examples/production.sql",
        "--dry-run",
        "--sample",
        "40",
        "--format",
        "json",
        "--tables",
        "customers",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let customers = &doc["tables"][0];
    assert_eq!(customers["name"], "public.customers");
    assert_eq!(customers["rows"], 1000);
    let country = customers["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "country")
        .unwrap();
    assert_eq!(country["samples"].as_array().unwrap().len(), 40);
    let warning = country["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("anonymized value equal to the original in "),
        "{warning}"
    );
    assert!(doc["warnings"].as_u64().unwrap() >= 1);
    // --strict turns the warning into exit 2.
    let o = run(anonymize().arg("--rules").arg(&rules).args([
        "--source",
        "examples/production.sql",
        "--dry-run",
        "--strict",
        "--tables",
        "customers",
        "--sample",
        "40",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("anonymize: error: --strict: the sample shows "),
        "{}",
        stderr(&o)
    );
    // Unknown tables are a usage error.
    let o = run(anonymize().args([
        "--rules",
        "rules/customers.toml",
        "--dry-run",
        "--tables",
        "nope",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "anonymize: error: --tables names tables the source does not have: public.nope\n"
    );
}

#[test]
fn scan_drafts_rules_that_pass_check_and_leave_no_detected_pii() {
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.toml");
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .args(["scan", "--source", "examples/production.sql", "--output"])
        .arg(&draft));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&draft).unwrap();
    for line in [
        "email      = { fake = \"email\", unique = true }  # email addresses (high: name and values)",
        "ssn        = { hash = { format = \"preserve\" } }  # national identifiers (high: name and values)",
        "card_number = { fake = \"credit_card\" }  # card numbers (high: name and values)",
        "id         = \"keep\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("notes      = { scrub = [\"credit_card\", \"email\", \"phone\", \"ssn\"] }"),
        "{text}"
    );
    assert!(
        text.contains("\"$.email\" = { fake = \"email\", unique = true }"),
        "{text}"
    );
    // The draft passes check as written…
    let o = run(anonymize()
        .env_remove("ANONYMIZE_KEY")
        .arg("check")
        .arg("--rules")
        .arg(&draft));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // …and a run with it leaves none of the detected personal data.
    let o = run(anonymize()
        .arg("--rules")
        .arg(&draft)
        .args(["--target", "-", "-q"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let before = copy_blocks(&demo_input());
    let mut secrets = Vec::new();
    for (table, col) in [
        ("public.customers", "email"),
        ("public.customers", "phone"),
        ("public.customers", "ssn"),
        ("public.customers", "first_name"),
        ("public.customers", "last_name"),
        ("public.payments", "card_number"),
        ("public.addresses", "street"),
        ("public.audit_log", "actor_email"),
        ("public.audit_log", "client_ip"),
    ] {
        secrets.extend(column(&before, table, col));
    }
    assert!(occurring(&out, &secrets).is_empty());
}

#[test]
fn ctrl_c_stops_at_the_next_batch_with_130_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // The demo with its orders repeated until the run takes long enough to be interrupted.
    let demo = demo_input();
    let header = "COPY public.orders (id, customer_id, total, status, ordered_at, shipping_note) FROM stdin;\n";
    let start = demo.find(header).unwrap() + header.len();
    let end = start + demo[start..].find("\\.\n").unwrap();
    let mut big = String::with_capacity(demo.len() + (end - start) * 400);
    big.push_str(&demo[..end]);
    for _ in 0..400 {
        big.push_str(&demo[start..end]);
    }
    big.push_str(&demo[end..]);
    let dump = dir.path().join("big.sql");
    std::fs::write(&dump, big).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("out.sql");
    let child = anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--source"])
        .arg(&dump)
        .arg("--target")
        .arg(&target)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary target exists: the run is writing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&out_dir).unwrap().count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("anonymize: error: interrupted by SIGINT: nothing was kept"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "neither the target nor its temporary file"
    );
}

#[test]
fn json_report_on_success_and_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(dir.path().join("out.sql"))
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = success_report(&report);
    assert_eq!(doc["rows_written"], 9000);
    assert_eq!(doc["source"], "examples/production.sql");
    assert!(doc["started_at"].as_str().unwrap().ends_with('Z'));
    let tables = doc["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 5);
    assert_eq!(tables[0]["name"], "public.customers");
    assert_eq!(tables[0]["rows_written"], 1000);
    assert_eq!(tables[0]["rules"]["email"], "fake = \"email\", unique");
    assert!(tables[0]["bytes_written"].as_u64().unwrap() > 100_000);

    // A payments row with a field too many: failed, with the tables finished before it.
    let full = demo_input();
    let header = "COPY public.payments (id, order_id, card_number, amount, paid_at, client_ip) FROM stdin;\n";
    let at = full.find(header).unwrap() + header.len();
    let mut broken = full.clone();
    broken.insert_str(
        at,
        "0\t1\t4111111111111111\t1.00\t2024-01-01 00:00:00+00\t10.0.0.1\textra\n",
    );
    let dump = dir.path().join("broken.sql");
    std::fs::write(&dump, broken).unwrap();
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--source"])
        .arg(&dump)
        .arg("--target")
        .arg(dir.path().join("out2.sql"))
        .arg("--report")
        .arg(&report));
    assert_eq!(o.status.code(), Some(1));
    let doc = failed_report(&report, "public.payments row 1");
    let done: Vec<&str> = doc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        vec!["public.customers", "public.addresses", "public.orders"]
    );
    assert_eq!(doc["rows_written"], 5000);
}

#[test]
fn without_a_terminal_progress_is_plain_lines_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.sql");
    let emails = column(&copy_blocks(&demo_input()), "public.customers", "email");
    for extra in [&[][..], &["--progress", "never"][..], &["-v"][..]] {
        let o = run(anonymize()
            .args(["--rules", "rules/customers.toml", "--target"])
            .arg(&out)
            .args(extra));
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            !err.contains('\x1b'),
            "escape codes without a terminal: {err:?}"
        );
        for line in [
            "anonymize: copying 5 tables (9000 rows expected)\n",
            "anonymize: public.customers: started (1000 rows expected)\n",
            "anonymize: public.audit_log: started (1500 rows expected)\n",
        ] {
            assert!(err.contains(line), "{line:?} missing from {err}");
        }
        assert!(
            err.contains("anonymize: public.payments: 2500 rows in "),
            "{err}"
        );
        // The summary: a header, one row per table, the totals, then the done line.
        let summary = &err[err.find("anonymize: summary\n").expect("summary")..];
        let rows: Vec<Vec<&str>> = summary
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["table", "rows", "read", "rows", "written", "seconds", "rows/s"]
        );
        assert_eq!(&rows[1][..3], ["public.customers", "1000", "1000"]);
        assert_eq!(&rows[6][..5], ["total", "(5", "tables)", "9000", "9000"]);
        assert!(summary
            .lines()
            .nth(8)
            .unwrap()
            .starts_with("anonymize: done: 5 tables, 9000 rows"));
        assert!(
            occurring(&err, &emails).is_empty(),
            "a cell value in the log"
        );
        if extra == ["-v"] {
            assert!(err.contains("anonymize: info: first pass over examples/production.sql: 5 data blocks, 9000 rows"), "{err}");
        } else {
            assert!(!err.contains("info:"), "{err}");
        }
    }
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&out));
    assert!(o.status.success());
    assert_eq!(stderr(&o), "", "--quiet prints only errors");
}

/// The terminal experience, without a screenshot: the binary under a pseudo-terminal (util-linux
/// `script`) draws bars with cursor movements, and ends with the bars gone and the summary printed.
#[test]
fn in_a_terminal_bars_render_and_end_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.sql");
    let cmd = format!(
        "{} --rules rules/customers.toml --target {}",
        env!("CARGO_BIN_EXE_anonymize"),
        out.display()
    );
    let o = run(Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(root())
        .env("TERM", "xterm-256color")
        .env("ANONYMIZE_KEY", "demo-key-not-secret-0123"));
    assert!(o.status.success(), "{}", stderr(&o));
    let tty = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
    // indicatif redraws by moving the cursor up and clearing lines.
    assert!(
        tty.contains("\x1b[1A") && tty.contains("\x1b[2K"),
        "{tty:?}"
    );
    for drawn in [
        "0/9,000 rows",
        "9,000/9,000 rows",
        "ETA",
        "0/5 tables",
        "5/5 tables",
        "public.customers   ",
    ] {
        assert!(
            tty.contains(drawn),
            "bar text {drawn:?} missing from {tty:?}"
        );
    }
    // Finished tables collapse to their summary line above the bars.
    assert!(
        tty.contains("anonymize: public.orders: 3000 rows in "),
        "{tty:?}"
    );
    // After the last redraw: only the summary, ending with the done line.
    let tail = &tty[tty.rfind('\x1b').unwrap()..];
    let tail = &tail[tail
        .find("anonymize: summary")
        .expect("summary after the bars")..];
    assert!(!tail.contains('\x1b'));
    assert!(
        tail.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("anonymize: done: 5 tables, 9000 rows"),
        "{tail}"
    );

    // --progress always draws even into a pipe; never draws nothing.
    let o = run(anonymize()
        .args([
            "--rules",
            "rules/customers.toml",
            "--progress",
            "always",
            "--target",
        ])
        .arg(&out));
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("\x1b[2K") && stderr(&o).contains("ETA"),
        "{}",
        stderr(&o)
    );
}

/// The cron wrapper of examples/deploy: secrets from its env file, a report per run, an alert with the
/// exit code when a run fails.
#[test]
fn the_cron_wrapper_writes_reports_and_alerts_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let state = dir.path().join("state");
    let out = dir.path().join("staging.sql");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_anonymize"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let nightly = |key: &str| {
        std::fs::write(
            &env_file,
            format!(
                "PROD_DATABASE_URL=examples/production.sql\nSTAGING_DATABASE_URL={}\nANONYMIZE_KEY={key}\n",
                out.display()
            ),
        )
        .unwrap();
        run(Command::new("bash")
            .arg("examples/deploy/cron/anonymize-nightly.sh")
            .current_dir(root())
            .env_remove("ANONYMIZE_KEY")
            .env("PATH", &path)
            .env("ANONYMIZE_ENV_FILE", &env_file)
            .env("ANONYMIZE_RULES", "rules/customers.toml")
            .env("ANONYMIZE_STATE_DIR", &state)
            .env("ANONYMIZE_ALERT", "echo ALERT"))
    };
    let report = || read_report(&state.join("last-report.json"));

    let o = nightly("demo-key-not-secret-0123");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ALERT"));
    success_report(&state.join("last-report.json"));
    assert_eq!(report()["rows_written"], 9000);
    assert!(out.exists());

    // A short key: exit 2, the alert names the code, the report says why.
    let o = nightly("short");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let alert = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        alert.starts_with("ALERT anonymize: staging refresh failed with exit code 2 (report: "),
        "{alert}"
    );
    assert_eq!(report()["status"], "failed");
    assert!(
        report()["error"].as_str().unwrap().contains("16 bytes"),
        "{}",
        report()
    );
}

/// Bad rules at every level of the file, through the binary: exit 2, `file:line:col`, a suggestion
/// where one fits, nothing written.
#[test]
fn bad_rules_at_every_level_exit_2_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[secret]\nkey_evn = \"K\"\n", "2:1: unknown key `key_evn` (did you mean `key_env`?); expected one of `key_env`, `key_file`"),
        ("[defaults]\nuncoverd = \"fail\"\n", "2:1: unknown key `uncoverd` (did you mean `uncovered`?); expected one of `uncovered`"),
        ("[target]\nulr = \"x\"\n", "2:1: unknown key `ulr` (did you mean `url`?); expected one of `url`"),
        ("[source]\nurl = 5\n", "2:7: invalid type: integer `5`, expected a string"),
        ("tables = 3\n", "1:10: invalid type: integer `3`, expected a map"),
        ("[tables.customers]\nskip = \"yes\"\n", "2:8: invalid type: string \"yes\", expected a boolean"),
        ("[tables.customers.columns]\nemail = { hash = { formt = \"hex\" } }\n", "2:20: unknown key `formt` (did you mean `format`?); expected one of `length`, `format`"),
        ("[tables.customers.columns]\nemail = { mask = { keep_lst = 4 } }\n", "2:20: unknown key `keep_lst` (did you mean `keep_last`?); expected one of `keep_first`, `keep_last`, `char`"),
        ("[tables.customers.columns]\nemail = { shift = { dayz = 4 } }\n", "2:21: unknown key `dayz` (did you mean `days`?); expected one of `days`"),
        ("[tables.customers.columns]\nprofile = { json = { \"$.x\" = { fakee = \"email\" } } }\n", "2:32: unknown key `fakee` (did you mean `fake`?)"),
        ("[tables.customers.columns]\nsalary = { noise = { percent = \"ten\" } }\n", "2:32: invalid type: string \"ten\", expected f64"),
        ("[tables.customers.columns]\nemail = { fake = \"email\", unique = \"yes\" }\n", "2:36: invalid type: string \"yes\", expected a boolean"),
        ("[tables.customers.columns]\nemail = { fake = \"emial\" }\n", "2:18: unknown fake kind \"emial\" (did you mean \"email\"?)"),
        ("[tables.customers.columns]\nemail = { fakes = \"email\" }\n", "2:11: unknown key `fakes` (did you mean `fake`?)"),
        ("[tables.customers.columns]\nemail = { noise = { percent = 5, absolute = 1 } }\n", "2:19: conflicting options: noise takes percent or absolute, not both"),
        ("[tables.customers.columns]\nemail = { mask = {}, unique = true }\n", "2:31: mask cannot promise unique values"),
        // Names the source does not have: bound to the dump's COPY headers, with suggestions.
        ("[defaults]\nuncovered = \"keep\"\n[tables.custmers.columns]\nid = \"keep\"\n", "3:9: table public.custmers is not in the source (did you mean public.customers?)"),
        ("[defaults]\nuncovered = \"keep\"\n[tables.customers.columns]\nemial = \"keep\"\n", "4:9: column public.customers.emial is not in the source (did you mean email?)"),
        ("[tables.customers]\nwhere = \"id > ${NO_SUCH_VAR_FOR_TEST}\"\n", "2:9: where: environment variable NO_SUCH_VAR_FOR_TEST is not set"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let rules = dir.path().join(format!("r{i}.toml"));
        std::fs::write(&rules, text).unwrap();
        let target = dir.path().join(format!("out{i}.sql"));
        let o = run(anonymize()
            .arg("--rules")
            .arg(&rules)
            .args(["--source", "examples/production.sql", "--target"])
            .arg(&target));
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        let err = stderr(&o);
        let want = format!("anonymize: error: {}:{want}", rules.display());
        assert!(err.starts_with(&want), "{text}\nwant {want}\ngot  {err}");
        assert!(!target.exists());
    }
}

/// Before the copy starts (here: stdin still arriving), the periodic line names the step under way.
#[test]
fn the_periodic_line_names_the_step_before_the_copy() {
    use std::io::Write as _;
    let mut child = anonymize()
        .args([
            "--rules",
            "rules/customers.toml",
            "--progress-interval",
            "1",
        ])
        .args(["--source", "-", "--target", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = demo_input();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input.as_bytes()[..1000]).unwrap();
    // The rest of the input once the periodic line is out.
    let lines = stderr_lines(&mut child);
    let first = lines
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a periodic line while stdin is still arriving");
    stdin.write_all(&input.as_bytes()[1000..]).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let err = format!("{first}\n{}", lines.iter().collect::<Vec<_>>().join("\n"));
    assert!(
        err.starts_with("anonymize: progress: 0 rows in 1s (0 rows/s), 0/0 tables done; first pass over the dump (its tables and row counts)\n"),
        "{err}"
    );
}

#[test]
fn a_key_transformed_without_its_references_is_refused_from_the_dump_s_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string("rules/customers.toml").unwrap();
    let mut lines: Vec<String> = base.lines().map(String::from).collect();
    // customers.id (line 28) pseudonymized; its references kept.
    assert_eq!(lines[27], "id         = \"keep\"");
    lines[27] = "id         = { hash = { format = \"preserve\" }, unique = true }".into();
    let rules = write_rules(dir.path(), &lines.join("\n"));
    let target = dir.path().join("out.sql");
    for check in [true, false] {
        let mut c = anonymize();
        if check {
            c.env_remove("ANONYMIZE_KEY").arg("check");
        }
        c.arg("--rules")
            .arg(&rules)
            .args(["--source", "examples/production.sql"]);
        if !check {
            c.arg("--target").arg(&target);
        }
        let o = run(&mut c);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        let r = rules.display();
        for fk in [
            format!("{r}:45:15: foreign key addresses_customer_id_fkey of public.addresses: column public.addresses.customer_id is keep, but the key it references, public.customers.id, is hash (preserve); the foreign key would fail at the end of the run. Give customer_id the same rule and domain as id (the rule at {r}:28:14), or \"null\""),
            format!("{r}:54:17: foreign key orders_customer_id_fkey of public.orders:"),
        ] {
            assert!(err.contains(&fk), "{fk}\n{err}");
        }
        assert!(!target.exists(), "nothing written");
    }
    // The same rule on every reference: the dump is written and loads with its keys.
    for l in [44, 53] {
        lines[l] = lines[l].replace(
            "\"keep\"",
            "{ hash = { format = \"preserve\" }, unique = true }",
        );
    }
    let rules = write_rules(dir.path(), &lines.join("\n"));
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .args(["--source", "examples/production.sql", "--target"])
        .arg(&target));
    assert!(o.status.success(), "{}", stderr(&o));
    let stg = TestDb::new("fkdump");
    stg.load(&target);
    assert_eq!(
        stg.query("SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id"),
        stg.query("SELECT count(*) FROM orders")
    );
}
