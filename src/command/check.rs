//! `anonymize check`: validate a rules file against the source's schema without reading any row.
//!
//! Meant for CI pipelines that guard a rules repository: rules syntax and meaning, binding to the
//! real tables and columns (coverage, unknown names, and for a database source the type, length,
//! NOT NULL and UNIQUE fit). Exit 0 when clean, 2 with every problem listed. The secret key is not
//! needed: no value is produced.

use crate::diagnostic::Diagnostics;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::rules::{self, Plan, TableAction};

/// What a clean check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tables: usize,
    pub skipped: usize,
    pub columns: usize,
    pub transformed: usize,
}

pub fn run(plan: &Plan, with_target: bool) -> Result<Summary, Error> {
    // Each table's key and the source's foreign keys, for a subset.
    let (tables, keys, primary, subset_keys) = match &plan.source {
        // (The catalog's check includes the foreign keys.)
        Endpoint::Database(c) => {
            let (tables, catalog) = crate::command::live::check_catalog(plan, c)?;
            let primary: Vec<_> = catalog
                .tables
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.key.clone()?)))
                .collect();
            (tables, Vec::new(), primary, catalog.key_columns)
        }
        other => {
            let scanned = crate::command::open::open_and_scan(
                other,
                crate::command::open::dump_policy(plan),
            )?
            .1;
            let primary = scanned
                .primary_keys
                .iter()
                .map(|(_, t, k)| (t.clone(), k.clone()))
                .collect();
            let fks = scanned
                .foreign_keys
                .iter()
                .map(|(_, k)| k.clone())
                .collect();
            let mut keys = scanned.foreign_keys;
            keys.extend(plan.references.iter().map(|r| (None, r.key.clone())));
            (scanned.tables, keys, primary, fks)
        }
    };
    let bound = rules::bind(plan, &tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
    let mut problems = rules::keys::key_problems(plan, &bound, &tables, &keys);
    problems.extend(probe_commands(&bound));
    if !problems.is_empty() {
        return Err(Error::Bind(Diagnostics(problems)));
    }
    let key =
        |n: &rules::QualifiedName| primary.iter().find(|(t, _)| t == n).map(|(_, k)| k.clone());
    let database = matches!(plan.source, Endpoint::Database(_));
    crate::command::subset::planner(plan, &tables, &bound, &key, &subset_keys, database)
        .map_err(|d| Error::Bind(Diagnostics(d)))?;
    let mut summary = Summary {
        tables: bound.len(),
        skipped: 0,
        columns: 0,
        transformed: 0,
    };
    for t in &bound {
        match &t.action {
            TableAction::Skip => summary.skipped += 1,
            TableAction::Copy { ops } => {
                summary.columns += ops.len();
                summary.transformed += ops
                    .iter()
                    .filter(|o| !matches!(o, rules::CellOp::Pass))
                    .count();
            }
        }
    }
    if with_target {
        let Endpoint::Database(c) = &plan.target else {
            return Err(Error::Usage(format!(
                "check --target takes a staging database (a postgres URL), not {}",
                plan.target
            )));
        };
        let problems = target_problems(&bound, c)?;
        if !problems.is_empty() {
            return Err(Error::Bind(Diagnostics(problems)));
        }
    }
    Ok(summary)
}

/// Start every external command the rules name and send it one made-up value (never data): a
/// command that cannot start, crashes or breaks the protocol is a problem of the rules.
fn probe_commands(bound: &[rules::BoundTable]) -> Vec<rules::Diagnostic> {
    let mut problems = Vec::new();
    for t in bound {
        let TableAction::Copy { ops } = &t.action else {
            continue;
        };
        for (op, column) in ops.iter().zip(&t.columns) {
            for command in op.commands() {
                let tried = command
                    .run(&["anonymize-check-probe"])
                    .and_then(|_| command.finish());
                if let Err(e) = tried {
                    problems.push(rules::Diagnostic {
                        location: None,
                        message: format!("command of {}.{column}: {e}", t.name),
                    });
                }
            }
        }
    }
    problems
}

/// Tables and columns the run would write that staging does not have (read from its catalog; no
/// row is read or written).
fn target_problems(
    bound: &[rules::BoundTable],
    c: &crate::endpoint::ConnInfo,
) -> Result<Vec<rules::Diagnostic>, Error> {
    let runtime = crate::db::runtime(1).map_err(Error::runtime)?;
    let columns = runtime
        .block_on(async {
            let client = crate::db::connect(c).await?;
            crate::sink::postgres::table_columns(&client).await
        })
        .map_err(Error::Database)?;
    Ok(missing_in_target(
        bound.iter().map(|t| (&t.name, t.columns.as_slice())),
        &columns,
    ))
}

/// What staging lacks of the tables (and their columns) a run writes.
pub fn missing_in_target<'a>(
    tables: impl Iterator<Item = (&'a rules::QualifiedName, &'a [String])>,
    target: &std::collections::BTreeMap<rules::QualifiedName, std::collections::BTreeSet<String>>,
) -> Vec<rules::Diagnostic> {
    let mut problems = Vec::new();
    for (name, columns) in tables {
        let message = match target.get(name) {
            None => format!("staging has no table {name} (run its migrations first)"),
            Some(have) => {
                let missing: Vec<&str> = columns
                    .iter()
                    .filter(|c| !have.contains(*c))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                format!(
                    "staging table {name} lacks column(s) {}",
                    missing.join(", ")
                )
            }
        };
        problems.push(rules::Diagnostic {
            location: None,
            message,
        });
    }
    problems
}
