//! Row conditions for rules: a small SQL-like boolean language evaluated in-process on a row's original
//! values (PostgreSQL text representations).
//!
//! `parse` checks syntax, `bind` resolves columns and type-checks, `Condition::eval` evaluates one row with
//! SQL three-valued logic. Error messages never contain cell values: they only quote the condition text
//! (from the rules file) and column names.

use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// Maximum nesting depth accepted by the parser (keeps recursion bounded on hostile input).
const MAX_DEPTH: usize = 64;

/// A parse or bind error, with the byte offset into the condition text it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondError {
    /// Byte offset into the condition text.
    pub offset: usize,
    pub message: String,
}

impl CondError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        CondError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for CondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for CondError {}

/// The type of a source column. `Unknown` (no schema) is inferred from how the column is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Number,
    Bool,
    /// `char(n)`: text whose trailing spaces do not count (PostgreSQL pads it).
    Char,
    /// A type compared by its text only for equality (`=`, `<>`, `IN`) and patterns: its order is
    /// the type's, not its text's (an enum, a uuid, inet, json, an array, a type of the schema).
    Opaque,
    /// `citext`: PostgreSQL compares it without case, so every comparison must say so with
    /// `lower()` or `upper()`.
    CaseInsensitive,
    Unknown,
}

/// An evaluation error. Never carries a cell value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError<E> {
    /// The caller's `get` failed.
    Read(E),
    /// A value of a Number-typed column does not parse as a number.
    NotANumber { column: usize },
    /// A value of a Bool-typed column is not t/f/true/false.
    NotABoolean { column: usize },
}

impl<E: fmt::Display> fmt::Display for EvalError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Read(e) => write!(f, "{e}"),
            EvalError::NotANumber { column } => {
                write!(f, "a value of column #{column} is not a number")
            }
            EvalError::NotABoolean { column } => {
                write!(f, "a value of column #{column} is not a boolean")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn test(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    /// Unquoted identifier or keyword, folded to lower case.
    Ident(String),
    /// Double-quoted identifier, as written.
    QIdent(String),
    Str(String),
    Num(Number),
    LParen,
    RParen,
    Comma,
    Minus,
    Cmp(CmpOp),
    /// `~`, `~*`, `!~`, `!~*`
    Re {
        ci: bool,
        negated: bool,
    },
    Eof,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    start: usize,
    end: usize,
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "like", "ilike", "is", "null", "true", "false",
];

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Reads a quoted token (string or identifier) starting at `start` (the opening quote); a doubled quote is
/// an escaped quote. Returns the content and the end offset.
fn lex_quoted(text: &str, start: usize, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let rest = text.get(i..)?;
        let k = rest.find(quote)?;
        out.push_str(&rest[..k]);
        i += k + 1;
        if text.as_bytes().get(i) == Some(&(quote as u8)) {
            out.push(quote);
            i += 1;
        } else {
            return Some((out, i));
        }
    }
}

fn lex(text: &str) -> Result<Vec<Tok>, CondError> {
    let b = text.as_bytes();
    let n = b.len();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = b[i];
        let next = b.get(i + 1).copied();
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                TokKind::LParen
            }
            b')' => {
                i += 1;
                TokKind::RParen
            }
            b',' => {
                i += 1;
                TokKind::Comma
            }
            b'-' => {
                i += 1;
                TokKind::Minus
            }
            b'=' => {
                i += 1;
                TokKind::Cmp(CmpOp::Eq)
            }
            b'<' => match next {
                Some(b'=') => {
                    i += 2;
                    TokKind::Cmp(CmpOp::Le)
                }
                Some(b'>') => {
                    i += 2;
                    TokKind::Cmp(CmpOp::Ne)
                }
                _ => {
                    i += 1;
                    TokKind::Cmp(CmpOp::Lt)
                }
            },
            b'>' => {
                if next == Some(b'=') {
                    i += 2;
                    TokKind::Cmp(CmpOp::Ge)
                } else {
                    i += 1;
                    TokKind::Cmp(CmpOp::Gt)
                }
            }
            b'!' => match next {
                Some(b'=') => {
                    i += 2;
                    TokKind::Cmp(CmpOp::Ne)
                }
                Some(b'~') => {
                    let ci = b.get(i + 2) == Some(&b'*');
                    i += if ci { 3 } else { 2 };
                    TokKind::Re { ci, negated: true }
                }
                _ => return Err(CondError::new(start, "unexpected character '!'")),
            },
            b'~' => {
                let ci = next == Some(b'*');
                i += if ci { 2 } else { 1 };
                TokKind::Re { ci, negated: false }
            }
            b'\'' => match lex_quoted(text, start, '\'') {
                Some((s, end)) => {
                    i = end;
                    TokKind::Str(s)
                }
                None => return Err(CondError::new(start, "unterminated string literal")),
            },
            b'"' => match lex_quoted(text, start, '"') {
                Some((s, end)) => {
                    if s.is_empty() {
                        return Err(CondError::new(start, "zero-length quoted identifier"));
                    }
                    i = end;
                    TokKind::QIdent(s)
                }
                None => return Err(CondError::new(start, "unterminated quoted identifier")),
            },
            b'0'..=b'9' | b'.' => {
                let mut j = i;
                while j < n && b[j].is_ascii_digit() {
                    j += 1;
                }
                let mut digits = j > i;
                if j < n && b[j] == b'.' {
                    j += 1;
                    let s = j;
                    while j < n && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    digits |= j > s;
                }
                if !digits {
                    return Err(CondError::new(start, "unexpected character '.'"));
                }
                if j < n && (b[j] == b'e' || b[j] == b'E') {
                    let mut k = j + 1;
                    if k < n && (b[k] == b'+' || b[k] == b'-') {
                        k += 1;
                    }
                    let s = k;
                    while k < n && b[k].is_ascii_digit() {
                        k += 1;
                    }
                    if k > s {
                        j = k;
                    }
                }
                if j < n && (is_ident_char(b[j]) || b[j] == b'.') {
                    return Err(CondError::new(start, "trailing junk after numeric literal"));
                }
                i = j;
                match Number::parse(&text[start..j]) {
                    Some(v) if v.f.is_finite() => TokKind::Num(v),
                    _ => {
                        return Err(CondError::new(
                            start,
                            format!("number out of range: {}", &text[start..j]),
                        ));
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < n && is_ident_char(b[i]) {
                    i += 1;
                }
                TokKind::Ident(text[start..i].to_ascii_lowercase())
            }
            _ => {
                let ch = text.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(CondError::new(
                    start,
                    format!("unexpected character '{ch}'"),
                ));
            }
        };
        toks.push(Tok {
            kind,
            start,
            end: i,
        });
    }
    toks.push(Tok {
        kind: TokKind::Eof,
        start: n,
        end: n,
    });
    Ok(toks)
}

// ---------------------------------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
    Length,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Length => "length",
        }
    }
}

#[derive(Debug, Clone)]
struct Expr {
    kind: ExprKind,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone)]
enum ExprKind {
    Col(String),
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
    /// Unary minus; the expression starts at the minus sign.
    Neg(Box<Expr>),
    /// The expression starts at the function name.
    Func(Func, Box<Expr>),
    Cmp {
        op: CmpOp,
        op_at: usize,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: String,
        pat_at: usize,
        op_at: usize,
        ci: bool,
        negated: bool,
    },
    Regex {
        expr: Box<Expr>,
        pattern: String,
        pat_at: usize,
        op_at: usize,
        ci: bool,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A syntactically valid condition, not yet bound to a schema.
#[derive(Debug, Clone)]
pub struct Parsed {
    text: String,
    root: Expr,
    columns: Vec<(String, usize)>,
}

impl Parsed {
    /// Column names referenced, with their byte offsets, in order of appearance.
    pub fn columns(&self) -> Vec<(String, usize)> {
        self.columns.clone()
    }

    /// The condition text this was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }
}

struct Parser<'t> {
    text: &'t str,
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    columns: Vec<(String, usize)>,
}

/// Shortens a piece of condition text for an error message.
fn snippet(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &Tok {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)]
    }

    fn advance(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn prev_end(&self) -> usize {
        if self.pos == 0 {
            0
        } else {
            self.toks[self.pos - 1].end
        }
    }

    fn is_kw(&self, k: usize, kw: &str) -> bool {
        matches!(&self.peek_at(k).kind, TokKind::Ident(s) if s == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(0, kw) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn describe(&self, t: &Tok) -> String {
        if t.kind == TokKind::Eof {
            "end of condition".to_string()
        } else {
            format!("`{}`", snippet(self.text.get(t.start..t.end).unwrap_or("")))
        }
    }

    fn unexpected(&self, expected: &str) -> CondError {
        let t = self.peek();
        CondError::new(
            t.start,
            format!("expected {expected}, found {}", self.describe(t)),
        )
    }

    fn enter(&mut self, extra: usize) -> Result<(), CondError> {
        self.depth += 1;
        if self.depth + extra > MAX_DEPTH {
            return Err(CondError::new(
                self.peek().start,
                format!("condition is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn parse_or(&mut self) -> Result<Expr, CondError> {
        self.enter(0)?;
        let first = self.parse_and()?;
        let mut rest = Vec::new();
        while self.eat_kw("or") {
            rest.push(self.parse_and()?);
        }
        self.leave();
        Ok(combine(first, rest, ExprKind::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, CondError> {
        let first = self.parse_not()?;
        let mut rest = Vec::new();
        while self.eat_kw("and") {
            rest.push(self.parse_not()?);
        }
        Ok(combine(first, rest, ExprKind::And))
    }

    fn parse_not(&mut self) -> Result<Expr, CondError> {
        if self.is_kw(0, "not") {
            let start = self.advance().start;
            self.enter(0)?;
            let inner = self.parse_not()?;
            self.leave();
            let end = inner.end;
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                start,
                end,
            });
        }
        self.parse_pred()
    }

    fn expect_pattern(&mut self, op: &str) -> Result<(String, usize), CondError> {
        let t = self.peek().clone();
        match t.kind {
            TokKind::Str(s) => {
                self.advance();
                Ok((s, t.start))
            }
            _ => Err(CondError::new(
                t.start,
                format!(
                    "{op} needs a string literal pattern, found {}",
                    self.describe(&t)
                ),
            )),
        }
    }

    fn parse_pred(&mut self) -> Result<Expr, CondError> {
        let mut lhs = self.parse_unary()?;
        let mut seen_cmp = false;
        let mut suffixes = 0;
        loop {
            let t = self.peek().clone();
            let negated_kw = self.is_kw(0, "not")
                && (self.is_kw(1, "in") || self.is_kw(1, "like") || self.is_kw(1, "ilike"));
            let is_is = self.is_kw(0, "is");
            let is_cmp = negated_kw
                || matches!(t.kind, TokKind::Cmp(_) | TokKind::Re { .. })
                || self.is_kw(0, "in")
                || self.is_kw(0, "like")
                || self.is_kw(0, "ilike");
            if !is_cmp && !is_is {
                break;
            }
            if is_cmp {
                if seen_cmp {
                    return Err(CondError::new(
                        t.start,
                        format!(
                            "comparisons cannot be chained; add parentheses before {}",
                            self.describe(&t)
                        ),
                    ));
                }
                seen_cmp = true;
            }
            suffixes += 1;
            self.enter(suffixes)?;
            self.leave();
            let start = lhs.start;
            let op_at = t.start;
            if negated_kw {
                self.advance();
            }
            let op = self.advance();
            let kind = match op.kind {
                TokKind::Cmp(cmp) => {
                    let rhs = self.parse_unary()?;
                    ExprKind::Cmp {
                        op: cmp,
                        op_at,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    }
                }
                TokKind::Re { ci, negated } => {
                    let name = self.text.get(op.start..op.end).unwrap_or("~").to_string();
                    let (pattern, pat_at) = self.expect_pattern(&name)?;
                    ExprKind::Regex {
                        expr: Box::new(lhs),
                        pattern,
                        pat_at,
                        op_at,
                        ci,
                        negated,
                    }
                }
                TokKind::Ident(ref kw) if kw == "like" || kw == "ilike" => {
                    let ci = kw == "ilike";
                    let (pattern, pat_at) =
                        self.expect_pattern(if ci { "ILIKE" } else { "LIKE" })?;
                    ExprKind::Like {
                        expr: Box::new(lhs),
                        pattern,
                        pat_at,
                        op_at,
                        ci,
                        negated: negated_kw,
                    }
                }
                TokKind::Ident(ref kw) if kw == "in" => {
                    if self.peek().kind != TokKind::LParen {
                        return Err(self.unexpected("`(` after IN"));
                    }
                    self.advance();
                    if self.peek().kind == TokKind::RParen {
                        return Err(CondError::new(
                            self.peek().start,
                            "IN list must not be empty",
                        ));
                    }
                    let mut list = vec![self.parse_unary()?];
                    while self.peek().kind == TokKind::Comma {
                        self.advance();
                        list.push(self.parse_unary()?);
                    }
                    if self.peek().kind != TokKind::RParen {
                        return Err(self.unexpected("`,` or `)` in IN list"));
                    }
                    self.advance();
                    ExprKind::In {
                        expr: Box::new(lhs),
                        list,
                        negated: negated_kw,
                    }
                }
                _ => {
                    // IS [NOT] NULL
                    let negated = self.eat_kw("not");
                    if !self.eat_kw("null") {
                        return Err(self.unexpected(if negated {
                            "NULL after IS NOT"
                        } else {
                            "NULL or NOT NULL after IS"
                        }));
                    }
                    ExprKind::IsNull {
                        expr: Box::new(lhs),
                        negated,
                    }
                }
            };
            lhs = Expr {
                kind,
                start,
                end: self.prev_end(),
            };
        }
        Ok(lhs)
    }

    fn parse_unary(&mut self) -> Result<Expr, CondError> {
        if self.peek().kind == TokKind::Minus {
            let start = self.advance().start;
            self.enter(0)?;
            let inner = self.parse_unary()?;
            self.leave();
            let end = inner.end;
            return Ok(Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                start,
                end,
            });
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, CondError> {
        let t = self.peek().clone();
        let kind = match &t.kind {
            TokKind::Str(s) => ExprKind::Str(s.clone()),
            TokKind::Num(v) => ExprKind::Num(v.clone()),
            TokKind::QIdent(name) => {
                self.columns.push((name.clone(), t.start));
                ExprKind::Col(name.clone())
            }
            TokKind::Ident(name) => match name.as_str() {
                "true" => ExprKind::Bool(true),
                "false" => ExprKind::Bool(false),
                "null" => ExprKind::Null,
                kw if KEYWORDS.contains(&kw) => return Err(self.unexpected("an expression")),
                _ if self.peek_at(1).kind == TokKind::LParen => {
                    let func = match name.as_str() {
                        "lower" => Func::Lower,
                        "upper" => Func::Upper,
                        "length" => Func::Length,
                        _ => {
                            let written = self.text.get(t.start..t.end).unwrap_or(name);
                            return Err(CondError::new(
                                t.start,
                                format!(
                                    "unknown function {written} (functions: lower, upper, length)"
                                ),
                            ));
                        }
                    };
                    self.advance();
                    self.advance();
                    let arg = self.parse_or()?;
                    if self.peek().kind != TokKind::RParen {
                        return Err(self
                            .unexpected(&format!("`)` after the argument of {}()", func.name())));
                    }
                    self.advance();
                    return Ok(Expr {
                        kind: ExprKind::Func(func, Box::new(arg)),
                        start: t.start,
                        end: self.prev_end(),
                    });
                }
                _ => {
                    self.columns.push((name.clone(), t.start));
                    ExprKind::Col(name.clone())
                }
            },
            TokKind::LParen => {
                self.advance();
                let inner = self.parse_or()?;
                if self.peek().kind != TokKind::RParen {
                    return Err(self.unexpected("`)`"));
                }
                self.advance();
                return Ok(inner);
            }
            _ => return Err(self.unexpected("an expression")),
        };
        self.advance();
        Ok(Expr {
            kind,
            start: t.start,
            end: t.end,
        })
    }
}

/// Builds an AND/OR node, or returns `first` when there are no more operands.
fn combine(first: Expr, rest: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    if rest.is_empty() {
        return first;
    }
    let start = first.start;
    let end = rest.last().map_or(first.end, |e| e.end);
    let mut items = Vec::with_capacity(rest.len() + 1);
    items.push(first);
    items.extend(rest);
    Expr {
        kind: make(items),
        start,
        end,
    }
}

/// Parses a condition. Syntax errors carry the byte offset of the offending token.
pub fn parse(text: &str) -> Result<Parsed, CondError> {
    let toks = lex(text)?;
    if toks.len() == 1 {
        return Err(CondError::new(0, "empty condition"));
    }
    let mut p = Parser {
        text,
        toks,
        pos: 0,
        depth: 0,
        columns: Vec::new(),
    };
    let root = p.parse_or()?;
    if p.peek().kind != TokKind::Eof {
        let t = p.peek().clone();
        return Err(CondError::new(
            t.start,
            format!("unexpected {}", p.describe(&t)),
        ));
    }
    Ok(Parsed {
        text: text.to_string(),
        root,
        columns: p.columns,
    })
}

// ---------------------------------------------------------------------------------------------------------
// LIKE matching

/// A compiled LIKE pattern. Literal-only shapes get fast paths; the general case is a greedy segment
/// matcher (segments separated by `%`, `_` = any one char) that does not allocate.
#[derive(Debug, Clone)]
enum LikeMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    PrefixSuffix(String, String),
    Contains(String),
    Any,
    /// Segments between `%`s; `None` is `_`. At least two segments unless the pattern has no `%`.
    General(Vec<Vec<Option<char>>>),
}

impl LikeMatcher {
    /// Compiles a pattern (PostgreSQL syntax, `\` escape). With `ci` the literal chars are lowercased;
    /// the value must then be lowercased too.
    fn compile(pattern: &str, ci: bool) -> Result<LikeMatcher, String> {
        let mut segs: Vec<Vec<Option<char>>> = vec![Vec::new()];
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let lit = match c {
                '%' => {
                    segs.push(Vec::new());
                    continue;
                }
                '_' => {
                    if let Some(s) = segs.last_mut() {
                        s.push(None);
                    }
                    continue;
                }
                '\\' => match chars.next() {
                    Some(n) => n,
                    None => {
                        return Err(
                            "LIKE pattern must not end with an escape character (\\)".to_string()
                        );
                    }
                },
                c => c,
            };
            if let Some(s) = segs.last_mut() {
                if ci {
                    s.extend(lit.to_lowercase().map(Some));
                } else {
                    s.push(Some(lit));
                }
            }
        }
        // `%%` is the same as `%`: drop empty middle segments.
        if segs.len() > 2 {
            let last = segs.pop().unwrap_or_default();
            let first = segs.remove(0);
            let mut norm = vec![first];
            norm.extend(segs.into_iter().filter(|s| !s.is_empty()));
            norm.push(last);
            segs = norm;
        }
        let has_any_one = segs.iter().any(|s| s.contains(&None));
        if has_any_one {
            return Ok(LikeMatcher::General(segs));
        }
        let lit: Vec<String> = segs
            .iter()
            .map(|s| s.iter().flatten().collect::<String>())
            .collect();
        Ok(match lit.as_slice() {
            [one] => LikeMatcher::Exact(one.clone()),
            [a, b] if a.is_empty() && b.is_empty() => LikeMatcher::Any,
            [a, b] if a.is_empty() => LikeMatcher::Suffix(b.clone()),
            [a, b] if b.is_empty() => LikeMatcher::Prefix(a.clone()),
            [a, b] => LikeMatcher::PrefixSuffix(a.clone(), b.clone()),
            [a, m, b] if a.is_empty() && b.is_empty() => LikeMatcher::Contains(m.clone()),
            _ => LikeMatcher::General(segs),
        })
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            LikeMatcher::Exact(p) => s == p,
            LikeMatcher::Prefix(p) => s.starts_with(p.as_str()),
            LikeMatcher::Suffix(p) => s.ends_with(p.as_str()),
            LikeMatcher::PrefixSuffix(a, b) => {
                s.len() >= a.len() + b.len() && s.starts_with(a.as_str()) && s.ends_with(b.as_str())
            }
            LikeMatcher::Contains(p) => s.contains(p.as_str()),
            LikeMatcher::Any => true,
            LikeMatcher::General(segs) => like_general(segs, s),
        }
    }
}

/// Matches `seg` at byte `start` of `s`; returns the end offset.
fn seg_match_at(seg: &[Option<char>], s: &str, start: usize) -> Option<usize> {
    let mut it = s.get(start..)?.char_indices();
    for want in seg {
        let (_, c) = it.next()?;
        if want.is_some_and(|w| w != c) {
            return None;
        }
    }
    Some(start + it.offset())
}

fn like_general(segs: &[Vec<Option<char>>], s: &str) -> bool {
    let (first, last) = match segs {
        [] => return s.is_empty(),
        [only] => return seg_match_at(only, s, 0) == Some(s.len()),
        [first, .., last] => (first, last),
    };
    let Some(mut pos) = seg_match_at(first, s, 0) else {
        return false;
    };
    // The last segment matches exactly last.len() chars at the end.
    let tail = if last.is_empty() {
        s.len()
    } else {
        match s.char_indices().rev().nth(last.len() - 1) {
            Some((i, _)) => i,
            None => return false,
        }
    };
    if tail < pos || seg_match_at(last, s, tail) != Some(s.len()) {
        return false;
    }
    let hay = &s[..tail];
    for seg in &segs[1..segs.len() - 1] {
        let mut start = pos;
        loop {
            if let Some(end) = seg_match_at(seg, hay, start) {
                pos = end;
                break;
            }
            match hay.get(start..).and_then(|r| r.chars().next()) {
                Some(c) => start += c.len_utf8(),
                None => return false,
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------------------
// Binding and type checking

/// The two-character escapes (`\x`) of a regular expression, in order (`\\` is one).
fn escapes(pattern: &str) -> impl Iterator<Item = &str> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = pattern.as_bytes();
        while i + 1 < b.len() {
            if b[i] == b'\\' {
                let start = i;
                i += 2;
                // (Escapes of ASCII letters only matter here; others are one byte on.)
                if pattern.is_char_boundary(start + 2) {
                    return Some(&pattern[start..start + 2]);
                }
                continue;
            }
            i += 1;
        }
        None
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Number,
    Bool,
    /// The NULL literal: compatible with every type.
    Null,
    /// Already reported: compatible with everything, to avoid cascading errors.
    Error,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Number => "a number",
            Ty::Bool => "a boolean",
            Ty::Null => "NULL",
            Ty::Error => "invalid",
        }
    }

    fn fits(self, want: Ty) -> bool {
        self == want || matches!(self, Ty::Null | Ty::Error)
    }

    fn compatible(self, other: Ty) -> bool {
        self.fits(other) || other.fits(self)
    }

    fn concrete(self) -> Option<Ty> {
        match self {
            Ty::Text | Ty::Number | Ty::Bool => Some(self),
            Ty::Null | Ty::Error => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColKind {
    Text,
    Number,
    Bool,
    /// Text with trailing spaces dropped.
    Char,
}

#[derive(Debug, Clone)]
enum BExpr {
    Col {
        pos: usize,
        kind: ColKind,
    },
    Text(String),
    Num(Number),
    Bool(bool),
    Null,
    Neg(Box<BExpr>),
    Func(Func, Box<BExpr>),
    Cmp(CmpOp, Box<BExpr>, Box<BExpr>),
    In {
        expr: Box<BExpr>,
        list: Vec<BExpr>,
        negated: bool,
    },
    Like {
        expr: Box<BExpr>,
        matcher: LikeMatcher,
        ci: bool,
        negated: bool,
    },
    Regex {
        expr: Box<BExpr>,
        re: Regex,
        negated: bool,
    },
    IsNull {
        expr: Box<BExpr>,
        negated: bool,
    },
    Not(Box<BExpr>),
    And(Vec<BExpr>),
    Or(Vec<BExpr>),
}

impl BExpr {
    fn collect_columns(&self, out: &mut Vec<usize>) {
        match self {
            BExpr::Col { pos, .. } => out.push(*pos),
            BExpr::Text(_) | BExpr::Num(_) | BExpr::Bool(_) | BExpr::Null => {}
            BExpr::Neg(x) | BExpr::Func(_, x) | BExpr::Not(x) => x.collect_columns(out),
            BExpr::Like { expr, .. } | BExpr::Regex { expr, .. } | BExpr::IsNull { expr, .. } => {
                expr.collect_columns(out)
            }
            BExpr::Cmp(_, l, r) => {
                l.collect_columns(out);
                r.collect_columns(out);
            }
            BExpr::In { expr, list, .. } => {
                expr.collect_columns(out);
                list.iter().for_each(|x| x.collect_columns(out));
            }
            BExpr::And(xs) | BExpr::Or(xs) => xs.iter().for_each(|x| x.collect_columns(out)),
        }
    }

    fn columns(&self) -> Vec<usize> {
        let mut v = Vec::new();
        self.collect_columns(&mut v);
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Quotes a column name for a message when it is not a plain lower-case identifier.
fn col_name(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
        && !KEYWORDS.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

struct Binder<'r> {
    text: &'r str,
    resolve: &'r dyn Fn(&str) -> Option<(usize, ColType)>,
    errors: Vec<CondError>,
}

impl Binder<'_> {
    fn err(&mut self, offset: usize, message: String) {
        self.errors.push(CondError::new(offset, message));
    }

    /// How an expression is named in a message: "column x" or the quoted condition text.
    fn desc(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Col(name) => format!("column {}", col_name(name)),
            _ => format!("`{}`", snippet(self.text.get(e.start..e.end).unwrap_or(""))),
        }
    }

    /// The declared type of `e` when it is a column itself.
    fn col_type(&self, e: &Expr) -> Option<ColType> {
        match &e.kind {
            ExprKind::Col(name) => (self.resolve)(name).map(|(_, t)| t),
            _ => None,
        }
    }

    /// Refuse what a column's type does not compare by its text: a case-insensitive column
    /// anywhere but inside lower()/upper()/length() and IS NULL, an opaque one in an ordering.
    fn check_text_meaning(&mut self, e: &Expr, at: usize, ordering: bool) {
        match self.col_type(e) {
            Some(ColType::CaseInsensitive) => {
                let msg = format!(
                    "{} is citext, which PostgreSQL compares without case: compare lower({}) instead",
                    self.desc(e),
                    self.text.get(e.start..e.end).unwrap_or("")
                );
                self.err(at, msg);
            }
            Some(ColType::Opaque) if ordering => {
                let msg = format!(
                    "{} orders by its type, not by its text: compare it with =, <>, IN or a pattern",
                    self.desc(e)
                );
                self.err(at, msg);
            }
            _ => {}
        }
    }

    fn is_unknown_col(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Col(name) => matches!((self.resolve)(name), Some((_, ColType::Unknown))),
            _ => false,
        }
    }

    /// Binds `e` and checks that it has type `want` (or NULL); `what` starts the message.
    fn bind_expect(&mut self, e: &Expr, want: Ty, at: usize, what: &str) -> BExpr {
        let (b, t) = self.bind(e, Some(want));
        if !t.fits(want) {
            let msg = format!("{what}; {} is {}", self.desc(e), t.name());
            self.err(at, msg);
        }
        b
    }

    /// Binds two operands that must have the same type; an operand that is a column of unknown type takes
    /// the type of the other one.
    fn bind_pair(&mut self, lhs: &Expr, rhs: &Expr) -> ((BExpr, Ty), (BExpr, Ty)) {
        if self.is_unknown_col(lhs) && !self.is_unknown_col(rhs) {
            let r = self.bind(rhs, None);
            let l = self.bind(lhs, r.1.concrete());
            (l, r)
        } else {
            let l = self.bind(lhs, None);
            let r = self.bind(rhs, l.1.concrete());
            (l, r)
        }
    }

    fn bind(&mut self, e: &Expr, hint: Option<Ty>) -> (BExpr, Ty) {
        match &e.kind {
            ExprKind::Col(name) => match (self.resolve)(name) {
                None => {
                    self.err(e.start, format!("unknown column {}", col_name(name)));
                    (BExpr::Null, Ty::Error)
                }
                Some((pos, ct)) => {
                    let kind = match ct {
                        ColType::Text | ColType::Opaque | ColType::CaseInsensitive => ColKind::Text,
                        ColType::Char => ColKind::Char,
                        ColType::Number => ColKind::Number,
                        ColType::Bool => ColKind::Bool,
                        ColType::Unknown => match hint {
                            Some(Ty::Number) => ColKind::Number,
                            Some(Ty::Bool) => ColKind::Bool,
                            _ => ColKind::Text,
                        },
                    };
                    let ty = match kind {
                        ColKind::Text | ColKind::Char => Ty::Text,
                        ColKind::Number => Ty::Number,
                        ColKind::Bool => Ty::Bool,
                    };
                    (BExpr::Col { pos, kind }, ty)
                }
            },
            ExprKind::Str(s) => (BExpr::Text(s.clone()), Ty::Text),
            ExprKind::Num(v) => (BExpr::Num(v.clone()), Ty::Number),
            ExprKind::Bool(v) => (BExpr::Bool(*v), Ty::Bool),
            ExprKind::Null => (BExpr::Null, Ty::Null),
            ExprKind::Neg(x) => {
                let b = self.bind_expect(x, Ty::Number, e.start, "unary minus needs a number");
                let b = match b {
                    BExpr::Num(v) => BExpr::Num(v.neg()),
                    other => BExpr::Neg(Box::new(other)),
                };
                (b, Ty::Number)
            }
            ExprKind::Func(f, x) => {
                let what = format!("{}() needs text", f.name());
                let b = self.bind_expect(x, Ty::Text, e.start, &what);
                let ty = if *f == Func::Length {
                    Ty::Number
                } else {
                    Ty::Text
                };
                (BExpr::Func(*f, Box::new(b)), ty)
            }
            ExprKind::Cmp {
                op,
                op_at,
                lhs,
                rhs,
            } => {
                let ((lb, lt), (rb, rt)) = self.bind_pair(lhs, rhs);
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                self.check_text_meaning(lhs, *op_at, ordering);
                self.check_text_meaning(rhs, *op_at, ordering);
                if !lt.compatible(rt) {
                    let msg = format!(
                        "type mismatch: {} is {}, compared with {}",
                        self.desc(lhs),
                        lt.name(),
                        rt.name()
                    );
                    self.err(*op_at, msg);
                }
                (BExpr::Cmp(*op, Box::new(lb), Box::new(rb)), Ty::Bool)
            }
            ExprKind::In {
                expr,
                list,
                negated,
            } => {
                let (xb, xt, items) = if self.is_unknown_col(expr) {
                    let items: Vec<(BExpr, Ty)> = list.iter().map(|i| self.bind(i, None)).collect();
                    let hint = items.iter().find_map(|(_, t)| t.concrete());
                    let (xb, xt) = self.bind(expr, hint);
                    (xb, xt, items)
                } else {
                    let (xb, xt) = self.bind(expr, None);
                    let items = list.iter().map(|i| self.bind(i, xt.concrete())).collect();
                    (xb, xt, items)
                };
                self.check_text_meaning(expr, expr.start, false);
                let mut bound = Vec::with_capacity(items.len());
                for ((ib, it), item) in items.into_iter().zip(list) {
                    if !xt.compatible(it) {
                        let msg = format!(
                            "type mismatch: {} is {}, but IN list item {} is {}",
                            self.desc(expr),
                            xt.name(),
                            self.desc(item),
                            it.name()
                        );
                        self.err(item.start, msg);
                    }
                    bound.push(ib);
                }
                let b = BExpr::In {
                    expr: Box::new(xb),
                    list: bound,
                    negated: *negated,
                };
                (b, Ty::Bool)
            }
            ExprKind::Like {
                expr,
                pattern,
                pat_at,
                op_at,
                ci,
                negated,
            } => {
                let what = format!("{} needs text", if *ci { "ILIKE" } else { "LIKE" });
                self.check_text_meaning(expr, *op_at, false);
                let xb = self.bind_expect(expr, Ty::Text, *op_at, &what);
                let matcher = match LikeMatcher::compile(pattern, *ci) {
                    Ok(m) => m,
                    Err(msg) => {
                        self.err(*pat_at, msg);
                        LikeMatcher::Any
                    }
                };
                let b = BExpr::Like {
                    expr: Box::new(xb),
                    matcher,
                    ci: *ci,
                    negated: *negated,
                };
                (b, Ty::Bool)
            }
            ExprKind::Regex {
                expr,
                pattern,
                pat_at,
                op_at,
                ci,
                negated,
            } => {
                let op = self.text.get(*op_at..).map_or("~", |s| {
                    let n = s
                        .bytes()
                        .take_while(|b| matches!(b, b'!' | b'~' | b'*'))
                        .count();
                    &s[..n]
                });
                let what = format!("{op} needs text");
                self.check_text_meaning(expr, *op_at, false);
                let xb = self.bind_expect(expr, Ty::Text, *op_at, &what);
                // PostgreSQL's `\b` is a backspace and its word boundaries are `\y`, `\m`, `\M`;
                // the regex crate reads these otherwise (or not at all): refused, not guessed.
                let differs = ["\\b", "\\B", "\\y", "\\Y", "\\m", "\\M", "\\Z"]
                    .iter()
                    .find(|e| escapes(pattern).any(|x| x == **e));
                if let Some(e) = differs {
                    self.err(
                        *pat_at,
                        format!("{e} means something else in PostgreSQL's regular expressions than here; write the pattern without it (a word boundary: [^A-Za-z0-9_] or ^ / $)"),
                    );
                }
                // `.` matches a newline in PostgreSQL, as here with `s`.
                match RegexBuilder::new(pattern)
                    .case_insensitive(*ci)
                    .dot_matches_new_line(true)
                    .build()
                {
                    Ok(re) => {
                        let b = BExpr::Regex {
                            expr: Box::new(xb),
                            re,
                            negated: *negated,
                        };
                        (b, Ty::Bool)
                    }
                    Err(err) => {
                        self.err(*pat_at, format!("invalid regular expression: {err}"));
                        (BExpr::Null, Ty::Bool)
                    }
                }
            }
            ExprKind::IsNull { expr, negated } => {
                let (xb, _) = self.bind(expr, None);
                let b = BExpr::IsNull {
                    expr: Box::new(xb),
                    negated: *negated,
                };
                (b, Ty::Bool)
            }
            ExprKind::Not(x) => {
                let b = self.bind_expect(x, Ty::Bool, x.start, "NOT needs a boolean");
                (BExpr::Not(Box::new(b)), Ty::Bool)
            }
            ExprKind::And(xs) | ExprKind::Or(xs) => {
                let is_and = matches!(e.kind, ExprKind::And(_));
                let what = if is_and {
                    "AND needs boolean operands"
                } else {
                    "OR needs boolean operands"
                };
                let mut out = Vec::with_capacity(xs.len());
                for x in xs {
                    match self.bind_expect(x, Ty::Bool, x.start, what) {
                        BExpr::And(inner) if is_and => out.extend(inner),
                        BExpr::Or(inner) if !is_and => out.extend(inner),
                        b => out.push(b),
                    }
                }
                let b = if is_and {
                    BExpr::And(out)
                } else {
                    BExpr::Or(out)
                };
                (b, Ty::Bool)
            }
        }
    }
}

/// A bound, type-checked condition, ready to evaluate rows.
#[derive(Debug, Clone)]
pub struct Condition {
    root: BExpr,
    columns: Vec<usize>,
}

/// Resolves column names to positions and types and type-checks. Collects all errors, sorted by offset.
pub fn bind(
    parsed: &Parsed,
    resolve: &dyn Fn(&str) -> Option<(usize, ColType)>,
) -> Result<Condition, Vec<CondError>> {
    let mut b = Binder {
        text: &parsed.text,
        resolve,
        errors: Vec::new(),
    };
    let root = b.bind_expect(
        &parsed.root,
        Ty::Bool,
        parsed.root.start,
        "the condition must be true or false (a boolean)",
    );
    if !b.errors.is_empty() {
        let mut errors = b.errors;
        errors.sort_by_key(|e| e.offset);
        return Err(errors);
    }
    let columns = root.columns();
    Ok(Condition { root, columns })
}

// ---------------------------------------------------------------------------------------------------------
// Evaluation

enum Val<'s> {
    Null,
    Text(Cow<'s, str>),
    Num(Number),
    Bool(bool),
}

fn truth(v: &Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        _ => None,
    }
}

fn tri(v: Option<bool>) -> Val<'static> {
    v.map_or(Val::Null, Val::Bool)
}

/// A number of a condition: compared exactly when both sides are plain decimals (`bigint` ids,
/// `numeric` amounts: a 64-bit float cannot tell 9007199254740992 from 9007199254740993), else
/// as 64-bit floats (exponents, `NaN`, `Infinity`).
#[derive(Debug, Clone)]
pub(crate) struct Number {
    f: f64,
    exact: Option<Decimal>,
}

/// A plain decimal: its sign, its digits (the integer part without leading zeros, then the
/// fraction without trailing zeros) and how many of them are the integer part.
#[derive(Debug, Clone)]
struct Decimal {
    negative: bool,
    digits: smallvec::SmallVec<[u8; 32]>,
    int_len: usize,
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        cmp_num(self, other) == Ordering::Equal
    }
}

impl Number {
    /// A PostgreSQL number text (`12.50`, `-7`, `1e3`, `NaN`, `Infinity`, `-Infinity`).
    fn parse(s: &str) -> Option<Number> {
        let t = s.trim();
        // Rust accepts "NaN", "inf" and "infinity" (any case, optional sign), which covers
        // PostgreSQL's `NaN`, `Infinity` and `-Infinity`.
        let f = t.parse::<f64>().ok()?;
        Some(Number {
            f,
            exact: Decimal::parse(t),
        })
    }

    fn from_count(n: usize) -> Number {
        let text = n.to_string();
        Number {
            f: n as f64,
            exact: Decimal::parse(&text),
        }
    }

    fn neg(&self) -> Number {
        Number {
            f: -self.f,
            exact: self.exact.as_ref().map(|d| Decimal {
                negative: !d.negative && !d.digits.is_empty(),
                digits: d.digits.clone(),
                int_len: d.int_len,
            }),
        }
    }
}

impl Decimal {
    fn parse(t: &str) -> Option<Decimal> {
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let mut digits = smallvec::SmallVec::new();
        digits.extend_from_slice(int.as_bytes());
        digits.extend_from_slice(frac.as_bytes());
        Some(Decimal {
            negative: negative && !digits.is_empty(),
            digits,
            int_len: int.len(),
        })
    }

    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (negative, _) => {
                // More integer digits is larger; then digit by digit (trailing zeros are gone,
                // so a shorter fraction that is a prefix is the smaller).
                let magnitude = self
                    .int_len
                    .cmp(&other.int_len)
                    .then_with(|| self.digits.cmp(&other.digits));
                if negative {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
        }
    }
}

/// Parses a PostgreSQL number text.
fn parse_number(s: &str) -> Option<Number> {
    Number::parse(s)
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("t") || s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("f") || s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Exact for two plain decimals; else PostgreSQL float ordering: NaN equals NaN and sorts above
/// everything else.
fn cmp_num(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (&a.exact, &b.exact) {
        return x.cmp(y);
    }
    let (a, b) = (a.f, b.f);
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Text(x), Val::Text(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Val::Num(x), Val::Num(y)) => Some(cmp_num(x, y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

type Getter<'g, 'a, E> = dyn FnMut(usize) -> Result<Option<Cow<'a, str>>, E> + 'g;

fn eval_expr<'s, 'a: 's, E>(
    e: &'s BExpr,
    get: &mut Getter<'_, 'a, E>,
) -> Result<Val<'s>, EvalError<E>> {
    Ok(match e {
        BExpr::Col { pos, kind } => {
            let Some(raw) = get(*pos).map_err(EvalError::Read)? else {
                return Ok(Val::Null);
            };
            match kind {
                ColKind::Text => Val::Text(raw),
                ColKind::Char => Val::Text(match raw {
                    Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches(' ')),
                    Cow::Owned(s) => Cow::Owned(s.trim_end_matches(' ').to_string()),
                }),
                ColKind::Number => match parse_number(&raw) {
                    Some(v) => Val::Num(v),
                    None => return Err(EvalError::NotANumber { column: *pos }),
                },
                ColKind::Bool => match parse_bool(&raw) {
                    Some(v) => Val::Bool(v),
                    None => return Err(EvalError::NotABoolean { column: *pos }),
                },
            }
        }
        BExpr::Text(s) => Val::Text(Cow::Borrowed(s.as_str())),
        BExpr::Num(v) => Val::Num(v.clone()),
        BExpr::Bool(v) => Val::Bool(*v),
        BExpr::Null => Val::Null,
        BExpr::Neg(x) => match eval_expr(x, get)? {
            Val::Num(v) => Val::Num(v.neg()),
            _ => Val::Null,
        },
        BExpr::Func(f, x) => match eval_expr(x, get)? {
            Val::Text(s) => match f {
                Func::Lower => Val::Text(Cow::Owned(s.to_lowercase())),
                Func::Upper => Val::Text(Cow::Owned(s.to_uppercase())),
                Func::Length => Val::Num(Number::from_count(s.chars().count())),
            },
            _ => Val::Null,
        },
        BExpr::Cmp(op, l, r) => {
            let l = eval_expr(l, get)?;
            if matches!(l, Val::Null) {
                return Ok(Val::Null);
            }
            let r = eval_expr(r, get)?;
            tri(compare(&l, &r).map(|o| op.test(o)))
        }
        BExpr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval_expr(expr, get)?;
            if matches!(v, Val::Null) {
                return Ok(Val::Null);
            }
            let mut found = false;
            let mut saw_null = false;
            for item in list {
                match compare(&v, &eval_expr(item, get)?) {
                    Some(Ordering::Equal) => {
                        found = true;
                        break;
                    }
                    Some(_) => {}
                    None => saw_null = true,
                }
            }
            let r = if found {
                Some(true)
            } else if saw_null {
                None
            } else {
                Some(false)
            };
            tri(r.map(|b| b != *negated))
        }
        BExpr::Like {
            expr,
            matcher,
            ci,
            negated,
        } => match eval_expr(expr, get)? {
            Val::Text(s) => {
                let hit = if *ci {
                    // Char-wise, like the pattern (str::to_lowercase treats a final sigma specially).
                    let lower: String = s.chars().flat_map(char::to_lowercase).collect();
                    matcher.matches(&lower)
                } else {
                    matcher.matches(&s)
                };
                Val::Bool(hit != *negated)
            }
            _ => Val::Null,
        },
        BExpr::Regex { expr, re, negated } => match eval_expr(expr, get)? {
            Val::Text(s) => Val::Bool(re.is_match(&s) != *negated),
            _ => Val::Null,
        },
        BExpr::IsNull { expr, negated } => {
            // A column is only checked for NULL, not decoded.
            let null = match &**expr {
                BExpr::Col { pos, .. } => get(*pos).map_err(EvalError::Read)?.is_none(),
                other => matches!(eval_expr(other, get)?, Val::Null),
            };
            Val::Bool(null != *negated)
        }
        BExpr::Not(x) => tri(truth(&eval_expr(x, get)?).map(|b| !b)),
        BExpr::And(xs) => {
            let mut unknown = false;
            for x in xs {
                match truth(&eval_expr(x, get)?) {
                    Some(false) => return Ok(Val::Bool(false)),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            tri(if unknown { None } else { Some(true) })
        }
        BExpr::Or(xs) => {
            let mut unknown = false;
            for x in xs {
                match truth(&eval_expr(x, get)?) {
                    Some(true) => return Ok(Val::Bool(true)),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            tri(if unknown { None } else { Some(false) })
        }
    })
}

impl Condition {
    /// Distinct positions read, sorted.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// Evaluates on one row. `get(pos)` returns the original value of column `pos` (None = NULL) or the
    /// caller's decoding error. Returns Ok(true) only when the condition is TRUE (unknown counts as false).
    pub fn eval<'a, E>(
        &self,
        get: &mut dyn FnMut(usize) -> Result<Option<Cow<'a, str>>, E>,
    ) -> Result<bool, EvalError<E>> {
        Ok(truth(&eval_expr(&self.root, get)?) == Some(true))
    }

    /// A guard for uniqueness: the top-level AND conjuncts of this condition that read ONLY column `col`
    /// (and literals), or None if there are none.
    pub fn guard(&self, col: usize) -> Option<Guard> {
        let conjuncts: &[BExpr] = match &self.root {
            BExpr::And(xs) => xs,
            other => std::slice::from_ref(other),
        };
        let picked: Vec<BExpr> = conjuncts
            .iter()
            .filter(|c| {
                let cols = c.columns();
                !cols.is_empty() && cols.iter().all(|&p| p == col)
            })
            .cloned()
            .collect();
        if picked.is_empty() {
            None
        } else {
            Some(Guard {
                col,
                conjuncts: picked,
            })
        }
    }
}

/// The part of a condition that constrains one column alone (see `Condition::guard`).
#[derive(Debug, Clone)]
pub struct Guard {
    col: usize,
    conjuncts: Vec<BExpr>,
}

impl Guard {
    /// Whether `value`, put in place of the column, satisfies every guard conjunct (i.e. it COULD be a
    /// value that the condition selected). A value that does not decode for the column's type never does.
    pub fn matches(&self, value: &str) -> bool {
        let col = self.col;
        let mut get = |p: usize| -> Result<Option<Cow<'_, str>>, ()> {
            Ok((p == col).then_some(Cow::Borrowed(value)))
        };
        self.conjuncts
            .iter()
            .all(|c| matches!(eval_expr(c, &mut get), Ok(Val::Bool(true))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: usize = 0;
    const COUNTRY: usize = 1;
    const AGE: usize = 2;
    const IS_TEST: usize = 3;
    const U: usize = 6;

    fn schema(name: &str) -> Option<(usize, ColType)> {
        Some(match name {
            "email" => (EMAIL, ColType::Text),
            "country" => (COUNTRY, ColType::Text),
            "age" => (AGE, ColType::Number),
            "is_test" => (IS_TEST, ColType::Bool),
            "Mixed Case" => (4, ColType::Text),
            "a\"b" => (5, ColType::Text),
            "u" => (U, ColType::Unknown),
            "v" => (7, ColType::Unknown),
            "code" => (8, ColType::Char),
            "level" => (9, ColType::Opaque),
            "owner" => (10, ColType::CaseInsensitive),
            _ => return None,
        })
    }

    fn cond(text: &str) -> Condition {
        let parsed = parse(text).unwrap_or_else(|e| panic!("parse {text:?}: {e}"));
        bind(&parsed, &schema).unwrap_or_else(|e| panic!("bind {text:?}: {e:?}"))
    }

    fn getter<'r>(
        row: &'r [(usize, Option<&'r str>)],
    ) -> impl FnMut(usize) -> Result<Option<Cow<'r, str>>, ()> + 'r {
        move |p| {
            Ok(row
                .iter()
                .find(|(q, _)| *q == p)
                .and_then(|(_, v)| v.map(Cow::Borrowed)))
        }
    }

    fn eval_row(text: &str, row: &[(usize, Option<&str>)]) -> Result<bool, EvalError<()>> {
        cond(text).eval(&mut getter(row))
    }

    fn run(text: &str, row: &[(usize, Option<&str>)]) -> bool {
        eval_row(text, row).unwrap_or_else(|e| panic!("eval {text:?}: {e:?}"))
    }

    #[test]
    fn column_types_keep_their_postgresql_meaning() {
        let bind_err = |text: &str| {
            bind(&parse(text).unwrap(), &schema)
                .expect_err(text)
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        // char(n): the padding does not count.
        let code = |v: &'static str| vec![(8, Some(v))];
        assert!(run("code = 'secret'", &code("secret  ")));
        assert!(!run("code <> 'secret'", &code("secret  ")));
        assert!(run("length(code) = 6", &code("secret  ")));
        assert!(run("code LIKE '%t'", &code("secret  ")));
        // An opaque type: equality and patterns by its text, no ordering.
        assert!(run("level = 'high'", &[(9, Some("high"))]));
        assert!(run("level IN ('low', 'high')", &[(9, Some("high"))]));
        assert!(bind_err("level >= 'medium'").contains("orders by its type"));
        // citext: only through lower()/upper().
        assert!(run(
            "lower(owner) = 'qa@acme.test'",
            &[(10, Some("QA@ACME.TEST"))]
        ));
        for text in [
            "owner = 'x'",
            "owner <> 'x'",
            "owner IN ('x')",
            "owner LIKE 'x%'",
            "owner ~ 'x'",
        ] {
            assert!(bind_err(text).contains("citext"), "{text}");
        }
        assert!(run("owner IS NOT NULL", &[(10, Some("x"))]));
        // Regular expressions: `.` matches a newline, as in PostgreSQL; escapes that mean
        // something else there are refused.
        assert!(!run(
            "email !~ 'SSN:.*[0-9]'",
            &[(EMAIL, Some("SSN:\n123"))]
        ));
        for e in ["\\bhello", "a\\y", "\\mword\\M", "x\\Z"] {
            assert!(
                bind_err(&format!("email ~ '{e}'")).contains("means something else"),
                "{e}"
            );
        }
        assert!(run("email ~ '\\d+'", &[(EMAIL, Some("a1"))]));
    }

    #[test]
    fn plain_decimals_compare_exactly() {
        let age = |v: &'static str| vec![(AGE, Some(v))];
        // Beyond 2^53 a float cannot tell these apart; a bigint id list must.
        assert!(!run("age = 9007199254740993", &age("9007199254740992")));
        assert!(run("age = 9007199254740993", &age("9007199254740993")));
        assert!(!run(
            "age IN (12345678901234568)",
            &age("12345678901234567")
        ));
        assert!(run("age < 12345678901234568", &age("12345678901234567")));
        assert!(run("age = 12.5", &age("12.50")));
        assert!(run("age = 12.5", &age("0012.500")));
        assert!(!run("age > 12.5", &age("12.50")));
        assert!(run("age > 12.5", &age("12.500001")));
        assert!(run("age < -0.25", &age("-0.5")));
        assert!(run("age = 0", &age("-0.000")));
        assert!(run("age > -1", &age("0")));
        assert!(run("age = -7", &age("-7")));
        assert!(
            run("age = 1000", &age("1e3")),
            "exponents compare as floats"
        );
        assert!(run("age > 1000", &age("Infinity")));
        assert!(run("length(email) = 3", &[(EMAIL, Some("abc"))]));
    }

    /// Three-valued result: Some(true), Some(false) or None (unknown), via `NOT (text)`.
    fn tri3(text: &str, row: &[(usize, Option<&str>)]) -> Option<bool> {
        let pos = run(text, row);
        let neg = run(&format!("NOT ({text})"), row);
        match (pos, neg) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
            (true, true) => panic!("{text:?} is both true and false"),
        }
    }

    fn parse_err(text: &str) -> (usize, String) {
        match parse(text) {
            Ok(p) => panic!("{text:?} parsed: {p:?}"),
            Err(e) => (e.offset, e.message),
        }
    }

    fn bind_errs(text: &str) -> Vec<(usize, String)> {
        let parsed = parse(text).unwrap_or_else(|e| panic!("parse {text:?}: {e}"));
        match bind(&parsed, &schema) {
            Ok(c) => panic!("{text:?} bound: {c:?}"),
            Err(es) => es.into_iter().map(|e| (e.offset, e.message)).collect(),
        }
    }

    fn bind_err(text: &str) -> (usize, String) {
        let mut es = bind_errs(text);
        assert_eq!(es.len(), 1, "{text:?}: {es:?}");
        es.remove(0)
    }

    #[test]
    fn precedence() {
        assert!(run("TRUE OR TRUE AND FALSE", &[]));
        assert!(!run("(TRUE OR TRUE) AND FALSE", &[]));
        assert!(!run("NOT FALSE AND FALSE", &[]));
        assert!(run("NOT (FALSE AND FALSE)", &[]));
        assert!(run("FALSE AND FALSE OR TRUE", &[]));
        assert!(run("NOT FALSE OR FALSE", &[]));
        // NOT binds looser than comparisons.
        assert!(run("NOT age = 5", &[(AGE, Some("4"))]));
        assert!(run("not not age = 5", &[(AGE, Some("5"))]));
        // unary minus binds tighter than comparisons.
        assert!(run("-age < -3", &[(AGE, Some("4"))]));
        assert!(run("- -age = 4", &[(AGE, Some("4"))]));
        assert!(run("-2 = - 2 AND -1e3 < 0 AND 2.5e-1 = .25", &[]));
        assert!(run(
            "age IS NULL OR age > 1 AND age < 3",
            &[(AGE, Some("2"))]
        ));
        assert!(!run(
            "age IS NULL OR age > 1 AND age < 3",
            &[(AGE, Some("7"))]
        ));
        assert!(run("age = 1 IS NOT NULL", &[(AGE, Some("7"))]));
        assert!(run("(age = 1) = FALSE", &[(AGE, Some("7"))]));
        assert!(run("TRUE = (age < 10)", &[(AGE, Some("7"))]));
        assert!(run("false < true", &[]));
    }

    #[test]
    fn kleene_logic_with_nulls() {
        let null = [(EMAIL, None)];
        assert_eq!(tri3("email = 'a'", &null), None);
        assert_eq!(tri3("email <> 'a'", &null), None);
        assert_eq!(tri3("email = 'a' AND FALSE", &null), Some(false));
        assert_eq!(tri3("FALSE AND email = 'a'", &null), Some(false));
        assert_eq!(tri3("email = 'a' AND TRUE", &null), None);
        assert_eq!(tri3("email = 'a' OR TRUE", &null), Some(true));
        assert_eq!(tri3("email = 'a' OR FALSE", &null), None);
        assert_eq!(tri3("NOT email = 'a'", &null), None);
        assert_eq!(tri3("lower(email) = 'a'", &null), None);
        assert_eq!(tri3("length(email) > 0", &null), None);
        assert_eq!(tri3("email LIKE '%'", &null), None);
        assert_eq!(tri3("email ~ ''", &null), None);
        assert_eq!(tri3("email IN ('a')", &null), None);
        assert_eq!(tri3("-age = 1", &[(AGE, None)]), None);
        assert_eq!(tri3("is_test", &[(IS_TEST, None)]), None);
        assert_eq!(tri3("is_test OR NOT is_test", &[(IS_TEST, None)]), None);
        // Comparisons with a NULL literal are unknown, even for non-NULL values.
        let row = [(EMAIL, Some("a"))];
        assert_eq!(tri3("email = NULL", &row), None);
        assert_eq!(tri3("NULL = email", &row), None);
        assert_eq!(tri3("NULL = NULL", &[]), None);
        assert_eq!(tri3("NULL", &[]), None);
        assert_eq!(tri3("NULL AND FALSE", &[]), Some(false));
        assert_eq!(tri3("NULL OR TRUE", &[]), Some(true));
    }

    #[test]
    fn is_null() {
        assert!(run("email IS NULL", &[(EMAIL, None)]));
        assert!(!run("email IS NULL", &[(EMAIL, Some(""))]));
        assert!(run("email IS NOT NULL", &[(EMAIL, Some(""))]));
        assert!(run("lower(email) is null", &[(EMAIL, None)]));
        assert!(run("NULL IS NULL AND 1 IS NOT NULL", &[]));
        // IS NULL does not decode the value.
        assert!(run("age IS NOT NULL", &[(AGE, Some("garbage"))]));
        assert!(run("is_test IS NOT NULL", &[(IS_TEST, Some("garbage"))]));
    }

    fn like(pattern: &str, ci: bool, value: &str) -> bool {
        let m = LikeMatcher::compile(pattern, ci).expect("pattern");
        if ci {
            m.matches(&value.to_lowercase())
        } else {
            m.matches(value)
        }
    }

    #[test]
    fn like_matcher() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("", "", true),
            ("", "a", false),
            ("%", "", true),
            ("%%", "xyz", true),
            ("a%", "abc", true),
            ("a%", "ba", false),
            ("%c", "abc", true),
            ("%c", "cb", false),
            ("%b%", "abc", true),
            ("%b%", "ac", false),
            ("a%c", "ac", true),
            ("a%c", "abbbc", true),
            ("a%a", "a", false),
            ("ab%ba", "aba", false),
            ("a%b%c", "axbyc", true),
            ("a%b%c", "acb", false),
            ("a%%b", "ab", true),
            ("%a%a%", "banana", true),
            ("%nan%na", "banana", false),
            ("%ana", "banana", true),
            ("_", "a", true),
            ("_", "", false),
            ("_", "ab", false),
            ("a_c", "abc", true),
            ("a_c", "ac", false),
            ("__%", "a", false),
            ("__%", "ab", true),
            ("%_b_%", "xxbx", true),
            ("%_b_%", "bx", false),
            ("%@acme.test", "x@acme.test", true),
            ("%@acme.test", "x@acme.testy", false),
            // escapes
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("a\\_c", "a_c", true),
            ("a\\_c", "abc", false),
            ("a\\\\b", "a\\b", true),
            ("\\a", "a", true),
            ("%\\%%", "50% off", true),
            ("%\\%%", "50 off", false),
            // Unicode: `_` is one character, not one byte
            ("_", "é", true),
            ("M_ller", "Müller", true),
            ("%ü%", "Müller", true),
            ("__", "日本", true),
            ("_本", "日本", true),
            ("%本_", "日本語", true),
        ];
        for (p, v, want) in cases {
            assert_eq!(like(p, false, v), *want, "{v:?} LIKE {p:?}");
        }
        assert!(like("ÄB%", true, "äbc"));
        assert!(like("äb%", true, "ÄBC"));
        assert!(!like("äb%", false, "ÄBC"));
        assert!(like("%ACME%", true, "x@acme.test"));
        assert!(like("m_LLER", true, "MÜller"));
        assert!(LikeMatcher::compile("abc\\", false).is_err());
    }

    /// Cross-checks the LIKE matcher against an equivalent anchored regex on random inputs.
    #[test]
    fn like_matcher_agrees_with_regex() {
        let alphabet = ['a', 'b', 'é', '%', '_', '\\'];
        let mut rng = Rng(12345);
        for _ in 0..20_000 {
            let pattern: String = (0..rng.below(7)).map(|_| alphabet[rng.below(6)]).collect();
            let value: String = (0..rng.below(7)).map(|_| alphabet[rng.below(3)]).collect();
            let mut re = String::from("(?s)^");
            let mut chars = pattern.chars();
            let mut ok = true;
            while let Some(c) = chars.next() {
                match c {
                    '%' => re.push_str(".*"),
                    '_' => re.push('.'),
                    '\\' => match chars.next() {
                        Some(n) => re.push_str(&regex::escape(&n.to_string())),
                        None => ok = false,
                    },
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
            }
            re.push('$');
            let m = LikeMatcher::compile(&pattern, false);
            assert_eq!(m.is_ok(), ok, "{pattern:?}");
            if let Ok(m) = m {
                let want = Regex::new(&re).expect("regex").is_match(&value);
                assert_eq!(m.matches(&value), want, "{value:?} LIKE {pattern:?}");
            }
        }
    }

    #[test]
    fn like_in_conditions() {
        let row = [(EMAIL, Some("Anna@Acme.test"))];
        assert!(run("email LIKE '%@Acme.test'", &row));
        assert!(!run("email LIKE '%@acme.test'", &row));
        assert!(run("email ILIKE '%@ACME.TEST'", &row));
        assert!(run("email ILIKE 'ΟΔΟΣ'", &[(EMAIL, Some("οδοΣ"))]));
        assert!(run("email ILIKE 'ΟΔΟΣ'", &[(EMAIL, Some("ΟΔΟΣ"))]));
        assert!(run("email NOT LIKE 'b%'", &row));
        assert!(!run("email NOT ILIKE 'a%'", &row));
        assert!(run("email like 'A_na@%'", &row));
        assert!(run("lower(email) LIKE 'anna%'", &row));
        assert!(run("'O''Brien' LIKE 'O''%'", &[]));
        assert!(run(
            "'O''Brien' = 'O''Brien' AND length('O''Brien') = 7",
            &[]
        ));
    }

    #[test]
    fn regex_forms() {
        let row = [(EMAIL, Some("Anna@Acme.test"))];
        assert!(run("email ~ 'cme'", &row));
        assert!(!run("email ~ '^cme'", &row));
        assert!(!run("email ~ 'ACME'", &row));
        assert!(run("email ~* 'ACME'", &row));
        assert!(run("email !~ 'ACME'", &row));
        assert!(!run("email !~ 'Acme'", &row));
        assert!(!run("email !~* 'ACME'", &row));
        assert!(run("email !~* 'xyz'", &row));
        assert!(run("email ~ '^[A-Z][a-z]+@'", &row));
        assert_eq!(tri3("email !~ 'x'", &[(EMAIL, None)]), None);
        assert_eq!(
            bind_err("email ~ '('"),
            (8, bind_err("email ~ '('").1.clone())
        );
        assert!(bind_err("email ~ '('")
            .1
            .starts_with("invalid regular expression"));
        assert_eq!(bind_err("email !~* '[z-a]'").0, 10);
    }

    #[test]
    fn in_lists() {
        let de = [(COUNTRY, Some("DE"))];
        let xx = [(COUNTRY, Some("XX"))];
        assert!(run("country IN ('DE', 'FR')", &de));
        assert!(!run("country IN ('DE', 'FR')", &xx));
        assert!(run("country NOT IN ('DE', 'FR')", &xx));
        assert!(!run("country not in ('DE', 'FR')", &de));
        assert_eq!(tri3("country IN ('DE', NULL)", &de), Some(true));
        assert_eq!(tri3("country IN ('DE', NULL)", &xx), None);
        assert_eq!(tri3("country NOT IN ('DE', NULL)", &xx), None);
        assert_eq!(tri3("country NOT IN ('DE', NULL)", &de), Some(false));
        assert_eq!(tri3("country IN (NULL)", &de), None);
        assert_eq!(tri3("country IN ('DE')", &[(COUNTRY, None)]), None);
        assert!(run("age IN (1, 2.0, -3)", &[(AGE, Some("2"))]));
        assert!(run("age IN (1, 2.0, -3)", &[(AGE, Some("-3.00"))]));
        assert!(!run("age IN (1, 2.0, -3)", &[(AGE, Some("3"))]));
        assert!(run(
            "lower(country) IN ('de', email)",
            &[(COUNTRY, Some("DE"))]
        ));
        assert!(run(
            "'x' IN (email, country)",
            &[(EMAIL, None), (COUNTRY, Some("x"))]
        ));
    }

    #[test]
    fn functions() {
        assert!(run("lower(email) = 'abc'", &[(EMAIL, Some("AbC"))]));
        assert!(run("UPPER(email) = 'ÄBC'", &[(EMAIL, Some("äbc"))]));
        assert!(run("Length(email) = 5", &[(EMAIL, Some("héllo"))]));
        assert!(run("length(lower(email)) > 2", &[(EMAIL, Some("日本語"))]));
        assert!(run("length('') = 0", &[]));
        assert_eq!(
            parse_err("foo(email) = 1"),
            (
                0,
                "unknown function foo (functions: lower, upper, length)".into()
            )
        );
        assert_eq!(
            parse_err("email = Substr(email)"),
            (
                8,
                "unknown function Substr (functions: lower, upper, length)".into()
            )
        );
        assert_eq!(
            bind_err("length(age) > 1"),
            (0, "length() needs text; column age is a number".into())
        );
        assert_eq!(
            bind_err("upper(is_test) = 'T'"),
            (0, "upper() needs text; column is_test is a boolean".into())
        );
        assert_eq!(
            parse_err("lower(email, 1) = 'a'"),
            (
                11,
                "expected `)` after the argument of lower(), found `,`".into()
            )
        );
        assert_eq!(
            parse_err("lower() = 'a'"),
            (6, "expected an expression, found `)`".into())
        );
    }

    #[test]
    fn identifiers() {
        let p =
            parse("EMAIL = 'x' AND \"Mixed Case\" = 'y' AND \"a\"\"b\" = 'z' AND Email IS NULL")
                .expect("parse");
        assert_eq!(
            p.columns(),
            vec![
                ("email".to_string(), 0),
                ("Mixed Case".to_string(), 16),
                ("a\"b".to_string(), 39),
                ("email".to_string(), 56),
            ]
        );
        let c = bind(&p, &schema).expect("bind");
        assert_eq!(c.columns(), &[0, 4, 5]);
        // Quoted names are case-sensitive.
        assert_eq!(
            bind_err("\"EMAIL\" = 'x'"),
            (0, "unknown column \"EMAIL\"".into())
        );
        assert_eq!(
            bind_err("\"mixed case\" = 'x'"),
            (0, "unknown column \"mixed case\"".into())
        );
        // A quoted keyword is a column.
        assert_eq!(
            bind_err("\"and\" = 'x'"),
            (0, "unknown column \"and\"".into())
        );
        assert!(run("\"Mixed Case\" = 'y'", &[(4, Some("y"))]));
        assert_eq!(
            parse("_x$1 = 1").expect("parse").columns(),
            vec![("_x$1".to_string(), 0)]
        );
    }

    #[test]
    fn unknown_columns_collect_all_errors() {
        let p = parse("nope = 1 AND country = 5 AND Zzz LIKE 'a'").expect("parse");
        let names: Vec<String> = p.columns().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["nope", "country", "zzz"]);
        assert_eq!(
            bind_errs("nope = 1 AND country = 5 AND Zzz LIKE 'a'"),
            vec![
                (0, "unknown column nope".to_string()),
                (
                    21,
                    "type mismatch: column country is text, compared with a number".to_string()
                ),
                (29, "unknown column zzz".to_string()),
            ]
        );
        // No cascade from an unknown column.
        assert_eq!(
            bind_errs("length(nope) = 'x' OR NOT nope"),
            vec![
                (7, "unknown column nope".to_string()),
                (
                    13,
                    "type mismatch: `length(nope)` is a number, compared with text".to_string()
                ),
                (26, "unknown column nope".to_string()),
            ]
        );
    }

    #[test]
    fn type_errors() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "country = 5",
                8,
                "type mismatch: column country is text, compared with a number",
            ),
            (
                "age = 'x'",
                4,
                "type mismatch: column age is a number, compared with text",
            ),
            (
                "'x' <> age",
                4,
                "type mismatch: `'x'` is text, compared with a number",
            ),
            (
                "is_test = 1",
                8,
                "type mismatch: column is_test is a boolean, compared with a number",
            ),
            (
                "email >= TRUE",
                6,
                "type mismatch: column email is text, compared with a boolean",
            ),
            (
                "length(email) != 'x'",
                14,
                "type mismatch: `length(email)` is a number, compared with text",
            ),
            (
                "(age > 1) = 1",
                10,
                "type mismatch: `age > 1` is a boolean, compared with a number",
            ),
            (
                "age LIKE '1%'",
                4,
                "LIKE needs text; column age is a number",
            ),
            (
                "age NOT ILIKE '1%'",
                4,
                "ILIKE needs text; column age is a number",
            ),
            ("age ~ '1'", 4, "~ needs text; column age is a number"),
            (
                "is_test !~* 't'",
                8,
                "!~* needs text; column is_test is a boolean",
            ),
            (
                "email AND is_test",
                0,
                "AND needs boolean operands; column email is text",
            ),
            (
                "is_test OR age",
                11,
                "OR needs boolean operands; column age is a number",
            ),
            (
                "is_test AND (TRUE OR 'x')",
                21,
                "OR needs boolean operands; `'x'` is text",
            ),
            ("NOT email", 4, "NOT needs a boolean; column email is text"),
            (
                "email",
                0,
                "the condition must be true or false (a boolean); column email is text",
            ),
            (
                "lower(email)",
                0,
                "the condition must be true or false (a boolean); `lower(email)` is text",
            ),
            (
                "-age",
                0,
                "the condition must be true or false (a boolean); `-age` is a number",
            ),
            (
                "-email = 1",
                0,
                "unary minus needs a number; column email is text",
            ),
            (
                "age IN (1, 'x')",
                11,
                "type mismatch: column age is a number, but IN list item `'x'` is text",
            ),
            (
                "country NOT IN ('DE', 2)",
                22,
                "type mismatch: column country is text, but IN list item `2` is a number",
            ),
            (
                "email LIKE 'abc\\'",
                11,
                "LIKE pattern must not end with an escape character (\\)",
            ),
        ];
        for (text, offset, message) in cases {
            assert_eq!(bind_err(text), (*offset, message.to_string()), "{text:?}");
        }
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty condition"),
            ("   ", 0, "empty condition"),
            (
                "email = ",
                8,
                "expected an expression, found end of condition",
            ),
            ("email = 'abc", 8, "unterminated string literal"),
            ("email = 'it''s", 8, "unterminated string literal"),
            ("(email = 'a'", 12, "expected `)`, found end of condition"),
            ("email = 'a')", 11, "unexpected `)`"),
            ("email = 'a' 'b'", 12, "unexpected `'b'`"),
            (
                "email LIKE country",
                11,
                "LIKE needs a string literal pattern, found `country`",
            ),
            (
                "email ILIKE 1",
                12,
                "ILIKE needs a string literal pattern, found `1`",
            ),
            (
                "email ~* lower('x')",
                9,
                "~* needs a string literal pattern, found `lower`",
            ),
            (
                "email LIKE NULL",
                11,
                "LIKE needs a string literal pattern, found `NULL`",
            ),
            ("age IN ()", 8, "IN list must not be empty"),
            ("age IN 1", 7, "expected `(` after IN, found `1`"),
            (
                "age IN (1 2)",
                10,
                "expected `,` or `)` in IN list, found `2`",
            ),
            ("age IN (1,)", 10, "expected an expression, found `)`"),
            (
                "email IS 'x'",
                9,
                "expected NULL or NOT NULL after IS, found `'x'`",
            ),
            (
                "email IS NOT TRUE",
                13,
                "expected NULL after IS NOT, found `TRUE`",
            ),
            (
                "age = 1 = 2",
                8,
                "comparisons cannot be chained; add parentheses before `=`",
            ),
            (
                "age < 1 LIKE 'x'",
                8,
                "comparisons cannot be chained; add parentheses before `LIKE`",
            ),
            ("age = 12abc", 6, "trailing junk after numeric literal"),
            ("age = 1.2.3", 6, "trailing junk after numeric literal"),
            ("age = 1e999", 6, "number out of range: 1e999"),
            ("age = .", 6, "unexpected character '.'"),
            ("email # 'x'", 6, "unexpected character '#'"),
            ("email ! 'x'", 6, "unexpected character '!'"),
            ("é = 1", 0, "unexpected character 'é'"),
            (
                "email = 'a' AND AND",
                16,
                "expected an expression, found `AND`",
            ),
            (
                "email = 'a' OR",
                14,
                "expected an expression, found end of condition",
            ),
            ("NOT", 3, "expected an expression, found end of condition"),
            ("email NOT 'x'", 6, "unexpected `NOT`"),
            ("\"\" = 'a'", 0, "zero-length quoted identifier"),
            ("\"abc = 'a'", 0, "unterminated quoted identifier"),
            ("email = ,", 8, "expected an expression, found `,`"),
            (
                "email = 'a' AND (",
                17,
                "expected an expression, found end of condition",
            ),
        ];
        for (text, offset, message) in cases {
            assert_eq!(parse_err(text), (*offset, message.to_string()), "{text:?}");
        }
    }

    #[test]
    fn inference_for_unknown_columns() {
        // compared with a number -> Number (numeric comparison, not text)
        assert!(run("u = 5", &[(U, Some("5.0"))]));
        assert!(run("u < 10", &[(U, Some("9"))]));
        assert!(run("10 > u", &[(U, Some("9"))]));
        assert!(run("u > -1", &[(U, Some("0"))]));
        assert!(run("u IN (1, 2)", &[(U, Some("02"))]));
        assert!(run("-u = -3", &[(U, Some("3"))]));
        assert!(run("u = age", &[(U, Some("3")), (AGE, Some("3.0"))]));
        assert!(run("age = u", &[(U, Some("3")), (AGE, Some("3.0"))]));
        assert_eq!(
            eval_row("u = 5", &[(U, Some("x"))]),
            Err(EvalError::NotANumber { column: U })
        );
        // boolean uses -> Bool
        assert!(run("u", &[(U, Some("t"))]));
        assert!(!run("u", &[(U, Some("f"))]));
        assert!(run("NOT u", &[(U, Some("FALSE"))]));
        assert!(run("u AND v", &[(U, Some("true")), (7, Some("T"))]));
        assert!(run("u = TRUE", &[(U, Some("t"))]));
        assert!(run("u OR FALSE", &[(U, Some("t"))]));
        assert_eq!(
            eval_row("u", &[(U, Some("yes please"))]),
            Err(EvalError::NotABoolean { column: U })
        );
        // otherwise text
        assert!(run("u = 'x'", &[(U, Some("x"))]));
        assert!(run("u LIKE '1%'", &[(U, Some("12"))]));
        assert!(run("u ~ '^1'", &[(U, Some("12"))]));
        assert!(run("length(u) = 2", &[(U, Some("12"))]));
        assert!(run("u = v", &[(U, Some("1.0")), (7, Some("1.0"))]));
        assert!(!run("u = v", &[(U, Some("1.0")), (7, Some("1"))]));
        assert!(run("u IS NOT NULL", &[(U, Some("x"))]));
        // A mismatch the other side forces is still an error.
        assert_eq!(
            bind_err("u = 1 AND length(u) = 'x'"),
            (
                20,
                "type mismatch: `length(u)` is a number, compared with text".into()
            )
        );
    }

    #[test]
    fn numbers_and_booleans_at_eval() {
        assert!(run("age = 12.5", &[(AGE, Some("12.50"))]));
        assert!(run("age = 12.5", &[(AGE, Some(" 12.50 "))]));
        assert!(run("age > 1000000", &[(AGE, Some("Infinity"))]));
        assert!(run("age < -1000000", &[(AGE, Some("-Infinity"))]));
        // PostgreSQL: NaN equals NaN and is larger than everything.
        assert!(run("age > 1e300", &[(AGE, Some("NaN"))]));
        assert!(run("age <> 1", &[(AGE, Some("NaN"))]));
        assert!(run("age >= 1000 AND age < 1001", &[(AGE, Some("1e3"))]));
        assert!(run("age = 0", &[(AGE, Some("-0"))]));
        assert_eq!(
            eval_row("age > 1", &[(AGE, Some("twelve"))]),
            Err(EvalError::NotANumber { column: AGE })
        );
        assert_eq!(
            eval_row("age > 1", &[(AGE, Some(""))]),
            Err(EvalError::NotANumber { column: AGE })
        );
        assert!(run("is_test", &[(IS_TEST, Some("t"))]));
        assert!(run("is_test = FALSE", &[(IS_TEST, Some("f"))]));
        assert!(run("is_test = TRUE", &[(IS_TEST, Some("True"))]));
        assert_eq!(
            eval_row("is_test", &[(IS_TEST, Some("1"))]),
            Err(EvalError::NotABoolean { column: IS_TEST })
        );
        // Text compares by byte order; ISO dates compare chronologically.
        assert!(run("email < 'b'", &[(EMAIL, Some("B"))]));
        assert!(run("email >= '2024-01-01'", &[(EMAIL, Some("2024-01-31"))]));
        // Error display never shows the value.
        let err = eval_row("age > 1", &[(AGE, Some("secret-value"))]).expect_err("err");
        assert!(!format!("{err:?}").contains("secret"));
        let err: EvalError<String> = EvalError::NotANumber { column: AGE };
        assert_eq!(err.to_string(), "a value of column #2 is not a number");
    }

    #[test]
    fn read_errors_and_laziness() {
        let c = cond("FALSE AND age = 1 OR email = 'x'");
        assert_eq!(c.columns(), &[EMAIL, AGE]);
        let mut calls = Vec::new();
        let r = c.eval(&mut |p| -> Result<Option<Cow<'_, str>>, String> {
            calls.push(p);
            Ok(Some(Cow::Borrowed("x")))
        });
        assert_eq!(r, Ok(true));
        assert_eq!(calls, vec![EMAIL]);

        let c = cond("email = 'a' OR email = 'x' OR age = 1");
        let mut calls = Vec::new();
        let r = c.eval(&mut |p| -> Result<Option<Cow<'_, str>>, String> {
            calls.push(p);
            Ok(Some(Cow::Borrowed("x")))
        });
        assert_eq!(r, Ok(true));
        assert!(!calls.contains(&AGE));

        let r = c.eval(&mut |_| -> Result<Option<Cow<'_, str>>, String> {
            Err("decode failed".to_string())
        });
        assert_eq!(r, Err(EvalError::Read("decode failed".to_string())));

        // Owned values from the caller work too.
        let r = cond("email = 'x'").eval(&mut |_| -> Result<Option<Cow<'static, str>>, ()> {
            Ok(Some(Cow::Owned("x".to_string())))
        });
        assert_eq!(r, Ok(true));
    }

    #[test]
    fn guards() {
        let c = cond("email LIKE '%@acme.test' AND country = 'DE'");
        let g = c.guard(EMAIL).expect("guard on email");
        assert!(g.matches("x@acme.test"));
        assert!(!g.matches("y@example.com"));
        let g = c.guard(COUNTRY).expect("guard on country");
        assert!(g.matches("DE"));
        assert!(!g.matches("FR"));
        assert!(c.guard(AGE).is_none());

        assert!(cond("country = 'DE'").guard(EMAIL).is_none());

        let c = cond("email LIKE 'a%' OR email LIKE 'b%'");
        let g = c.guard(EMAIL).expect("guard");
        assert!(g.matches("alice"));
        assert!(g.matches("bob"));
        assert!(!g.matches("carol"));

        // Conjuncts mixing columns are not part of the guard.
        let c =
            cond("(email = 'a' OR country = 'DE') AND lower(email) LIKE '%x%' AND email <> 'zx'");
        let g = c.guard(EMAIL).expect("guard");
        assert!(g.matches("AXE"));
        assert!(!g.matches("zx"));
        assert!(!g.matches("a"));

        // Nested ANDs are flattened.
        let c = cond("(email LIKE 'a%' AND age > 1) AND (country = 'DE' AND email LIKE '%z')");
        let g = c.guard(EMAIL).expect("guard");
        assert!(g.matches("abz"));
        assert!(!g.matches("ab"));

        // Number guards: a value that does not parse could never have been selected.
        let c = cond("age > 17 AND country = 'DE'");
        let g = c.guard(AGE).expect("guard");
        assert!(g.matches("18"));
        assert!(!g.matches("17"));
        assert!(!g.matches("abc"));

        // IS NULL conjuncts can never match a non-NULL value.
        let c = cond("email IS NULL AND country = 'DE'");
        assert!(!c.guard(EMAIL).expect("guard").matches("x"));
        assert!(cond("TRUE AND email = 'x'").guard(EMAIL).is_some());
    }

    #[test]
    fn condition_is_send_sync_and_errors_display() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Condition>();
        assert_send_sync::<Guard>();
        assert_send_sync::<Parsed>();
        let e = CondError::new(3, "unknown column foo");
        assert_eq!(e.to_string(), "unknown column foo (at byte 3)");
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for n in [65, 1000, 100_000] {
            let text = format!("{}email = 'x'{}", "(".repeat(n), ")".repeat(n));
            assert!(parse(&text).is_err());
            assert!(parse(&format!("{}TRUE", "NOT ".repeat(n))).is_err());
            assert!(parse(&format!("age = {}1", "-".repeat(n))).is_err());
            assert!(parse(&format!("email{}", " IS NULL".repeat(n))).is_err());
            assert!(parse(&format!(
                "lower({}email{}) = 'x'",
                "lower(".repeat(n),
                ")".repeat(n)
            ))
            .is_err());
        }
        let ok = format!("{}email = 'x'{}", "(".repeat(30), ")".repeat(30));
        assert!(run(&ok, &[(EMAIL, Some("x"))]));
        // Long flat chains are fine.
        let long = vec!["email = 'x'"; 10_000].join(" OR ");
        assert!(run(&long, &[(EMAIL, Some("x"))]));
    }

    #[test]
    fn garbage_never_panics() {
        let pieces = [
            "email",
            "age",
            "u",
            "is_test",
            "\"Mixed Case\"",
            "\"",
            "'",
            "'x'",
            "''",
            "(",
            ")",
            ",",
            "-",
            "=",
            "<>",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "~",
            "~*",
            "!~",
            "!~*",
            "!",
            "AND",
            "OR",
            "NOT",
            "IN",
            "LIKE",
            "ILIKE",
            "IS",
            "NULL",
            "TRUE",
            "FALSE",
            "lower",
            "length",
            "1",
            "1.5e3",
            ".",
            "e",
            "'%\\'",
            "'_é%'",
            "'('",
            "é",
            "日本",
            "\\",
            " ",
            "\n",
            "$",
            "#",
            "1e",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let values = [
            None,
            Some(""),
            Some("1"),
            Some("t"),
            Some("x@acme.test"),
            Some("NaN"),
            Some("é"),
        ];
        for i in 0..30_000 {
            let mut text = String::new();
            for _ in 0..rng.below(12) {
                text.push_str(pieces[rng.below(pieces.len())]);
                if rng.below(3) > 0 {
                    text.push(' ');
                }
            }
            if i % 5 == 0 {
                // raw random chars, including multi-byte ones
                text = (0..rng.below(20))
                    .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('x'))
                    .collect();
            }
            let Ok(parsed) = parse(&text) else { continue };
            let _ = parsed.columns();
            let Ok(c) = bind(&parsed, &schema) else {
                continue;
            };
            let row: Vec<(usize, Option<&str>)> = (0..8)
                .map(|p| (p, values[rng.below(values.len())]))
                .collect();
            let _ = c.eval(&mut getter(&row));
            for col in c.columns() {
                if let Some(g) = c.guard(*col) {
                    let _ = g.matches(values[rng.below(values.len())].unwrap_or(""));
                }
            }
        }
    }
}
