//! Where statements end, as psql decides it: at a `;` outside quotes, comments and parentheses (and
//! outside a `BEGIN ATOMIC … END` function body), or at the end of the line of a backslash
//! meta-command that starts a statement. Resumable: bytes can be added to the buffer between calls,
//! so a streaming reader finds the end of a statement of any size without reading it twice.

use super::lexer::{self, Kind, Stop, Token};

/// What the splitter found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A statement ends here (after its `;`, or at the end of the input for a last statement
    /// without one). `content` is where its first token after leading space and comments starts.
    Statement {
        content: usize,
        end: usize,
    },
    /// A meta-command line (`\connect db`) from `content` to `end` (after its newline).
    Meta {
        content: usize,
        end: usize,
    },
    /// A parenthesis at the top level of the statement opened (`Open`) or closed (`Close`) here:
    /// reported only when asked for (a reader follows the tuples of an INSERT).
    Open {
        at: usize,
    },
    Close {
        end: usize,
    },
    /// Only space and comments remain until the end of the input.
    End,
}

/// Why the input cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// The input ends inside a quote or comment that is never closed.
    Unterminated(Kind),
    /// A `)` without its `(`.
    UnbalancedParen,
}

/// A statement splitter over a growing buffer. `pos` is the next byte to read; the buffer may be
/// compacted by the caller with [`Splitter::shift`].
#[derive(Debug, Clone)]
pub struct Splitter {
    pub pos: usize,
    /// `standard_conforming_strings`, as the input set it.
    pub scs: bool,
    content: Option<usize>,
    depth: u32,
    /// Set to have top-level parentheses reported (see [`Found::Open`]).
    pub report_parens: bool,
    /// The first words of the statement (lower-cased initials), for psql's `BEGIN ATOMIC` rule.
    initials: [u8; 4],
    words: usize,
    begin_depth: u32,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter::new(true)
    }
}

impl Splitter {
    pub fn new(scs: bool) -> Self {
        Splitter {
            pos: 0,
            scs,
            content: None,
            depth: 0,
            report_parens: false,
            initials: [0; 4],
            words: 0,
            begin_depth: 0,
        }
    }

    /// The buffer lost its first `n` bytes (at most up to `pos`): move every position back. A
    /// statement whose start went with them reports it as 0 (a reader that follows a long INSERT's
    /// tuples lets them go).
    pub fn shift(&mut self, n: usize) {
        // While a reader reads COPY data the splitter rests behind it (see `skip_to`).
        self.pos = self.pos.saturating_sub(n);
        if let Some(c) = self.content.as_mut() {
            *c = c.saturating_sub(n);
        }
    }

    /// The caller read a statement's beginning itself (it starts at `content`, and a top-level
    /// parenthesis opens at `at`): go on as if it had been read here and `Open` reported.
    pub fn enter_group(&mut self, content: usize, at: usize) {
        debug_assert!(self.content.is_none());
        self.content = Some(content);
        self.depth = 1;
        self.pos = at + 1;
        self.words = self.initials.len();
    }

    /// The top-level parenthesis reported by [`Found::Open`] closes at `end` (read by the caller,
    /// who knows what is inside): go on after it.
    pub fn close_group(&mut self, end: usize) {
        debug_assert!(self.depth == 1);
        self.depth = 0;
        self.pos = end;
    }

    /// Go on reading at `pos` (the bytes before it were read as something else: COPY data).
    pub fn skip_to(&mut self, pos: usize) {
        debug_assert!(self.content.is_none());
        self.pos = pos;
    }

    /// Where the current statement's first token starts, once one was read.
    pub fn content(&self) -> Option<usize> {
        self.content
    }

    fn reset(&mut self) {
        self.content = None;
        self.depth = 0;
        self.report_parens = false;
        self.initials = [0; 4];
        self.words = 0;
        self.begin_depth = 0;
    }

    /// Read on from `pos`. `Ok(None)`: the buffer ends before anything was found (unless `eof`,
    /// which always finds something).
    pub fn next(&mut self, buf: &[u8], eof: bool) -> Result<Option<Found>, SplitError> {
        loop {
            let t = match lexer::next(buf, self.pos, self.scs, eof) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return Ok(Some(match self.content.take() {
                        Some(content) => {
                            self.reset();
                            Found::Statement {
                                content,
                                end: buf.len(),
                            }
                        }
                        None => Found::End,
                    }))
                }
                Err(Stop::Incomplete) => return Ok(None),
                Err(Stop::Unterminated(k)) => return Err(SplitError::Unterminated(k)),
            };
            self.pos = t.end;
            if !lexer::significant(&t) {
                continue;
            }
            if self.content.is_none() {
                self.content = Some(t.start);
                if t.kind == Kind::Backslash {
                    return self.meta(buf, eof, t.start);
                }
            }
            match t.kind {
                Kind::Semicolon if self.depth == 0 && self.begin_depth == 0 => {
                    let content = self.content.expect("in a statement");
                    self.reset();
                    return Ok(Some(Found::Statement {
                        content,
                        end: t.end,
                    }));
                }
                Kind::Open => {
                    self.depth += 1;
                    if self.depth == 1 && self.report_parens {
                        return Ok(Some(Found::Open { at: t.start }));
                    }
                }
                Kind::Close => {
                    if self.depth == 0 {
                        return Err(SplitError::UnbalancedParen);
                    }
                    self.depth -= 1;
                    if self.depth == 0 && self.report_parens {
                        return Ok(Some(Found::Close { end: t.end }));
                    }
                }
                Kind::Word => self.word(buf, &t),
                _ => {}
            }
        }
    }

    /// A meta-command runs to the end of its line.
    fn meta(&mut self, buf: &[u8], eof: bool, content: usize) -> Result<Option<Found>, SplitError> {
        match memchr::memchr(b'\n', &buf[content..]) {
            Some(n) => {
                self.pos = content + n + 1;
            }
            None if eof => self.pos = buf.len(),
            None => {
                // Read the line again once it is whole.
                self.pos = content;
                self.content = None;
                return Ok(None);
            }
        }
        self.reset();
        Ok(Some(Found::Meta {
            content,
            end: self.pos,
        }))
    }

    /// psql's rule for SQL-standard function bodies: in a statement that starts with CREATE [OR
    /// REPLACE] FUNCTION or PROCEDURE, outside parentheses, BEGIN opens a block that END closes
    /// (CASE … END inside it too), and a `;` inside the block does not end the statement.
    fn word(&mut self, buf: &[u8], t: &Token) {
        let w = &buf[t.start..t.end];
        let is = |kw: &str| w.eq_ignore_ascii_case(kw.as_bytes());
        if self.words < self.initials.len() {
            self.initials[self.words] =
                if is("create") || is("function") || is("procedure") || is("or") || is("replace") {
                    w[0].to_ascii_lowercase()
                } else {
                    0
                };
        }
        self.words += 1;
        let i = &self.initials;
        let creates_routine = i[0] == b'c'
            && (i[1] == b'f'
                || i[1] == b'p'
                || (i[1] == b'o' && i[2] == b'r' && (i[3] == b'f' || i[3] == b'p')));
        if !creates_routine || self.depth != 0 {
            return;
        }
        if is("begin") || (is("case") && self.begin_depth > 0) {
            self.begin_depth += 1;
        } else if is("end") && self.begin_depth > 0 {
            self.begin_depth -= 1;
        }
    }
}

/// Split a whole text into its statements and meta-commands: (content start, end) of each.
pub fn all(text: &[u8], scs: bool) -> Result<Vec<Found>, SplitError> {
    let mut s = Splitter::new(scs);
    let mut out = Vec::new();
    loop {
        match s.next(text, true)? {
            Some(Found::End) | None => return Ok(out),
            Some(f) => out.push(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        all(text.as_bytes(), true)
            .unwrap()
            .into_iter()
            .map(|f| match f {
                Found::Statement { content, end } | Found::Meta { content, end } => {
                    &text[content..end]
                }
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn statements_end_where_psql_ends_them() {
        assert_eq!(
            pieces("SET a = 1;\n-- x; y\nSELECT ';', \"a;b\", $f$ ; $f$ /* ; */;\n\\connect db\nCREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));\nlast"),
            vec![
                "SET a = 1;",
                "SELECT ';', \"a;b\", $f$ ; $f$ /* ; */;",
                "\\connect db\n",
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));",
                "last",
            ]
        );
    }

    #[test]
    fn sql_standard_function_bodies_hold_semicolons() {
        let text = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;\nCREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 1;";
        assert_eq!(
            pieces(text),
            vec![
                "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;",
                "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;",
                "SELECT 1;",
            ]
        );
        // BEGIN elsewhere is a transaction.
        assert_eq!(pieces("BEGIN; COMMIT;"), vec!["BEGIN;", "COMMIT;"]);
    }

    #[test]
    fn top_level_parentheses_are_reported_when_asked() {
        let text = b"INSERT INTO t (a, b) VALUES (1, f(2)), ('x)');";
        let mut s = Splitter::new(true);
        s.report_parens = true;
        let mut found = Vec::new();
        while let Some(f) = s.next(text, true).unwrap() {
            if f == Found::End {
                break;
            }
            found.push(f);
            if matches!(f, Found::Statement { .. }) {
                break;
            }
        }
        assert_eq!(
            found,
            vec![
                Found::Open { at: 14 },
                Found::Close { end: 20 },
                Found::Open { at: 28 },
                Found::Close { end: 37 },
                Found::Open { at: 39 },
                Found::Close { end: 45 },
                Found::Statement {
                    content: 0,
                    end: 46
                },
            ]
        );
    }

    #[test]
    fn unterminated_input_is_an_error() {
        assert_eq!(
            all(b"SELECT 'abc;\n", true),
            Err(SplitError::Unterminated(Kind::Str(lexer::Str::Plain)))
        );
        assert_eq!(all(b"SELECT 1);", true), Err(SplitError::UnbalancedParen));
    }
}
