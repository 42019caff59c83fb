//! Error types of a run and the exit codes they map to. Only `main` exits; this only classifies.

use crate::diagnostic::Diagnostics;
use crate::pipeline::{PipelineError, RunFailure};
use crate::rules::RulesError;

/// Exit codes, documented in the README and `--help`.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// A runtime failure: bad data, I/O, a connection.
    pub const RUNTIME: i32 = 1;
    /// Usage, invalid rules, uncovered columns: nothing was written.
    pub const INVALID: i32 = 2;
    /// `audit` (or a refresh with `--audit`) found original data in staging.
    pub const FOUND: i32 = 3;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("{0}")]
    Bind(Diagnostics),
    /// A database connection or statement failed before any data moved.
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The leak audit found something (its report says what; never a value).
    #[error("{0}")]
    Found(String),
    /// A run that failed while moving data, with what it had finished.
    #[error("{}", .0.error)]
    Pipeline(Box<RunFailure>),
}

impl Error {
    /// The async runtime could not start.
    pub fn runtime(source: std::io::Error) -> Error {
        Error::Io {
            context: "starting the async runtime".into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Rules(_) | Error::Bind(_) => exit::INVALID,
            Error::Found(_) => exit::FOUND,
            Error::Pipeline(f) => match f.error {
                // The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
                PipelineError::Interrupted(signal) => 128 + signal,
                PipelineError::AuditFound(_) => exit::FOUND,
                _ => exit::RUNTIME,
            },
            Error::Io { .. } | Error::Database(_) => exit::RUNTIME,
        }
    }

    /// Whether this is stdout closed by its reader (`| head`): a quiet success, not a failure.
    pub fn is_closed_stdout(&self) -> bool {
        matches!(self, Error::Pipeline(f) if matches!(&f.error,
            PipelineError::Write { stdout: true, source } if source.kind() == std::io::ErrorKind::BrokenPipe))
    }
}
