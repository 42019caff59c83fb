//! The rules file: parsing with locations, validation, and binding to a source schema.
//!
//! Phases, each collecting every problem before stopping: parse (TOML and unknown keys, with
//! file:line:col) → build (meaning of each rule, no database; yields a [`Plan`] of built transforms)
//! → bind (against the tables and columns the source really has: coverage, unknown names). Nothing in
//! this module reads data or opens a target.

pub mod bind;
mod build;
pub mod config;
mod interp;
pub mod keys;

use std::collections::BTreeMap;
use std::path::Path;

pub use crate::diagnostic::{Diagnostic, Diagnostics, Location};
pub use crate::schema::{quote_ident, split_identifiers, QualifiedName};
pub use bind::{
    bind, BoundTable, Branch, CellOp, ColumnMeta, SourceTable, TableAction, TypeKind, WhenOp,
};
pub use build::{
    BranchPlan, Choice, ColumnOp, ColumnPlan, ObjectPolicy, Plan, Strategy, TablePlan, Uncovered,
};

/// Why the rules could not be used. Rendered one problem per line.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A rules file's text with its line index, to turn byte offsets into line:col.
pub struct SourceText {
    pub file: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceText {
    pub fn new(file: &str, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceText {
            file: file.to_string(),
            text,
            line_starts,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn location(&self, offset: usize) -> Location {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        Location::Rules {
            file: self.file.clone(),
            line,
            col,
        }
    }
}

/// Values that the command line puts over the rules file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub source: Option<String>,
    pub target: Option<String>,
    /// Validation only (`anonymize check`): an unset key is not an error, since no value is produced.
    pub key_optional: bool,
}

/// Read, parse and build a rules file. `env` looks up environment variables (the secret key and
/// `${VAR}` interpolation); the CLI passes the process environment, tests pass a map.
pub fn load(
    path: &Path,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), text, overrides, env)
}

/// Parse and build rules from text; `file` names it in messages.
pub fn parse(
    file: &str,
    text: String,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, RulesError> {
    let src = SourceText::new(file, text);
    let parsed: config::RulesFile = match toml::from_str(src.text()) {
        Ok(p) => p,
        Err(e) => {
            return Err(RulesError::Invalid(Diagnostics(vec![Diagnostic {
                location: e.span().map(|s| src.location(s.start)),
                message: improve_message(e.message()),
            }])))
        }
    };
    build::build(&src, parsed, overrides, env).map_err(|d| RulesError::Invalid(Diagnostics(d)))
}

/// Add a "did you mean" to serde's unknown-field and unknown-variant messages.
fn improve_message(msg: &str) -> String {
    let msg = msg.trim_end();
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match suggest(field, &candidates) {
        Some(s) => format!(
            "unknown key `{field}` (did you mean `{s}`?); expected one of {}",
            list(&candidates)
        ),
        None => format!(
            "unknown key `{field}`; expected one of {}",
            list(&candidates)
        ),
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate to a misspelled name, if it is close enough to be what was meant.
pub fn suggest<'a>(wrong: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let wrong_lc = wrong.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&wrong_lc, &c.to_lowercase()), *c))
        .filter(|(d, c)| {
            let len = c.chars().count().max(wrong.chars().count());
            *d <= match len {
                0..=3 => 1,
                4..=8 => 2,
                _ => 3,
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Tables of a plan by name, for lookups during binding.
pub type TableMap = BTreeMap<QualifiedName, TablePlan>;

#[cfg(test)]
mod tests;
