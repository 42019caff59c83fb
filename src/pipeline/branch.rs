//! Per-row choices of a batch: which alternative of each conditional rule (`when`) a row takes,
//! and the answers of external commands (`command = [...]`), which go to the command a batch at
//! a time before the batch's rows are written.

use std::borrow::Cow;
use std::cell::RefCell;

use super::RowErrorKind;
use crate::rules::{CellOp, WhenOp};
use crate::transform::condition::EvalError;
use crate::transform::{Transform, ValueError};

/// The operations a row's cells get: the table's, with each conditional rule replaced by the
/// alternative the row takes. Counts rows per alternative, added to the rule's totals when the
/// batch is done.
pub(super) struct Choices<'t> {
    eff: Vec<&'t CellOp>,
    whens: Vec<(usize, &'t WhenOp)>,
    counts: Vec<Vec<u64>>,
}

impl<'t> Choices<'t> {
    pub(super) fn new(ops: &'t [CellOp]) -> Self {
        let whens: Vec<(usize, &WhenOp)> = ops
            .iter()
            .enumerate()
            .filter_map(|(c, op)| match op {
                CellOp::When(w) => Some((c, w.as_ref())),
                _ => None,
            })
            .collect();
        let counts = whens
            .iter()
            .map(|(_, w)| vec![0; w.branches.len() + 1])
            .collect();
        Choices {
            eff: ops.iter().collect(),
            whens,
            counts,
        }
    }

    /// Whether every row gets the table's operations as they are.
    pub(super) fn is_plain(&self) -> bool {
        self.whens.is_empty()
    }

    /// The operations of the row whose original values `get` reads (errors name the column).
    /// `count`: whether this row counts toward the report (false on a first look at a batch).
    pub(super) fn row<'a>(
        &mut self,
        get: &mut dyn FnMut(usize) -> Result<Option<Cow<'a, str>>, RowErrorKind>,
        count: bool,
    ) -> Result<&[&'t CellOp], (usize, RowErrorKind)> {
        for (j, &(c, w)) in self.whens.iter().enumerate() {
            // The column a read failed on, for the message.
            let mut reading = c;
            let mut read = |p: usize| {
                reading = p;
                get(p)
            };
            let k = w.choose(&mut read).map_err(|e| match e {
                EvalError::Read(e) => (reading, e),
                EvalError::NotANumber { column } => {
                    (column, RowErrorKind::ConditionType("a number"))
                }
                EvalError::NotABoolean { column } => {
                    (column, RowErrorKind::ConditionType("a boolean"))
                }
            })?;
            self.eff[c] = w.op(k);
            if count {
                self.counts[j][k] += 1;
            }
        }
        Ok(&self.eff)
    }
}

impl Drop for Choices<'_> {
    fn drop(&mut self) {
        for ((_, w), counts) in self.whens.iter().zip(&self.counts) {
            w.count(counts);
        }
    }
}

/// Whether any alternative of any cell runs an external command.
pub(super) fn has_external(ops: &[CellOp]) -> bool {
    ops.iter().any(|op| !op.commands().is_empty())
}

/// The values one command gets from a batch: its rule, the values, and each one's (row, column).
type Group<'t> = (&'t Transform, Vec<String>, Vec<(usize, usize)>);

/// The values of one batch's external cells: collected on a first pass over the rows, sent to
/// each command as one batch, and handed out on the second pass.
pub(super) struct Externals<'t> {
    columns: usize,
    answering: bool,
    /// Per command (by rule): its rule, the values sent and the (row, column) of each.
    groups: Vec<Group<'t>>,
    answers: Vec<Option<String>>,
}

impl<'t> Externals<'t> {
    pub(super) fn new(columns: usize) -> RefCell<Self> {
        RefCell::new(Externals {
            columns,
            answering: false,
            groups: Vec::new(),
            answers: Vec::new(),
        })
    }

    /// Whether the first pass is over (the answers are in).
    pub(super) fn answering(&self) -> bool {
        self.answering
    }

    /// The value of cell (`row`, `column`) under external rule `t`, whose input is `value`. On
    /// the first pass the value is kept for the command and NULL stands in (the row is not
    /// written); on the second, the command's answer. NULL stays NULL, never sent.
    pub(super) fn cell(
        &mut self,
        row: usize,
        column: usize,
        t: &'t Transform,
        value: Option<&str>,
    ) -> Option<String> {
        let value = value?;
        if self.answering {
            return self
                .answers
                .get_mut(row * self.columns + column)
                .and_then(Option::take);
        }
        let group = match self.groups.iter().position(|(g, _, _)| std::ptr::eq(*g, t)) {
            Some(g) => g,
            None => {
                self.groups.push((t, Vec::new(), Vec::new()));
                self.groups.len() - 1
            }
        };
        self.groups[group].1.push(value.to_string());
        self.groups[group].2.push((row, column));
        None
    }

    /// Send every command its batch and keep the answers for the second pass. `rows`: the rows
    /// of the batch. A failure names the row and column of the value it is about, or of the
    /// batch's first (the command's message names no value).
    pub(super) fn run(&mut self, rows: usize) -> Result<(), (usize, usize, RowErrorKind)> {
        self.answers = vec![None; rows * self.columns];
        for (t, values, slots) in std::mem::take(&mut self.groups) {
            let Some(command) = t.external() else {
                continue;
            };
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let answers = command.run(&refs).map_err(|e| {
                let (row, column) = e
                    .value_index()
                    .and_then(|k| slots.get(k))
                    .or(slots.first())
                    .copied()
                    .unwrap_or((0, 0));
                (row, column, ValueError::Command(e.to_string()).into())
            })?;
            for (answer, (row, c)) in answers.into_iter().zip(slots) {
                let answer = t.guard(Some(answer)).map_err(|e| (row, c, e.into()))?;
                self.answers[row * self.columns + c] = answer;
            }
        }
        self.answering = true;
        Ok(())
    }
}

/// At the end of a run's rows: every external command's input closed, and a command that printed
/// lines no value asked for, or exited with a failure, fails the run (before anything commits).
pub fn finish_commands<'a>(
    tables: impl IntoIterator<Item = &'a crate::rules::BoundTable>,
) -> Result<(), super::PipelineError> {
    for t in tables {
        let crate::rules::TableAction::Copy { ops } = &t.action else {
            continue;
        };
        for (op, column) in ops.iter().zip(&t.columns) {
            for c in op.commands() {
                c.finish().map_err(|e| {
                    super::PipelineError::Command(format!("{}, column {column}: {e}", t.name))
                })?;
            }
        }
    }
    Ok(())
}
