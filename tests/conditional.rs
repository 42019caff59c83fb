//! Conditional rules (`when`): on the demo (with QA accounts and German customers planted) and on
//! pagila, in dump mode and database mode, every row gets exactly the rule its branch names —
//! checked against runs of each branch's rule on its own — kept rows stay byte for byte, the
//! report counts rows per branch, and staging stays unique and loads its foreign keys. Broken
//! conditions stop the run with their place in the rules file (exit 2).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// The demo rules with `customers.email` and `customers.first_name` replaced by `columns`, a
/// TOML fragment under `[tables.customers.columns]`.
fn demo_rules(dir: &Path, name: &str, columns: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap();
    let mut out = String::new();
    let mut in_customers = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_customers = line == "[tables.customers.columns]";
        }
        if in_customers && (line.starts_with("email ") || line.starts_with("first_name ")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[tables.customers.columns]" {
            out.push_str(columns);
            out.push('\n');
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

const WHEN: &str = r#"email = { fake = "email", unique = true, when = [
    { if = "email LIKE '%@acme.test'", then = "keep" },
    { if = "country = 'DE'", then = { fake = "email", locale = "de_DE", unique = true } },
] }
first_name = { fake = "first_name", when = [
    { if = "country = 'DE' AND lower(last_name) <> 'qa'", then = { fake = "first_name", locale = "de_DE" } },
] }"#;

const PLAIN: &str = r#"email = { fake = "email", unique = true }
first_name = { fake = "first_name" }"#;

const GERMAN: &str = r#"email = { fake = "email", locale = "de_DE", unique = true }
first_name = { fake = "first_name", locale = "de_DE" }"#;

/// The demo dump with customers 1–5 turned into QA accounts (`qaN@acme.test`) and customers
/// 6–25 living in Germany.
fn planted_demo(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/production.sql")).unwrap();
    let mut out = String::new();
    let mut in_customers = false;
    for line in text.lines() {
        if line.starts_with("COPY public.customers ") {
            in_customers = true;
        } else if line == "\\." {
            in_customers = false;
        } else if in_customers {
            let mut f: Vec<String> = line.split('\t').map(String::from).collect();
            let id: u32 = f[0].parse().unwrap();
            if id <= 5 {
                f[1] = format!("qa{id}@acme.test");
            } else if id <= 25 {
                f[10] = "DE".into();
            }
            out.push_str(&f.join("\t"));
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let path = dir.join("production.sql");
    std::fs::write(&path, out).unwrap();
    path
}

/// customers' rows of a dump by id: (email, first_name, country).
fn customers(dump: &str) -> BTreeMap<u32, (String, String, String)> {
    let blocks = copy_blocks(dump);
    let (cols, rows) = &blocks["public.customers"];
    let at = |c: &str| cols.iter().position(|x| x == c).unwrap();
    let (id, email, first, country) = (at("id"), at("email"), at("first_name"), at("country"));
    rows.iter()
        .map(|r| {
            (
                r[id].parse().unwrap(),
                (r[email].clone(), r[first].clone(), r[country].clone()),
            )
        })
        .collect()
}

/// Anonymize `source` with `rules` into `dir/<name>.sql`, with a report; returns (text, report).
fn to_file(rules: &Path, source: &Path, dir: &Path, name: &str) -> (String, serde_json::Value) {
    let target = dir.join(format!("{name}.sql"));
    let report = dir.join(format!("{name}.json"));
    let o = run(anonymize()
        .arg("--rules")
        .arg(rules)
        .arg("--source")
        .arg(source)
        .arg("--target")
        .arg(&target)
        .arg("--report")
        .arg(&report)
        .arg("-q"));
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    (
        std::fs::read_to_string(&target).unwrap(),
        success_report(&report),
    )
}

fn branch_rows(report: &serde_json::Value, table: &str, column: &str) -> Vec<(String, u64)> {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap();
    t["branches"][column]
        .as_array()
        .unwrap_or_else(|| panic!("no branches for {column} in {t}"))
        .iter()
        .map(|b| {
            (
                b["branch"].as_str().unwrap().to_string(),
                b["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_demo_row_gets_its_branch_in_dump_and_database_mode() {
    let dir = tempfile::tempdir().unwrap();
    let source = planted_demo(dir.path());
    let original = customers(&std::fs::read_to_string(&source).unwrap());
    let when = demo_rules(dir.path(), "when.toml", WHEN);
    let (out, report) = to_file(&when, &source, dir.path(), "when");
    let plain = customers(
        &to_file(
            &demo_rules(dir.path(), "p.toml", PLAIN),
            &source,
            dir.path(),
            "plain",
        )
        .0,
    );
    let german = customers(
        &to_file(
            &demo_rules(dir.path(), "g.toml", GERMAN),
            &source,
            dir.path(),
            "german",
        )
        .0,
    );
    let got = customers(&out);
    assert_eq!(got.len(), original.len());
    let (mut kept, mut de, mut other) = (0, 0, 0);
    for (id, (email, first, country)) in &got {
        let (o_email, _, o_country) = &original[id];
        assert_eq!(country, o_country);
        if o_email.ends_with("@acme.test") {
            kept += 1;
            assert_eq!(email, o_email, "QA account {id} kept byte for byte");
            assert_eq!(first, &plain[id].1, "{id}: first_name default");
        } else if o_country == "DE" {
            de += 1;
            assert_eq!(email, &german[id].0, "{id}: German email branch");
            assert_eq!(first, &german[id].1, "{id}: German first name branch");
            assert_ne!(email, &plain[id].0);
        } else {
            other += 1;
            assert_eq!(email, &plain[id].0, "{id}: default");
            assert_eq!(first, &plain[id].1, "{id}: default");
            assert_ne!(email, o_email);
        }
    }
    assert_eq!((kept, de), (5, 20));
    let emails: std::collections::BTreeSet<&String> = got.values().map(|v| &v.0).collect();
    assert_eq!(emails.len(), got.len(), "emails stay unique");
    assert_eq!(
        branch_rows(&report, "public.customers", "email"),
        vec![
            ("if email LIKE '%@acme.test'".to_string(), 5),
            ("if country = 'DE'".to_string(), 20),
            ("else".to_string(), other),
        ]
    );
    assert_eq!(
        branch_rows(&report, "public.customers", "first_name")
            .iter()
            .map(|b| b.1)
            .collect::<Vec<_>>(),
        vec![20, kept + other]
    );

    // Database mode: the same rows, every table loaded, foreign keys restored.
    let src = TestDb::new("whensrc");
    src.load(&source);
    let stg = TestDb::demo("whenstg");
    let db_report = dir.path().join("db.json");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&when)
        .args([
            "--source",
            &url(&src),
            "--target",
            &url(&stg),
            "-q",
            "--jobs",
            "1",
        ])
        .arg("--report")
        .arg(&db_report));
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = customers(&pg_dump(&stg, &["--data-only", "-t", "public.customers"]));
    assert_eq!(staged, got, "database mode writes what dump mode writes");
    assert_eq!(
        branch_rows(&success_report(&db_report), "public.customers", "email")
            .iter()
            .map(|b| b.1)
            .collect::<Vec<_>>(),
        vec![5, 20, other]
    );
    assert_eq!(
        stg.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"),
        src.query("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
    );
}

#[test]
fn pagila_customers_branch_on_store_and_email() {
    let dir = tempfile::tempdir().unwrap();
    let pagila = pagila_dir();
    let (dump, text) = pagila_dump(dir.path());
    let rules = std::fs::read_to_string(root().join("tests/fixtures/pagila.toml")).unwrap();
    let customer = "first_name  = { fake = \"first_name\" }\nlast_name   = { fake = \"last_name\" }\nemail       = { fake = \"email\", unique = true }\naddress_id";
    assert!(
        rules.contains(customer),
        "the customer rules are where the test expects them"
    );
    let with = |first: &str, email: &str, name: &str| {
        let r = rules.replace(
            customer,
            &format!("first_name  = {first}\nlast_name   = {{ fake = \"last_name\" }}\nemail       = {email}\naddress_id"),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, r).unwrap();
        path
    };
    let when = with(
        r#"{ fake = "first_name", when = [{ if = "store_id = 2 AND active = 1", then = { fake = "first_name", locale = "de_DE" } }] }"#,
        r#"{ fake = "email", unique = true, when = [{ if = "email ILIKE 'mary.%' OR email ~ '^PATRICIA\\.'", then = "keep" }] }"#,
        "when.toml",
    );
    let plain = with(
        r#"{ fake = "first_name" }"#,
        r#"{ fake = "email", unique = true }"#,
        "plain.toml",
    );
    let german = with(
        r#"{ fake = "first_name", locale = "de_DE" }"#,
        r#"{ fake = "email", unique = true }"#,
        "german.toml",
    );
    let (out, report) = to_file(&when, &dump, dir.path(), "when");
    let (plain_out, _) = to_file(&plain, &dump, dir.path(), "plain");
    let (german_out, _) = to_file(&german, &dump, dir.path(), "german");
    let rows = |t: &str| copy_blocks(t)["public.customer"].1.clone();
    let (cols, _) = copy_blocks(&text)["public.customer"].clone();
    let at = |c: &str| cols.iter().position(|x| x == c).unwrap();
    let (store, active, first, email) =
        (at("store_id"), at("active"), at("first_name"), at("email"));
    let (orig, got, p, g) = (rows(&text), rows(&out), rows(&plain_out), rows(&german_out));
    let mut de = 0;
    let mut kept = 0;
    for i in 0..orig.len() {
        if orig[i][store] == "2" && orig[i][active] == "1" {
            de += 1;
            assert_eq!(got[i][first], g[i][first]);
        } else {
            assert_eq!(got[i][first], p[i][first]);
        }
        let e = &orig[i][email];
        if e.to_lowercase().starts_with("mary.") || e.starts_with("PATRICIA.") {
            kept += 1;
            assert_eq!(got[i][email], *e);
        } else {
            assert_eq!(got[i][email], p[i][email]);
        }
    }
    assert!(de > 200 && kept == 2, "{de} {kept}");
    assert_eq!(
        branch_rows(&report, "public.customer", "first_name")[0].1,
        de
    );

    // Database mode, with pagila's partitions, triggers and foreign keys.
    let src = TestDb::new("whenpsrc");
    src.load(&pagila.join("pagila-schema.sql"));
    src.load(&pagila.join("pagila-data.sql"));
    let stg = TestDb::new("whenpstg");
    stg.load(&pagila.join("pagila-schema.sql"));
    let o = run(&mut refresh_with(&when, &src, &stg));
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = rows(&pg_dump(&stg, &["--data-only", "-t", "public.customer"]));
    assert_eq!(staged, got, "database mode writes what dump mode writes");
}

/// A rules file's broken condition: exit 2 from a run and from `check`, with its line and column,
/// on the demo dump or on `source` (a database, whose catalog gives column types and NOT NULL).
fn refused_on(source: Option<&str>, dir: &Path, columns: &str, expected: &[&str]) {
    let rules = demo_rules(dir, "bad.toml", columns);
    for check in [false, true] {
        let mut cmd = anonymize();
        if check {
            cmd.arg("check");
        }
        let target = dir.join("never.sql");
        cmd.arg("--rules").arg(&rules);
        if let Some(s) = source {
            cmd.args(["--source", s]);
        }
        if !check {
            cmd.arg("--target").arg(&target);
        }
        let o = run(&mut cmd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{columns}: {err}");
        for e in expected {
            assert!(err.contains(e), "{e:?} not in {err}");
        }
        assert!(!target.exists());
    }
}

fn refused(dir: &Path, columns: &str, expected: &[&str]) {
    refused_on(None, dir, columns, expected)
}

#[test]
fn broken_conditions_stop_the_run_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let base = "first_name = { fake = \"first_name\" }\n";
    // Line 27 of the rules is the email line (see demo_rules); columns count from 1 at the start
    // of the line, the condition's first character after `if = "`.
    let line = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .lines()
        .position(|l| l == "[tables.customers.columns]")
        .unwrap()
        + 2;
    let email = |cond: &str| {
        format!("email = {{ fake = \"email\", unique = true, when = [{{ if = \"{cond}\", then = \"null\" }}] }}\n{base}")
    };
    let col = |offset: usize| {
        "email = { fake = \"email\", unique = true, when = [{ if = \"".len() + 1 + offset
    };
    refused(
        dir.path(),
        &email("contry = 'DE'"),
        &[
            &format!("bad.toml:{line}:{}", col(0)),
            "column contry is not in the source (did you mean country?)",
        ],
    );
    // Type errors: in any source when the expression's own types clash (lower() is text), and
    // against the catalog's column types in a database.
    refused(
        dir.path(),
        &email("country = 'DE' AND lower(country) = 3"),
        &[
            &format!("bad.toml:{line}:{}", col(34)),
            "condition of public.customers.email",
        ],
    );
    // A dump's CREATE TABLE types the columns too (salary numeric, id integer).
    refused(
        dir.path(),
        &email("country = 'DE' AND salary = 'high'"),
        &[&format!("bad.toml:{line}:"), "salary"],
    );
    refused(
        dir.path(),
        &email("length(id) > 3"),
        &[&format!("bad.toml:{line}:")],
    );
    let src = TestDb::demo("whentypes");
    refused_on(
        Some(&url(&src)),
        dir.path(),
        &email("country = 'DE' AND salary = 'high'"),
        &[&format!("bad.toml:{line}:"), "salary"],
    );
    refused(
        dir.path(),
        &email("country = 'DE' AND (id > 3"),
        &[
            &format!("bad.toml:{line}:"),
            "condition of public.customers.email",
        ],
    );

    // A keep branch whose condition does not test the unique column itself.
    refused(
        dir.path(),
        &format!("email = {{ fake = \"email\", unique = true, when = [{{ if = \"country = 'DE'\", then = \"keep\" }}] }}\n{base}"),
        &["must stay unique", "does not test the column itself"],
    );
    // A default that keeps, next to a generating branch.
    refused(
        dir.path(),
        &format!("email = {{ else = \"keep\", when = [{{ if = \"email LIKE '%@x.test'\", then = {{ fake = \"email\", unique = true }} }}] }}\n{base}"),
        &["the default keeps values"],
    );
    // No default.
    refused(
        dir.path(),
        &format!("email = {{ when = [{{ if = \"country = 'DE'\", then = \"null\" }}] }}\n{base}"),
        &["no default"],
    );
    refused_on(
        Some(&url(&src)),
        dir.path(),
        &email("length(id) > 3"),
        &[&format!("bad.toml:{line}:")],
    );
    // NOT NULL holds in every branch.
    refused_on(
        Some(&url(&src)),
        dir.path(),
        "email = { fake = \"email\", unique = true }\nfirst_name = { fake = \"first_name\", when = [{ if = \"country = 'DE'\", then = \"null\" }] }\n",
        &["first_name is NOT NULL"],
    );
}
