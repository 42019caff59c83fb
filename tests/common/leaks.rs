//! The leak audit's searches, shared by the suites that check a staging database or a dump file:
//! original values of transformed columns, strings that independent detectors find in the source,
//! and dictionary-drawn columns compared row by row.

use std::collections::BTreeSet;

use super::*;

pub fn luhn(digits: &str) -> bool {
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
pub fn detected(text: &str) -> BTreeSet<String> {
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
pub const DICTIONARY_KINDS: [&str; 13] = [
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

pub fn dictionary_rule(rule: &str) -> bool {
    DICTIONARY_KINDS
        .iter()
        .any(|k| rule.starts_with(&format!("fake = \"{k}\"")))
}

/// The items of a `string_agg(…, sep)` result.
pub fn items(agg: &str, sep: char) -> Vec<String> {
    agg.split(sep)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// `key<US>value` of one column, for every row, the key being the primary key's columns.
pub fn keyed_values(db: &TestDb, table: &str, pk: &str, col: &str) -> BTreeSet<String> {
    let agg = db.query(&format!(
        "SELECT string_agg(concat_ws(',', {pk}) || E'\\x1f' || \"{col}\"::text, E'\\x1e') FROM {table} WHERE \"{col}\" IS NOT NULL"
    ));
    items(&agg, '\u{1e}').into_iter().collect()
}

/// Values (6+ characters) of one column, distinct.
pub fn values(db: &TestDb, table: &str, col: &str) -> Vec<String> {
    let agg = db.query(&format!(
        "SELECT string_agg(DISTINCT \"{col}\"::text, E'\\x1f') FROM {table} WHERE length(\"{col}\"::text) >= 6"
    ));
    items(&agg, '\u{1f}')
}

/// The audit of one anonymized copy of `src`: `report` is the run's JSON report (its per-table
/// rules), `stg` a database holding the copy, `searched` all of its text (a data-only dump of staging,
/// or the output file). Returns how many original values and detected strings were searched for,
/// and how many columns were compared row by row; panics on a leak.
pub fn assert_no_leaks(
    src: &TestDb,
    stg: &TestDb,
    report: &serde_json::Value,
    searched: &str,
) -> (usize, usize, usize) {
    let doc = report;
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
    let hits: Vec<String> = detected(&pg_dump(src, &["--data-only"]))
        .into_iter()
        .collect();
    assert!(!needles.is_empty() && !hits.is_empty());
    let staging = searched;
    for (what, list) in [
        ("original values", &needles),
        ("detected PII strings", &hits),
    ] {
        let leaked = occurring(staging, list);
        assert!(
            leaked.is_empty(),
            "{} {what} in staging, e.g. {:?}",
            leaked.len(),
            &leaked[..leaked.len().min(5)]
        );
    }
    (needles.len(), hits.len(), per_row)
}
