//! Cells per second for each transform family, and for the COPY codec.
//!
//! `cargo bench --bench transforms` (add `-- --quick` for a shorter run). Each benchmark transforms
//! the same 1,000 realistic inputs; throughput is reported in cells (elements) per second.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use anonymize::copy;
use anonymize::rules::{self, ColumnOp, Overrides};
use anonymize::transform::Transform;

const KEY: &str = "bench-key-not-secret-0123456789";

/// Build the transform of `rule` the way a rules file would.
fn transform(rule: &str) -> Transform {
    let text = format!("[tables.t.columns]\nc = {rule}\n");
    let plan = rules::parse("bench.toml", text, &Overrides::default(), &|_| {
        Some(KEY.into())
    })
    .unwrap_or_else(|e| panic!("{rule}: {e}"));
    match &plan.tables.values().next().unwrap().columns["c"].op {
        ColumnOp::Transform(t) => t.clone(),
        ColumnOp::Template(_) => unreachable!("no template benchmarked here"),
    }
}

fn inputs(kind: &str) -> Vec<String> {
    (0..1000)
        .map(|i| match kind {
            "email" => format!("person{i}.name@mailbox.test"),
            "phone" => format!("+1 415-555-{:04}", i),
            "ssn" => format!("{:03}-{:02}-{:04}", 100 + i % 800, 10 + i % 90, i),
            "date" => format!("19{:02}-{:02}-{:02}", 40 + i % 60, 1 + i % 12, 1 + i % 28),
            "timestamp" => format!("2023-{:02}-{:02} 12:{:02}:07+00", 1 + i % 12, 1 + i % 28, i % 60),
            "money" => format!("{}.{:02}", 20_000 + i * 37, i % 100),
            "note" => if i % 2 == 0 {
                format!("Prefers email: person{i}@mailbox.test; backup phone +1 415-555-{:04}", i)
            } else {
                "Delivered to the back door, customer was very friendly, no issues at all.".to_string()
            },
            "agent" => format!("user agent Mozilla/5.0 from 103.{}.84.{}", i % 256, i / 4),
            "json" => format!(r#"{{"email":"p{i}@mailbox.test","newsletter":true,"address":{{"phone":"+1 415-555-{i:04}","city":"Perth"}},"tags":["vip"]}}"#),
            _ => format!("Name{i}"),
        })
        .collect()
}

fn bench_transforms(c: &mut Criterion) {
    let cases: &[(&str, &str, &str)] = &[
        ("mask", "{ mask = { keep_last = 4 } }", "phone"),
        ("hash/hex", "{ hash = { length = 16 } }", "email"),
        ("hash/preserve", "{ hash = { format = \"preserve\" } }", "ssn"),
        ("fake/first_name", "{ fake = \"first_name\" }", "name"),
        ("fake/email_unique", "{ fake = \"email\", unique = true }", "email"),
        ("fake/phone", "{ fake = \"phone\" }", "phone"),
        ("fake/street_address", "{ fake = \"street_address\" }", "name"),
        ("fake/city", "{ fake = \"city\" }", "name"),
        ("fake/credit_card", "{ fake = \"credit_card\" }", "name"),
        ("fake/ipv4", "{ fake = \"ipv4\" }", "name"),
        ("scrub/ipv4", "{ scrub = [\"ipv4\"] }", "agent"),
        ("dates/shift", "{ shift = { days = 180 } }", "date"),
        ("dates/truncate", "{ truncate = \"month\" }", "timestamp"),
        ("numbers/noise", "{ noise = { percent = 10 } }", "money"),
        ("scrub/email_phone", "{ scrub = [\"email\", \"phone\", \"credit_card\", \"ssn\"] }", "note"),
        ("regex", "{ regex = { pattern = \"[0-9]{4}$\", replace = \"0000\" } }", "phone"),
        ("json/two_paths", "{ json = { \"$.email\" = { fake = \"email\" }, \"$.address.phone\" = { mask = { keep_last = 2 } } } }", "json"),
    ];
    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Elements(1000));
    for (name, rule, kind) in cases {
        let t = transform(rule);
        let values = inputs(kind);
        group.bench_with_input(BenchmarkId::from_parameter(name), &values, |b, values| {
            b.iter(|| {
                for v in values {
                    black_box(t.apply(Some(v)).unwrap());
                }
            })
        });
    }
    group.finish();
}

fn bench_codec(c: &mut Criterion) {
    let values = inputs("note");
    let mut encoded = Vec::new();
    for v in &values {
        copy::encode(Some(&format!("{v}\twith\\tab\n")), &mut encoded);
        encoded.push(b'\t');
    }
    let encoded = String::from_utf8(encoded).unwrap();
    let fields: Vec<&str> = encoded.split('\t').filter(|f| !f.is_empty()).collect();
    let mut group = c.benchmark_group("copy");
    group.throughput(Throughput::Elements(fields.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for f in &fields {
                black_box(copy::decode(f).unwrap());
            }
        })
    });
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for v in &values {
                copy::encode(Some(v), &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_transforms, bench_codec);
criterion_main!(benches);
