//! Problems with the input, each with where it was written, rendered one per line. The rules
//! file's problems (`file:line:col`), the dump's refused statements (`dump line N`) and binding
//! problems (no place, or the rule's place) are all this one type, with this one renderer.

use std::fmt;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A position in a rules file (line and column from 1).
    Rules {
        file: String,
        line: usize,
        col: usize,
    },
    /// A line of the dump being read.
    Dump { line: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Rules { file, line, col } => write!(f, "{file}:{line}:{col}"),
            Location::Dump { line } => write!(f, "dump line {line}"),
        }
    }
}

/// One problem, with where it was written when that is known. The message never quotes a cell
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Option<Location>,
    pub message: String,
}

impl Diagnostic {
    /// A problem at a line of the dump.
    pub fn dump(line: u64, message: String) -> Self {
        Diagnostic {
            location: Some(Location::Dump { line }),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found, in the order found: one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Diagnostics(iter.into_iter().collect())
    }
}

impl std::ops::Deref for Diagnostics {
    type Target = [Diagnostic];
    fn deref(&self) -> &[Diagnostic] {
        &self.0
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_is_one_line_with_its_place() {
        let d = Diagnostics(vec![
            Diagnostic {
                location: Some(Location::Rules {
                    file: "r.toml".into(),
                    line: 3,
                    col: 7,
                }),
                message: "unknown key".into(),
            },
            Diagnostic::dump(12, "an INSERT".into()),
            Diagnostic {
                location: None,
                message: "no key".into(),
            },
        ]);
        assert_eq!(
            d.to_string(),
            "r.toml:3:7: unknown key\ndump line 12: an INSERT\nno key"
        );
    }
}
