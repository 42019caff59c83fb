//! A dump source: a pg_dump plain-format file or stdin, to a dump file or stdout.
//!
//! The input is read twice: a first pass finds its COPY headers so the rules are bound (and every
//! problem reported) before anything is written; stdin is spooled to an unnamed temporary file for
//! that. The second pass streams through the pipeline into the target, which a file only becomes
//! when the whole run succeeded.

use std::fs::File;
use std::io::{self, BufReader, Seek};
use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::pipeline::{self, Options, PlannedTable, Progress, Report, RunFailure};
use crate::rules::{self, Plan, SourceTable};
use crate::sink::dump::DumpSink;
use crate::source::dump::prescan;

/// Whether two paths name the same file (the target may not exist yet).
fn same_file(a: &str, b: &str) -> bool {
    match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn run(plan: &Plan, options: &Options, progress: &dyn Progress) -> Result<Report, Error> {
    if plan.source != "-" && plan.target != "-" && same_file(&plan.source, &plan.target) {
        return Err(Error::Usage(format!(
            "source and target are the same file ({}); refusing to overwrite the input",
            plan.source
        )));
    }

    let t0 = std::time::Instant::now();
    progress.phase("first pass over the dump (its tables and row counts)");
    let (mut input, source_tables) = open_and_scan(&plan.source)?;
    log::info!(
        "first pass over {}: {} COPY blocks, {} rows, in {:.0} ms",
        plan.source,
        source_tables.len(),
        source_tables.iter().filter_map(|t| t.rows).sum::<u64>(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let bound = rules::bind(plan, &source_tables).map_err(Error::Bind)?;
    for t in plan.tables.values().filter(|t| t.filter.is_some()) {
        progress.warning(&format!(
            "{}: `where` filters apply to database sources only; a dump is copied whole",
            t.name
        ));
    }
    progress.run_started(
        &bound
            .iter()
            .zip(&source_tables)
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
        BufReader::with_capacity(1 << 20, input),
        Arc::new(bound),
        sink.writer(),
        stdout,
        options,
        progress,
    )
    .map_err(Error::Pipeline)?;
    // The last moment to stop before the output takes the target's name.
    if let Some(signal) = crate::interrupt::requested() {
        return Err(Error::Pipeline(Box::new(RunFailure {
            error: crate::pipeline::PipelineError::Interrupted(signal),
            report,
        })));
    }
    sink.commit().map_err(|source| Error::Io {
        context: format!("finishing the target {}", plan.target),
        source,
    })?;
    Ok(report)
}

/// Open the dump (spooling stdin to an unnamed temporary file) and read its tables with a first pass.
pub fn open_and_scan(path: &str) -> Result<(File, Vec<SourceTable>), Error> {
    // The rules are bound before anything is written, so the input is read twice: stdin is spooled
    // to an unnamed temporary file first (removed by the OS when the run ends).
    let mut input = if path == "-" {
        let mut spool = tempfile::tempfile().map_err(|source| Error::Io {
            context: "creating a temporary file to hold stdin".into(),
            source,
        })?;
        io::copy(&mut io::stdin().lock(), &mut spool).map_err(|source| Error::Io {
            context: "reading stdin".into(),
            source,
        })?;
        spool
    } else {
        File::open(path).map_err(|source| Error::Io {
            context: format!("opening the source dump {path}"),
            source,
        })?
    };
    rewind(&mut input)?;
    let source_tables = prescan(BufReader::with_capacity(1 << 20, &mut input)).map_err(|e| {
        Error::Pipeline(Box::new(RunFailure {
            error: e.into(),
            report: Report::default(),
        }))
    })?;
    Ok((input, source_tables))
}

fn rewind(f: &mut File) -> Result<(), Error> {
    f.rewind().map_err(|source| Error::Io {
        context: "rewinding the source".into(),
        source,
    })
}
