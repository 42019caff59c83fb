//! What one statement of a dump is, and whether it may pass.
//!
//! A dump's statements fall into: data (`COPY … FROM stdin`, `INSERT … VALUES`), which the rules
//! anonymize; schema statements on an allow-list, passed as written — except that production's own
//! secrets (role passwords, user-mapping credentials, subscription connection strings) are cut out
//! of them; large objects and comments, which a policy decides; and everything else, which is
//! refused. Nothing here knows rules; names are folded as PostgreSQL folds them.

use super::lexer::{self, Kind, Token};
use crate::copy::{CopyFormat, CsvOptions, TextOptions};
use crate::schema::QualifiedName;

/// A statement as the dump reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// Schema text on the allow-list, passed as written.
    Schema(Info),
    /// Schema text with a production secret cut out: pass `text` instead of the original.
    Rewritten { text: Vec<u8>, removed: Secret },
    /// `COPY table [(columns)] FROM stdin …`: rows follow on the next lines.
    Copy(CopyStatement),
    /// Large-object data or metadata (`lo_create`, `lowrite`, `ALTER LARGE OBJECT`, …).
    LargeObject,
    /// `COMMENT ON …` or `SECURITY LABEL …`: free text about an object.
    Comment,
    /// A psql meta-command that switches the database (`\connect db`).
    Connect(String),
    /// Not allowed to pass: what it is, for the message.
    Refused(String),
}

/// What a schema statement tells the reader about the dump.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Info {
    #[default]
    None,
    /// `SET standard_conforming_strings = on|off`.
    StandardConformingStrings(bool),
    /// A table and its columns, for data statements that name none.
    CreateTable(TableDef),
    /// `ALTER TABLE ONLY parent ATTACH PARTITION child …`: (child, parent).
    Attach(QualifiedName, QualifiedName),
}

/// The kinds of production secret cut out of schema statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Secret {
    RolePassword,
    UserMapping,
    ServerOption,
    SubscriptionConnection,
}

impl Secret {
    pub fn describe(self) -> &'static str {
        match self {
            Secret::RolePassword => "role password",
            Secret::UserMapping => "user-mapping user or password",
            Secret::ServerOption => "foreign-server password option",
            Secret::SubscriptionConnection => "subscription connection string",
        }
    }
}

/// A table as its `CREATE TABLE` defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: QualifiedName,
    /// (name, generated) in table order; `None` when the statement does not list them in a way
    /// this reader follows (`OF type`, `LIKE`).
    pub columns: Option<Vec<(String, bool)>>,
    /// Tables whose columns come first (`INHERITS`, `PARTITION OF`).
    pub parents: Vec<QualifiedName>,
    /// Created as `PARTITION OF` its (only) parent.
    pub partition: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatement {
    pub table: QualifiedName,
    pub columns: Option<Vec<String>>,
    pub format: CopyFormat,
}

/// `INSERT INTO table [(columns)] [OVERRIDING … VALUE] VALUES`, up to the first tuple.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InsertHeader {
    pub table: QualifiedName,
    pub columns: Option<Vec<String>>,
}

/// The significant tokens of a statement, read front to back.
struct Cursor<'a> {
    text: &'a [u8],
    toks: Vec<Token>,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8], scs: bool) -> Result<Self, String> {
        let toks = lexer::tokens(text, scs).map_err(|_| "an unterminated quote".to_string())?;
        Ok(Cursor {
            text,
            toks: toks.into_iter().filter(lexer::significant).collect(),
            i: 0,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn word_at(&self, i: usize) -> Option<String> {
        self.toks
            .get(i)
            .and_then(|t| lexer::word(self.text, t))
            .map(|w| w.into_owned())
    }

    fn peek_word(&self) -> Option<String> {
        self.word_at(self.i)
    }

    /// Take the next token if it is this keyword.
    fn eat(&mut self, kw: &str) -> bool {
        if self.peek_word().as_deref() == Some(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_kind(&mut self, k: Kind) -> bool {
        if self.peek_kind() == Some(k) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).copied();
        self.i += 1;
        t
    }

    fn at_end(&self) -> bool {
        self.i >= self.toks.len()
            || (self.peek_kind() == Some(Kind::Semicolon) && self.i + 1 == self.toks.len())
    }

    /// An identifier: a word folded to lower case, or a quoted identifier as written.
    fn ident(&mut self) -> Option<String> {
        let t = *self.peek()?;
        let s = match t.kind {
            Kind::Word => lexer::word(self.text, &t)?.into_owned(),
            Kind::QuotedIdent => unquote_ident(&self.text[t.start..t.end])?,
            _ => return None,
        };
        self.i += 1;
        Some(s)
    }

    /// `name` or `schema.name`.
    fn qualified(&mut self) -> Option<QualifiedName> {
        let first = self.ident()?;
        if self.eat_kind(Kind::Dot) {
            let second = self.ident()?;
            if self.peek_kind() == Some(Kind::Dot) {
                return None;
            }
            Some(QualifiedName::new(&first, &second))
        } else {
            Some(QualifiedName::new("public", &first))
        }
    }

    /// `(a, "B", c)`.
    fn ident_list(&mut self) -> Option<Vec<String>> {
        if !self.eat_kind(Kind::Open) {
            return None;
        }
        let mut out = Vec::new();
        loop {
            out.push(self.ident()?);
            if self.eat_kind(Kind::Comma) {
                continue;
            }
            if self.eat_kind(Kind::Close) {
                return Some(out);
            }
            return None;
        }
    }

    /// The value of a string constant token.
    fn string(&mut self) -> Option<String> {
        let t = *self.peek()?;
        let Kind::Str(kind) = t.kind else {
            return None;
        };
        self.i += 1;
        super::literal::string_value(&self.text[t.start..t.end], kind, true).ok()
    }
}

/// The name inside `"…"` (or `U&"…"` without escapes).
pub fn unquote_ident(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\"\"", "\""))
}

/// Classify a complete statement (its text from its first token to its end). `scs` is the current
/// `standard_conforming_strings`.
pub fn classify(text: &[u8], scs: bool) -> Statement {
    match classify_inner(text, scs) {
        Ok(s) => s,
        Err(why) => Statement::Refused(why),
    }
}

fn classify_inner(text: &[u8], scs: bool) -> Result<Statement, String> {
    if text.first() == Some(&b'\\') {
        return meta(text);
    }
    let mut c = Cursor::new(text, scs)?;
    if c.toks.iter().any(|t| t.kind == Kind::Backslash) {
        return Err("a statement with a psql meta-command inside it".into());
    }
    let Some(first) = c.peek_word() else {
        return Err("a statement that does not start with a keyword".into());
    };
    let schema = |info| Ok(Statement::Schema(info));
    match first.as_str() {
        "set" => set_statement(&mut c),
        "reset" | "begin" | "commit" | "end" | "start" | "rollback" | "refresh" | "analyze"
        | "analyse" | "vacuum" | "truncate" | "checkpoint" => schema(Info::None),
        "create" => create(&mut c, text, scs),
        "alter" => alter(&mut c, text, scs),
        "drop" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            schema(Info::None)
        }
        "grant" | "revoke" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            schema(Info::None)
        }
        "comment" | "security" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            Ok(Statement::Comment)
        }
        "select" => select(&mut c),
        "copy" => copy(&mut c),
        "insert" => Err(insert_refusal(text, scs)),
        other => Err(format!("a {} statement", other.to_uppercase())),
    }
}

/// Whether `LARGE OBJECT` appears among the statement's first words (after `skip`).
fn mentions_large_object(c: &Cursor, skip: usize) -> bool {
    let words: Vec<Option<String>> = (skip..c.toks.len().min(skip + 12))
        .map(|i| c.word_at(i))
        .collect();
    words
        .windows(2)
        .any(|w| w[0].as_deref() == Some("large") && w[1].as_deref() == Some("object"))
}

fn meta(text: &[u8]) -> Result<Statement, String> {
    let line = std::str::from_utf8(text)
        .map_err(|_| "a meta-command that is not UTF-8".to_string())?
        .trim_end();
    let args = meta_args(&line[1..]);
    let mut parts = args.iter().map(String::as_str);
    let cmd = parts.next().unwrap_or("");
    match cmd {
        "connect" | "c" => {
            let db = parts.next().unwrap_or("");
            // pg_dumpall writes `\connect -reuse-previous=on "dbname='x'"` or a plain name.
            let db = if let Some(rest) = db.strip_prefix("-reuse-previous=") {
                let _ = rest;
                parts.next().unwrap_or("")
            } else {
                db
            };
            let name = connect_target(db)
                .ok_or_else(|| "a \\connect whose database this reader cannot read".to_string())?;
            Ok(Statement::Connect(name))
        }
        "restrict" | "unrestrict" => Ok(Statement::Schema(Info::None)),
        "encoding" => match parts.next() {
            Some(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {
                Ok(Statement::Schema(Info::None))
            }
            _ => Err("a client encoding other than UTF8 (dump with --encoding=UTF8)".into()),
        },
        other => Err(format!("the psql meta-command \\{other}")),
    }
}

/// A meta-command's words as psql splits them: whitespace outside single or double quotes. Quotes
/// stay on the words (to be read by their command).
fn meta_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(ch);
                cur.push(ch);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (_, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The database of `\connect` as pg_dumpall writes it: `name`, `"Name"`, or `"dbname='x'"`.
fn connect_target(arg: &str) -> Option<String> {
    let unq = if arg.starts_with('"') {
        arg.strip_prefix('"')?
            .strip_suffix('"')?
            .replace("\"\"", "\"")
    } else if arg.starts_with('\'') {
        arg.strip_prefix('\'')?
            .strip_suffix('\'')?
            .replace("\\'", "'")
    } else {
        arg.to_string()
    };
    if let Some(v) = unq.strip_prefix("dbname=") {
        let v = v.trim();
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .map(|v| v.replace("\\'", "'").replace("\\\\", "\\"))
            .unwrap_or_else(|| v.to_string());
        return Some(v);
    }
    (!unq.is_empty()).then_some(unq)
}

fn set_statement(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("set");
    let _ = c.eat("session") || c.eat("local");
    let name = c.peek_word();
    c.next();
    let _ = c.eat_kind(Kind::Op) || c.eat("to");
    let value = match c.peek() {
        Some(t) if matches!(t.kind, Kind::Word) => c.peek_word(),
        Some(t) if matches!(t.kind, Kind::Str(_)) => c.string().map(|s| s.to_lowercase()),
        _ => None,
    };
    match (name.as_deref(), value.as_deref()) {
        (Some("standard_conforming_strings"), Some("on" | "true")) => {
            Ok(Statement::Schema(Info::StandardConformingStrings(true)))
        }
        (Some("standard_conforming_strings"), Some("off" | "false")) => {
            Ok(Statement::Schema(Info::StandardConformingStrings(false)))
        }
        (Some("client_encoding"), v) => match v {
            Some("utf8" | "utf-8" | "unicode") => Ok(Statement::Schema(Info::None)),
            _ => Err("a client encoding other than UTF8 (dump with --encoding=UTF8)".into()),
        },
        _ => Ok(Statement::Schema(Info::None)),
    }
}

/// Words that may stand between CREATE and the kind of object.
const CREATE_MODIFIERS: &[&str] = &[
    "or",
    "replace",
    "temp",
    "temporary",
    "unlogged",
    "global",
    "local",
    "unique",
    "constraint",
    "default",
    "trusted",
    "procedural",
    "recursive",
];

/// Object kinds a dump's schema creates (first word of the kind).
const CREATE_KINDS: &[&str] = &[
    "table",
    "view",
    "materialized",
    "index",
    "sequence",
    "type",
    "domain",
    "function",
    "procedure",
    "aggregate",
    "operator",
    "cast",
    "collation",
    "conversion",
    "extension",
    "schema",
    "trigger",
    "event",
    "rule",
    "policy",
    "publication",
    "statistics",
    "text",
    "language",
    "transform",
    "access",
    "foreign",
    "server",
    "user",
    "role",
    "group",
    "subscription",
    "database",
    "tablespace",
];

fn create(c: &mut Cursor, text: &[u8], scs: bool) -> Result<Statement, String> {
    c.eat("create");
    while c
        .peek_word()
        .is_some_and(|w| CREATE_MODIFIERS.contains(&w.as_str()))
    {
        c.next();
    }
    let kind = c.peek_word().unwrap_or_default();
    if !CREATE_KINDS.contains(&kind.as_str()) {
        return Err(format!("CREATE {}", kind.to_uppercase()));
    }
    match kind.as_str() {
        "table" => create_table(c),
        "role" | "user" | "group" => {
            if c.word_at(c.i + 1).as_deref() == Some("mapping") {
                return user_mapping(c, text, scs);
            }
            role_password(c, text)
        }
        "server" => strip_options(c, text, Secret::ServerOption, |n| n.contains("password")),
        "subscription" => subscription_connection(c, text),
        _ => Ok(Statement::Schema(Info::None)),
    }
}

fn alter(c: &mut Cursor, text: &[u8], scs: bool) -> Result<Statement, String> {
    c.eat("alter");
    let kind = c.peek_word().unwrap_or_default();
    match kind.as_str() {
        "system" => Err("ALTER SYSTEM".into()),
        "large" => Ok(Statement::LargeObject),
        "role" | "user" | "group" => {
            if c.word_at(c.i + 1).as_deref() == Some("mapping") {
                return user_mapping(c, text, scs);
            }
            role_password(c, text)
        }
        "server" => strip_options(c, text, Secret::ServerOption, |n| n.contains("password")),
        "subscription" => subscription_connection(c, text),
        "table" => alter_table(c),
        _ if CREATE_KINDS.contains(&kind.as_str())
            || ["default", "operator", "large"].contains(&kind.as_str()) =>
        {
            Ok(Statement::Schema(Info::None))
        }
        other => Err(format!("ALTER {}", other.to_uppercase())),
    }
}

/// `ALTER TABLE [ONLY] parent ATTACH PARTITION child …` is noted; other forms pass.
fn alter_table(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("table");
    let _ = c.eat("if") && c.eat("exists");
    c.eat("only");
    let Some(parent) = c.qualified() else {
        return Ok(Statement::Schema(Info::None));
    };
    if c.eat("attach") && c.eat("partition") {
        if let Some(child) = c.qualified() {
            return Ok(Statement::Schema(Info::Attach(child, parent)));
        }
    }
    Ok(Statement::Schema(Info::None))
}

/// `CREATE TABLE name (columns) …`: the columns, for data statements without a column list.
/// `CREATE TABLE … AS` copies rows no rule sees: refused.
fn create_table(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("table");
    let _ = c.eat("if") && c.eat("not") && c.eat("exists");
    let name = c
        .qualified()
        .ok_or_else(|| "a CREATE TABLE whose name this reader cannot read".to_string())?;
    let mut def = TableDef {
        name,
        columns: Some(Vec::new()),
        parents: Vec::new(),
        partition: false,
    };
    // A top-level AS makes it CREATE TABLE … AS (a query's rows) or … AS EXECUTE.
    let mut depth = 0i32;
    for t in &c.toks[c.i..] {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            Kind::Word if depth == 0 && lexer::word(c.text, t).as_deref() == Some("as") => {
                return Err("CREATE TABLE … AS (rows from a query, which no rule sees)".into());
            }
            _ => {}
        }
    }
    if c.eat("of") {
        def.columns = None;
        return Ok(Statement::Schema(Info::CreateTable(def)));
    }
    if c.eat("partition") && c.eat("of") {
        def.partition = true;
        def.parents.push(
            c.qualified()
                .ok_or_else(|| "a PARTITION OF this reader cannot read".to_string())?,
        );
        return Ok(Statement::Schema(Info::CreateTable(def)));
    }
    if c.eat_kind(Kind::Open) {
        def.columns = table_elements(c);
    }
    if c.eat("inherits") && c.eat_kind(Kind::Open) {
        while let Some(p) = c.qualified() {
            def.parents.push(p);
            if !c.eat_kind(Kind::Comma) {
                break;
            }
        }
    }
    Ok(Statement::Schema(Info::CreateTable(def)))
}

/// The column definitions of a table's element list (after its `(`), up to the matching `)`.
fn table_elements(c: &mut Cursor) -> Option<Vec<(String, bool)>> {
    let mut columns = Vec::new();
    let mut known = true;
    loop {
        if c.eat_kind(Kind::Close) {
            break;
        }
        // One element: up to a comma or the closing parenthesis at this depth.
        let start = c.i;
        let mut depth = 0i32;
        while let Some(t) = c.peek() {
            match t.kind {
                Kind::Open => depth += 1,
                Kind::Close if depth == 0 => break,
                Kind::Close => depth -= 1,
                Kind::Comma if depth == 0 => break,
                _ => {}
            }
            c.i += 1;
        }
        let end = c.i;
        c.eat_kind(Kind::Comma);
        if start == end {
            if c.i >= c.toks.len() {
                return None;
            }
            continue;
        }
        let first = c.word_at(start);
        match first.as_deref() {
            Some("constraint" | "primary" | "unique" | "check" | "foreign" | "exclude") => {}
            Some("like") => known = false,
            _ => {
                let mut sub = Cursor {
                    text: c.text,
                    toks: c.toks[start..end].to_vec(),
                    i: 0,
                };
                let name = sub.ident()?;
                // GENERATED ALWAYS AS ( expr ) STORED: not in COPY data; identity columns are.
                let words: Vec<Option<String>> =
                    (0..sub.toks.len()).map(|i| sub.word_at(i)).collect();
                let generated = words.windows(4).enumerate().any(|(i, w)| {
                    w[0].as_deref() == Some("generated")
                        && w[1].as_deref() == Some("always")
                        && w[2].as_deref() == Some("as")
                        && sub.toks.get(i + 3).map(|t| t.kind) == Some(Kind::Open)
                });
                columns.push((name, generated));
            }
        }
        if c.i >= c.toks.len() {
            return None;
        }
    }
    known.then_some(columns)
}

/// Cut `[ENCRYPTED] PASSWORD 'secret'` out of CREATE/ALTER ROLE, USER or GROUP.
fn role_password(c: &mut Cursor, text: &[u8]) -> Result<Statement, String> {
    let mut cuts = Vec::new();
    let toks = &c.toks;
    let mut i = c.i;
    while i < toks.len() {
        if c.word_at(i).as_deref() == Some("password") {
            let from = if i > 0 && c.word_at(i - 1).as_deref() == Some("encrypted") {
                i - 1
            } else {
                i
            };
            match toks.get(i + 1).map(|t| t.kind) {
                Some(Kind::Str(_)) => {
                    cuts.push((toks[from].start, toks[i + 1].end));
                    i += 2;
                    continue;
                }
                // PASSWORD NULL holds no secret.
                _ if c.word_at(i + 1).as_deref() == Some("null") => {}
                _ => return Err("a role password this reader cannot read".into()),
            }
        }
        i += 1;
    }
    Ok(rewritten(text, &cuts, Secret::RolePassword))
}

/// Text with the byte ranges in `cuts` removed (each leaves one space).
fn rewritten(text: &[u8], cuts: &[(usize, usize)], secret: Secret) -> Statement {
    if cuts.is_empty() {
        return Statement::Schema(Info::None);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for &(from, to) in cuts {
        out.extend_from_slice(&text[at..from]);
        at = to;
    }
    out.extend_from_slice(&text[at..]);
    Statement::Rewritten {
        text: out,
        removed: secret,
    }
}

/// CREATE/ALTER USER MAPPING: the `user` and `password` options are production's credentials.
fn user_mapping(c: &mut Cursor, text: &[u8], _scs: bool) -> Result<Statement, String> {
    strip_options(c, text, Secret::UserMapping, |n| {
        n == "user" || n.contains("password") || n == "passfile"
    })
}

/// In `OPTIONS ( [ADD|SET|DROP] name 'value', … )`, cut the options whose name `secret` says.
/// An options list left empty goes as a whole.
fn strip_options(
    c: &mut Cursor,
    text: &[u8],
    kind: Secret,
    secret: impl Fn(&str) -> bool,
) -> Result<Statement, String> {
    let toks = c.toks.clone();
    let Some(opt) = (c.i..toks.len()).find(|&i| c.word_at(i).as_deref() == Some("options")) else {
        return Ok(Statement::Schema(Info::None));
    };
    if toks.get(opt + 1).map(|t| t.kind) != Some(Kind::Open) {
        return Err("an OPTIONS list this reader cannot read".into());
    }
    // Entries: token ranges between the parentheses, split at commas.
    let mut entries: Vec<(usize, usize)> = Vec::new();
    let mut i = opt + 2;
    let mut start = i;
    loop {
        match toks.get(i).map(|t| t.kind) {
            Some(Kind::Comma) => {
                entries.push((start, i));
                start = i + 1;
            }
            Some(Kind::Close) => {
                entries.push((start, i));
                break;
            }
            Some(_) => {}
            None => return Err("an OPTIONS list this reader cannot read".into()),
        }
        i += 1;
    }
    let close = i;
    let name_of = |(s, e): (usize, usize)| -> Option<String> {
        let mut j = s;
        if matches!(c.word_at(j).as_deref(), Some("add" | "set" | "drop")) && e - s > 1 {
            j += 1;
        }
        let t = toks.get(j)?;
        match t.kind {
            Kind::Word => lexer::word(text, t).map(|w| w.into_owned()),
            Kind::QuotedIdent => unquote_ident(&text[t.start..t.end]),
            _ => None,
        }
    };
    let keep: Vec<(usize, usize)> = entries
        .iter()
        .copied()
        .filter(|e| e.0 < e.1 && !name_of(*e).is_some_and(|n| secret(&n.to_lowercase())))
        .collect();
    if keep.len() == entries.len() {
        return Ok(Statement::Schema(Info::None));
    }
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..toks[opt].start]);
    if !keep.is_empty() {
        out.extend_from_slice(b"OPTIONS (");
        let parts: Vec<&[u8]> = keep
            .iter()
            .map(|&(s, e)| &text[toks[s].start..toks[e - 1].end])
            .collect();
        out.extend_from_slice(&parts.join(&b", "[..]));
        out.push(b')');
    }
    let after = toks[close].end;
    let tail = &text[after..];
    if keep.is_empty() && out.last() == Some(&b' ') && tail.first() == Some(&b';') {
        out.pop();
    }
    out.extend_from_slice(tail);
    Ok(Statement::Rewritten {
        text: out,
        removed: kind,
    })
}

/// `CONNECTION 'conninfo'` of a subscription becomes `CONNECTION ''`.
fn subscription_connection(c: &mut Cursor, text: &[u8]) -> Result<Statement, String> {
    let toks = &c.toks;
    let Some(i) = (c.i..toks.len()).find(|&i| c.word_at(i).as_deref() == Some("connection")) else {
        return Ok(Statement::Schema(Info::None));
    };
    match toks.get(i + 1) {
        Some(t) if matches!(t.kind, Kind::Str(_)) => {
            let mut out = text[..t.start].to_vec();
            out.extend_from_slice(b"''");
            out.extend_from_slice(&text[t.end..]);
            Ok(Statement::Rewritten {
                text: out,
                removed: Secret::SubscriptionConnection,
            })
        }
        _ => Err("a subscription connection this reader cannot read".into()),
    }
}

/// The functions of pg_dump's large-object section.
const LARGE_OBJECT_FUNCTIONS: &[&str] = &[
    "lo_create",
    "lo_open",
    "lowrite",
    "lo_close",
    "lo_unlink",
    "lo_truncate",
    "lo_truncate64",
];

fn select(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("select");
    if c.eat("pg_catalog") && !c.eat_kind(Kind::Dot) {
        return Err("a SELECT statement".into());
    }
    let f = c.peek_word().unwrap_or_default();
    match f.as_str() {
        "setval" | "set_config" => Ok(Statement::Schema(Info::None)),
        _ if LARGE_OBJECT_FUNCTIONS.contains(&f.as_str()) => Ok(Statement::LargeObject),
        _ => Err(
            "a SELECT statement (only pg_dump's setval, set_config and large-object calls pass)"
                .into(),
        ),
    }
}

fn copy(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("copy");
    if c.peek_kind() == Some(Kind::Open) {
        return Err("COPY (query)".into());
    }
    let table = c
        .qualified()
        .ok_or_else(|| "a COPY whose table this reader cannot read".to_string())?;
    let columns = if c.peek_kind() == Some(Kind::Open) {
        Some(
            c.ident_list()
                .ok_or_else(|| "a COPY column list this reader cannot read".to_string())?,
        )
    } else {
        None
    };
    if !c.eat("from") {
        return Err("COPY … TO (not data for staging)".into());
    }
    if !c.eat("stdin") {
        return Err("COPY … FROM a file or program (only FROM stdin is data in the dump)".into());
    }
    let format = copy_options(c)?;
    if !c.at_end() {
        return Err("a COPY option this reader cannot read".into());
    }
    Ok(Statement::Copy(CopyStatement {
        table,
        columns,
        format,
    }))
}

/// The options of COPY FROM stdin, in the parenthesized and the old syntax.
fn copy_options(c: &mut Cursor) -> Result<CopyFormat, String> {
    let mut csv = false;
    let mut delimiter: Option<String> = None;
    let mut null: Option<String> = None;
    let mut o = CsvOptions::default();
    let bad = |what: &str| Err::<CopyFormat, String>(format!("the COPY option {what}"));
    c.eat("with");
    if c.eat_kind(Kind::Open) {
        loop {
            let name = c
                .peek_word()
                .ok_or_else(|| "a COPY option this reader cannot read".to_string())?;
            c.next();
            match name.as_str() {
                "format" => {
                    let f = c.peek_word().or_else(|| c.string()).unwrap_or_default();
                    if c.peek_kind() == Some(Kind::Word) {
                        c.next();
                    }
                    match f.to_lowercase().as_str() {
                        "csv" => csv = true,
                        "text" => csv = false,
                        other => return bad(&format!("FORMAT {other}")),
                    }
                }
                "header" => o.header = bool_option(c).unwrap_or(true),
                "delimiter" => {
                    delimiter = Some(c.string().ok_or("a DELIMITER that is not a string")?)
                }
                "null" => null = Some(c.string().ok_or("a NULL that is not a string")?),
                "quote" => o.quote = one_byte(c.string())?,
                "escape" => o.escape = Some(one_byte(c.string())?),
                "encoding" => {
                    let e = c.string().unwrap_or_default().to_lowercase();
                    if !matches!(e.as_str(), "utf8" | "utf-8" | "unicode") {
                        return bad("ENCODING other than UTF8");
                    }
                }
                "freeze" => {
                    bool_option(c);
                }
                // They change which fields are NULL per column; not followed here.
                "force_not_null" | "force_null" | "force_quote" => return bad(&name.to_uppercase()),
                other => return bad(&other.to_uppercase()),
            }
            if c.eat_kind(Kind::Comma) {
                continue;
            }
            if c.eat_kind(Kind::Close) {
                break;
            }
            return bad("list");
        }
    } else {
        // Old syntax: [BINARY] [DELIMITER [AS] 'd'] [NULL [AS] 'n'] [CSV [HEADER] [QUOTE [AS] 'q']
        // [ESCAPE [AS] 'e'] [FORCE NOT NULL cols | FORCE QUOTE cols]]
        while let Some(w) = c.peek_word() {
            c.next();
            match w.as_str() {
                "binary" => return bad("BINARY"),
                "oids" => return bad("OIDS"),
                "delimiter" => {
                    c.eat("as");
                    delimiter = Some(c.string().ok_or("a DELIMITER that is not a string")?);
                }
                "null" => {
                    c.eat("as");
                    null = Some(c.string().ok_or("a NULL that is not a string")?);
                }
                "csv" => csv = true,
                "header" => o.header = true,
                "quote" => {
                    c.eat("as");
                    o.quote = one_byte(c.string())?;
                }
                "escape" => {
                    c.eat("as");
                    o.escape = Some(one_byte(c.string())?);
                }
                "force" => return bad("FORCE NOT NULL / FORCE QUOTE"),
                other => return bad(&other.to_uppercase()),
            }
        }
    }
    let delimiter = match delimiter {
        None => None,
        Some(d) => Some(one_byte(Some(d))?),
    };
    if csv {
        o.delimiter = delimiter.unwrap_or(b',');
        o.null = null.unwrap_or_default();
        Ok(CopyFormat::Csv(o))
    } else {
        if o.header {
            return bad("HEADER in text format");
        }
        let t = TextOptions {
            delimiter: delimiter.unwrap_or(b'\t'),
            null: null.unwrap_or_else(|| "\\N".into()),
        };
        Ok(if t == TextOptions::default() {
            CopyFormat::Text
        } else {
            CopyFormat::TextWith(t)
        })
    }
}

fn bool_option(c: &mut Cursor) -> Option<bool> {
    let w = c.peek_word().or_else(|| {
        let t = c.peek()?;
        (t.kind == Kind::Number)
            .then(|| String::from_utf8_lossy(&c.text[t.start..t.end]).into_owned())
    })?;
    let v = match w.as_str() {
        "true" | "on" | "1" => true,
        "false" | "off" | "0" => false,
        "match" => true,
        _ => return None,
    };
    c.next();
    Some(v)
}

fn one_byte(s: Option<String>) -> Result<u8, String> {
    match s.as_deref().map(str::as_bytes) {
        Some([b]) if b.is_ascii() => Ok(*b),
        _ => Err("a COPY delimiter, quote or escape that is not one ASCII character".into()),
    }
}

/// Why an INSERT that is not `INSERT … VALUES (literals)` is refused.
fn insert_refusal(text: &[u8], scs: bool) -> String {
    match parse_insert_header(text, scs) {
        Ok(Some(_)) => "an INSERT whose values this reader cannot read".into(),
        Ok(None) => "an INSERT without a VALUES list (DEFAULT VALUES, or rows from a query)".into(),
        Err(e) => e,
    }
}

/// Parse `INSERT INTO t [AS a] [(cols)] [OVERRIDING SYSTEM|USER VALUE] VALUES` — the whole of
/// `text`, which must end right after `VALUES`. `Ok(None)`: an INSERT, but not of that form.
pub fn parse_insert_header(text: &[u8], scs: bool) -> Result<Option<InsertHeader>, String> {
    let mut c = Cursor::new(text, scs)?;
    if !(c.eat("insert") && c.eat("into")) {
        return Ok(None);
    }
    let table = c
        .qualified()
        .ok_or_else(|| "an INSERT whose table this reader cannot read".to_string())?;
    if c.eat("as") {
        c.ident();
    }
    let columns = if c.peek_kind() == Some(Kind::Open) {
        Some(
            c.ident_list()
                .ok_or_else(|| "an INSERT column list this reader cannot read".to_string())?,
        )
    } else {
        None
    };
    if c.eat("overriding") {
        let _ = c.eat("system") || c.eat("user");
        c.eat("value");
    }
    if c.eat("values") && c.i == c.toks.len() {
        return Ok(Some(InsertHeader { table, columns }));
    }
    Ok(None)
}

/// Whether the text after an INSERT's last tuple is allowed: nothing, or `ON CONFLICT [target] DO
/// NOTHING` (a DO UPDATE writes values the rules do not see), then the statement's end.
pub fn insert_suffix_ok(text: &[u8], scs: bool) -> bool {
    let Ok(mut c) = Cursor::new(text, scs) else {
        return false;
    };
    if c.at_end() {
        return true;
    }
    if !(c.eat("on") && c.eat("conflict")) {
        return false;
    }
    if c.eat("on") {
        if !(c.eat("constraint") && c.ident().is_some()) {
            return false;
        }
    } else if c.peek_kind() == Some(Kind::Open) && c.ident_list().is_none() {
        return false;
    }
    c.eat("do") && c.eat("nothing") && c.at_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Statement {
        classify(s.as_bytes(), true)
    }

    fn rewritten_text(s: &str) -> (String, Secret) {
        match class(s) {
            Statement::Rewritten { text, removed } => (String::from_utf8(text).unwrap(), removed),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn schema_statements_pass_and_others_are_refused() {
        for s in [
            "SET statement_timeout = 0;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "CREATE TABLE public.t (id integer NOT NULL);",
            "CREATE UNIQUE INDEX i ON t (a);",
            "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;",
            "ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);",
            "GRANT ALL ON TABLE t TO bob;",
            "REFRESH MATERIALIZED VIEW public.mv;",
            "CREATE MATERIALIZED VIEW public.mv AS SELECT 1 WITH NO DATA;",
            "SELECT pg_catalog.setval('public.t_id_seq', 2, true);",
            "\\restrict abc\n",
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw WITH SCHEMA public;",
            "DROP TABLE IF EXISTS t;",
        ] {
            assert!(
                matches!(class(s), Statement::Schema(_)),
                "{s}: {:?}",
                class(s)
            );
        }
        for (s, why) in [
            ("DO $$ BEGIN INSERT INTO t VALUES (1); END $$;", "a DO statement"),
            ("SELECT * FROM t;", "a SELECT statement (only pg_dump's setval, set_config and large-object calls pass)"),
            ("UPDATE t SET a = 'x';", "a UPDATE statement"),
            ("CREATE TABLE x AS SELECT * FROM t;", "CREATE TABLE … AS (rows from a query, which no rule sees)"),
            ("COPY t TO stdout;", "COPY … TO (not data for staging)"),
            ("COPY t FROM '/etc/passwd';", "COPY … FROM a file or program (only FROM stdin is data in the dump)"),
            ("\\! rm -rf /\n", "the psql meta-command \\!"),
            ("SELECT 1 \\g\n", "a statement with a psql meta-command inside it"),
            ("INSERT INTO t SELECT * FROM u;", "an INSERT without a VALUES list (DEFAULT VALUES, or rows from a query)"),
            ("ALTER SYSTEM SET fsync = off;", "ALTER SYSTEM"),
            ("SET client_encoding = 'LATIN1';", "a client encoding other than UTF8 (dump with --encoding=UTF8)"),
        ] {
            assert_eq!(class(s), Statement::Refused(why.into()), "{s}");
        }
    }

    #[test]
    fn large_objects_and_comments_are_told_apart() {
        for s in [
            "SELECT pg_catalog.lo_create('16397');",
            "ALTER LARGE OBJECT 16397 OWNER TO postgres;",
            "SELECT pg_catalog.lowrite(0, '\\x6869');",
            "COMMENT ON LARGE OBJECT 16397 IS 'x';",
            "GRANT SELECT ON LARGE OBJECT 16397 TO bob;",
        ] {
            assert_eq!(class(s), Statement::LargeObject, "{s}");
        }
        for s in [
            "COMMENT ON TABLE public.t IS 'contact bob@x.io';",
            "COMMENT ON COLUMN public.t.email IS 'x';",
            "SECURITY LABEL FOR selinux ON TABLE t IS 'system_u:object_r:sepgsql_table_t:s0';",
        ] {
            assert_eq!(class(s), Statement::Comment, "{s}");
        }
    }

    #[test]
    fn secrets_are_cut_out() {
        assert_eq!(
            rewritten_text(
                "ALTER ROLE r1 WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';"
            ),
            (
                "ALTER ROLE r1 WITH NOSUPERUSER LOGIN ;".into(),
                Secret::RolePassword
            )
        );
        assert_eq!(
            rewritten_text("CREATE USER u ENCRYPTED PASSWORD 'md5abc' VALID UNTIL 'infinity';"),
            (
                "CREATE USER u  VALID UNTIL 'infinity';".into(),
                Secret::RolePassword
            )
        );
        assert!(matches!(
            class("ALTER ROLE r1 PASSWORD NULL;"),
            Statement::Schema(_)
        ));
        assert_eq!(
            rewritten_text("CREATE USER MAPPING FOR r1 SERVER s1 OPTIONS (\n    password 'mappingpw',\n    \"user\" 'u'\n);"),
            ("CREATE USER MAPPING FOR r1 SERVER s1;".into(), Secret::UserMapping)
        );
        assert_eq!(
            rewritten_text(
                "CREATE USER MAPPING FOR r1 SERVER s1 OPTIONS (sslmode 'require', password 'x');"
            ),
            (
                "CREATE USER MAPPING FOR r1 SERVER s1 OPTIONS (sslmode 'require');".into(),
                Secret::UserMapping
            )
        );
        assert_eq!(
            rewritten_text("ALTER USER MAPPING FOR r1 SERVER s1 OPTIONS (SET password 'x');"),
            (
                "ALTER USER MAPPING FOR r1 SERVER s1;".into(),
                Secret::UserMapping
            )
        );
        assert_eq!(
            rewritten_text("CREATE SUBSCRIPTION s CONNECTION 'host=prod password=pw' PUBLICATION p WITH (connect = false);"),
            ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p WITH (connect = false);".into(), Secret::SubscriptionConnection)
        );
        assert!(matches!(
            class("CREATE SERVER s1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'p', host 'prod');"),
            Statement::Schema(_)
        ));
    }

    #[test]
    fn copy_statements_and_their_options() {
        let copy = |s: &str| match class(s) {
            Statement::Copy(c) => c,
            other => panic!("{s}: {other:?}"),
        };
        let c = copy("COPY public.\"Odd, T\" (id, \"Name\nx\") FROM stdin;");
        assert_eq!(c.table, QualifiedName::new("public", "Odd, T"));
        assert_eq!(c.columns, Some(vec!["id".into(), "Name\nx".into()]));
        assert_eq!(c.format, CopyFormat::Text);
        let c = copy("COPY t FROM stdin WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA', QUOTE '''', ESCAPE '\\');");
        assert_eq!(c.table, QualifiedName::new("public", "t"));
        assert_eq!(c.columns, None);
        assert_eq!(
            c.format,
            CopyFormat::Csv(CsvOptions {
                delimiter: b';',
                null: "NA".into(),
                quote: b'\'',
                escape: Some(b'\\'),
                header: true,
            })
        );
        let c = copy("copy T from STDIN with csv header delimiter as '|';");
        assert_eq!(c.table, QualifiedName::new("public", "t"));
        assert!(matches!(
            c.format,
            CopyFormat::Csv(CsvOptions {
                delimiter: b'|',
                header: true,
                ..
            })
        ));
        let c = copy("COPY t FROM stdin DELIMITER '|' NULL '';");
        assert_eq!(
            c.format,
            CopyFormat::TextWith(TextOptions {
                delimiter: b'|',
                null: String::new()
            })
        );
        assert_eq!(
            class("COPY t FROM stdin WITH (FORMAT binary);"),
            Statement::Refused("the COPY option FORMAT binary".into())
        );
        assert_eq!(
            class("COPY t FROM stdin WITH (FORMAT csv, FORCE_NOT_NULL (a));"),
            Statement::Refused("the COPY option FORCE_NOT_NULL".into())
        );
    }

    #[test]
    fn create_table_columns_for_data_without_a_list() {
        let def = |s: &str| match class(s) {
            Statement::Schema(Info::CreateTable(d)) => d,
            other => panic!("{s}: {other:?}"),
        };
        let d = def("CREATE TABLE public.t (\n    id integer NOT NULL,\n    \"Email\" text DEFAULT 'a,b',\n    n numeric(10,2),\n    g integer GENERATED ALWAYS AS ((id * 2)) STORED,\n    i int GENERATED ALWAYS AS IDENTITY,\n    CONSTRAINT c CHECK (n > 0)\n);");
        assert_eq!(
            d.columns,
            Some(vec![
                ("id".into(), false),
                ("Email".into(), false),
                ("n".into(), false),
                ("g".into(), true),
                ("i".into(), false),
            ])
        );
        let d = def("CREATE TABLE c (extra int) INHERITS (public.p);");
        assert_eq!(d.parents, vec![QualifiedName::new("public", "p")]);
        let d = def("CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1);");
        assert_eq!(d.parents, vec![QualifiedName::new("public", "p")]);
        assert_eq!(def("CREATE TABLE x OF mytype;").columns, None);
        assert_eq!(
            class(
                "ALTER TABLE ONLY public.p ATTACH PARTITION public.p_1 FOR VALUES FROM (1) TO (2);"
            ),
            Statement::Schema(Info::Attach(
                QualifiedName::new("public", "p_1"),
                QualifiedName::new("public", "p")
            ))
        );
    }

    #[test]
    fn insert_headers_and_suffixes() {
        let h = |s: &str| parse_insert_header(s.as_bytes(), true);
        assert_eq!(
            h("INSERT INTO public.t (id, \"E\") OVERRIDING SYSTEM VALUE VALUES").unwrap(),
            Some(InsertHeader {
                table: QualifiedName::new("public", "t"),
                columns: Some(vec!["id".into(), "E".into()])
            })
        );
        assert_eq!(
            h("insert into Users values").unwrap(),
            Some(InsertHeader {
                table: QualifiedName::new("public", "users"),
                columns: None
            })
        );
        assert_eq!(h("INSERT INTO t SELECT").unwrap(), None);
        for ok in [
            "",
            ";",
            " ON CONFLICT DO NOTHING;",
            "ON CONFLICT (id) DO NOTHING",
            "ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING;",
        ] {
            assert!(insert_suffix_ok(ok.as_bytes(), true), "{ok}");
        }
        for bad in [
            "ON CONFLICT (id) DO UPDATE SET e = 'x';",
            "RETURNING id;",
            "garbage",
        ] {
            assert!(!insert_suffix_ok(bad.as_bytes(), true), "{bad}");
        }
    }

    #[test]
    fn connect_targets_as_pg_dumpall_writes_them() {
        assert_eq!(class("\\connect app\n"), Statement::Connect("app".into()));
        assert_eq!(
            class("\\connect -reuse-previous=on \"dbname='my db'\"\n"),
            Statement::Connect("my db".into())
        );
        assert_eq!(
            class("\\connect \"Odd\"\"Name\"\n"),
            Statement::Connect("Odd\"Name".into())
        );
    }
}
