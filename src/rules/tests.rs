use super::*;
use crate::endpoint::Endpoint;

const KEY: &str = "a-test-key-that-is-long-enough";

fn env(name: &str) -> Option<String> {
    match name {
        "ANONYMIZE_KEY" | "OTHER_KEY" => Some(KEY.into()),
        "SHORT_KEY" => Some("demo".into()),
        "BLANK_KEY" => Some(" ".repeat(20)),
        "PROD_URL" => Some("postgres://prod/app".into()),
        _ => None,
    }
}

fn plan(text: &str) -> Result<Plan, String> {
    parse("r.toml", text.to_string(), &Overrides::default(), &env).map_err(|e| e.to_string())
}

fn err(text: &str) -> String {
    plan(text).expect_err("rules should be refused")
}

#[test]
fn the_issue_example_parses() {
    let p = plan(
        r#"
[source]
url = "${PROD_URL:-examples/production.sql}"
[target]
url = "${STAGING_URL:-staging.sql}"
[secret]
key_env = "ANONYMIZE_KEY"
[defaults]
uncovered = "fail"

[tables.customers]
where = "deleted_at IS NULL"
[tables.customers.columns]
id         = "keep"
email      = { fake = "email", unique = true }
first_name = { fake = "first_name" }
phone      = { mask = { keep_last = 4 } }
ssn        = { hash = { length = 12 } }
notes      = { scrub = ["email", "phone", "credit_card"] }
birth_date = { shift = { days = 180 } }
salary     = { noise = { percent = 10 } }
country    = { set = "US" }
deleted_at = "null"
login      = { template = "{first_name}@example.com" }
profile    = { json = { "$.email" = { fake = "email" }, "$.address.phone" = { mask = { keep_last = 2 } } } }

[tables."billing.invoices"]
skip = true
"#,
    )
    .unwrap();
    assert_eq!(
        plan_source(&p),
        ("postgres://prod/app".to_string(), "staging.sql".to_string())
    );
    assert_eq!(p.uncovered, Uncovered::Fail);
    let customers = &p.tables[&QualifiedName::new("public", "customers")];
    assert_eq!(customers.filter.as_deref(), Some("deleted_at IS NULL"));
    assert_eq!(customers.columns.len(), 12);
    assert_eq!(customers.columns["email"].rule, "fake = \"email\", unique");
    assert_eq!(
        customers.columns["email"].location.to_string(),
        "r.toml:15:14"
    );
    assert!(p.tables[&QualifiedName::new("billing", "invoices")].skip);
}

fn plan_source(p: &Plan) -> (String, String) {
    (p.source.to_string(), p.target.to_string())
}

#[test]
fn shipped_rules_files_parse() {
    for path in ["rules/customers.toml", "tests/fixtures/pagila.toml"] {
        let text = std::fs::read_to_string(path).unwrap();
        plan(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn bad_rules_give_located_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "[tables.t.columns]\na = { fakee = \"email\" }\n",
            "r.toml:2:7: unknown key `fakee` (did you mean `fake`?); expected one of `set`, `mask`, `hash`, `fake`, `shift`, `truncate`, `noise`, `scrub`, `regex`, `template`, `json`, `command`, `timeout`, `when`, `else`, `locale`, `unique`, `domain`, `max_length`",
        ),
        (
            "[tables.t.columns]\na = \"kep\"\n",
            "r.toml:2:5: unknown rule \"kep\" (did you mean \"keep\"?); a column takes \"keep\", \"null\" or a table such as { fake = \"email\" }",
        ),
        (
            "[tables.t.columns]\na = { fake = \"emial\" }\n",
            "r.toml:2:14: unknown fake kind \"emial\" (did you mean \"email\"?)",
        ),
        (
            "[tables.t]\nwehre = \"x\"\n",
            "r.toml:2:1: unknown key `wehre` (did you mean `where`?); expected one of `where`, `skip`, `partitions`, `subset`, `columns`",
        ),
        ("[sourc]\nurl = \"x\"\n", "r.toml:1:2: unknown key `sourc` (did you mean `source`?); expected one of `source`, `target`, `secret`, `defaults`, `policy`, `tables`, `databases`, `references`, `fixtures`"),
        (
            "[tables.t.columns]\na = { mask = { keep_last = \"4\" } }\n",
            "r.toml:2:28: invalid type: string \"4\", expected u32",
        ),
        ("[tables.t.columns\n", "r.toml:1:18: invalid table header\nexpected `.`, `]`"),
        (
            "[tables.t.columns]\na = { phone = 1 }\n",
            "r.toml:2:7: unknown key `phone`; expected one of `set`, `mask`, `hash`, `fake`, `shift`, `truncate`, `noise`, `scrub`, `regex`, `template`, `json`, `command`, `timeout`, `when`, `else`, `locale`, `unique`, `domain`, `max_length`",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "for {text:?}");
    }
}

#[test]
fn every_meaning_problem_is_reported_at_once() {
    let text = r###"[defaults]
uncovered = "kept"
[tables.t.columns]
a = { fake = "phone", unique = true }
b = { hash = { length = 8 }, unique = true }
c = { hash = { format = "preserve", length = 3 } }
d = { mask = { char = "##" } }
e = { noise = { percent = 5, absolute = 1 } }
f = { shift = { days = 0 } }
g = { scrub = ["email", "emial"] }
h = { regex = { pattern = "(", replace = "" } }
i = { template = "{a" }
j = { fake = "name", hash = {} }
k = { unique = true }
l = { truncate = "week" }
m = { json = { "nope" = "keep", "$.x" = { template = "{a}" } } }
n = { mask = {}, unique = true }
o = { fake = "city", locale = "xx" }
p = { set = [1] }
"###;
    let got = err(text);
    let want = [
        "r.toml:2:13: unknown value \"kept\" for uncovered (did you mean \"keep\"?)",
        "r.toml:4:32: fake = \"phone\" cannot promise unique values; use hash = { format = \"preserve\" }, or one of the fake kinds email, username, url, uuid, ipv6",
        "r.toml:5:39: unique = true needs at least 96 bits of hash: length = 24 or more for this format, or format = \"preserve\" (a keyed permutation, unique by construction)",
        "r.toml:6:46: conflicting options: format = \"preserve\" keeps the input's length; remove length",
        "r.toml:7:23: mask char must be exactly one character",
        "r.toml:8:15: conflicting options: noise takes percent or absolute, not both",
        "r.toml:9:24: shift days must be at least 1",
        "r.toml:10:25: unknown detector \"emial\" (did you mean \"email\"?)",
        "r.toml:11:27: invalid regex pattern: error: unclosed group",
        "r.toml:12:18: unclosed `{` in template (write `{{` for a literal brace)",
        "r.toml:13:5: rule for public.t.j has 2 transforms (hash, fake); give exactly one",
        "r.toml:14:5: rule for public.t.k has no transform; give exactly one of set, mask, hash, fake, shift, truncate, noise, scrub, regex, template, json, command",
        "r.toml:15:18: unknown truncate unit \"week\"; expected one of day, month, year",
        "r.toml:16:41: template cannot be used inside a json rule",
        "r.toml:16:25: invalid JSON path: a path starts with `$` in \"nope\"",
        "r.toml:17:27: mask cannot promise unique values; use hash = { format = \"preserve\" } or a unique fake kind (email, username, url, uuid, ipv6)",
        "r.toml:18:31: unknown locale \"xx\"; expected one of en, fr_fr, de_de, it_it, pt_br, nl_nl, ja_jp, zh_cn",
        "r.toml:19:13: set takes a string, number, boolean or date; use \"null\" for NULL",
    ]
    .join("\n");
    assert_eq!(got, want);
}

#[test]
fn keys_are_required_and_checked() {
    let missing = parse("r.toml", String::new(), &Overrides::default(), &|_| None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        missing,
        "the secret key is not set: export ANONYMIZE_KEY=<a random string of at least 16 bytes> \
         (for example from `openssl rand -hex 32`), or name a file with [secret] key_file"
    );
    assert_eq!(
        err("[secret]\nkey_env = \"SHORT_KEY\"\n"),
        "SHORT_KEY: the secret key is 4 bytes long; at least 16 bytes are required"
    );
    assert_eq!(
        err("[secret]\nkey_env = \"BLANK_KEY\"\n"),
        "BLANK_KEY: the secret key is only whitespace; use a random string (openssl rand -hex 32)"
    );
    assert!(plan("[secret]\nkey_env = \"OTHER_KEY\"\n").is_ok());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let text = format!(
        "[secret]\nkey_file = {:?}\n",
        key_file.display().to_string()
    );
    let p = parse("r.toml", text, &Overrides::default(), &|_| None);
    assert!(p.is_ok(), "{:?}", p.err().map(|e| e.to_string()));
    // A missing key still lets the other problems through, all at once.
    let both = parse(
        "r.toml",
        "[tables.t.columns]\na = { fake = \"nope\" }\n".into(),
        &Overrides::default(),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(both.lines().count(), 2, "{both}");
}

#[test]
fn interpolation_errors_name_the_variable() {
    assert_eq!(
        err("[source]\nurl = \"${NOPE}\"\n"),
        "r.toml:2:7: [source] url: environment variable NOPE is not set (give a default with ${NOPE:-default})"
    );
    let p = parse(
        "r.toml",
        "[source]\nurl = \"${NOPE}\"\n".into(),
        &Overrides {
            source: Some("dump.sql".into()),
            ..Overrides::default()
        },
        &env,
    )
    .unwrap();
    assert_eq!(p.source, Endpoint::File("dump.sql".into()));
    assert_eq!(p.target, Endpoint::Stdio);
}

#[test]
fn qualified_names() {
    assert_eq!(
        QualifiedName::parse("t"),
        Some(QualifiedName::new("public", "t"))
    );
    assert_eq!(
        QualifiedName::parse("\"My Schema\".\"a.b\""),
        Some(QualifiedName::new("My Schema", "a.b"))
    );
    assert_eq!(QualifiedName::parse("a.b.c"), None);
    assert_eq!(QualifiedName::parse(""), None);
    assert_eq!(
        QualifiedName::new("public", "Users").to_string(),
        "public.\"Users\""
    );
    // Keywords that are not unreserved must be quoted as identifiers (COPY … ("select", "from")).
    assert_eq!(
        QualifiedName::new("public", "order").to_string(),
        "public.\"order\""
    );
    for (word, quoted) in [
        ("select", true),
        ("from", true),
        ("user", true),
        ("name", false),
    ] {
        assert_eq!(quote_ident(word).starts_with('"'), quoted, "{word}");
    }
    assert_eq!(QualifiedName::new("public", "order").rules_key(), "order");
    assert_eq!(QualifiedName::new("public", "users").rules_key(), "users");
    assert_eq!(
        QualifiedName::new("billing", "invoices").rules_key(),
        "\"billing.invoices\""
    );
    assert_eq!(
        QualifiedName::new("public", "My T").rules_key(),
        "\"public.\\\"My T\\\"\""
    );
}

fn source(name: &str, cols: &[&str]) -> SourceTable {
    SourceTable {
        name: QualifiedName::parse(name).unwrap(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        partition_of: None,
        meta: None,
        rows: None,
        database: None,
        foreign: false,
        declared_types: Vec::new(),
    }
}

#[test]
fn binding_reports_drift_unknown_names_and_paste_lines() {
    let p = plan(
        "[tables.customers.columns]\nid = \"keep\"\nemial = { fake = \"email\" }\n[tables.gone]\nskip = true\n",
    )
    .unwrap();
    let diags = bind(
        &p,
        &[
            source("customers", &["id", "email", "phone"]),
            source("audit", &["id", "who"]),
        ],
    )
    .unwrap_err();
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        text.join("\n"),
        "r.toml:3:9: column public.customers.emial is not in the source (did you mean email?)
r.toml:4:9: table public.gone is not in the source
uncovered columns: every column of every copied table needs a rule or \"keep\" (schema drift in the source?)
  table public.audit has no rules (columns: id, who)
  column public.customers.email
  column public.customers.phone
add these lines to r.toml (each rule writes what its column accepts: review them; \"null\" hides the value, \"keep\" only for data that is not personal, skip = true skips a table):

[tables.audit.columns]
id = \"null\"
who = \"null\"

# under [tables.customers.columns], the rules of public.customers at r.toml:1:9:
email = \"null\"
phone = \"null\""
    );
}

#[test]
fn binding_uses_parent_rules_for_partitions_and_resolves_templates() {
    let p = plan(
        "[tables.payment.columns]\nid = \"keep\"\nnote = { template = \"{id}-x\" }\n[tables.skipme]\nskip = true\n",
    )
    .unwrap();
    let mut part = source("payment_p1", &["note", "id"]);
    part.partition_of = Some(QualifiedName::new("public", "payment"));
    let bound = bind(&p, &[part, source("skipme", &["a"])]).unwrap();
    assert_eq!(bound.len(), 2);
    match &bound[0].action {
        TableAction::Copy { ops } => {
            assert!(matches!(ops[1], CellOp::Pass));
            let CellOp::Template(t) = &ops[0] else {
                panic!("template expected")
            };
            assert_eq!(t.columns().collect::<Vec<_>>(), vec![1]);
        }
        TableAction::Skip => panic!("copy expected"),
    }
    assert!(matches!(bound[1].action, TableAction::Skip));
    assert_eq!(bound[0].rules, vec!["template = \"{id}-x\"", "keep"]);
}

#[test]
fn uncovered_keep_passes_everything_through() {
    let p = plan("[defaults]\nuncovered = \"keep\"\n").unwrap();
    let bound = bind(&p, &[source("t", &["a"])]).unwrap();
    assert!(!bound[0].transforms_anything());
}

#[test]
fn every_transform_doc_example_parses() {
    let sources = [
        ("mask", include_str!("../transform/mask.rs")),
        ("hash", include_str!("../transform/hash.rs")),
        ("fake", include_str!("../transform/fake.rs")),
        ("dates", include_str!("../transform/dates.rs")),
        ("numbers", include_str!("../transform/numbers.rs")),
        ("scrub", include_str!("../transform/scrub.rs")),
        ("text", include_str!("../transform/text.rs")),
        ("json", include_str!("../transform/json.rs")),
    ];
    for (name, src) in sources {
        let mut in_block = false;
        let mut example = String::from("[tables.t.columns]\n");
        let mut lines = 0;
        for line in src.lines() {
            let Some(doc) = line.strip_prefix("//!") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            if doc.starts_with("```") {
                in_block = doc == "```toml";
                continue;
            }
            if in_block {
                example.push_str(doc);
                example.push('\n');
                lines += 1;
            }
        }
        assert!(
            lines > 0,
            "{name}.rs has no ```toml example in its module doc"
        );
        let p = plan(&example).unwrap_or_else(|e| panic!("{name}.rs example: {e}"));
        assert_eq!(
            p.tables.values().next().unwrap().columns.len(),
            lines,
            "{name}"
        );
    }
}

#[test]
fn unique_rules_are_injective() {
    use crate::transform::Transform;
    for rule in [
        "{ fake = \"username\", unique = true }",
        "{ fake = \"url\", unique = true }",
        "{ fake = \"uuid\", unique = true }",
        "{ fake = \"ipv6\", unique = true }",
        "{ hash = { length = 24 }, unique = true }",
        "{ hash = { length = 20, format = \"base32\" }, unique = true }",
        "{ hash = { length = 29, format = \"digits\" }, unique = true }",
    ] {
        let p = plan(&format!("[tables.t.columns]\nc = {rule}\n")).unwrap();
        let cp = &p.tables.values().next().unwrap().columns["c"];
        assert!(cp.unique, "{rule}");
        let ColumnOp::Transform(t) = &cp.op else {
            panic!("{rule}")
        };
        let outs: std::collections::HashSet<String> = (0..50_000)
            .map(|i| {
                Transform::apply(t, Some(&format!("user-{i}")))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        assert_eq!(outs.len(), 50_000, "{rule}");
    }
}

#[test]
fn a_check_needs_no_key_but_refuses_a_short_one() {
    let optional = Overrides {
        key_optional: true,
        ..Overrides::default()
    };
    assert!(parse(
        "r.toml",
        "[tables.t.columns]\na = \"keep\"\n".into(),
        &optional,
        &|_| None
    )
    .is_ok());
    let err = parse("r.toml", String::new(), &optional, &|_| {
        Some("short".into())
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "ANONYMIZE_KEY: the secret key is 5 bytes long; at least 16 bytes are required"
    );
}

#[test]
fn partitions_named_by_pattern_take_their_parents_rules() {
    let p = plan("[tables.payment]\npartitions = [\"payment_p2022_*\"]\n[tables.payment.columns]\nid = \"keep\"\n").unwrap();
    let bound = bind(
        &p,
        &[
            source("payment_p2022_01", &["id"]),
            source("payment_p2022_02", &["id"]),
        ],
    )
    .unwrap();
    assert_eq!(bound.len(), 2);
    assert_eq!(bound[0].rules, vec!["keep"]);
    // A table the patterns do not name is uncovered.
    let e = bind(&p, &[source("payment_x", &["id"])]).unwrap_err();
    assert!(
        e.iter()
            .any(|d| d.message.contains("table public.payment_x has no rules")),
        "{e:?}"
    );
}

#[test]
fn shift_and_noise_by_another_column_are_checked_where_written() {
    let p = plan(
        "[tables.emp.columns]\nid = \"keep\"\nfrom_date = { shift = { days = 90, by = \"id\", keep = [\"9999-01-01\"] } }\n\
         salary = { noise = { percent = 5, by = \"id\" } }\n",
    )
    .unwrap();
    let bound = bind(&p, &[source("emp", &["salary", "id", "from_date"])]).unwrap();
    let TableAction::Copy { ops } = &bound[0].action else {
        panic!("copy expected")
    };
    assert!(matches!(ops[0], CellOp::ApplyBy(_, 1)));
    assert!(matches!(ops[2], CellOp::ApplyBy(_, 1)));
    assert_eq!(bound[0].rules[2], "shift (±90 days by id, 1 dates kept)");
    assert_eq!(bound[0].rules[0], "noise (±5% by id)");
    // A by column the source does not have, found at bind time with the rule's location.
    let p = plan(
        "[tables.emp.columns]\nid = \"keep\"\nd = { shift = { days = 9, by = \"emp_id\" } }\n",
    )
    .unwrap();
    let diags = bind(&p, &[source("emp", &["id", "d", "emp_no"])]).unwrap_err();
    assert_eq!(
        diags[0].to_string(),
        "r.toml:3:5: rule of public.emp.d is keyed by column emp_id, which is not in the source (did you mean emp_no?)"
    );
    for (rules, want) in [
        (
            "[tables.t.columns]\nd = { shift = { days = 9, by = \"d\" } }\n",
            "r.toml:2:32: by names the column itself (d); name another column of the row, such as its entity's id",
        ),
        (
            "[tables.t.columns]\nd = { shift = { days = 9, keep = [\"9999-13-01\"] } }\n",
            "r.toml:2:35: shift keep takes dates written YYYY-MM-DD, not \"9999-13-01\"",
        ),
        (
            "[tables.t.columns]\nd = { json = { \"$.a\" = { shift = { days = 9, by = \"id\" } } } }\n",
            "r.toml:2:51: by cannot be used inside a json rule (it reads another column of the row)",
        ),
        (
            "[tables.t.columns]\nd = { shift = { days = 9, by_ = \"id\" } }\n",
            "r.toml:2:27: unknown key `by_` (did you mean `by`?); expected one of `days`, `by`, `keep`",
        ),
    ] {
        let e = err(rules);
        assert_eq!(e, want);
    }
}

fn typed(name: &str, cols: &[(&str, &str, bool)]) -> SourceTable {
    let mut t = source(name, &cols.iter().map(|c| c.0).collect::<Vec<_>>());
    t.meta = Some(
        cols.iter()
            .map(|(_, ty, unique)| {
                let max_len = ty
                    .strip_prefix("character varying(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse().ok());
                ColumnMeta {
                    not_null: *unique,
                    unique: *unique,
                    kind: if ty.starts_with("numeric") || ty.ends_with("int") || *ty == "integer" {
                        TypeKind::Number
                    } else {
                        TypeKind::Text
                    },
                    max_len,
                    type_name: ty.to_string(),
                    unique_with: Vec::new(),
                }
            })
            .collect(),
    );
    t
}

#[test]
fn rules_are_fitted_to_the_column_or_refused_with_its_limit() {
    use crate::transform::Transform;
    let p = plan(
        "[tables.c.columns]\ncity = { fake = \"city\" }\nnote = { scrub = [\"email\"] }\n\
         price = { noise = { percent = 50 } }\nzip = { fake = \"zip\", max_length = 3 }\n",
    )
    .unwrap();
    let t = typed(
        "c",
        &[
            ("city", "character varying(15)", false),
            ("note", "character varying(40)", false),
            ("price", "numeric(6,2)", false),
            ("zip", "text", false),
        ],
    );
    let bound = bind(&p, &[t]).unwrap();
    assert_eq!(
        bound[0].rules[0],
        "fake = \"city\", fitted to 15 characters"
    );
    assert_eq!(bound[0].rules[3], "fake = \"zip\", max_length = 3");
    let TableAction::Copy { ops } = &bound[0].action else {
        panic!("copy expected")
    };
    let run = |c: usize, v: &str| match &ops[c] {
        CellOp::Apply(t) => t.apply(Some(v)).unwrap().unwrap(),
        other => panic!("{other:?}"),
    };
    let unfitted = match &p.tables.values().next().unwrap().columns["city"].op {
        ColumnOp::Transform(t @ Transform::Fake(_)) => t.clone(),
        other => panic!("{other:?}"),
    };
    let mut longer = 0;
    for i in 0..3000 {
        let v = format!("city {i}");
        let out = run(0, &v);
        assert!(out.chars().count() <= 15, "{out}");
        assert_eq!(out, run(0, &v), "deterministic");
        let plain = unfitted.apply(Some(&v)).unwrap().unwrap();
        if plain.chars().count() <= 15 {
            assert_eq!(out, plain, "a fake that fits is left as it is");
        } else {
            longer += 1;
        }
        assert!(run(3, &v).chars().count() <= 3);
    }
    assert!(
        longer > 100,
        "the test needs cities longer than 15 ({longer})"
    );
    let text = format!("mail {} now", "x".repeat(30) + "@corp.example");
    assert!(run(1, &text).chars().count() <= 40);
    // numeric(6,2) holds at most 9999.99: noise never goes past it.
    for v in ["9999.99", "-9999.99", "9000.00", "1.00"] {
        let out: f64 = run(2, v).parse().unwrap();
        assert!(out.abs() <= 9999.99, "{v} -> {out}");
    }

    // A unique fake is never cut: drawn again (every draw carries its keyed tag), else its short
    // form, when the column holds that.
    let p = plan("[tables.e.columns]\nemail = { fake = \"email\", unique = true }\n").unwrap();
    let bound = bind(
        &p,
        &[typed("e", &[("email", "character varying(45)", true)])],
    )
    .unwrap();
    let TableAction::Copy { ops } = &bound[0].action else {
        panic!("copy expected")
    };
    let CellOp::Apply(t) = &ops[0] else {
        panic!("apply expected")
    };
    let outs: std::collections::HashSet<String> = (0..5000)
        .map(|i| {
            t.apply(Some(&format!("person{i}@corp.example")))
                .unwrap()
                .unwrap()
        })
        .collect();
    assert_eq!(outs.len(), 5000);
    assert!(outs
        .iter()
        .all(|o| o.chars().count() <= 45 && o.contains("@example.")));
    assert!(
        outs.iter().any(|o| o.matches('.').count() >= 3),
        "full forms where they fit"
    );

    // Unique rules are never cut: refused with the limit and what to do.
    let p = plan(
        "[tables.u.columns]\nemail = { fake = \"email\", unique = true }\ntoken = { hash = { length = 40 } }\n\
         code = { set = \"ABCDEFGH\" }\n",
    )
    .unwrap();
    let t = typed(
        "u",
        &[
            ("email", "character varying(30)", true),
            ("token", "character varying(30)", false),
            ("code", "character varying(4)", false),
        ],
    );
    let diags: Vec<String> = bind(&p, &[t])
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(diags.len(), 3, "{diags:#?}");
    assert!(diags[0].starts_with("r.toml:2:9: column public.u.email is character varying(30) (at most 30 characters), and this rule writes up to "), "{}", diags[0]);
    assert!(diags[0].ends_with("characters: widen the column to at least 32 characters (the shortest form of this fake), or use hash = { format = \"preserve\" }, which keeps each value's length (a unique rule is never cut: two values could become one)"), "{}", diags[0]);
    assert_eq!(diags[1], "r.toml:3:9: column public.u.token is character varying(30) (at most 30 characters), and this rule writes up to 40 characters: use hash = { length = 30 }");
    assert_eq!(diags[2], "r.toml:4:8: column public.u.code is character varying(4) (at most 4 characters), and this rule writes up to 8 characters: set a value of at most 4 characters");
    for (rules, want) in [
        (
            "[tables.t.columns]\na = { fake = \"email\", unique = true, max_length = 20 }\n",
            "r.toml:2:51: max_length cannot be combined with unique: cutting values could make two of them equal; use hash = { length = N } or widen the column",
        ),
        (
            "[tables.t.columns]\na = { hash = {}, max_length = 20 }\n",
            "r.toml:2:31: max_length applies to fake, scrub and regex, not to hash",
        ),
    ] {
        assert_eq!(err(rules), want);
    }
}

#[test]
fn drift_lines_paste_as_printed_and_suit_each_column() {
    let meta = |kind: TypeKind, ty: &str, not_null: bool, unique: bool| ColumnMeta {
        not_null,
        unique,
        kind,
        max_len: None,
        type_name: ty.into(),
        unique_with: Vec::new(),
    };
    let text = "[tables.customers.columns]\nid = \"keep\"\n\n[tables.orders]\nwhere = \"true\"\n[tables.orders.columns]\nid = \"keep\"\n";
    let p = plan(text).unwrap();
    let mut customers = source(
        "customers",
        &["id", "email", "name", "born", "note", "active", "ref"],
    );
    customers.meta = Some(vec![
        meta(TypeKind::Number, "integer", true, true),
        meta(TypeKind::Text, "character varying(40)", true, true),
        meta(TypeKind::Text, "text", true, false),
        meta(TypeKind::Date, "date", true, false),
        meta(TypeKind::Text, "text", false, false),
        meta(TypeKind::Other, "boolean", true, false),
        meta(TypeKind::Number, "bigint", true, false),
    ]);
    // Two partitions of orders with the same new column: one line, under orders.
    let mut parts = Vec::new();
    for n in ["orders_p1", "orders_p2"] {
        let mut t = source(n, &["id", "coupon_id"]);
        t.partition_of = Some(QualifiedName::new("public", "orders"));
        t.meta = Some(vec![
            meta(TypeKind::Number, "integer", true, true),
            meta(TypeKind::Number, "integer", false, false),
        ]);
        parts.push(t);
    }
    let mut all = vec![customers];
    all.extend(parts);
    all.push(source("audit", &["who"]));
    // Partitions of a table without rules: one section, under their partitioned table.
    for n in ["events_p1", "events_p2"] {
        let mut t = source(n, &["at"]);
        t.partition_of = Some(QualifiedName::new("public", "events"));
        all.push(t);
    }
    let diags = bind(&p, &all).unwrap_err();
    let msg = diags.last().unwrap().to_string();
    assert!(
        msg.contains("  table public.events has no rules (columns: at)\n")
            && msg.contains("\n[tables.events.columns]\nat = \"null\"\n")
            && !msg.contains("events_p"),
        "{msg}"
    );
    let msg = msg.replace("\n\n[tables.events.columns]\nat = \"null\"", "");
    let expected_tail = "[tables.audit.columns]
who = \"null\"

# under [tables.customers.columns], the rules of public.customers at r.toml:1:9:
email  = { hash = { format = \"preserve\" }, unique = true }  # character varying(40), unique
name   = { hash = { format = \"preserve\" } }  # text, NOT NULL
born   = { shift = { days = 30 } }  # date, NOT NULL
note   = \"null\"  # text
active = { set = false }  # boolean, NOT NULL
ref    = { noise = { percent = 10 } }  # bigint, NOT NULL

# under [tables.orders.columns], the rules of public.orders at r.toml:4:9:
coupon_id = \"null\"  # integer";
    assert!(msg.ends_with(expected_tail), "{msg}");
    // Pasted where it says, the file binds.
    let blocks: Vec<&str> = expected_tail.split("\n\n").collect();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (header, block) in [
        ("[tables.customers.columns]", blocks[1]),
        ("[tables.orders.columns]", blocks[2]),
    ] {
        let at = lines.iter().position(|l| l == header).unwrap();
        for (k, l) in block.lines().skip(1).enumerate() {
            lines.insert(at + 1 + k, l.to_string());
        }
    }
    lines.push(blocks[0].to_string());
    let pasted = plan(&lines.join("\n")).unwrap();
    all.retain(|t| !t.name.name.starts_with("events"));
    let bound = bind(&pasted, &all);
    assert!(bound.is_ok(), "{:?}", bound.err());
}

#[test]
fn the_names_detector_is_checked_where_written() {
    for (rules, want) in [
        (
            "[tables.t.columns]\nn = { scrub = [\"names\"] }\n",
            "r.toml:2:15: the names detector needs names_from = [\"first_name\", …]: the columns whose values it looks for",
        ),
        (
            "[tables.t.columns]\nn = { scrub = { detectors = [\"email\"], names_from = [\"a\"] } }\n",
            "r.toml:2:54: names_from is for the names detector: add \"names\" to detectors",
        ),
        (
            "[tables.t.columns]\nn = { scrub = { detectors = [\"names\"], name_from = [\"a\"] } }\n",
            "r.toml:2:15: unknown key `name_from` (did you mean `names_from`?); expected one of `detectors`, `names_from`",
        ),
        (
            "[tables.t.columns]\nn = { scrub = [\"nmes\"] }\n",
            "r.toml:2:16: unknown detector \"nmes\" (did you mean \"names\"?)",
        ),
    ] {
        assert_eq!(err(rules), want);
    }
    let p = plan("[tables.t.columns]\nn = { scrub = { detectors = [\"names\"], names_from = [\"frist\", \"n\"] } }\nfirst = \"keep\"\n").unwrap();
    let text: Vec<String> = bind(&p, &[source("t", &["n", "first"])])
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        text,
        [
            "r.toml:2:5: scrub of public.t.n looks for the names in column frist, which is not another column of the source (did you mean first?)",
            "r.toml:2:5: scrub of public.t.n looks for the names in column n, which is not another column of the source (the column itself)",
        ]
    );
    // A template's original is never computed: its value would pass as it is.
    let p = plan("[tables.t.columns]\nn = { scrub = { detectors = [\"names\"], names_from = [\"full\"] } }\nfull = { template = \"{first}\" }\nfirst = { fake = \"first_name\" }\n").unwrap();
    let text: Vec<String> = bind(&p, &[source("t", &["n", "full", "first"])])
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        text,
        ["r.toml:2:5: scrub of public.t.n looks for the names in column full, whose rule is a template or another names scrub: name the columns it is built from"]
    );
}

#[test]
fn a_reference_to_a_skipped_table_is_refused() {
    let fk = crate::schema::ForeignKey {
        name: "c_pid_fkey".into(),
        from: QualifiedName::new("public", "child"),
        from_columns: vec!["pid".into()],
        to: QualifiedName::new("public", "parent"),
        to_columns: vec!["id".into()],
    };
    let tables = [source("parent", &["id"]), source("child", &["id", "pid"])];
    for (rule, problems) in [("\"keep\"", 1), ("\"null\"", 0)] {
        let p = plan(&format!(
            "[tables.parent]\nskip = true\n[tables.child.columns]\nid = \"keep\"\npid = {rule}\n"
        ))
        .unwrap();
        let bound = bind(&p, &tables).unwrap();
        let found = keys::key_problems(&p, &bound, &tables, &[(None, fk.clone())]);
        assert_eq!(found.len(), problems, "{found:?}");
        if problems == 1 {
            assert_eq!(
                found[0].to_string(),
                "r.toml:5:7: foreign key c_pid_fkey of public.child: column pid references public.parent, which is skipped (loaded empty), so the foreign key would fail at the end of the run; copy public.parent too, or give pid the rule \"null\""
            );
        }
    }
}

#[test]
fn a_template_is_cut_to_its_column() {
    let p = plan("[tables.u.columns]\nfirst = \"keep\"\nlogin = { template = \"{first}.{first}@example.com\" }\n").unwrap();
    let bound = bind(
        &p,
        &[typed(
            "u",
            &[
                ("first", "text", false),
                ("login", "character varying(12)", false),
            ],
        )],
    )
    .unwrap();
    assert_eq!(
        bound[0].rules[1],
        "template = \"{first}.{first}@example.com\", fitted to 12 characters"
    );
    let TableAction::Copy { ops } = &bound[0].action else {
        panic!("copy expected")
    };
    let CellOp::Template(t) = &ops[1] else {
        panic!("template expected")
    };
    assert_eq!(t.render(|_| Some("Émilienne")), "Émilienne.Ém");
}

#[test]
fn columns_of_composite_and_partial_unique_indexes_keep_rows_apart() {
    let mut t = typed(
        "ev",
        &[
            ("d", "date", false),
            ("k", "integer", false),
            ("email", "text", false),
        ],
    );
    let meta = t.meta.as_mut().unwrap();
    meta[0].unique_with = vec![vec!["d".into(), "k".into()]];
    meta[1].unique_with = vec![vec!["d".into(), "k".into()]];
    meta[2].unique_with = vec![vec!["email".into()]];
    let check = |rules: &str| -> Vec<String> {
        match bind(&plan(rules).unwrap(), std::slice::from_ref(&t)) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    };
    assert_eq!(
        check("[tables.ev.columns]\nd = { truncate = \"month\" }\nk = \"keep\"\nemail = { fake = \"email\" }\n"),
        [
            "r.toml:2:5: column public.ev.d is in the unique index on (d, k); its rule must promise distinct values (\"keep\", hash = { format = \"preserve\" }, a hash or fake with unique = true) or take an offset by = another column of that index",
            "r.toml:4:9: column public.ev.email is in the unique index on (email); its rule must promise distinct values (\"keep\", hash = { format = \"preserve\" }, a hash or fake with unique = true) or take an offset by = another column of that index",
        ]
    );
    // A date shifted by an offset per k keeps (d, k) apart; a unique fake keeps emails apart.
    assert!(check("[tables.ev.columns]\nd = { shift = { days = 9, by = \"k\" } }\nk = \"keep\"\nemail = { fake = \"email\", unique = true }\n").is_empty());
    // Noise by k rounds: not one-to-one.
    assert_eq!(
        check("[tables.ev.columns]\nd = \"keep\"\nk = { noise = { percent = 5, by = \"d\" } }\nemail = \"null\"\n").len(),
        1
    );
}

/// A table `people (id, email, country)` with a unique email column, bound to `rules` (the
/// `[tables.people.columns]` lines); the bound email operation or every problem.
fn bind_people(rules: &str) -> Result<CellOp, String> {
    let p = plan(&format!(
        "[tables.people.columns]\nid = \"keep\"\ncountry = \"keep\"\n{rules}"
    ))?;
    let mut t = source("people", &["id", "email", "country"]);
    let meta = |kind, ty: &str, unique| ColumnMeta {
        not_null: true,
        unique,
        kind,
        max_len: None,
        type_name: ty.into(),
        unique_with: Vec::new(),
    };
    t.meta = Some(vec![
        meta(TypeKind::Number, "integer", true),
        ColumnMeta {
            not_null: false,
            ..meta(TypeKind::Text, "text", true)
        },
        meta(TypeKind::Text, "text", false),
    ]);
    let bound = bind(&p, &[t]).map_err(|d| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    match &bound[0].action {
        TableAction::Copy { ops } => Ok(ops[1].clone()),
        TableAction::Skip => Err("skipped".into()),
    }
}

/// The value the bound email rule writes for a row (email, country).
fn people_email(op: &CellOp, email: &str, country: &str) -> Result<Option<String>, String> {
    let CellOp::When(w) = op else {
        return Err(format!("not a conditional rule: {op:?}"));
    };
    let row = ["1", email, country];
    let mut get = |p: usize| Ok::<_, ()>(Some(std::borrow::Cow::Borrowed(row[p])));
    let k = w.choose(&mut get).map_err(|_| "eval".to_string())?;
    match w.op(k) {
        CellOp::Pass => Ok(Some(email.to_string())),
        CellOp::Apply(t) => t.apply(Some(email)).map_err(|e| e.to_string()),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn unique_columns_stay_unique_across_branches() {
    // Keep + unique fakes: accepted; the kept row is kept, the others generated.
    let op = bind_people(
        "email = { fake = \"email\", unique = true, when = [\n  { if = \"email LIKE '%@acme.test'\", then = \"keep\" },\n  { if = \"country = 'DE'\", then = { fake = \"email\", locale = \"de_DE\", unique = true } },\n] }\n",
    )
    .unwrap();
    assert_eq!(
        people_email(&op, "qa@acme.test", "DE").unwrap().as_deref(),
        Some("qa@acme.test")
    );
    let de = people_email(&op, "ann@corp.test", "DE").unwrap().unwrap();
    let us = people_email(&op, "ann@corp.test", "US").unwrap().unwrap();
    assert!(
        de != us && !de.ends_with("@acme.test") && !us.contains("ann@"),
        "{de} {us}"
    );

    // A keep test that every generated value passes: the guard stops each generated row.
    let op = bind_people(
        "email = { fake = \"email\", unique = true, when = [{ if = \"email ~ '@example\\\\.'\", then = \"keep\" }] }\n",
    )
    .unwrap();
    assert_eq!(
        people_email(&op, "x@example.com", "US").unwrap().as_deref(),
        Some("x@example.com")
    );
    let refused = people_email(&op, "ann@corp.test", "US").unwrap_err();
    assert!(refused.contains("could equal a kept value"), "{refused}");

    // Refused: a keep whose condition does not test the column; a kept default beside a
    // generator; a preserve hash beside a keep; preserve and a fake.
    for (rules, expected) in [
        (
            "email = { fake = \"email\", unique = true, when = [{ if = \"country = 'DE'\", then = \"keep\" }] }",
            "does not test the column itself",
        ),
        (
            "email = { else = \"keep\", when = [{ if = \"email LIKE 'a%'\", then = { fake = \"email\", unique = true } }] }",
            "the default keeps values",
        ),
        (
            "email = { hash = { format = \"preserve\" }, unique = true, when = [{ if = \"email LIKE '%@acme.test'\", then = \"keep\" }] }",
            "preserve hash or a command",
        ),
        (
            "email = { hash = { format = \"preserve\" }, unique = true, when = [{ if = \"country = 'DE'\", then = { fake = \"email\", unique = true } }] }",
            "preserve hash or a command",
        ),
        // A null branch does not make the others' collisions go away.
        (
            "email = { hash = { format = \"preserve\" }, unique = true, when = [{ if = \"email IS NULL\", then = \"null\" }, { if = \"id <= 5\", then = \"keep\" }] }",
            "preserve hash or a command",
        ),
        (
            "email = { fake = \"email\", unique = true, when = [{ if = \"country = 'DE'\", then = { fake = \"email\" } }] }",
            "does not promise distinct values",
        ),
    ] {
        let e = bind_people(&format!("{rules}\n")).unwrap_err();
        assert!(e.contains(expected), "{rules}: {e}");
        assert!(e.contains("r.toml:"), "{e}");
    }
    // A null branch beside a unique default, on a nullable unique column.
    bind_people("email = { fake = \"email\", unique = true, when = [{ if = \"id > 90\", then = \"null\" }] }\n")
        .unwrap();
    // Accepted: two tagged generators; keep beside null; a preserve hash beside null.
    for rules in [
        "email = { fake = \"email\", unique = true, when = [{ if = \"country = 'DE'\", then = { hash = { length = 32 }, unique = true } }] }",
        "email = { fake = \"email\", unique = true, when = [{ if = \"email LIKE '%@acme.test'\", then = \"keep\" }, { if = \"country = 'XX'\", then = { fake = \"uuid\", unique = true } }] }",
        "email = { hash = { format = \"preserve\" }, unique = true, when = [{ if = \"country = 'XX'\", then = { set = \"x\" } }] }",
    ] {
        match bind_people(&format!("{rules}\n")) {
            Ok(_) => {}
            Err(e) if rules.contains("set = ") => {
                assert!(e.contains("must promise distinct values"), "{e}")
            }
            Err(e) => panic!("{rules}: {e}"),
        }
    }
}

#[test]
fn conditions_are_located_and_checked_against_columns() {
    let e = bind_people(
        "email = { fake = \"email\", unique = true, when = [{ if = \"contry = 'DE'\", then = \"keep\" }] }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("r.toml:4:58: condition of public.people.email: column contry is not in the source (did you mean country?)"),
        "{e}"
    );
    let e = bind_people(
        "email = { fake = \"email\", unique = true, when = [{ if = \"email LIKE 'x%' AND id = 'one'\", then = \"keep\" }] }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("r.toml:4:") && e.contains("condition of public.people.email"),
        "{e}"
    );
    let e = err("[tables.people.columns]\nemail = { fake = \"email\", when = [{ if = \"email LIKE\", then = \"keep\" }] }\n");
    assert!(e.starts_with("r.toml:2:"), "{e}");
    // An escaped string points at the condition's start.
    let e = bind_people(
        "email = { fake = \"email\", unique = true, when = [{ if = \"\\u0063ontry = 'DE'\", then = \"keep\" }] }\n",
    )
    .unwrap_err();
    assert!(e.contains("r.toml:4:57:"), "{e}");
    // when inside json, a branch's own when, timeout off a command, else with a transform.
    for (rules, expected) in [
        ("p = { json = { \"$.a\" = { fake = \"email\", when = [{ if = \"true\", then = \"keep\" }] } } }", "not inside a json rule"),
        ("p = { fake = \"email\", when = [{ if = \"true\", then = { fake = \"email\", when = [] } }] }", "cannot have its own when"),
        ("p = { fake = \"email\", timeout = 3 }", "timeout applies to command only"),
        ("p = { else = { fake = \"email\" }, when = [{ if = \"true\", then = \"keep\" }] }", "else takes"),
        ("p = { fake = \"email\", when = [] }", "at least one"),
        ("p = { command = [] }", "command needs a program"),
        ("p = { command = [\"x\"], timeout = 0 }", "timeout is in seconds"),
    ] {
        let e = err(&format!("[tables.t.columns]\n{rules}\n"));
        assert!(e.contains(expected), "{rules}: {e}");
    }
}
