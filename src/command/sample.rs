//! The first rows of every table of a source, in COPY text, for `--dry-run` and `scan`.

use crate::copy;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pipeline::{PipelineError, Report, RunFailure};
use crate::rules::{QualifiedName, SourceTable};
use crate::source::dump::{DataFormat, DumpPolicy, DumpReader, Event, ObjectKind};
use crate::source::postgres as pg;

fn failed(error: PipelineError) -> Error {
    Error::Pipeline(Box::new(RunFailure {
        error,
        report: Report::default(),
    }))
}

/// The first `n` rows of every table of a source; each table's `rows` is its row count (counted
/// in a dump, the catalog's estimate in a database). `filter` gives a table's `where`, for
/// database sources.
pub struct Sampled {
    pub tables: Vec<SourceTable>,
    /// COPY text rows per table, in `tables` order.
    pub samples: Vec<Vec<u8>>,
    /// The text of the dump's COMMENT ON and SECURITY LABEL statements (for a scan to look at), and
    /// whether it has large objects.
    pub comments: Vec<String>,
    pub large_objects: bool,
    /// A database's materialized views (rebuilt in staging, never copied).
    pub matviews: Vec<QualifiedName>,
}

pub fn sample(
    source: &Endpoint,
    n: usize,
    filter: &dyn Fn(&SourceTable) -> Option<String>,
    policy: DumpPolicy,
) -> Result<Sampled, Error> {
    if let Endpoint::Database(c) = source {
        return sample_database(c, n, filter);
    }
    let (mut input, scanned) = crate::command::open::open_and_scan(source, policy)?;
    std::io::Seek::rewind(&mut input).map_err(|source| Error::Io {
        context: "rewinding the source".into(),
        source,
    })?;
    let tables = scanned.tables;
    // The first pass counted the rows; this one only takes the first n of each table, in the
    // standard COPY text whatever the dump's format.
    let mut samples = vec![Vec::new(); tables.len()];
    let (mut comments, mut large_objects) = (Vec::new(), false);
    let mut reader = DumpReader::new(input, 4096, 1 << 20)
        .with_policy(policy)
        .observing();
    copy_text_batches(
        &mut reader,
        &tables,
        |block, text| {
            let sample = &mut samples[block];
            let have = sample.iter().filter(|b| **b == b'\n').count();
            if have < n {
                for line in text()?.split_inclusive(|b| *b == b'\n').take(n - have) {
                    sample.extend_from_slice(line);
                }
            }
            Ok(())
        },
        |event| {
            if let Event::Object { kind, text } = event {
                match kind {
                    ObjectKind::LargeObject => large_objects = true,
                    ObjectKind::Comment => {
                        comments.push(String::from_utf8_lossy(&text).into_owned())
                    }
                }
            }
        },
    )?;
    Ok(Sampled {
        tables,
        samples,
        comments,
        large_objects,
        matviews: Vec::new(),
    })
}

/// Read a dump's events to its end. Each batch of rows goes to `rows(block, text)`, where
/// `text()` turns it into the standard COPY text whatever the dump's form (INSERT tuples, CSV,
/// COPY options), only when called; every other event goes to `other`.
#[allow(clippy::type_complexity)]
pub fn copy_text_batches<R: std::io::Read>(
    reader: &mut DumpReader<R>,
    tables: &[SourceTable],
    mut rows: impl FnMut(usize, &mut dyn FnMut() -> Result<Vec<u8>, Error>) -> Result<(), Error>,
    mut other: impl FnMut(Event),
) -> Result<(), Error> {
    let mut format = DataFormat::Copy(crate::copy::CopyFormat::Text);
    while let Some(event) = reader.next_event().map_err(|e| failed(e.into()))? {
        match event {
            Event::DataStart { format: f, .. } => format = f,
            Event::Rows {
                block,
                data,
                tuples,
                first_line,
                ..
            } => {
                let Some(t) = tables.get(block) else { continue };
                let batch = crate::pipeline::Batch {
                    data,
                    tuples,
                    first_line: Some(first_line),
                    first_row: 1,
                };
                let mut text = || {
                    crate::pipeline::to_copy_text(&t.name, &format, &batch, t.columns.len())
                        .map_err(|e| failed(e.into()))
                };
                rows(block, &mut text)?;
            }
            other_event => other(other_event),
        }
    }
    Ok(())
}

fn sample_database(
    source: &crate::endpoint::ConnInfo,
    n: usize,
    filter: &dyn Fn(&SourceTable) -> Option<String>,
) -> Result<Sampled, Error> {
    let db = Error::Database;
    let runtime = crate::db::runtime(1).map_err(Error::runtime)?;
    runtime.block_on(async {
        use futures_util::StreamExt;
        let client = crate::db::connect(source).await.map_err(db)?;
        pg::begin_snapshot(&client).await.map_err(db)?;
        let catalog = pg::read_catalog(&client).await.map_err(db)?;
        let tables = catalog.source_tables();
        let mut samples = Vec::with_capacity(tables.len());
        for t in &tables {
            // A foreign table is never read: it would read another server.
            if t.foreign {
                samples.push(Vec::new());
                continue;
            }
            // A cheap sample: the first rows the server finds, never a full scan.
            let sql = pg::copy_out_sql(&t.name, &t.columns, filter(t).as_deref(), Some(n));
            let err = |e: tokio_postgres::Error| {
                db(crate::db::DbError::Query {
                    context: format!("sampling {}", t.name),
                    message: crate::db::describe(&e),
                })
            };
            let stream = client.copy_out(&sql).await.map_err(err)?;
            let mut stream = std::pin::pin!(stream);
            let mut sample = Vec::new();
            while let Some(chunk) = stream.next().await {
                sample.extend_from_slice(&chunk.map_err(err)?);
            }
            samples.push(sample);
        }
        // The comments --create-schema would carry (a dump's COMMENT ON statements).
        let comments: Vec<String> = client
            .query(
                "SELECT description FROM pg_description d \
                 WHERE d.objoid >= 16384 AND d.classoid <> 'pg_catalog.pg_extension'::regclass",
                &[],
            )
            .await
            .map_err(|e| {
                db(crate::db::DbError::Query {
                    context: "reading the source's comments".into(),
                    message: crate::db::describe(&e),
                })
            })?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Sampled {
            tables,
            samples,
            comments,
            large_objects: catalog.large_objects > 0,
            matviews: catalog.matviews.iter().map(|m| m.name.clone()).collect(),
        })
    })
}

pub fn decode_row(line: &str) -> Result<Vec<Option<String>>, Error> {
    let mut fields = Vec::new();
    copy::split(line, &mut fields);
    fields
        .iter()
        .map(|f| {
            copy::decode(f)
                .map(|v| v.map(|s| s.into_owned()))
                .map_err(|e| {
                    Error::Usage(format!(
                        "the sample has a field that cannot be decoded: {e}"
                    ))
                })
        })
        .collect()
}
