//! The ordered-batch executor every run mode uses: the rayon pool that transforms batches, the
//! buffers they go round in, the bounded queue that keeps them in input order, interrupt checks,
//! and panic capture.
//!
//! A reader (a dump reader thread, or a task reading a table from the source) submits each batch
//! and puts the [`Ticket`] it gets into a [`Feed`] in input order; the writer takes tickets from
//! the [`Queue`] in that order and waits for each. The queue's bound caps the batches in flight,
//! so memory stays flat whatever the input size and the slowest stage sets the pace.
//!
//! Dumps drive it from std threads (`send`/`next`/`wait`, blocking), databases from tokio tasks
//! (`send_async`/`next_async`/`done`): one channel and one result slot type, usable from both, so
//! the two drivers differ only in how they read and write, never in how batches are ordered,
//! bounded or guarded.

use std::sync::Arc;

use super::{Options, PipelineError, RowError};
use crate::buffers::BufferPool;
use crate::rules::QualifiedName;

/// What a batch's work yields: its output bytes.
pub type BatchResult = Result<Vec<u8>, PipelineError>;

/// The transform pool and the buffers of one run.
pub struct Executor {
    pool: rayon::ThreadPool,
    buffers: Arc<BufferPool>,
    depth: usize,
}

impl Executor {
    /// An executor with `options.jobs` transform threads, for `feeds` readers submitting at once.
    pub fn new(options: &Options, feeds: usize) -> Result<Self, PipelineError> {
        let jobs = options.jobs.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .thread_name(|i| format!("anonymize-{i}"))
            .build()
            .map_err(PipelineError::Start)?;
        // Enough queued batches to keep every worker busy with one more behind it.
        let depth = jobs * 4;
        // Every queued batch holds an input and an output buffer; a worker may hold one more of
        // each. Buffers are kept at most this many, of at most four batches' size.
        let keep = 2 * feeds.max(1) * (depth + jobs) + 2;
        Ok(Executor {
            pool,
            buffers: Arc::new(BufferPool::new(keep, 4 * options.batch_bytes + (1 << 20))),
            depth,
        })
    }

    /// The buffers batches are read into and written from.
    pub fn buffers(&self) -> &Arc<BufferPool> {
        &self.buffers
    }

    /// A bounded queue for one reader's tickets (and whatever else it hands the writer in order).
    pub fn queue<T>(&self) -> (Feed<T>, Queue<T>) {
        let (tx, rx) = tokio::sync::mpsc::channel(self.depth);
        (Feed(tx), Queue(rx))
    }

    /// Start `work` on a transform thread. A panic in it becomes
    /// [`PipelineError::WorkerPanicked`] naming the table (the run then fails like any other, with
    /// its report and no temporary file), never an abort of the process.
    pub fn submit<F>(&self, table: &QualifiedName, work: F) -> Ticket
    where
        F: FnOnce(&BufferPool) -> Result<Vec<u8>, Box<RowError>> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let buffers = Arc::clone(&self.buffers);
        let name = table.clone();
        self.pool.spawn(move || {
            let work = || {
                debug_fault(&name);
                work(&buffers)
            };
            let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                Ok(r) => r.map_err(PipelineError::from),
                Err(_) => Err(PipelineError::WorkerPanicked { table: name }),
            };
            let _ = done.send(r);
        });
        Ticket {
            table: table.clone(),
            result,
        }
    }
}

/// A submitted batch's result, to be taken in input order.
pub struct Ticket {
    table: QualifiedName,
    result: tokio::sync::oneshot::Receiver<BatchResult>,
}

impl Ticket {
    /// Wait for the batch on a plain thread.
    pub fn wait(self) -> BatchResult {
        let table = self.table;
        self.result
            .blocking_recv()
            .unwrap_or(Err(PipelineError::WorkerPanicked { table }))
    }

    /// Wait for the batch in a task.
    pub async fn done(self) -> BatchResult {
        let table = self.table;
        // A worker always sends (a panic is caught and sent as an error); a lost sender is a
        // worker gone all the same.
        self.result
            .await
            .unwrap_or(Err(PipelineError::WorkerPanicked { table }))
    }
}

/// The reader's end of a queue. Sending fails only when the writer has stopped (on an error of
/// its own, which it reports).
pub struct Feed<T>(tokio::sync::mpsc::Sender<T>);

impl<T> Feed<T> {
    /// Send on a plain thread, waiting while the queue is full. False when the writer is gone.
    pub fn send(&self, item: T) -> bool {
        self.0.blocking_send(item).is_ok()
    }

    /// Send in a task, waiting while the queue is full. False when the writer is gone.
    pub async fn send_async(&self, item: T) -> bool {
        self.0.send(item).await.is_ok()
    }
}

/// The writer's end of a queue: items in the order they were sent. Every take checks for an
/// interrupt first, so a signal stops the writer at the next batch.
pub struct Queue<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> Queue<T> {
    /// The next item on a plain thread; `None` when the reader is done.
    pub fn take(&mut self) -> Result<Option<T>, PipelineError> {
        interrupted()?;
        Ok(self.0.blocking_recv())
    }

    /// The next item in a task; `None` when the reader is done.
    pub async fn take_async(&mut self) -> Result<Option<T>, PipelineError> {
        interrupted()?;
        Ok(self.0.recv().await)
    }
}

/// Stop when SIGINT or SIGTERM arrived.
pub fn interrupted() -> Result<(), PipelineError> {
    match crate::interrupt::requested() {
        Some(signal) => Err(PipelineError::Interrupted(signal)),
        None => Ok(()),
    }
}

/// Debug builds only (the test suite's): `ANONYMIZE_DEBUG_PANIC_TABLE=name` makes the transform of
/// that table panic, to test that a panic fails the run cleanly. Release builds have no such hook.
fn debug_fault(table: &QualifiedName) {
    #[cfg(debug_assertions)]
    if std::env::var("ANONYMIZE_DEBUG_PANIC_TABLE").is_ok_and(|t| t == table.name) {
        panic!("ANONYMIZE_DEBUG_PANIC_TABLE: a transform panicked on purpose");
    }
    #[cfg(not(debug_assertions))]
    let _ = table;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> QualifiedName {
        QualifiedName {
            schema: "public".into(),
            name: "t".into(),
        }
    }

    #[test]
    fn results_come_back_in_submission_order_and_a_panic_is_an_error() {
        let exec = Executor::new(
            &Options {
                jobs: 2,
                ..Options::default()
            },
            1,
        )
        .unwrap();
        let (feed, mut queue) = exec.queue::<Ticket>();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..20u8 {
                    let t = exec.submit(&name(), move |_| {
                        // Later batches finish first.
                        std::thread::sleep(std::time::Duration::from_millis(20 - i as u64));
                        if i == 13 {
                            panic!("boom");
                        }
                        Ok(vec![i])
                    });
                    assert!(feed.send(t));
                }
                drop(feed);
            });
            let mut got = Vec::new();
            while let Some(t) = queue.take().unwrap() {
                got.push(t.wait());
            }
            assert_eq!(got.len(), 20);
            for (i, r) in got.into_iter().enumerate() {
                match r {
                    Ok(b) => assert_eq!(b, vec![i as u8]),
                    Err(PipelineError::WorkerPanicked { table }) => {
                        assert_eq!((i, table), (13, name()))
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
}
