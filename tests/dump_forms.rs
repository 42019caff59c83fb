//! Every form pg_dump and pg_dumpall write, through dump mode: plain COPY, `--inserts`,
//! `--column-inserts`, `--rows-per-insert=50`, `--data-only`, and the custom, directory and tar
//! archives, for the demo database and pagila; and a pg_dumpall file of both. Each output loads with
//! `psql -v ON_ERROR_STOP=1`, with the source's row counts and valid foreign keys, and none of the
//! original personal values anywhere in it; every form gives the same anonymized staging.

mod common;

use std::path::Path;

use common::leaks::assert_no_leaks;
use common::*;

/// (name, pg_dump arguments). Archives and directories go to `-f PATH`.
const FORMS: [(&str, &[&str]); 8] = [
    ("plain", &[]),
    ("inserts", &["--inserts"]),
    ("column-inserts", &["--column-inserts"]),
    ("rows-per-insert", &["--rows-per-insert=50"]),
    ("data-only", &["--data-only"]),
    ("custom", &["-Fc"]),
    ("directory", &["-Fd"]),
    ("tar", &["-Ft"]),
];

/// Count and checksum of every table of the public schema: equal for equal contents.
fn fingerprint(db: &TestDb) -> Vec<String> {
    let tables = db.query(
        "SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
    );
    tables
        .split(' ')
        .map(|t| {
            db.query(&format!(
                "SELECT '{t} ' || count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM ONLY {t} x"
            ))
        })
        .collect()
}

fn dump_to(src: &TestDb, args: &[&str], path: &Path) {
    succeeded(
        src.client("pg_dump")
            .args(args)
            .arg("-f")
            .arg(path)
            .arg(&src.name),
        "pg_dump",
    );
}

/// Every form of `src` through `rules`: each loads, matches the source, leaks nothing, and all give
/// the same staging.
fn every_form(src: &TestDb, rules: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.sql");
    dump_to(src, &["--schema-only"], &schema);
    let source_counts: Vec<String> = fingerprint(src)
        .iter()
        .map(|f| f.rsplit_once(' ').unwrap().0.to_string())
        .collect();
    let mut stagings: Vec<(String, Vec<String>)> = Vec::new();
    for (form, args) in FORMS {
        let dump = dir.path().join(format!("{form}.dump"));
        dump_to(src, args, &dump);
        let out = dir.path().join(format!("{form}.out.sql"));
        let report = dir.path().join(format!("{form}.json"));
        let o = run(anonymize()
            .args(["--rules", rules, "-q", "--source"])
            .arg(&dump)
            .arg("--target")
            .arg(&out)
            .arg("--report")
            .arg(&report));
        assert!(o.status.success(), "{tag} {form}: {}", stderr(&o));
        let stg = TestDb::new(&format!("{tag}_{}", form.replace('-', "_")));
        if form == "data-only" {
            stg.load(&schema);
        }
        stg.load(&out);
        let fp = fingerprint(&stg);
        let counts: Vec<String> = fp
            .iter()
            .map(|f| f.rsplit_once(' ').unwrap().0.to_string())
            .collect();
        assert_eq!(counts, source_counts, "{tag} {form}: row counts");
        // The schema's foreign keys were in force or added after the data: all there, all valid.
        let fks = "SELECT count(*) || '/' || count(*) FILTER (WHERE convalidated) FROM pg_constraint WHERE contype = 'f'";
        assert_eq!(stg.query(fks), src.query(fks), "{tag} {form}: foreign keys");
        let text = std::fs::read_to_string(&out).unwrap();
        let (needles, hits, _) = assert_no_leaks(src, &stg, &read_report(&report), &text);
        assert!(
            needles > 1000 && hits > 500,
            "{tag} {form}: {needles} {hits}"
        );
        stagings.push((form.to_string(), fp));
    }
    let (first, reference) = &stagings[0];
    for (form, fp) in &stagings[1..] {
        assert!(
            fp == reference,
            "{tag}: {form} gave another staging than {first}: {:?}",
            fp.iter().zip(reference).find(|(a, b)| a != b)
        );
    }
}

#[test]
fn every_pg_dump_form_of_the_demo_database() {
    let src = TestDb::demo("formsdemo");
    every_form(&src, "rules/customers.toml", "demo");
}

#[test]
fn every_pg_dump_form_of_pagila() {
    let src = TestDb::new("formspagila");
    src.load(&pagila_dir().join("pagila-schema.sql"));
    src.load(&pagila_dir().join("pagila-data.sql"));
    every_form(&src, "tests/fixtures/pagila.toml", "pagila");
}

/// The rules of a file moved under `[databases.NAME]` (its `[tables…]` sections only).
fn under_database(rules: &str, name: &str) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in rules.lines() {
        if line.starts_with('[') {
            keep = line.starts_with("[tables.");
        }
        if keep {
            out.push_str(&line.replacen("[tables.", &format!("[databases.{name}.tables."), 1));
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_pg_dumpall_of_two_databases_with_roles_and_their_passwords() {
    // A cluster of its own: pg_dumpall takes every database and role of it.
    let source = Cluster::start(&ClusterConfig::default());
    let admin = source.tcp();
    let shop = TestDb::on(&admin, "shop");
    shop.load(&root().join("examples/production.sql"));
    let rentals = TestDb::on(&admin, "rentals");
    rentals.load(&pagila_dir().join("pagila-schema.sql"));
    rentals.load(&pagila_dir().join("pagila-data.sql"));
    shop.query(
        "CREATE ROLE app_user LOGIN PASSWORD 'Role-Secret-7781'; \
         ALTER ROLE postgres PASSWORD 'Super-Secret-9912'",
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("all.sql");
    succeeded(shop.client("pg_dumpall").arg("-f").arg(&dump), "pg_dumpall");
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(
        text.contains("SCRAM-SHA-256$"),
        "the dump holds password hashes"
    );
    let rules = dir.path().join("all.toml");
    std::fs::write(
        &rules,
        format!(
            "[defaults]\nuncovered = \"fail\"\n{}{}",
            under_database(
                &std::fs::read_to_string(root().join("rules/customers.toml")).unwrap(),
                &shop.name
            ),
            under_database(
                &std::fs::read_to_string(root().join("tests/fixtures/pagila.toml")).unwrap(),
                &rentals.name
            ),
        ),
    )
    .unwrap();
    let out = dir.path().join("all.out.sql");
    let report = dir.path().join("all.json");
    let o = run(anonymize()
        .arg("--rules")
        .arg(&rules)
        .arg("--source")
        .arg(&dump)
        .arg("--target")
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(o.status.success(), "{}", stderr(&o));
    let output = std::fs::read_to_string(&out).unwrap();
    for secret in ["SCRAM-SHA-256$", "Role-Secret-7781", "Super-Secret-9912"] {
        assert!(!output.contains(secret), "{secret} in the output");
    }
    // The report says what was cut out, without the secrets.
    let doc = read_report(&report);
    let warnings = doc["warnings"].to_string();
    assert!(warnings.contains("role password"), "{warnings}");
    assert!(!warnings.contains("Secret"), "{warnings}");

    // It loads into a fresh cluster (whose superuser is not `postgres`, which the file creates).
    let target = Cluster::start(&ClusterConfig {
        superuser: Some("loader".into()),
        ..ClusterConfig::default()
    });
    let tadmin = target.tcp();
    succeeded(
        tadmin
            .program("psql")
            .args(tadmin.client_args())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f"])
            .arg(&out),
        "loading the pg_dumpall output",
    );
    let on_target = |name: &str| TestDb {
        name: name.to_string(),
        server: tadmin.clone(),
    };
    let (shop2, rentals2) = (on_target(&shop.name), on_target(&rentals.name));
    for (a, b) in [(&shop, &shop2), (&rentals, &rentals2)] {
        let counts = |db: &TestDb| -> Vec<String> {
            fingerprint(db)
                .iter()
                .map(|f| f.rsplit_once(' ').unwrap().0.to_string())
                .collect()
        };
        assert_eq!(counts(a), counts(b), "{}", a.name);
    }
    assert_eq!(
        shop2.query("SELECT count(*) FROM pg_authid WHERE rolname IN ('app_user', 'postgres') AND rolpassword IS NULL"),
        "2",
        "the roles are there, without passwords"
    );
    // Each database took its own section's rules: no email of either source in the output.
    let emails: Vec<String> = ["customers", "audit_log"]
        .iter()
        .flat_map(|t| {
            common::leaks::values(
                &shop,
                t,
                if *t == "customers" {
                    "email"
                } else {
                    "actor_email"
                },
            )
        })
        .chain(common::leaks::values(&rentals, "customer", "email"))
        .collect();
    assert!(emails.len() > 1000);
    assert!(occurring(&output, &emails).is_empty());
    // The loaded databases are the target cluster's; drop them with it.
    std::mem::forget(shop2);
    std::mem::forget(rentals2);
}
