//! One way to open a dump source for every mode: a pg_dump file (plain SQL, or a custom, directory
//! or tar archive read through `pg_restore`) or stdin, made into a plain-SQL file that can be read
//! twice, and read once by the first pass that judges every statement.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::pipeline::{Report, RunFailure};
use crate::rules::{Choice, Plan};
use crate::source::dump::{prescan, DumpError, DumpPolicy, Policy, Prescan};

/// The rules file's `[policy]` for a dump reader.
pub fn dump_policy(plan: &Plan) -> DumpPolicy {
    let p = |c: Option<Choice>| match c {
        None => Policy::Undecided,
        Some(Choice::Keep) => Policy::Keep,
        Some(Choice::Drop) => Policy::Drop,
    };
    DumpPolicy {
        large_objects: p(plan.policy.large_objects),
        comments: p(plan.policy.comments),
        foreign_servers: p(plan.policy.foreign_servers),
        empty_matviews: plan.policy.empty_matviews,
    }
}

/// A first pass's failure as the run reports it: statements and policies the dump needs are
/// problems with the input as a whole (exit 2, nothing written); a broken dump is bad data (exit 1).
pub fn scan_error(e: DumpError) -> Error {
    match e {
        DumpError::Refused(refusals) => Error::Bind(refusals),
        e => Error::Pipeline(Box::new(RunFailure {
            error: e.into(),
            report: Report::default(),
        })),
    }
}

/// How a dump file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Plain,
    /// `pg_dump -Fc`
    Custom,
    /// `pg_dump -Ft`
    Tar,
    /// `pg_dump -Fd`: a directory with `toc.dat`.
    Directory,
    Gzip,
}

/// What the first bytes (or the path) say the dump is.
pub fn container(path: Option<&Path>, head: &[u8]) -> Container {
    if path.is_some_and(|p| p.is_dir()) {
        return Container::Directory;
    }
    if head.starts_with(b"PGDMP") {
        Container::Custom
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Container::Tar
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Container::Gzip
    } else {
        Container::Plain
    }
}

/// Open the dump as plain SQL (spooling stdin, and converting archives through `pg_restore`), and
/// read it with a first pass.
pub fn open_and_scan(source: &Endpoint, policy: DumpPolicy) -> Result<(File, Prescan), Error> {
    let path = match source {
        Endpoint::Stdio => "-".to_string(),
        Endpoint::File(p) => p.display().to_string(),
        Endpoint::Database(c) => {
            return Err(Error::Usage(format!("{c} is a database, not a dump")))
        }
    };
    let mut input = open_plain(&path)?;
    rewind(&mut input)?;
    let scanned = prescan(&mut input, policy).map_err(scan_error)?;
    Ok((input, scanned))
}

/// The dump as a plain-SQL file that can be read twice.
fn open_plain(path: &str) -> Result<File, Error> {
    let spool = || {
        tempfile::tempfile().map_err(|source| Error::Io {
            context: "creating a temporary file to hold the input".into(),
            source,
        })
    };
    // The rules are bound before anything is written, so the input is read twice: stdin is spooled
    // to an unnamed temporary file first (removed by the OS when the run ends).
    let (mut file, dir) = if path == "-" {
        let mut f = spool()?;
        io::copy(&mut io::stdin().lock(), &mut f).map_err(|source| Error::Io {
            context: "reading stdin".into(),
            source,
        })?;
        (f, None)
    } else if Path::new(path).is_dir() {
        (spool()?, Some(Path::new(path)))
    } else {
        let f = File::open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                Error::Usage(format!(
                    "the source {path} does not exist (a database is postgres://… or host=… \
                     dbname=…; a dump is a file, or - for stdin)"
                ))
            } else {
                Error::Io {
                    context: format!("opening the source dump {path}"),
                    source,
                }
            }
        })?;
        (f, None)
    };
    let mut head = Vec::with_capacity(512);
    if dir.is_none() {
        rewind(&mut file)?;
        (&mut file)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|source| Error::Io {
                context: format!("reading the source dump {path}"),
                source,
            })?;
        rewind(&mut file)?;
    }
    match container(dir, &head) {
        Container::Plain => Ok(file),
        Container::Gzip => Err(Error::Usage(format!(
            "{path} is compressed (gzip): decompress it first, e.g. `gunzip -c {path} | anonymize … --source -`"
        ))),
        kind => {
            log::info!("{path} is a pg_dump archive ({kind:?}): reading it through pg_restore");
            let mut out = spool()?;
            restore(path, dir, file, &mut out)?;
            Ok(out)
        }
    }
}

/// `pg_restore -f -` of an archive (a directory by its path, a file through stdin) into `out`.
fn restore(path: &str, dir: Option<&Path>, file: File, out: &mut File) -> Result<(), Error> {
    let mut cmd = std::process::Command::new("pg_restore");
    cmd.args(["--file", "-"]);
    match dir {
        Some(d) => {
            cmd.arg(d).stdin(std::process::Stdio::null());
        }
        None => {
            cmd.stdin(file);
        }
    }
    let target = out.try_clone().map_err(|source| Error::Io {
        context: "opening the spool for pg_restore".into(),
        source,
    })?;
    let result = cmd
        .stdout(target)
        .stderr(std::process::Stdio::piped())
        .output();
    let o = match result {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "{path} is a pg_dump archive, read through pg_restore, which is not installed or \
                 not on PATH (it comes with the PostgreSQL client, e.g. the postgresql-client \
                 package); or give a plain-SQL dump (pg_dump -Fp)"
            )))
        }
        Err(source) => {
            return Err(Error::Io {
                context: "running pg_restore".into(),
                source,
            })
        }
    };
    if !o.status.success() {
        let msg = String::from_utf8_lossy(&o.stderr);
        return Err(Error::Usage(format!(
            "pg_restore could not read {path}: {}",
            msg.trim()
        )));
    }
    Ok(())
}

pub fn rewind(f: &mut File) -> Result<(), Error> {
    f.rewind().map_err(|source| Error::Io {
        context: "rewinding the source".into(),
        source,
    })
}
