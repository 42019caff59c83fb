//! A dump source: a pg_dump file (plain SQL, or a custom, directory or tar archive read through
//! `pg_restore`) or stdin, to a dump file or stdout.
//!
//! The input is read twice: a first pass judges every statement and finds the data blocks, so the
//! rules are bound (and every problem reported) before anything is written; stdin and archives are
//! spooled to an unnamed temporary file for that. The second pass streams through the pipeline into
//! the target, which a regular file only becomes when the whole run succeeded.

use std::path::Path;
use std::sync::Arc;

use super::open::{dump_policy, open_and_scan, rewind};
use crate::diagnostic::Diagnostics;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pipeline::{self, Options, PipelineError, PlannedTable, Progress, Report, RunFailure};
use crate::rules::{self, Plan};
use crate::sink::dump::DumpSink;

/// Whether two paths name the same file (the target may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn run(plan: &Plan, options: &Options, progress: &dyn Progress) -> Result<Report, Error> {
    if let (Endpoint::File(a), Endpoint::File(b)) = (&plan.source, &plan.target) {
        if same_file(a, b) {
            return Err(Error::Usage(format!(
                "source and target are the same file ({}); refusing to overwrite the input",
                plan.source
            )));
        }
    }

    let t0 = std::time::Instant::now();
    progress.phase("first pass over the dump (its tables and row counts)");
    let policy = dump_policy(plan);
    let (mut input, scanned) = open_and_scan(&plan.source, policy)?;
    log::info!(
        "first pass over {}: {} data blocks, {} rows, in {:.0} ms",
        plan.source,
        scanned.tables.len(),
        scanned.tables.iter().filter_map(|t| t.rows).sum::<u64>(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut bound = rules::bind(plan, &scanned.tables).map_err(|d| Error::Bind(Diagnostics(d)))?;
    let keys: Vec<_> = scanned
        .foreign_keys
        .iter()
        .cloned()
        .chain(plan.references.iter().map(|r| (None, r.key.clone())))
        .collect();
    let problems = rules::keys::key_problems(plan, &bound, &scanned.tables, &keys);
    if !problems.is_empty() {
        return Err(Error::Bind(Diagnostics(problems)));
    }
    let filtered = plan
        .tables
        .values()
        .chain(plan.databases.values().flat_map(|d| d.values()));
    for t in filtered.filter(|t| t.filter.is_some()) {
        progress.warning(&format!(
            "{}: `where` filters apply to database sources only; a dump is copied whole",
            t.name
        ));
    }
    if super::subset::involved(plan) {
        if super::subset::wanted(plan) {
            progress.phase("choosing the subset's rows (a pass over the dump's keys)");
        }
        super::subset::choose_in_dump(plan, &mut input, &scanned, &mut bound, policy)?;
    }
    // The tables without rows in the dump were bound (their rules checked) but are not copied.
    bound.truncate(scanned.blocks);
    progress.run_started(
        &bound
            .iter()
            .zip(&scanned.tables)
            .map(|(b, s)| PlannedTable::new(b, s.rows))
            .collect::<Vec<_>>(),
    );
    rewind(&mut input)?;

    let mut sink = DumpSink::open(&plan.target).map_err(|source| Error::Io {
        context: format!("creating the target {}", plan.target),
        source,
    })?;
    let stdout = sink.is_stdout();
    let report = pipeline::run_dump(
        input,
        Arc::new(bound),
        sink.writer(),
        stdout,
        options,
        policy,
        progress,
    )
    .map_err(|mut f| {
        // A failure while a signal asked the run to stop (a command's wait cut short) is that stop.
        if let Some(signal) = crate::interrupt::requested() {
            f.error = PipelineError::Interrupted(signal);
        }
        Error::Pipeline(f)
    })?;
    let mut report = report;
    if !plan.fixtures.is_empty() {
        let (text, applied) = crate::fixtures::dump_text(&plan.fixtures);
        std::io::Write::write_all(sink.writer(), text.as_bytes()).map_err(|source| {
            Error::Pipeline(Box::new(RunFailure {
                error: PipelineError::Write { stdout, source },
                report: report.clone(),
            }))
        })?;
        report.fixtures = applied;
    }
    // The last moment to stop before the output takes the target's name.
    if let Some(signal) = crate::interrupt::requested() {
        return Err(Error::Pipeline(Box::new(RunFailure {
            error: PipelineError::Interrupted(signal),
            report,
        })));
    }
    sink.commit().map_err(|source| Error::Io {
        context: format!("finishing the target {}", plan.target),
        source,
    })?;
    Ok(report)
}
