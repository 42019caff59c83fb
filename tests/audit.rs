//! `anonymize audit` and `--audit`: an original email planted in staging is found (exit 3, its
//! table, column and count named, the value nowhere in the output); the same in dump mode; a
//! refresh whose rules keep an email column is aborted by `--audit` with staging as it was (in
//! place and by swap); staging-only tables and kept columns holding emails are findings; a small
//! `--max-values` samples and says so. (The clean audits of the demo database and pagila run in
//! `leak_audit.rs`, on the staging its refreshes build.)

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn audit(rules: &str, source: &str, target: &str, extra: &[&str]) -> Output {
    run(anonymize()
        .args([
            "audit", "--rules", rules, "--source", source, "--target", target,
        ])
        .args(extra))
}

fn refresh(rules: &str, src: &TestDb, stg: &TestDb, extra: &[&str]) -> Output {
    run(anonymize()
        .args([
            "--rules",
            rules,
            "-q",
            "--source",
            &src.url(),
            "--target",
            &stg.url(),
        ])
        .args(extra))
}

/// One transformed column's entry of a JSON audit report.
fn column<'a>(doc: &'a serde_json::Value, table: &str, name: &str) -> &'a serde_json::Value {
    doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["table"] == table && c["column"] == name)
        .unwrap_or_else(|| panic!("{table}.{name} not audited: {doc}"))
}

/// One transformed column's line of the audit's table (`table.column …`).
fn table_line<'a>(table: &'a str, column: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{column} ")))
        .unwrap_or_else(|| panic!("no line for {column}:\n{table}"))
}

fn all_output(o: &Output, report: Option<&Path>) -> String {
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(o);
    if let Some(r) = report {
        text.push_str(&std::fs::read_to_string(r).unwrap_or_default());
    }
    text
}

#[test]
fn a_planted_original_email_is_found_without_being_shown() {
    let src = TestDb::demo("audsrc");
    let stg = TestDb::demo("audstg");
    let rules = "rules/customers.toml";
    let o = refresh(rules, &src, &stg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = audit(rules, &src.url(), &stg.url(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // One customer's real email, written into an order's shipping note.
    let email = src.query("SELECT email FROM customers ORDER BY id LIMIT 1");
    let order = stg.query("SELECT min(id) FROM orders");
    stg.query(&format!(
        "UPDATE orders SET shipping_note = 'call ' || '{email}' WHERE id = {order}"
    ));
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("audit.json");
    let o = audit(
        rules,
        &src.url(),
        &stg.url(),
        &["--report", report.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = table_line(&table, "public.customers.email");
    assert!(
        line.contains("originals in public.orders.shipping_note (1 cell(s))"),
        "{table}"
    );
    assert!(
        stderr(&o).contains("finding(s) in staging"),
        "{}",
        stderr(&o)
    );
    let doc = read_report(&report);
    let col = column(&doc, "public.customers", "email");
    assert_eq!(col["found"][0]["table"], "public.orders");
    assert_eq!(col["found"][0]["column"], "shipping_note");
    assert_eq!(col["found"][0]["cells"], 1);
    assert!(!all_output(&o, Some(&report)).contains(&email));

    // A real SSN in a column that scrubs only phone numbers and emails is the original text
    // passing through, not a pseudonym equal to it by chance.
    let ssn = src.query("SELECT ssn FROM customers WHERE ssn IS NOT NULL ORDER BY id LIMIT 1");
    stg.query(&format!(
        "UPDATE orders SET shipping_note = 'ssn {ssn}' WHERE id = {order} + 1"
    ));
    let o = audit(rules, &src.url(), &stg.url(), &[]);
    assert_eq!(o.status.code(), Some(3));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = table_line(&table, "public.customers.ssn");
    assert!(
        line.contains("originals in public.orders.shipping_note (1 cell(s))"),
        "{table}"
    );
    assert!(!all_output(&o, None).contains(&ssn));

    // The same email as the customer's own: equal to its original in the same row.
    let id = src.query("SELECT min(id) FROM customers");
    stg.query(&format!(
        "UPDATE customers SET email = '{email}' WHERE id = {id}"
    ));
    let o = audit(rules, &src.url(), &stg.url(), &["--format", "json"]);
    assert_eq!(o.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let col = column(&doc, "public.customers", "email");
    assert_eq!(col["unchanged"], 1, "{col}");
    assert!(!all_output(&o, None).contains(&email));

    // Upper-cased in a JSON document, with staging's time zone moved: still found.
    stg.query(&format!(
        "UPDATE customers SET email = 'x' || email WHERE id = {id}; \
         UPDATE customers SET profile = jsonb_build_object('contact', upper('{email}')) WHERE id = {id} + 1; \
         ALTER DATABASE {} SET TimeZone = 'Asia/Tokyo'",
        stg.name
    ));
    let o = audit(rules, &src.url(), &stg.url(), &["--format", "json"]);
    assert_eq!(o.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let found: Vec<String> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["column"] == "email" && c["table"] == "public.customers")
        .flat_map(|c| c["found"].as_array().unwrap().iter())
        .map(|f| {
            format!(
                "{}.{}",
                f["table"].as_str().unwrap(),
                f["column"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        found.contains(&"public.customers.profile".to_string()),
        "{found:?}"
    );
    assert!(!all_output(&o, None)
        .to_lowercase()
        .contains(&email.to_lowercase()));

    // A refresh into a file has no staging to audit before it is written.
    let o = run(anonymize()
        .args([
            "--rules",
            rules,
            "-q",
            "--audit",
            "--source",
            &src.url(),
            "--target",
        ])
        .arg(dir.path().join("out.sql")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn dump_files_are_audited_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("staging.sql");
    let o = run(anonymize()
        .args(["--rules", "rules/customers.toml", "-q", "--target"])
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let source = "examples/production.sql";
    let o = audit("rules/customers.toml", source, out.to_str().unwrap(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 finding(s)"));

    // A real card number put back into the payments block.
    let production = std::fs::read_to_string(root().join(source)).unwrap();
    let card = production
        .lines()
        .skip_while(|l| !l.starts_with("COPY public.payments"))
        .nth(1)
        .unwrap()
        .split('\t')
        .nth(2)
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("COPY public.payments"))
        .unwrap()
        + 5;
    let mut fields: Vec<String> = lines[at].split('\t').map(String::from).collect();
    fields[2] = card.clone();
    lines[at] = fields.join("\t");
    let planted = dir.path().join("planted.sql");
    std::fs::write(&planted, lines.join("\n") + "\n").unwrap();
    let o = audit(
        "rules/customers.toml",
        source,
        planted.to_str().unwrap(),
        &["--format", "json"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let col = column(&doc, "public.payments", "card_number");
    assert_eq!(col["found"][0]["cells"], 1, "{col}");
    assert!(!all_output(&o, None).contains(&card));

    // stdin cannot be read twice.
    let o = audit("rules/customers.toml", "-", out.to_str().unwrap(), &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn audit_aborts_a_refresh_that_keeps_an_email_and_staging_stays_as_it_was() {
    let src = TestDb::demo("audksrc");
    let stg = TestDb::demo("audkstg");
    let o = refresh("rules/customers.toml", &src, &stg, &["--audit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = demo_fingerprint(&stg);
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("rules/customers.toml"))
        .unwrap()
        .replace(
            "email      = { fake = \"email\", unique = true }",
            "email      = \"keep\"",
        );
    let rules = write_rules(dir.path(), &text);
    let report = dir.path().join("r.json");
    for strategy in ["in-place", "swap"] {
        let o = refresh(
            rules.to_str().unwrap(),
            &src,
            &stg,
            &[
                "--audit",
                "--refresh",
                strategy,
                "--drop-prev",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(3), "{strategy}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("kept column public.customers.email looks like personal data"),
            "{err}"
        );
        assert!(err.contains("staging is as it was"), "{err}");
        assert_eq!(demo_fingerprint(&stg), before, "{strategy}");
        let doc = read_report(&report);
        assert_eq!(doc["exit_code"], 3);
        assert_eq!(doc["audit"]["kept"][0]["column"], "email");
        let emails = src.query("SELECT string_agg(email, ',') FROM customers");
        let shown = all_output(&o, Some(&report));
        assert!(emails.split(',').all(|e| !shown.contains(e)));
        assert!(!next_left_behind(&stg), "{strategy}");
    }
}

#[test]
fn staging_only_objects_and_kept_personal_data_are_findings_and_big_columns_are_sampled() {
    let src = TestDb::demo("audosrc");
    let stg = TestDb::demo("audostg");
    let o = refresh("rules/customers.toml", &src, &stg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A sample of 50 values per column still finds nothing, and says it sampled.
    let o = audit(
        "rules/customers.toml",
        &src.url(),
        &stg.url(),
        &["--max-values", "50", "--format", "json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let email = column(&doc, "public.customers", "email");
    assert_eq!(email["sampled"], true);
    assert_eq!(email["values_searched"], 50);
    assert_eq!(email["rows_compared"], 50);

    stg.query(
        "CREATE TABLE scratch (id int, note text); ALTER TABLE orders ADD COLUMN internal text; \
         CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, sum(total) FROM orders GROUP BY 1",
    );
    stg.query("UPDATE orders SET status = 'mail ' || 'someone' || '@example.org' WHERE id % 7 = 0");
    // A staging-only table holding a real street, and a materialized view showing it.
    let street = src.query("SELECT street FROM addresses ORDER BY id LIMIT 1");
    stg.query(&format!(
        "INSERT INTO scratch VALUES (1, 'ship to {street}'); \
         CREATE MATERIALIZED VIEW shipping AS SELECT note FROM scratch"
    ));
    let o = audit("rules/customers.toml", &src.url(), &stg.url(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for expected in [
        "table public.scratch is not in the rules",
        "column public.orders.internal is not in the rules",
        "materialized view public.order_totals is not in the rules",
        "kept column public.orders.status looks like personal data: email in",
        "originals in public.scratch.note (1 cell(s)); originals in public.shipping.note (1 cell(s))",
    ] {
        assert!(out.contains(expected), "{expected}:\n{out}");
    }
    assert!(!out.contains("@example.org") && !out.contains(&street));
}

#[test]
fn kept_columns_are_sampled_over_the_whole_table() {
    let src = TestDb::new("audbsrc");
    src.query(
        "CREATE TABLE big_kept (id int PRIMARY KEY, note text); \
         INSERT INTO big_kept SELECT g, CASE WHEN g > 17000 THEN 'user' || g || '@example.org' \
         ELSE 'plain note ' || g END FROM generate_series(1, 20000) g",
    );
    let stg = TestDb::new("audbstg");
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "[tables.big_kept.columns]\nid = \"keep\"\nnote = \"keep\"\n",
    );
    let rules = rules.to_str().unwrap();
    let o = refresh(rules, &src, &stg, &["--create-schema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stg.query("ANALYZE big_kept");
    // The emails are all in the last 15 % of the rows: a sample of the first rows would miss them.
    let o = audit(rules, &src.url(), &stg.url(), &["--format", "json"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kept = &doc["kept"][0];
    assert_eq!(kept["column"], "note", "{doc}");
    let examined = kept["values_examined"].as_u64().unwrap();
    let emails = kept["kinds"]["email"].as_u64().unwrap();
    assert!((2500..=10000).contains(&examined), "{examined}");
    assert!(emails * 100 / examined >= 8, "{emails} of {examined}");
}

/// A conditional rule is audited by what any of its alternatives may write: a `"null"` default
/// does not hide a branch that copies the value (`cat` as a command), and a rule that keeps some
/// rows is named as not searched.
#[test]
fn a_conditional_rule_is_audited_by_its_branches_not_only_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let src = TestDb::demo("audwsrc");
    let stg = TestDb::demo("audwstg");
    let text = std::fs::read_to_string(root().join("rules/customers.toml")).unwrap();
    let leaky = text.replace(
        "ssn        = { hash = { format = \"preserve\" } }",
        "ssn        = { else = \"null\", when = [{ if = \"country = 'GB'\", then = { command = [\"cat\"] } }] }",
    );
    assert_ne!(leaky, text);
    let rules = write_rules(dir.path(), &leaky);
    let rules = rules.to_str().unwrap();
    let o = refresh(rules, &src, &stg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = dir.path().join("audit.json");
    let o = audit(
        rules,
        &src.url(),
        &stg.url(),
        &["--format", "json", "--report", report.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o, None));
    let doc = read_report(&report);
    let ssn = column(&doc, "public.customers", "ssn");
    assert!(ssn["unchanged"].as_u64().unwrap() > 100, "{ssn}");

    // Nulled or hashed in every branch: clean.
    let safe = text.replace(
        "ssn        = { hash = { format = \"preserve\" } }",
        "ssn        = { else = \"null\", when = [{ if = \"country = 'GB'\", then = { hash = { format = \"preserve\" } } }] }",
    );
    let rules = write_rules(dir.path(), &safe);
    let rules = rules.to_str().unwrap();
    let o = refresh(rules, &src, &stg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = audit(
        rules,
        &src.url(),
        &stg.url(),
        &["--format", "json", "--report", report.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", all_output(&o, None));
    let ssn = column(&read_report(&report), "public.customers", "ssn").clone();
    assert!(
        ssn["note"].is_null() || !ssn["note"].as_str().unwrap().contains("keeps some rows"),
        "{ssn}"
    );
}
