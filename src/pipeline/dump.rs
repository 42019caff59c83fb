//! The dump driver of the executor: a reader thread cuts the dump into events and submits every
//! batch of rows at once; the writer (the calling thread) takes them in dump order and writes
//! them with the statements between them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use super::executor::{Executor, Feed, Queue, Ticket};
use super::Options;
use super::{process_batch, Batch, PipelineError, Progress, Report, RunFailure, TableStats};
use crate::buffers::BufferPool;
use crate::copy::CopyFormat;
use crate::rules::{BoundTable, TableAction};
use crate::source::dump::{DataFormat, DumpPolicy, DumpReader, Event};

/// What the reader hands the writer, in dump order.
enum Slot {
    Sql(Vec<u8>),
    /// A COPY block starts; with when the reader reached it, so a table's time runs from its first
    /// row read to its last row written (the writer reaches the block later, while the reader and
    /// workers run ahead: timing from there made a small table look infinitely fast).
    Start(usize, Vec<u8>, Instant),
    Rows {
        block: usize,
        rows: u64,
        bytes_read: u64,
        result: Ticket,
    },
    /// Rows of a skipped table: read, not written.
    Skipped {
        rows: u64,
        bytes_read: u64,
    },
    End(Vec<u8>),
    /// Something the reader removed, for the run's warnings.
    Note(crate::source::dump::Note),
    Failed(PipelineError),
}

/// Anonymize a dump stream. `tables` are the bound tables in data-block order, as the prescan
/// found them; `policy` is the rules file's for large objects and comments.
pub fn run_dump<R: Read + Send>(
    input: R,
    tables: Arc<Vec<BoundTable>>,
    out: &mut (dyn Write + Send),
    out_is_stdout: bool,
    options: &Options,
    policy: DumpPolicy,
    progress: &dyn Progress,
) -> Result<Report, Box<RunFailure>> {
    let started = Instant::now();
    let exec = match Executor::new(options, 1) {
        Ok(e) => e,
        Err(error) => {
            return Err(Box::new(RunFailure {
                error,
                report: Report::default(),
            }))
        }
    };
    let (feed, queue) = exec.queue::<Slot>();
    std::thread::scope(|scope| {
        let reader_tables = Arc::clone(&tables);
        let opts = options.clone();
        let exec = &exec;
        scope.spawn(move || read(input, reader_tables, &opts, policy, exec, feed));
        write(
            queue,
            &tables,
            out,
            out_is_stdout,
            progress,
            started,
            exec.buffers(),
        )
    })
}

fn read<R: Read>(
    input: R,
    tables: Arc<Vec<BoundTable>>,
    options: &Options,
    policy: DumpPolicy,
    exec: &Executor,
    feed: Feed<Slot>,
) {
    let mut reader = DumpReader::new(input, options.batch_rows, options.batch_bytes)
        .with_buffers(Arc::clone(exec.buffers()))
        .with_policy(policy);
    let mut rows_so_far = 0u64;
    let mut format = Arc::new(DataFormat::Copy(CopyFormat::Text));
    loop {
        let slot = match reader.next_event() {
            Err(e) => Slot::Failed(e.into()),
            Ok(None) => return,
            Ok(Some(Event::Sql(b))) => Slot::Sql(b),
            Ok(Some(Event::Note(n))) => Slot::Note(n),
            // Only a reader that observes hands these out.
            Ok(Some(Event::Object { .. })) => continue,
            Ok(Some(Event::DataStart {
                block,
                table,
                format: f,
                header,
                ..
            })) => {
                rows_so_far = 0;
                format = Arc::new(f);
                match tables.get(block) {
                    Some(t) if t.name == table => Slot::Start(block, header, Instant::now()),
                    _ => Slot::Failed(PipelineError::Changed { block }),
                }
            }
            Ok(Some(Event::DataEnd { block, text })) => {
                // A skipped INSERT run loses its statements, so its closing text goes too.
                let skipped = matches!(tables[block].action, TableAction::Skip);
                let insert = matches!(*format, DataFormat::Insert { .. });
                if skipped && insert {
                    Slot::End(Vec::new())
                } else if insert && tables[block].subset.is_some() {
                    // Under a subset every kept tuple is a whole statement: the run's last `;` goes.
                    let at = text.iter().position(|b| !b.is_ascii_whitespace());
                    match at {
                        Some(i) if text[i] == b';' => Slot::End(text[i + 1..].to_vec()),
                        _ => Slot::End(text),
                    }
                } else {
                    Slot::End(text)
                }
            }
            Ok(Some(Event::Rows {
                block,
                data,
                first_line,
                rows,
                tuples,
            })) => {
                let first_row = rows_so_far + 1;
                rows_so_far += rows;
                let bytes_read = data.len() as u64;
                let table = &tables[block];
                if matches!(table.action, TableAction::Skip) {
                    exec.buffers().give(data);
                    Slot::Skipped { rows, bytes_read }
                } else {
                    let tables = Arc::clone(&tables);
                    let format = Arc::clone(&format);
                    let result = exec.submit(&table.name, move |buffers| {
                        let batch = Batch {
                            data,
                            tuples,
                            first_line: Some(first_line),
                            first_row,
                        };
                        process_batch(&tables[block], &format, batch, buffers)
                    });
                    Slot::Rows {
                        block,
                        rows,
                        bytes_read,
                        result,
                    }
                }
            }
        };
        let failed = matches!(slot, Slot::Failed(_));
        // The writer is gone (it failed): stop reading.
        if !feed.send(slot) || failed {
            return;
        }
    }
}

fn write(
    mut queue: Queue<Slot>,
    tables: &[BoundTable],
    out: &mut (dyn Write + Send),
    stdout: bool,
    progress: &dyn Progress,
    started: Instant,
    buffers: &BufferPool,
) -> Result<Report, Box<RunFailure>> {
    let mut report = Report::default();
    // (The block's table: in a pg_dumpall file two databases can hold tables of one name.)
    let mut current: Option<(TableStats, Instant, usize)> = None;
    let mut notes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let werr = |source| PipelineError::Write { stdout, source };
    macro_rules! fail {
        ($e:expr) => {{
            report.seconds = started.elapsed().as_secs_f64();
            return Err(Box::new(RunFailure { error: $e, report }));
        }};
    }
    loop {
        let slot = match queue.take() {
            Ok(Some(slot)) => slot,
            Ok(None) => break,
            Err(e) => fail!(e),
        };
        match slot {
            Slot::Sql(b) => {
                if let Err(e) = out.write_all(&b) {
                    fail!(werr(e))
                }
            }
            Slot::Start(block, header, read_from) => {
                let t = &tables[block];
                progress.table_started(&t.name);
                current = Some((TableStats::start(t), read_from, block));
                if let Err(e) = out.write_all(&header) {
                    fail!(werr(e))
                }
            }
            Slot::Rows {
                block,
                rows,
                bytes_read,
                result,
            } => {
                let bytes = match result.wait() {
                    Ok(b) => b,
                    Err(e) => fail!(e),
                };
                if let Err(e) = out.write_all(&bytes) {
                    fail!(werr(e))
                }
                if let Some((s, _, _)) = current.as_mut() {
                    s.rows_read += rows;
                    s.rows_written += rows;
                    s.bytes_read += bytes_read;
                    s.bytes_written += bytes.len() as u64;
                    progress.rows_written(&tables[block].name, s.rows_written);
                }
                buffers.give(bytes);
            }
            Slot::Skipped { rows, bytes_read } => {
                if let Some((s, _, _)) = current.as_mut() {
                    s.rows_read += rows;
                    s.bytes_read += bytes_read;
                }
            }
            Slot::End(line) => {
                if let Err(e) = out.write_all(&line) {
                    fail!(werr(e))
                }
                if let Some((mut s, t0, block)) = current.take() {
                    s.seconds = t0.elapsed().as_secs_f64();
                    if let Some(f) = tables[block].subset.as_ref() {
                        s.rows_written = s
                            .rows_read
                            .saturating_sub(f.dropped.load(std::sync::atomic::Ordering::Relaxed));
                    }
                    s.count_branches(&tables[block]);
                    progress.table_finished(&s);
                    report.tables.push(s);
                }
            }
            Slot::Note(n) => *notes.entry(n.describe()).or_default() += 1,
            Slot::Failed(e) => fail!(e),
        }
    }
    if let Err(e) = super::finish_commands(tables.iter()) {
        fail!(e)
    }
    if let Err(e) = out.flush() {
        fail!(werr(e))
    }
    for (what, n) in notes {
        progress.warning(&format!("removed from the output: {n} × {what}"));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
