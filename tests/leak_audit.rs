//! Leak audit: after a database refresh, search all of staging (a data-only pg_dump of it) for every
//! original value of every transformed text column of the source, and for every email, phone and card
//! number that independent detectors find anywhere in the source's text. Zero hits, for the demo
//! database and for pagila with their rules.

mod common;

use std::collections::BTreeSet;

use common::*;

fn data_dump(db: &TestDb) -> String {
    pg_dump(db, &["--data-only"])
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap();
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Emails, phone numbers and card numbers in a text, by the test's own patterns (not the tool's).
fn detected(text: &str) -> BTreeSet<String> {
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
    let phone = regex::Regex::new(r"\+?\(?[0-9]{2,4}\)?[ .-][0-9]{3}[ .-][0-9]{3,4}").unwrap();
    let card = regex::Regex::new(r"\b(?:[0-9][ -]?){12,18}[0-9]\b").unwrap();
    // Dotted quads would read as phone numbers: take them out first (IP addresses are not
    // searched for: a fake one in 10/8 matches a real one's last octets by chance).
    let ipv4 = regex::Regex::new(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}").unwrap();
    let text = &*ipv4.replace_all(text, " ");
    let mut found: BTreeSet<String> = email
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect();
    found.extend(phone.find_iter(text).map(|m| m.as_str().to_string()));
    found.extend(card.find_iter(text).filter_map(|m| {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        luhn(&digits).then(|| m.as_str().to_string())
    }));
    found
}

/// Fake kinds drawn from a dictionary (the same one a source's test data may come from: pagila's staff
/// usernames are `first.last` from Faker's names, as are the local parts of fake emails): that such
/// a value occurs somewhere in staging proves nothing, so for these each row is compared with itself.
const DICTIONARY_KINDS: [&str; 13] = [
    "first_name",
    "last_name",
    "name",
    "username",
    "city",
    "state",
    "country",
    "company",
    "job_title",
    "word",
    "sentence",
    "paragraph",
    "zip",
];

fn dictionary_rule(rule: &str) -> bool {
    DICTIONARY_KINDS
        .iter()
        .any(|k| rule.starts_with(&format!("fake = \"{k}\"")))
}

/// The items of a `string_agg(…, sep)` result.
fn items(agg: &str, sep: char) -> Vec<String> {
    agg.split(sep)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// `key<US>value` of one column, for every row, the key being the primary key's columns.
fn keyed_values(db: &TestDb, table: &str, pk: &str, col: &str) -> BTreeSet<String> {
    let agg = db.query(&format!(
        "SELECT string_agg(concat_ws(',', {pk}) || E'\\x1f' || \"{col}\"::text, E'\\x1e') FROM {table} WHERE \"{col}\" IS NOT NULL"
    ));
    items(&agg, '\u{1e}').into_iter().collect()
}

/// Values (6+ characters) of one column, distinct.
fn values(db: &TestDb, table: &str, col: &str) -> Vec<String> {
    let agg = db.query(&format!(
        "SELECT string_agg(DISTINCT \"{col}\"::text, E'\\x1f') FROM {table} WHERE length(\"{col}\"::text) >= 6"
    ));
    items(&agg, '\u{1f}')
}

/// Refresh `src` into `stg` with `rules` and audit staging. Returns how many original values and
/// detected strings were searched for, and how many columns were compared row by row.
fn audit(src: &TestDb, stg: &TestDb, rules: &str) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let o = run(anonymize()
        .args([
            "--rules",
            rules,
            "-q",
            "--source",
            &url(src),
            "--target",
            &url(stg),
        ])
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    // The report of a successful refresh counts what each table really holds.
    let doc = success_report(&report);
    let mut total = 0;
    for t in doc["tables"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let count: u64 = src
            .query(&format!("SELECT count(*) FROM ONLY {name}"))
            .parse()
            .unwrap();
        assert_eq!(t["rows_read"], count, "{name}");
        assert_eq!(t["rows_written"], count, "{name}");
        assert!(t["seconds"].as_f64().unwrap() >= 0.0);
        total += count;
    }
    assert_eq!(doc["rows_written"], total);
    assert_eq!(doc["target"], url(stg));

    // Original values of transformed text-like columns (6+ characters: shorter ones turn up by
    // coincidence; dates and numbers are moved, not hidden), except those kept elsewhere in the
    // source (pagila's address.district often equals a kept city.city).
    let mut needles = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut per_row = 0;
    for t in doc["tables"].as_array().unwrap() {
        let table = t["name"].as_str().unwrap();
        let (schema, name) = table.split_once('.').unwrap();
        let name = name.trim_matches('"');
        for (col, rule) in t["rules"].as_object().unwrap() {
            let rule = rule.as_str().unwrap();
            let text_like = src.query(&format!(
                "SELECT data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'USER-DEFINED', 'ARRAY') \
                 FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{name}' AND column_name = '{col}'"
            ));
            if text_like != "t" || rule == "null" {
                continue;
            }
            if rule == "keep" || rule.starts_with("uncovered") {
                kept.extend(values(src, table, col));
            } else if dictionary_rule(rule) {
                // No row keeps its own value.
                let pk = src.query(&format!(
                    "SELECT string_agg(quote_ident(a.attname), ', ') FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                     WHERE i.indrelid = '{table}'::regclass AND i.indisprimary"
                ));
                assert!(
                    !pk.is_empty(),
                    "{table} has no primary key to compare rows by"
                );
                let before = keyed_values(src, table, &pk, col);
                let after = keyed_values(stg, table, &pk, col);
                let same: Vec<_> = before.intersection(&after).collect();
                assert!(
                    same.is_empty(),
                    "{table}.{col} kept {} values, e.g. row {:?}",
                    same.len(),
                    same[0].split('\u{1f}').next()
                );
                per_row += 1;
            } else {
                needles.extend(values(src, table, col));
            }
        }
    }
    let needles: Vec<String> = needles.difference(&kept).cloned().collect();
    // What the detectors find in all of the source's data, kept columns included.
    let hits: Vec<String> = detected(&data_dump(src)).into_iter().collect();
    assert!(!needles.is_empty() && !hits.is_empty());
    let staging = data_dump(stg);
    for (what, list) in [
        ("original values", &needles),
        ("detected PII strings", &hits),
    ] {
        let leaked = occurring(&staging, list);
        assert!(
            leaked.is_empty(),
            "{} {what} in staging, e.g. {:?}",
            leaked.len(),
            &leaked[..leaked.len().min(5)]
        );
    }
    (needles.len(), hits.len(), per_row)
}

#[test]
fn the_demo_database_leaks_nothing_into_staging() {
    let src = TestDb::demo("leaksrc");
    let stg = TestDb::demo("leakstg");
    let (needles, hits, per_row) = audit(&src, &stg, "rules/customers.toml");
    eprintln!("demo: {needles} original values and {hits} detected strings, none in staging; {per_row} columns compared row by row");
    assert!(needles > 5000 && hits > 1000, "{needles} {hits}");
}

#[test]
fn pagila_leaks_nothing_into_staging() {
    let src = TestDb::new("leakpsrc");
    src.load(&pagila_dir().join("pagila-schema.sql"));
    src.load(&pagila_dir().join("pagila-data.sql"));
    let stg = TestDb::new("leakpstg");
    stg.load(&pagila_dir().join("pagila-schema.sql"));
    let (needles, hits, per_row) = audit(&src, &stg, "tests/fixtures/pagila.toml");
    eprintln!("pagila: {needles} original values and {hits} detected strings, none in staging; {per_row} columns compared row by row");
    assert!(needles > 1000 && hits > 500, "{needles} {hits}");
}
