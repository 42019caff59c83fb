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

pub fn run(plan: &Plan) -> Result<Summary, Error> {
    let tables = match &plan.source {
        Endpoint::Database(c) => crate::command::live::check_catalog(plan, c)?.0,
        other => {
            crate::command::open::open_and_scan(other, crate::command::open::dump_policy(plan))?
                .1
                .tables
        }
    };
    let bound = rules::bind(plan, &tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
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
    Ok(summary)
}
