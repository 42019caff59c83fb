//! The database driver of the executor: a task per source session streams a table's COPY rows,
//! cuts them into batches at row ends and submits each; the loader takes them in order and sends
//! them to staging's COPY (or a dump file).

use std::io::Write;
use std::sync::Arc;

use super::executor::{Executor, Feed, Queue, Ticket};
use super::{process_rows, Options, PipelineError, Progress};
use crate::rules::{BoundTable, QualifiedName};

/// Where one table's anonymized rows go in a database refresh.
pub enum TableOut<'a> {
    /// COPY FROM STDIN into staging: closing the sink ends the COPY.
    Copy(
        std::pin::Pin<
            &'a mut (dyn futures_util::Sink<bytes::Bytes, Error = crate::db::DbError> + Send),
        >,
    ),
    /// A dump file, or stdout when the flag is set.
    Write(&'a mut (dyn Write + Send), bool),
}

/// The transformed batches of one table, in order: each item is (rows, the batch's ticket).
pub type Batches = Queue<(u64, Ticket)>;
pub type BatchSender = Feed<(u64, Ticket)>;

/// Stream one table out of a database source and hand its rows to the rayon pool in batches, in
/// order, through `tx`. Returns (rows, bytes read).
pub async fn read_table(
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, crate::db::DbError>>,
    table: Arc<BoundTable>,
    exec: &Executor,
    options: &Options,
    tx: BatchSender,
    bytes_read_total: &std::sync::atomic::AtomicU64,
) -> Result<u64, PipelineError> {
    use futures_util::StreamExt;

    let mut stream = std::pin::pin!(stream);
    // Input batches go round; the output goes to the staging connection as it is.
    let buffers = exec.buffers();
    let spawn = |data: Vec<u8>, rows: u64, first_row: u64| {
        let t = Arc::clone(&table);
        let ticket = exec.submit(&table.name, move |buffers| {
            process_rows(&t, data, None, first_row, buffers)
        });
        (rows, ticket)
    };
    let capacity = options.batch_bytes + 64 * 1024;
    let mut batch: Vec<u8> = buffers.take(capacity);
    let (mut rows, mut total) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes_read_total.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        rows += memchr::memchr_iter(b'\n', &chunk).count() as u64;
        batch.extend_from_slice(&chunk);
        // The server sends one row per message; cut only at a row's end all the same.
        if (rows >= options.batch_rows || batch.len() >= options.batch_bytes)
            && batch.ends_with(b"\n")
        {
            let full = std::mem::replace(&mut batch, buffers.take(capacity));
            let slot = spawn(full, rows, total + 1);
            total += rows;
            rows = 0;
            if !tx.send_async(slot).await {
                // The loader stopped on an error of its own; it reports it.
                return Ok(total);
            }
        }
    }
    if !batch.is_empty() {
        let slot = spawn(batch, rows, total + 1);
        total += rows;
        let _ = tx.send_async(slot).await;
    }
    Ok(total)
}

/// Write one table's batches to `out` in order as they are finished. Returns (rows, bytes written).
pub async fn load_table(
    table: &QualifiedName,
    mut batches: Batches,
    mut out: TableOut<'_>,
    progress: &dyn Progress,
) -> Result<(u64, u64), PipelineError> {
    use futures_util::SinkExt;

    let (mut written, mut bytes_written) = (0u64, 0u64);
    while let Some((rows, ticket)) = batches.take_async().await? {
        let bytes = ticket.done().await?;
        bytes_written += bytes.len() as u64;
        match &mut out {
            TableOut::Copy(sink) => sink.send(bytes::Bytes::from(bytes)).await?,
            TableOut::Write(w, stdout) => {
                w.write_all(&bytes).map_err(|source| PipelineError::Write {
                    stdout: *stdout,
                    source,
                })?
            }
        }
        written += rows;
        progress.rows_written(table, written);
    }
    if let TableOut::Copy(mut sink) = out {
        sink.close().await?;
    }
    Ok((written, bytes_written))
}
