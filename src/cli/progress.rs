//! What the operator sees while a run moves data: bars in a terminal, plain lines in a log file,
//! nothing but errors with `--quiet`. Also the `-v`/`-vv` logger, which prints through the bars so
//! they are not torn.
//!
//! Nothing here ever sees a cell value: the core reports table names, counts and its own messages.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::render::{rate, shown_rate};
use crate::pipeline::{PlannedTable, Progress, TableStats};
use crate::rules::QualifiedName;

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, plain log lines otherwise.
    Auto,
    /// Bars even when stderr is not a terminal.
    Always,
    /// Plain log lines only.
    Never,
}

enum Display {
    Bars(MultiProgress),
    Lines,
    Quiet,
}

/// A table being copied.
struct Active {
    name: QualifiedName,
    expected: Option<u64>,
    rows: u64,
    bar: Option<ProgressBar>,
}

#[derive(Default)]
struct State {
    expected: HashMap<QualifiedName, Option<u64>>,
    tables_total: usize,
    tables_done: usize,
    /// Rows written by every table so far, finished or not.
    rows: u64,
    active: Vec<Active>,
    overall: Option<ProgressBar>,
    started: Option<Instant>,
    /// (when, rows) at the last periodic line.
    last_tick: Option<(Instant, u64)>,
    /// What the run is doing when it is not copying a table.
    phase: Option<String>,
}

/// The run's progress display; also keeps the warnings for the report.
pub struct Reporter {
    display: Display,
    /// When the reporter was made: the clock of periodic lines before the copy starts.
    created: Instant,
    state: Mutex<State>,
    warnings: Mutex<Vec<String>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", s.per_sec());
            },
        )
        .progress_chars("=> ")
}

const TABLE_BAR: &str =
    "  {prefix:32!} [{bar:24}] {human_pos:>9}/{human_len} rows {rate:>13} ETA {eta:>4}";
const TABLE_SPINNER: &str = "  {prefix:32!} {spinner} {human_pos:>9} rows {rate:>13}";
const OVERALL_BAR: &str =
    "{elapsed_precise} [{bar:34}] {human_pos:>9}/{human_len} rows {rate:>13} ETA {eta:>4}  {msg}";
const OVERALL_SPINNER: &str = "{elapsed_precise} {spinner} {human_pos:>9} rows {rate:>13}  {msg}";

/// A bar of `expected` rows, or a spinner when the count is unknown.
fn new_bar(expected: Option<u64>, bar: &str, spinner: &str) -> ProgressBar {
    match expected {
        Some(n) => ProgressBar::new(n).with_style(style(bar)),
        None => ProgressBar::new_spinner().with_style(style(spinner)),
    }
}

/// Move a bar to `rows`; an estimate can be short of the truth, so the bar grows, not overflows.
fn advance(bar: &ProgressBar, rows: u64) {
    if bar.length().is_some_and(|len| rows > len) {
        bar.set_length(rows);
    }
    bar.set_position(rows);
}

/// ` (N rows expected)` when the count is known.
fn expected_note(expected: Option<u64>) -> String {
    expected.map_or_else(String::new, |n| format!(" ({n} rows expected)"))
}

/// The line a finished table collapses to.
pub fn finished_line(s: &TableStats) -> String {
    if s.skipped {
        return format!("anonymize: {}: skipped (skip = true)", s.name);
    }
    format!(
        "anonymize: {}: {} rows in {:.2}s ({} rows/s)",
        s.name,
        s.rows_written,
        s.seconds,
        shown_rate(s.rows_written, s.seconds)
    )
}

impl Reporter {
    /// `quiet` wins over the mode. Bars need a terminal in `auto` mode (and `TERM` not `dumb`).
    pub fn new(mode: ProgressMode, quiet: bool) -> Self {
        let display = if quiet {
            Display::Quiet
        } else {
            match mode {
                ProgressMode::Never => Display::Lines,
                ProgressMode::Auto => {
                    let target = ProgressDrawTarget::stderr_with_hz(10);
                    if io::stderr().is_terminal() && !target.is_hidden() {
                        Display::Bars(MultiProgress::with_draw_target(target))
                    } else {
                        Display::Lines
                    }
                }
                ProgressMode::Always => {
                    Display::Bars(MultiProgress::with_draw_target(
                        // Term itself would hide the bars when stderr is not a terminal.
                        ProgressDrawTarget::term_like_with_hz(
                            Box::new(console::Term::buffered_stderr()),
                            10,
                        ),
                    ))
                }
            }
        };
        Reporter {
            display,
            created: Instant::now(),
            state: Mutex::new(State::default()),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Whether this display wants a periodic [`Reporter::tick`].
    pub fn wants_ticks(&self) -> bool {
        matches!(self.display, Display::Lines)
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().expect("warnings lock").clone()
    }

    /// A logger that prints through this display.
    pub fn logger(&self, level: log::LevelFilter) -> Logger {
        Logger {
            level,
            multi: match &self.display {
                Display::Bars(m) => Some(m.clone()),
                _ => None,
            },
        }
    }

    /// Print one line above the bars, or plainly.
    fn line(&self, text: &str) {
        match &self.display {
            Display::Bars(m) => {
                let _ = m.println(text);
            }
            Display::Lines => {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
            Display::Quiet => {}
        }
    }

    /// The periodic line of a log: rows so far, the recent rate, tables done and in progress.
    pub fn tick(&self) {
        let mut st = self.state.lock().expect("progress lock");
        let now = Instant::now();
        let started = st.started.unwrap_or(self.created);
        let (since, rows_then) = st.last_tick.unwrap_or((started, 0));
        let recent = rate(st.rows - rows_then, (now - since).as_secs_f64());
        st.last_tick = Some((now, st.rows));
        let copying: Vec<String> = st
            .active
            .iter()
            .map(|a| match a.expected {
                Some(n) => format!("{} ({}/{} rows)", a.name, a.rows, n),
                None => format!("{} ({} rows)", a.name, a.rows),
            })
            .collect();
        let mut text = format!(
            "anonymize: progress: {} rows in {:.0}s ({:.0} rows/s), {}/{} tables done",
            st.rows,
            (now - started).as_secs_f64(),
            recent,
            st.tables_done,
            st.tables_total
        );
        if !copying.is_empty() {
            text.push_str(&format!("; copying {}", copying.join(", ")));
        } else if let Some(p) = &st.phase {
            text.push_str(&format!("; {p}"));
        }
        drop(st);
        self.line(&text);
    }

    /// Take the bars off the screen (before the summary or an error is printed).
    pub fn finish(&self) {
        let mut st = self.state.lock().expect("progress lock");
        for a in st.active.drain(..) {
            if let Some(bar) = a.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(bar) = st.overall.take() {
            bar.finish_and_clear();
        }
        if let Display::Bars(m) = &self.display {
            let _ = m.clear();
        }
    }
}

impl Progress for Reporter {
    fn warning(&self, message: &str) {
        self.warnings
            .lock()
            .expect("warnings lock")
            .push(message.to_string());
        self.line(&format!("anonymize: warning: {message}"));
    }

    fn run_started(&self, tables: &[PlannedTable]) {
        let mut st = self.state.lock().expect("progress lock");
        st.started = Some(Instant::now());
        st.tables_total = tables.len();
        st.expected = tables.iter().map(|t| (t.name.clone(), t.rows)).collect();
        // The overall length is known when every copied table's is.
        let total: Option<u64> = tables.iter().filter(|t| !t.skipped).map(|t| t.rows).sum();
        match &self.display {
            Display::Bars(m) => {
                let bar = m.add(new_bar(total, OVERALL_BAR, OVERALL_SPINNER));
                bar.set_message(format!("0/{} tables", tables.len()));
                bar.enable_steady_tick(Duration::from_millis(250));
                st.overall = Some(bar);
            }
            Display::Lines => {
                drop(st);
                self.line(&format!(
                    "anonymize: copying {} tables{}",
                    tables.len(),
                    expected_note(total)
                ));
            }
            Display::Quiet => {}
        }
    }

    fn table_started(&self, table: &QualifiedName) {
        let mut st = self.state.lock().expect("progress lock");
        let expected = st.expected.get(table).copied().flatten();
        let bar = match &self.display {
            Display::Bars(m) => {
                let bar = new_bar(expected, TABLE_BAR, TABLE_SPINNER);
                let bar = match &st.overall {
                    Some(overall) => m.insert_before(overall, bar),
                    None => m.add(bar),
                };
                bar.set_prefix(table.to_string());
                bar.enable_steady_tick(Duration::from_millis(250));
                Some(bar)
            }
            _ => None,
        };
        st.phase = None;
        st.active.push(Active {
            name: table.clone(),
            expected,
            rows: 0,
            bar,
        });
        drop(st);
        if matches!(self.display, Display::Lines) {
            self.line(&format!(
                "anonymize: {table}: started{}",
                expected_note(expected)
            ));
        }
    }

    fn rows_written(&self, table: &QualifiedName, rows: u64) {
        let mut st = self.state.lock().expect("progress lock");
        let Some(a) = st.active.iter_mut().find(|a| &a.name == table) else {
            return;
        };
        let delta = rows.saturating_sub(a.rows);
        a.rows = rows;
        if let Some(bar) = &a.bar {
            advance(bar, rows);
        }
        st.rows += delta;
        if let Some(overall) = &st.overall {
            advance(overall, st.rows);
        }
    }

    fn table_finished(&self, stats: &TableStats) {
        let mut st = self.state.lock().expect("progress lock");
        if let Some(i) = st.active.iter().position(|a| a.name == stats.name) {
            let a = st.active.remove(i);
            if let Some(bar) = a.bar {
                bar.finish_and_clear();
            }
        }
        st.tables_done += 1;
        if let Some(overall) = &st.overall {
            overall.set_message(format!("{}/{} tables", st.tables_done, st.tables_total));
        }
        drop(st);
        self.line(&finished_line(stats));
    }

    fn phase(&self, what: &str) {
        let mut st = self.state.lock().expect("progress lock");
        st.phase = Some(what.to_string());
        if st.started.is_none() {
            // Before the copy starts (first pass, catalog) the rules may still fail: only the
            // periodic line names the step, so a validation error stays the only output.
            return;
        }
        if let Some(overall) = &st.overall {
            overall.set_message(format!(
                "{}/{} tables; {what}",
                st.tables_done, st.tables_total
            ));
            return;
        }
        drop(st);
        self.line(&format!("anonymize: {what}"));
    }
}

/// The `-v`/`-vv` logger: this crate's records only (tokio-postgres logs statements and
/// parameters at debug level, which must never reach a log), printed above the bars.
pub struct Logger {
    level: log::LevelFilter,
    multi: Option<MultiProgress>,
}

impl Logger {
    /// Install as the process logger; a second install (tests) keeps the first.
    pub fn install(self) {
        let level = self.level;
        if log::set_boxed_logger(Box::new(self)).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
            && (metadata.target() == "anonymize" || metadata.target().starts_with("anonymize::"))
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Warn => "warning".to_string(),
            l => l.as_str().to_ascii_lowercase(),
        };
        let text = format!("anonymize: {level}: {}", record.args());
        match &self.multi {
            // A closed stderr is not a reason to stop the run (nor to panic).
            Some(m) => m.suspend(|| {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }),
            None => {
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
        }
    }

    fn flush(&self) {}
}

/// Calls `tick` on a reporter every `interval` until dropped.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(reporter: Arc<Reporter>, interval: Duration) -> Self {
        if !reporter.wants_ticks() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(interval)
            {
                reporter.tick();
            }
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
