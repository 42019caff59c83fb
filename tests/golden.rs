//! Pinned outputs: promise 4 says the same input and key give the same output across nights, so
//! across releases too (staging keeps its test accounts, joins with older extracts survive).
//! Every transform family runs here on fixed inputs under a fixed key and must reproduce
//! tests/fixtures/golden.tsv byte for byte. A speed-up that changes a pseudonym fails here.
//!
//! A deliberate change of outputs regenerates the file (`UPDATE_GOLDEN=1 cargo test --test golden`)
//! and says so in its commit and in the release notes.

use std::fmt::Write as _;

use anonymize::rules::{self, ColumnOp, Overrides};

const KEY: &str = "golden-key-not-secret-0123456789";
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden.tsv");

/// (rule, inputs). The inputs cover each rule's usual shapes and its edges.
fn cases() -> Vec<(&'static str, Vec<&'static str>)> {
    let names = vec!["alice", "Bob", "0", "", "Zoë", "alice@corp.io"];
    let emails = vec!["alice@corp.io", "bob.smith+x@mail.example.com", "a@b.c"];
    let mut cases = vec![
        ("{ mask = { keep_last = 4 } }", vec!["+1 415-555-0134", "abc", "", "Zoë Ünal"]),
        ("{ mask = { keep_first = 2, keep_last = 2, char = \"#\" } }", vec!["4111111111111111"]),
        ("{ hash = {} }", emails.clone()),
        ("{ hash = { length = 40 } }", vec!["x", "123-45-6789"]),
        ("{ hash = { length = 20, format = \"base32\" } }", vec!["x", "123-45-6789"]),
        ("{ hash = { length = 25, format = \"digits\" } }", vec!["x", "123-45-6789"]),
        (
            "{ hash = { format = \"preserve\" } }",
            vec![
                "123-45-6789",
                "51286",
                "0",
                "7",
                "---",
                "",
                "AB-123-xyz é!",
                "ID-00000042",
                "12345678901234567890123456789012345678901234567890abcdefghijklmnopqrstuvwxyz",
                "DE89 3704 0044 0532 0130 00",
                "١٢٣",
            ],
        ),
        ("{ shift = { days = 180 } }", vec!["1991-07-23", "2024-02-29 13:45:33+00", "2024-02-29T13:45:33.123456", "1970-01-01"]),
        ("{ shift = { days = 3 } }", vec!["2024-02-29 13:45:33+00", "2024-03-01"]),
        ("{ truncate = \"month\" }", vec!["2022-08-27 02:36:46+00", "2024-02-29", "2024-02-29T13:45:33.5-07"]),
        ("{ truncate = \"year\" }", vec!["2022-08-27 02:36:46+00", "2024-02-29"]),
        ("{ truncate = \"day\" }", vec!["2022-08-27 02:36:46+00"]),
        ("{ noise = { percent = 10 } }", vec!["82100.77", "0", "-12", "1e3", "144738.67", "0.001"]),
        ("{ noise = { absolute = 5 } }", vec!["100", "-3.5"]),
        (
            "{ scrub = [\"email\", \"phone\", \"credit_card\", \"ssn\", \"ipv4\", \"iban\", \"url\"] }",
            vec![
                "Prefers email: galeth.quilworth2@postal.invalid; backup phone +1 627-503-0460",
                "Card 4111 1111 1111 1111 SSN 123-45-6789 from 192.168.10.77",
                "IBAN DE89 3704 0044 0532 0130 00 see https://intranet.corp.io/users/alice",
                "call 415 555 0134 415 555 0199",
                "Delivered 2024-01-15, paid 49.99 for 3 items.",
                "user agent Mozilla/5.0 from 103.104.84.182",
                "",
            ],
        ),
        ("{ scrub = [\"ipv4\"] }", vec!["user agent Mozilla/5.0 from 103.104.84.182"]),
        ("{ regex = { pattern = \"[0-9]{4}$\", replace = \"0000\" } }", vec!["+1 415-555-0134"]),
        (
            "{ json = { \"$.email\" = { fake = \"email\", unique = true }, \"$.address.phone\" = { mask = { keep_last = 2 } }, \"$.tags[*]\" = { hash = { length = 6 } } } }",
            vec![
                r#"{"email": "drutor.zorescu1@mailbox.test", "newsletter": true, "address": {"phone": "+1 499-532-3685", "city": "Perth"}, "tags": ["b2b", "vip"]}"#,
                r#"{"email":null,"address":{"phone":12345},"tags":[]}"#,
                r#"[1, 2]"#,
                r#"{"other": "x\u00e9\n"}"#,
            ],
        ),
    ];
    for kind in [
        "first_name",
        "last_name",
        "name",
        "email",
        "username",
        "phone",
        "street_address",
        "city",
        "state",
        "zip",
        "country",
        "company",
        "job_title",
        "ipv4",
        "ipv6",
        "uuid",
        "credit_card",
        "iban",
        "url",
        "word",
        "sentence",
        "paragraph",
        "date_of_birth",
    ] {
        let rule: &'static str = Box::leak(format!("{{ fake = \"{kind}\" }}").into_boxed_str());
        cases.push((rule, names.clone()));
    }
    for (kind, locale) in [
        ("name", "fr_fr"),
        ("street_address", "de_de"),
        ("city", "ja_jp"),
    ] {
        let rule: &'static str =
            Box::leak(format!("{{ fake = \"{kind}\", locale = \"{locale}\" }}").into_boxed_str());
        cases.push((rule, vec!["alice", "Bob"]));
    }
    cases.push(("{ fake = \"email\", unique = true }", emails.clone()));
    cases.push(("{ fake = \"username\", unique = true }", vec!["alice"]));
    cases.push((
        "{ fake = \"url\", unique = true }",
        vec!["https://a.example/x"],
    ));
    cases.push((
        "{ hash = { format = \"preserve\" }, unique = true }",
        vec!["123-45-6789"],
    ));
    cases
}

/// Every case as `rule<TAB>input<TAB>output` lines; tabs, newlines and backslashes escaped.
fn render() -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    for (rule, inputs) in cases() {
        let text = format!("[tables.t.columns]\nc = {rule}\n");
        let plan = rules::parse("golden.toml", text, &Overrides::default(), &|_| {
            Some(KEY.into())
        })
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
        let t = match &plan.tables.values().next().unwrap().columns["c"].op {
            ColumnOp::Transform(t) => t.clone(),
            ColumnOp::Template(_) => unreachable!("no template here"),
        };
        for input in inputs.into_iter().map(Some).chain([None]) {
            let output = match t.apply(input) {
                Ok(Some(v)) => esc(&v),
                Ok(None) => "NULL".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let input = input.map_or_else(|| "NULL".to_string(), esc);
            writeln!(out, "{rule}\t{input}\t{output}").unwrap();
        }
    }
    out
}

#[test]
fn outputs_are_pinned_across_releases() {
    let now = render();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(FIXTURE, &now).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(FIXTURE).expect("tests/fixtures/golden.tsv");
    let mut changed = Vec::new();
    for (i, (a, b)) in pinned.lines().zip(now.lines()).enumerate() {
        if a != b {
            changed.push(format!("line {}:\n  pinned: {a}\n  now:    {b}", i + 1));
        }
    }
    assert_eq!(
        pinned.lines().count(),
        now.lines().count(),
        "the cases changed; regenerate with UPDATE_GOLDEN=1 if that was meant"
    );
    assert!(
        changed.is_empty(),
        "{} outputs changed:\n{}",
        changed.len(),
        changed.join("\n")
    );
}
