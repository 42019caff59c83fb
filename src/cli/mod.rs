//! The command line: raw arguments → validated plan → run → rendered result on stderr.
//!
//! Everything user-facing that is not data lives here: argument parsing, progress and summary lines.
//! stdout carries only data (a dump written to `-`, a dry-run preview).

mod progress;
mod render;

pub use progress::ProgressMode;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::command::refresh::RefreshOptions;
use crate::command::{check, dump, preview, refresh, scan};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pipeline::{Options, Progress, Report};
use crate::rules::{self, Overrides};
use crate::sink::swap::SwapOptions;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  runtime failure (bad data in the dump, I/O); the target is left as it was
  2  usage error, invalid rules, or uncovered columns; nothing was written
  3  audit (or a refresh with --audit) found original data in staging; with --audit nothing was
     committed or swapped in
  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM: stopped at the next batch, nothing kept

The secret key is read from the environment variable named by [secret] key_env
(default ANONYMIZE_KEY) or from [secret] key_file; it must be at least 16 bytes.";

/// Seed staging from production without leaking personal data.
#[derive(Debug, Parser)]
#[command(
    name = "anonymize",
    version,
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The rules file (TOML).
    #[arg(long, value_name = "FILE", required = true)]
    pub rules: Option<PathBuf>,
    /// Where rows come from: a postgres URL, a pg_dump plain-SQL file, or - for stdin. Overrides
    /// [source] url.
    #[arg(long, value_name = "URL|PATH|-")]
    pub source: Option<String>,
    /// Where rows go: a postgres URL (with a database source), an output .sql file, or - for stdout.
    /// Overrides [target] url.
    #[arg(long, value_name = "URL|PATH|-")]
    pub target: Option<String>,
    /// Transform threads (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Create the staging schema from the source's (`pg_dump --schema-only`) before loading; for a
    /// database source only.
    #[arg(long)]
    pub create_schema: bool,
    /// Seconds to wait for a lock: on the source (a migration holding a table) and on staging (a
    /// session using a table the refresh empties); then the run fails naming who holds it.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub lock_timeout: u64,
    /// How a staging database is refreshed: `in-place` loads it in one transaction (its tables
    /// locked meanwhile); `swap` builds the new staging as `<staging>__next` beside it and renames it
    /// into place at the end (needs CREATEDB and ownership of staging). Overrides [target] refresh.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub refresh: Option<rules::Strategy>,
    /// Swap: sessions loading the new staging and building its indexes at once (default: the
    /// number of cores, at most 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub load_connections: Option<u16>,
    /// Swap: seconds to wait at the cut-over for sessions on the old staging to leave.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub cutover_wait: u64,
    /// Swap: end the sessions still on the old staging after --cutover-wait (default: fail, and
    /// the old staging stays).
    #[arg(long)]
    pub cutover_terminate: bool,
    /// Swap: drop the old staging after the cut-over instead of keeping it as `<staging>__prev`.
    #[arg(long)]
    pub drop_prev: bool,
    /// After the load, audit the new staging against the source (as `anonymize audit` does)
    /// before it is committed or swapped in; a finding aborts the refresh (exit 3).
    #[arg(long)]
    pub audit: bool,
    /// Source sessions reading tables at once (a database source; the first holds the snapshot).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub source_connections: u16,
    /// Preview: validate, anonymize a sample of each table and show original and anonymized values
    /// side by side on stdout; writes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per table in a dry run.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "dry_run")]
    pub sample: usize,
    /// Only these tables in a dry run (comma-separated, schema.table or table).
    #[arg(long, value_name = "A,B", value_delimiter = ',', requires = "dry_run")]
    pub tables: Option<Vec<String>>,
    /// Dry-run output: a table for people or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
    pub format: Format,
    /// With --dry-run: exit 2 when the sample shows a weak rule.
    #[arg(long, requires = "dry_run")]
    pub strict: bool,
    /// Write a JSON report of the run here, on success and on failure (for monitoring).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Progress bars: auto draws them when stderr is a terminal and prints plain log lines
    /// otherwise; never always prints the lines.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Seconds between the periodic progress lines printed when there are no bars.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_interval: u64,
    /// Log what the run does, for troubleshooting (-v steps, -vv details); never cell values.
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the rules against the source's schema without reading data (for CI): exit 0 when
    /// clean, 2 with every problem listed. No secret key is needed.
    Check {
        /// The rules file (TOML).
        #[arg(long, value_name = "FILE")]
        rules: PathBuf,
        /// The source to check against: a postgres URL, a pg_dump plain-SQL file, or - for stdin.
        /// Overrides [source] url.
        #[arg(long, value_name = "URL|PATH|-")]
        source: Option<String>,
        /// Also check that this staging database (a postgres URL) has every table and column the
        /// run will write, so that a staging drift is caught before the night.
        #[arg(long, value_name = "URL")]
        target: Option<String>,
    },
    /// Compare staging with its source for every transformed column: cells equal to their
    /// original, original values anywhere in staging, kept columns that look like personal data,
    /// staging objects the rules do not mention. Exit 0 when clean, 3 on a finding. Never prints a
    /// value.
    Audit {
        /// The rules file (TOML).
        #[arg(long, value_name = "FILE")]
        rules: PathBuf,
        /// The production database (URL) or dump file. Overrides [source] url.
        #[arg(long, value_name = "URL|PATH")]
        source: Option<String>,
        /// The staging database (URL) or anonymized dump file. Overrides [target] url.
        #[arg(long, value_name = "URL|PATH")]
        target: Option<String>,
        /// Output on stdout: a table for people or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Also write the JSON report here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Distinct original values (and rows compared) per column; beyond it a sample chosen
        /// with the secret key, the same every night.
        #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_values: u64,
        /// Original values shorter than this many characters are not searched for.
        #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..))]
        min_length: u64,
    },
    /// Sample every table of a source, detect likely personal data, and write a complete draft rules
    /// file (stdout, or --output) with a commented suggestion per detected column.
    Scan {
        /// The source: a postgres URL, a pg_dump plain-SQL file, or - for stdin.
        #[arg(long, value_name = "URL|PATH|-")]
        source: String,
        /// Rows sampled per table.
        #[arg(long, value_name = "N", default_value_t = 200)]
        sample: usize,
        /// Write the draft here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// What a successful run did.
pub struct Outcome {
    pub report: Report,
}

/// Run the command. Never exits and never prints data; messages go to stderr.
pub fn run(args: Args) -> Result<Outcome, Error> {
    let env = |name: &str| std::env::var(name).ok();
    let reporter = Arc::new(progress::Reporter::new(args.progress, args.quiet));
    let level = match args.verbose {
        // Warnings always: a password file ignored for its permissions, as libpq prints it.
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    reporter.logger(level).install();
    match &args.command {
        Some(Command::Scan {
            source,
            sample,
            output,
        }) => return run_scan(source, *sample, output.as_deref()),
        Some(Command::Check {
            rules,
            source,
            target,
        }) => return run_check(rules, source.clone(), target.clone(), &env),
        Some(Command::Audit {
            rules,
            source,
            target,
            format,
            report,
            max_values,
            min_length,
        }) => {
            let settings = crate::audit::Settings {
                max_values: usize::try_from(*max_values).unwrap_or(usize::MAX),
                min_length: usize::try_from(*min_length).unwrap_or(usize::MAX),
            };
            return run_audit(
                rules,
                source.clone(),
                target.clone(),
                *format,
                report.as_deref(),
                settings,
                &env,
            );
        }
        None => {}
    }
    let overrides = Overrides {
        source: args.source.clone(),
        target: args.target.clone(),
        key_optional: false,
    };
    let rules_path = args
        .rules
        .as_ref()
        .expect("clap requires --rules without a subcommand");
    let started = std::time::SystemTime::now();
    let plan = match rules::load(rules_path, &overrides, &env) {
        Ok(plan) => plan,
        Err(e) => {
            // A monitor reading the report learns of a broken rules file or key too.
            let failed: Result<Report, Error> = Err(e.into());
            if let Some(path) = &args.report {
                // As given on the command line, with any password hidden.
                let (source, target) = (
                    args.source.as_deref().map(crate::endpoint::shown),
                    args.target.as_deref().map(crate::endpoint::shown),
                );
                write_report(
                    path,
                    source.as_deref(),
                    target.as_deref(),
                    started,
                    &failed,
                    &[],
                )?;
            }
            return failed.map(|report| Outcome { report });
        }
    };
    log::info!(
        "rules {}: {} tables, source {}, target {}",
        rules_path.display(),
        plan.tables.len(),
        plan.source,
        plan.target
    );
    if args.dry_run {
        return dry_run(&args, &plan);
    }
    // A report that cannot be written is found now, before anything is, not after a commit.
    if let Some(path) = &args.report {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                Error::Usage(format!(
                    "--report {}: cannot write it ({e}); nothing was done",
                    path.display()
                ))
            })?;
        // A second signal ends the process at once: the report still says the run failed.
        let (path, source, target) = (
            path.clone(),
            plan.source.to_string(),
            plan.target.to_string(),
        );
        crate::interrupt::on_second_signal(move |signal| {
            let failed: Result<Report, Error> =
                Err(Error::Pipeline(Box::new(crate::pipeline::RunFailure {
                    error: crate::pipeline::PipelineError::Interrupted(signal),
                    report: Report::default(),
                })));
            // The process ends right after: the report stays locked, so the run's own report
            // (which may be being written now) cannot truncate this one on the way out.
            let guard = REPORT.lock().unwrap_or_else(|e| e.into_inner());
            let text = render::report(Some(&source), Some(&target), started, &failed, &[]);
            let _ = std::fs::write(&path, text);
            std::mem::forget(guard);
        });
    }
    let options = Options {
        jobs: args
            .jobs
            .map_or_else(|| Options::default().jobs, usize::from),
        ..Options::default()
    };
    let result = {
        let _ticker = progress::Ticker::start(
            Arc::clone(&reporter),
            Duration::from_secs(args.progress_interval),
        );
        run_plan(&args, &plan, &options, &*reporter)
    };
    reporter.finish();
    if let Some(path) = &args.report {
        let (source, target) = (plan.source.to_string(), plan.target.to_string());
        write_report(
            path,
            Some(&source),
            Some(&target),
            started,
            &result,
            &reporter.warnings(),
        )?;
    }
    let report = result?;
    summary(&args, &plan, &report);
    Ok(Outcome { report })
}

/// `anonymize scan`: a draft rules file on stdout or in a file.
fn run_scan(
    source: &str,
    sample: usize,
    output: Option<&std::path::Path>,
) -> Result<Outcome, Error> {
    let source = Endpoint::parse(source).map_err(|e| Error::Usage(format!("--source: {e}")))?;
    let draft = scan::run(&source, sample)?;
    match output {
        Some(path) => std::fs::write(path, draft).map_err(|e| Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        })?,
        None => {
            let mut stdout = io::stdout().lock();
            if let Err(e) = stdout.write_all(draft.as_bytes()) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(Error::Io {
                        context: "writing the draft".into(),
                        source: e,
                    });
                }
            }
        }
    }
    Ok(Outcome {
        report: Report::default(),
    })
}

/// A failure while a signal asked to stop (a wait on a command cut short) is that stop: exit
/// 130 or 143, not a problem of the rules or the data.
fn stopped_by_signal(e: Error) -> Error {
    match crate::interrupt::requested() {
        Some(signal) => Error::Pipeline(Box::new(crate::pipeline::RunFailure {
            error: crate::pipeline::PipelineError::Interrupted(signal),
            report: Report::default(),
        })),
        None => e,
    }
}

/// `anonymize check`: the rules against the source's schema, no row read, no key needed.
fn run_check(
    rules: &std::path::Path,
    source: Option<String>,
    target: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, Error> {
    let with_target = target.is_some();
    let overrides = Overrides {
        source,
        target,
        key_optional: true,
    };
    let plan = rules::load(rules, &overrides, env)?;
    let s = check::run(&plan, with_target).map_err(stopped_by_signal)?;
    to_stderr(&format!(
        "anonymize: check passed: {} tables ({} skipped), {} columns ({} transformed, {} kept) in {}{}\n",
        s.tables,
        s.skipped,
        s.columns,
        s.transformed,
        s.columns - s.transformed,
        plan.source,
        if with_target {
            format!("; staging {} has every table and column", plan.target)
        } else {
            String::new()
        }
    ));
    Ok(Outcome {
        report: Report::default(),
    })
}

/// `anonymize audit`: the report on stdout (and in a file), exit 3 on a finding.
fn run_audit(
    rules: &std::path::Path,
    source: Option<String>,
    target: Option<String>,
    format: Format,
    report: Option<&std::path::Path>,
    settings: crate::audit::Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, Error> {
    let overrides = Overrides {
        source,
        target,
        key_optional: false,
    };
    let plan = rules::load(rules, &overrides, env)?;
    let outcome = crate::command::audit::run(&plan, settings)?;
    let json = format!(
        "{}\n",
        serde_json::to_string_pretty(&outcome).expect("the audit's types serialize")
    );
    if let Some(path) = report {
        std::fs::write(path, &json).map_err(|source| Error::Io {
            context: format!("writing the audit report {}", path.display()),
            source,
        })?;
    }
    let text = match format {
        Format::Table => crate::audit::render_table(&outcome),
        Format::Json => json,
    };
    to_stdout(&text, "writing the audit")?;
    if !outcome.clean() {
        return Err(Error::Found(format!(
            "audit: {} finding(s) in staging {}",
            outcome.findings, plan.target
        )));
    }
    to_stderr(&format!(
        "anonymize: audit clean: {} transformed column(s) of {}, nothing of the originals in {}\n",
        outcome.columns.len(),
        plan.source,
        plan.target
    ));
    Ok(Outcome {
        report: Report::default(),
    })
}

/// Held while a report is written: a second signal's report and the run's own never interleave.
static REPORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn write_report(
    path: &std::path::Path,
    source: Option<&str>,
    target: Option<&str>,
    started: std::time::SystemTime,
    result: &Result<Report, Error>,
    warnings: &[String],
) -> Result<(), Error> {
    let text = render::report(source, target, started, result, warnings);
    let _guard = REPORT.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: format!("writing the report {}", path.display()),
        source,
    })
}

/// Move the data of a validated plan to its target.
fn run_plan(
    args: &Args,
    plan: &rules::Plan,
    options: &Options,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    if plan.source.is_database() {
        let refresh = RefreshOptions {
            create_schema: args.create_schema,
            lock_timeout: Duration::from_secs(args.lock_timeout),
            source_connections: usize::from(args.source_connections),
            swap: (args.refresh.or(plan.refresh) == Some(rules::Strategy::Swap)
                && plan.target.is_database())
            .then(|| SwapOptions {
                cutover_wait: Duration::from_secs(args.cutover_wait),
                terminate: args.cutover_terminate,
                drop_prev: args.drop_prev,
            }),
            load_connections: args.load_connections.map_or_else(
                || std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
                usize::from,
            ),
            audit: args.audit.then(crate::audit::Settings::default),
        };
        if args.audit && !plan.target.is_database() {
            return Err(Error::Usage(
                "--audit audits a staging database before it is committed; for a dump, run \
                 `anonymize audit --source … --target staging.sql` on the output"
                    .into(),
            ));
        }
        return refresh::run(plan, options, progress, &refresh);
    }
    if args.create_schema {
        return Err(Error::Usage(
            "--create-schema needs a database source (a dump already holds its schema)".into(),
        ));
    }
    if plan.target.is_database() {
        return Err(Error::Usage(
            "a database target needs a database source; to load a dump, pipe it to psql".into(),
        ));
    }
    if args.audit {
        return Err(Error::Usage(
            "--audit audits a staging database before it is committed; for a dump, run \
             `anonymize audit --source prod.sql --target staging.sql` on the output"
                .into(),
        ));
    }
    dump::run(plan, options, progress)
}

fn dry_run(args: &Args, plan: &rules::Plan) -> Result<Outcome, Error> {
    let tables = match &args.tables {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    rules::QualifiedName::parse(n)
                        .ok_or_else(|| Error::Usage(format!("--tables: invalid table name {n:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let p = preview::run(
        plan,
        &preview::Options {
            sample: args.sample,
            tables,
        },
    )
    .map_err(stopped_by_signal)?;
    let text = match args.format {
        Format::Table => render::table(&p),
        Format::Json => render::json(&p),
    };
    to_stdout(&text, "writing the preview")?;
    if args.strict && p.warnings() > 0 {
        return Err(Error::Usage(format!(
            "--strict: the sample shows {} weak rule warning(s)",
            p.warnings()
        )));
    }
    Ok(Outcome {
        report: Report::default(),
    })
}

fn summary(args: &Args, plan: &rules::Plan, report: &Report) {
    if args.quiet {
        return;
    }
    let shown = match &plan.target {
        Endpoint::Stdio => "stdout".to_string(),
        other => other.to_string(),
    };
    to_stderr(&render::summary(report, &shown));
    if let Some(a) = &report.audit {
        to_stderr(&format!(
            "anonymize: --audit: clean: {} transformed column(s) audited in {:.2}s, nothing of the originals in the new staging\n",
            a.columns.len(),
            a.seconds
        ));
    }
}

/// Write a result to stdout; a reader that closed it (`| head`) has what it wanted.
fn to_stdout(text: &str, what: &str) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::Io {
            context: what.into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Write to stderr, ignoring a closed one (`2>&1 | head`): messages are never a reason to fail or
/// panic, and the report is still written.
pub fn to_stderr(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Render a failure for stderr: the error, then how far the run got.
pub fn render_error(e: &Error) -> String {
    let mut msg = format!("anonymize: error: {e}");
    if let Error::Pipeline(failure) = e {
        if let crate::pipeline::PipelineError::AuditFound(o) = &failure.error {
            msg = format!("{}{msg}", crate::audit::render_table(o));
        }
        let report = &failure.report;
        if !report.tables.is_empty() {
            // Enough to see how far it got; a schema of hundreds of tables would fill the screen.
            const SHOWN: usize = 10;
            let mut done: Vec<String> = report
                .tables
                .iter()
                .take(SHOWN)
                .map(|t| format!("{} ({} rows)", t.name, t.rows_written))
                .collect();
            if report.tables.len() > SHOWN {
                done.push(format!("and {} more", report.tables.len() - SHOWN));
            }
            msg.push_str(&format!(
                "\nanonymize: finished before the failure (not kept in a database or file target; \
                 rows already written to stdout stay there): {}",
                done.join(", ")
            ));
        }
    }
    msg
}
