//! Keys keep their references: a rule on a key column must also be the rule of every column that
//! references it (same transform, options, key and domain), or the foreign key fails when staging
//! restores it. Checked from the source's foreign keys (a database's catalog, or a dump's
//! `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY` statements) before any row is read.

use super::bind::{BoundTable, CellOp, SourceTable, TableAction};
use super::build::Plan;
use super::{Diagnostic, QualifiedName};
use crate::schema::ForeignKey;
use crate::transform::Transform;

/// Values a key rule is tried on: two rules that agree on all of them are taken for the same.
const KEY_PROBES: &[&str] = &[
    "1",
    "42",
    "20000",
    "-7",
    "0042",
    "9223372036854775807",
    "abc",
    "AB-12-x",
    "alice@example.com",
    "2024-01-02",
    "2024-05-17",
    "1999-12-31 23:59:59+00",
    "2024-01-02 03:04:05+00",
    "abcdefghijklmnopqrstuvwxyz",
    "+1 (415) 555-0134",
    "3f1c9a2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
];

/// Whether two columns' operations give every key the same image (so a foreign key between them
/// still holds): both kept, or the same rule under the same key and domain, found by trying both
/// on [`KEY_PROBES`]. A rule keyed by another column or a template never counts as the same.
fn same_key_rule(a: &CellOp, b: &CellOp) -> bool {
    match (a, b) {
        (CellOp::Pass, CellOp::Pass) => true,
        (CellOp::Apply(x), CellOp::Apply(y)) => KEY_PROBES
            .iter()
            .all(|v| x.apply(Some(v)) == y.apply(Some(v))),
        _ => false,
    }
}

/// Foreign keys whose referencing columns do not get the rule of the key they reference: the
/// rows would load, and the foreign key would fail when restored at the end of the refresh. A
/// referencing column set to NULL (`"null"`) holds any foreign key and passes. `bound[i]` is
/// `tables[i]` bound; `keys` carry their database (a pg_dumpall file's).
pub fn key_problems(
    plan: &Plan,
    bound: &[BoundTable],
    tables: &[SourceTable],
    keys: &[(Option<String>, ForeignKey)],
) -> Vec<Diagnostic> {
    // A partitioned table's leaves (each bound on its own) or the table itself.
    let leaves = |db: &Option<String>, name: &QualifiedName| -> Vec<usize> {
        tables
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.database == *db && (t.name == *name || t.partition_of.as_ref() == Some(name))
            })
            .map(|(i, _)| i)
            .filter(|i| *i < bound.len())
            .collect()
    };
    // A skipped table is loaded empty: its rows are nobody's to reference.
    let op = |i: usize, col: &str| -> Option<(CellOp, String)> {
        let t = &bound[i];
        let c = t.columns.iter().position(|c| c == col)?;
        match &t.action {
            TableAction::Copy { ops } => Some((ops[c].clone(), t.rules[c].clone())),
            TableAction::Skip => Some((CellOp::Apply(Transform::Null), "skipped".into())),
        }
    };
    let rules_of = |i: usize| {
        let t = &tables[i];
        let section = t
            .database
            .as_deref()
            .filter(|d| plan.databases.contains_key(*d));
        plan.table_rules(section, &t.name, t.partition_of.as_ref())
    };
    let mut out: Vec<Diagnostic> = Vec::new();
    for (db, fk) in keys {
        for from in leaves(db, &fk.from) {
            for to in leaves(db, &fk.to) {
                for (fc, tc) in fk.from_columns.iter().zip(&fk.to_columns) {
                    let (Some((a, rule_a)), Some((b, rule_b))) = (op(from, fc), op(to, tc)) else {
                        continue;
                    };
                    let skipped = rule_b == "skipped";
                    if matches!(&a, CellOp::Apply(Transform::Null))
                        || (!skipped && same_key_rule(&a, &b))
                    {
                        continue;
                    }
                    let location = rules_of(from).map(|r| {
                        r.columns
                            .get(fc)
                            .map_or_else(|| r.location.clone(), |c| c.location.clone())
                    });
                    let suggestion = rules_of(to)
                        .and_then(|r| r.columns.get(tc))
                        .map(|c| format!(" (the rule at {})", c.location))
                        .unwrap_or_default();
                    // Named by the tables the key is declared on (once for all partitions).
                    let message = if skipped {
                        format!(
                            "foreign key {} of {}: column {fc} references {}, which is skipped (loaded empty), so the foreign key would fail at the end of the run; copy {} too, or give {fc} the rule \"null\"",
                            fk.name, fk.from, fk.to, fk.to
                        )
                    } else {
                        format!(
                            "foreign key {} of {}: column {}.{fc} is {rule_a}, but the key it references, {}.{tc}, is {rule_b}; the foreign key would fail at the end of the run. Give {fc} the same rule and domain as {tc}{suggestion}, or \"null\"",
                            fk.name, fk.from, fk.from, fk.to
                        )
                    };
                    let d = Diagnostic { location, message };
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
    }
    out
}
