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
    /// A foreign server, user mapping or foreign table (or a statement about one): in staging they
    /// would read another server, perhaps production itself. The text is already without secrets;
    /// `table` names a foreign table this statement creates.
    Foreign {
        text: Vec<u8>,
        table: Option<QualifiedName>,
    },
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
    /// An ALTER TABLE that declares a foreign key in a form this reader does not follow (among
    /// several subcommands); `forget` when it also changes the table's columns (as `Forget`).
    UnreadReference {
        table: QualifiedName,
        forget: bool,
        unqualified: bool,
    },
    /// The session settings after a SET, RESET, BEGIN, COMMIT, `set_config` or `\encoding`.
    Session(Session),
    /// A table and its columns, for data statements that name none.
    CreateTable(TableDef),
    /// `ALTER TABLE ONLY parent ATTACH PARTITION child …`: (child, parent).
    Attach(QualifiedName, QualifiedName),
    /// An ALTER TABLE that changes a table's columns or name: what was known of its columns no
    /// longer holds. `unqualified`: its name had no schema (any table of that name).
    Forget {
        table: QualifiedName,
        unqualified: bool,
    },
    /// `DROP TABLE`: these tables are gone.
    Dropped(Vec<(QualifiedName, bool)>),
    /// A `DROP … CASCADE` or a schema rename: columns of any table may have changed.
    ForgetAll,
    /// `REFRESH MATERIALIZED VIEW`: runs what the view calls, in staging.
    Refresh,
    /// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY (…) REFERENCES t (…)`, columns named.
    ForeignKey(crate::schema::ForeignKey),
    /// `ALTER TABLE … ADD CONSTRAINT … PRIMARY KEY (…)`: the table and its key columns.
    PrimaryKey(QualifiedName, Vec<String>),
    /// A view of this name, or a rule that turns an INSERT into it into something else: data for
    /// it would land elsewhere.
    NotATable(QualifiedName),
}

/// What the session a dump is replayed into is known to be set to: the settings that change how
/// its text is read (string escapes, bytes, unqualified names). A psql session starts with the
/// server's defaults, which this reader cannot know, and `\connect` starts a new one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// `standard_conforming_strings`; `None` until the dump sets it.
    pub scs: Option<bool>,
    /// `client_encoding` is known to be UTF8 (until then, only ASCII text is read).
    pub utf8: bool,
    pub search_path: SearchPath,
    /// Inside BEGIN … COMMIT: a SET of the settings above could be rolled back, so it is refused.
    pub in_transaction: bool,
}

impl Session {
    /// A session as pg_dump's own header leaves it (for tests and for reading pieces of SQL).
    pub fn pg_dump() -> Session {
        Session {
            scs: Some(true),
            utf8: true,
            search_path: SearchPath::Unset,
            in_transaction: false,
        }
    }

    /// `standard_conforming_strings` for splitting text into tokens: on when not known (a string
    /// with a backslash is refused then, so both readings agree on everything that passes).
    pub fn lexing_scs(&self) -> bool {
        self.scs.unwrap_or(true)
    }
}

/// Where unqualified names go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPath {
    /// Never set: the server's default (`"$user", public`), taken as `public`.
    #[default]
    Unset,
    /// Set to a list whose first schema (after `"$user"`) is `public`.
    Public,
    /// Set to anything else (pg_dump sets it to `''` and qualifies every name).
    Other,
}

impl SearchPath {
    fn of_list<S: AsRef<str>>(items: &[S]) -> SearchPath {
        let first = items
            .iter()
            .map(|s| s.as_ref().trim())
            .find(|s| *s != "$user");
        match first {
            Some("public") => SearchPath::Public,
            _ => SearchPath::Other,
        }
    }

    /// `search_path` as a string (`set_config`'s value): names split at commas, quotes removed.
    fn of_string(v: &str) -> SearchPath {
        let items: Vec<String> = v
            .split(',')
            .map(|i| {
                let i = i.trim();
                match i.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
                    Some(q) => q.replace("\"\"", "\""),
                    None => i.to_lowercase(),
                }
            })
            .filter(|i| !i.is_empty())
            .collect();
        SearchPath::of_list(&items)
    }

    /// Unqualified names resolve to `public`.
    pub fn resolves_public(self) -> bool {
        self != SearchPath::Other
    }
}

/// The kinds of production secret cut out of schema statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Secret {
    RolePassword,
    UserMapping,
    ServerOption,
    SubscriptionConnection,
    /// `ALTER DATABASE/ROLE … SET app.jwt_secret = …`: a setting named like a secret.
    Setting,
}

impl Secret {
    pub fn describe(self) -> &'static str {
        match self {
            Secret::RolePassword => "role password",
            Secret::UserMapping => "user-mapping user or password",
            Secret::ServerOption => "foreign-server password option",
            Secret::SubscriptionConnection => "subscription connection string",
            Secret::Setting => "database or role setting named like a secret",
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
    /// Some name in it had no schema.
    pub unqualified: bool,
    /// It declares a foreign key (`REFERENCES`) inside, which this reader does not follow.
    pub references: bool,
    /// Each column's type as written (`integer`, `character varying`, `public.email_address`,
    /// `text[]`), words only, without a length or precision.
    pub types: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatement {
    pub table: QualifiedName,
    pub columns: Option<Vec<String>>,
    pub format: CopyFormat,
    /// The table's name had no schema.
    pub unqualified: bool,
}

/// `INSERT INTO table [(columns)] [OVERRIDING … VALUE] VALUES`, up to the first tuple.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InsertHeader {
    pub table: QualifiedName,
    pub columns: Option<Vec<String>>,
    /// `OVERRIDING SYSTEM VALUE` or `OVERRIDING USER VALUE`.
    pub overriding: Option<&'static str>,
    /// The table's name had no schema.
    pub unqualified: bool,
}

/// The significant tokens of a statement, read front to back.
struct Cursor<'a> {
    text: &'a [u8],
    toks: Vec<Token>,
    i: usize,
    /// The text has a comment somewhere.
    comments: bool,
    /// A plain `'…'` string holds a backslash (read differently as standard_conforming_strings is
    /// on or off).
    backslash_string: bool,
    /// A name read by `qualified` had no schema.
    unqualified: bool,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8], scs: bool) -> Result<Self, String> {
        let toks = lexer::tokens(text, scs).map_err(|_| "an unterminated quote".to_string())?;
        // psql replaces `:name`, `:'name'` and `:"name"` outside quotes with a variable's value,
        // which this reader cannot know.
        if toks.iter().any(|t| {
            matches!(t.kind, Kind::Number | Kind::Param) && lexer::junk(&text[t.start..t.end])
        }) {
            return Err(
                "a number with letters right after it (trailing junk), which psql versions read \
                 differently"
                    .into(),
            );
        }
        // (Inside `[…]`, `:n` is an array slice as pg_dump writes it, `x[1:t.n]`; psql's own
        // variables are upper case, and a quoted form is refused everywhere.)
        let mut brackets = 0i32;
        if toks.iter().any(|t| {
            match t.kind {
                Kind::OpenBracket => brackets += 1,
                Kind::CloseBracket => brackets -= 1,
                _ => {}
            }
            let slice = brackets > 0
                && text
                    .get(t.end)
                    .is_some_and(|&b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
            !slice
                && t.kind == Kind::Colon
                && text.get(t.end).is_some_and(|&b| {
                    b.is_ascii_alphabetic() || matches!(b, b'_' | b'\'' | b'"') || b >= 0x80
                })
        }) {
            return Err("a psql variable (`:name`), whose value this reader cannot know".into());
        }
        if let Some(n) = toks.iter().find_map(|t| swallowed_line(text, t)) {
            return Err(format!(
                "a quoted string, quoted name or comment that holds what a dump writes between \
                 statements (on the statement's line {n}: a COPY header, a `\\.` line, or a \
                 command starting a line after a line that ends with `;`) — a quote or comment \
                 opened by mistake earlier reads the statements and rows after it as this text"
            ));
        }
        let comments = toks
            .iter()
            .any(|t| matches!(t.kind, Kind::LineComment | Kind::BlockComment));
        let backslash_string = toks.iter().any(|t| {
            matches!(
                t.kind,
                Kind::Str(lexer::Str::Plain | lexer::Str::National | lexer::Str::Unicode)
            ) && text[t.start..t.end].contains(&b'\\')
        });
        Ok(Cursor {
            text,
            toks: toks.into_iter().filter(lexer::significant).collect(),
            i: 0,
            comments,
            backslash_string,
            unqualified: false,
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

    /// Whether the word appears anywhere from the current token on.
    fn mentions(&self, word: &str) -> bool {
        (self.i..self.toks.len()).any(|i| self.word_at(i).as_deref() == Some(word))
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
            self.unqualified = true;
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

/// Classify a complete statement (its text from its first token to its end) read in `session`.
pub fn classify(text: &[u8], session: &Session) -> Statement {
    match classify_inner(text, session) {
        Ok(s) => s,
        Err(why) => Statement::Refused(why),
    }
}

/// Whether the server would run more than one statement from this text: a `;` before its last
/// token. psql sends text up to a `;` outside parentheses, but in a CREATE FUNCTION or PROCEDURE it
/// holds every `;` between any BEGIN and its END — a function named `begin` is enough — and the
/// server then splits the text itself. The one form that is truly one statement: a `BEGIN ATOMIC`
/// body, which ends at the first `END` that starts a statement of the body.
fn holds_more_statements(c: &Cursor) -> bool {
    let toks = &c.toks;
    let last = toks.len().saturating_sub(1);
    // (A `;` inside parentheses — the actions of a CREATE RULE — is part of one statement; in any
    // other statement the server's parser refuses it, and the whole text with it.)
    let mut depth = 0i32;
    let mut inner: Vec<usize> = Vec::new();
    for (i, t) in toks.iter().enumerate().take(last) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            Kind::Semicolon if depth == 0 => inner.push(i),
            _ => {}
        }
    }
    let Some(&first_semicolon) = inner.first() else {
        return false;
    };
    let word = |i: usize| c.word_at(i);
    // A CREATE [OR REPLACE] FUNCTION or PROCEDURE, with `BEGIN ATOMIC` outside parentheses before
    // every inner `;`.
    let routine = word(0).as_deref() == Some("create")
        && match word(1).as_deref() {
            Some("function" | "procedure") => true,
            Some("or") => {
                word(2).as_deref() == Some("replace")
                    && matches!(word(3).as_deref(), Some("function" | "procedure"))
            }
            _ => false,
        };
    if !routine {
        return true;
    }
    let mut depth = 0i32;
    let mut atomic = None;
    for (i, t) in toks.iter().enumerate().take(first_semicolon) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            Kind::Word
                if depth == 0
                    && word(i).as_deref() == Some("begin")
                    && word(i + 1).as_deref() == Some("atomic") =>
            {
                atomic = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(atomic) = atomic else {
        return true;
    };
    // The body's END: the first `end` right after ATOMIC or after a `;` of the body.
    let mut at = atomic + 2;
    loop {
        if word(at).as_deref() == Some("end") {
            break;
        }
        match inner.iter().find(|&&s| s >= at) {
            Some(&s) => at = s + 1,
            None => return true,
        }
    }
    // Nothing may follow the body's END but the statement's own `;`.
    !(at + 1 == toks.len() || (at + 2 == toks.len() && toks[at + 1].kind == Kind::Semicolon))
}

/// Where (the 1-based line of the statement) a quoted string, quoted name or block comment holds
/// a line that only stands between statements in a dump: a `COPY … FROM stdin;` header, the `\.`
/// that ends a block, or — outside dollar quotes, where function bodies hold statements — a line
/// that starts with a command right after a line that ends with `;`. pg_dump writes no such text;
/// a quote deleted or added by hand makes psql, and this reader, take everything up to the next
/// quote as one string, rows included, and the statement would carry them out as schema text.
fn swallowed_line(text: &[u8], t: &Token) -> Option<usize> {
    if !matches!(
        t.kind,
        Kind::Str(_) | Kind::QuotedIdent | Kind::BlockComment
    ) {
        return None;
    }
    let body = &text[t.start..t.end];
    if !body.contains(&b'\n') {
        return None;
    }
    let dollar = t.kind == Kind::Str(lexer::Str::Dollar);
    let first_line = text[..t.start].iter().filter(|&&b| b == b'\n').count() + 1;
    // The last line with text (not blank, not a `--` comment) ended with `;`.
    let mut after_end = false;
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if n > 0 {
            let lower = trimmed.to_ascii_lowercase();
            let copy_header = lower.starts_with(b"copy ") && lower.ends_with(b"from stdin;");
            if trimmed == b"\\." || copy_header || (!dollar && after_end && starts_command(line)) {
                return Some(first_line + n);
            }
        }
        if !trimmed.is_empty() && !trimmed.starts_with(b"--") {
            after_end = trimmed.ends_with(b";");
        }
    }
    None
}

/// Whether a line starts (in its first column) with one of [`COMMANDS`] in upper case, as a whole
/// word.
fn starts_command(line: &[u8]) -> bool {
    let word_end = line
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(line.len());
    let ends_word = line
        .get(word_end)
        .is_none_or(|&b| b.is_ascii_whitespace() || b == b';' || b == b'(');
    // Upper case, as pg_dump writes commands: prose in a comment ("…;\nset by the app") passes.
    let word = String::from_utf8_lossy(&line[..word_end]);
    let upper = word.bytes().all(|b| b.is_ascii_uppercase());
    word_end > 0 && ends_word && upper && COMMANDS.contains(&word.to_ascii_lowercase().as_str())
}

/// Whether a `;` stands inside parentheses in a statement other than a CREATE [OR REPLACE] RULE,
/// whose parenthesized actions are the one place the server takes one.
fn semicolon_in_parentheses(c: &Cursor) -> bool {
    let rule = c.word_at(0).as_deref() == Some("create")
        && (c.word_at(1).as_deref() == Some("rule")
            || (c.word_at(1).as_deref() == Some("or")
                && c.word_at(2).as_deref() == Some("replace")
                && c.word_at(3).as_deref() == Some("rule")));
    let mut depth = 0i32;
    !rule
        && c.toks.iter().any(|t| {
            match t.kind {
                Kind::Open => depth += 1,
                Kind::Close => depth -= 1,
                _ => {}
            }
            t.kind == Kind::Semicolon && depth > 0
        })
}

/// SQL commands by their first word: a refused statement is named by it only when it is one of
/// these (a word that is not could be a data row read as SQL).
const COMMANDS: &[&str] = &[
    "abort",
    "alter",
    "analyze",
    "begin",
    "call",
    "checkpoint",
    "close",
    "cluster",
    "comment",
    "commit",
    "copy",
    "create",
    "deallocate",
    "declare",
    "delete",
    "discard",
    "do",
    "drop",
    "end",
    "execute",
    "explain",
    "fetch",
    "grant",
    "import",
    "insert",
    "listen",
    "load",
    "lock",
    "merge",
    "move",
    "notify",
    "prepare",
    "reassign",
    "refresh",
    "reindex",
    "release",
    "reset",
    "revoke",
    "rollback",
    "savepoint",
    "security",
    "select",
    "set",
    "show",
    "start",
    "table",
    "truncate",
    "unlisten",
    "update",
    "vacuum",
    "values",
    "with",
];

/// `word` in upper case when it is one of `known`, else `what` (never a word from the dump that
/// is not a keyword).
fn named(word: &str, known: &[&str], what: &str) -> String {
    if known.contains(&word) {
        word.to_uppercase()
    } else {
        what.to_string()
    }
}

fn classify_inner(text: &[u8], session: &Session) -> Result<Statement, String> {
    if text.first() == Some(&b'\\') {
        return meta(text, session);
    }
    let mut c = Cursor::new(text, session.lexing_scs())?;
    if c.toks.iter().any(|t| t.kind == Kind::Backslash) {
        return Err("a statement with a psql meta-command inside it".into());
    }
    if semicolon_in_parentheses(&c) {
        return Err(
            "a `;` inside parentheses outside a CREATE RULE (the server refuses it; in a dump it \
             is the sign of a quote missing or added earlier)"
                .into(),
        );
    }
    if holds_more_statements(&c) {
        return Err(
            "a statement that psql sends with others in one piece (a `;` inside it that the \
             server would end a statement at)"
                .into(),
        );
    }
    if session.scs.is_none() && c.backslash_string {
        return Err("a quoted string with a backslash before the dump sets \
                    standard_conforming_strings (its meaning depends on that setting)"
            .into());
    }
    let Some(first) = c.peek_word() else {
        return Err("a statement that does not start with a keyword".into());
    };
    let schema = |info| Ok(Statement::Schema(info));
    match first.as_str() {
        "set" => set_statement(&mut c, session),
        "reset" => reset_statement(&mut c, session),
        "begin" | "start" => {
            if first == "start" && c.word_at(1).as_deref() != Some("transaction") {
                return Err("a START statement".into());
            }
            Ok(Statement::Schema(Info::Session(Session {
                in_transaction: true,
                ..session.clone()
            })))
        }
        "commit" | "end" | "rollback" | "abort" => {
            if first == "rollback" && c.word_at(1).as_deref() == Some("to") {
                return Err("a ROLLBACK TO SAVEPOINT".into());
            }
            if matches!(c.word_at(1).as_deref(), Some("prepared")) {
                return Err("a prepared transaction".into());
            }
            // `COMMIT AND CHAIN` starts the next transaction at once.
            let chain = (1..4).any(|k| {
                c.word_at(k).as_deref() == Some("and")
                    && c.word_at(k + 1).as_deref() == Some("chain")
            });
            Ok(Statement::Schema(Info::Session(Session {
                in_transaction: chain,
                ..session.clone()
            })))
        }
        "refresh" => schema(Info::Refresh),
        "analyze" | "analyse" | "vacuum" | "truncate" | "checkpoint" => schema(Info::None),
        "create" => create(&mut c, text, session),
        "alter" => alter(&mut c, text),
        "drop" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            drop_statement(&mut c)
        }
        "grant" | "revoke" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            if mentions_pair(&c, 1, "foreign", "server") {
                return foreign(Statement::Schema(Info::None), text, None);
            }
            schema(Info::None)
        }
        "comment" | "security" => {
            if mentions_large_object(&c, 1) {
                return Ok(Statement::LargeObject);
            }
            if mentions_pair(&c, 1, "foreign", "table")
                || (c.word_at(2).as_deref() == Some("server"))
                || mentions_pair(&c, 1, "user", "mapping")
            {
                return foreign(Statement::Schema(Info::None), text, None);
            }
            Ok(Statement::Comment)
        }
        "select" => select(&mut c, session),
        "copy" => copy(&mut c),
        "insert" => Err(insert_refusal(text, session.lexing_scs())),
        "import" => foreign(Statement::Schema(Info::None), text, None),
        other => Err(format!(
            "a {} statement",
            named(
                other,
                COMMANDS,
                "statement that does not start with an SQL command; a"
            )
        )),
    }
}

/// Whether a refused statement is a `COPY … FROM stdin`, whose rows follow it.
pub fn is_copy_from_stdin(text: &[u8], scs: bool) -> bool {
    // Read with the lexer alone (not the checks that refuse a statement): rows taken for SQL
    // would be quoted in the messages of their own refusals. When even that fails, a statement
    // that starts with COPY counts as one: skipping lines to a `\.` is the safe side.
    let Ok(toks) = lexer::tokens(text, scs) else {
        return text
            .get(..4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"copy"));
    };
    let mut words = toks
        .iter()
        .filter(|t| lexer::significant(t))
        .filter_map(|t| lexer::word(text, t));
    words.next().as_deref() == Some("copy") && words.any(|w| w == "stdin")
}

/// Whether two words appear in a row among the statement's first words (after `skip`).
fn mentions_pair(c: &Cursor, skip: usize, a: &str, b: &str) -> bool {
    let words: Vec<Option<String>> = (skip..c.toks.len().min(skip + 12))
        .map(|i| c.word_at(i))
        .collect();
    words
        .windows(2)
        .any(|w| w[0].as_deref() == Some(a) && w[1].as_deref() == Some(b))
}

/// The qualified names a statement mentions (`schema.name`, and plain names as `public.name`).
pub fn names_in(text: &[u8], scs: bool) -> Vec<QualifiedName> {
    let Ok(mut c) = Cursor::new(text, scs) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while c.i < c.toks.len() {
        let start = c.i;
        match c.qualified() {
            Some(n) => out.push(n),
            None => c.i = start + 1,
        }
    }
    out
}

/// Whether `LARGE OBJECT` appears among the statement's first words (after `skip`).
fn mentions_large_object(c: &Cursor, skip: usize) -> bool {
    mentions_pair(c, skip, "large", "object")
}

/// psql's meta-commands, for naming a refused one.
const META_COMMANDS: &[&str] = &[
    "a",
    "bind",
    "c",
    "cd",
    "conninfo",
    "connect",
    "copy",
    "copyright",
    "crosstabview",
    "d",
    "echo",
    "edit",
    "ef",
    "encoding",
    "errverbose",
    "ev",
    "f",
    "g",
    "gdesc",
    "getenv",
    "gexec",
    "gset",
    "gx",
    "h",
    "help",
    "html",
    "i",
    "if",
    "elif",
    "else",
    "endif",
    "include",
    "ir",
    "include_relative",
    "l",
    "list",
    "lo_export",
    "lo_import",
    "lo_list",
    "lo_unlink",
    "o",
    "out",
    "p",
    "print",
    "password",
    "prompt",
    "pset",
    "q",
    "quit",
    "qecho",
    "r",
    "reset",
    "s",
    "set",
    "setenv",
    "sf",
    "sv",
    "t",
    "T",
    "timing",
    "unset",
    "w",
    "write",
    "warn",
    "watch",
    "x",
    "z",
    "!",
    "?",
    "restrict",
    "unrestrict",
];

/// The psql meta-commands pg_dump and pg_dumpall write, in the forms they write them; anything
/// else on such a line (more arguments, a second command after `\\`, backquotes, variables) is
/// refused.
fn meta(text: &[u8], session: &Session) -> Result<Statement, String> {
    let line = std::str::from_utf8(text)
        .map_err(|_| "a meta-command that is not UTF-8".to_string())?
        .trim_end();
    let args = meta_args(&line[1..]);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let form = |cmd: &str| format!("a \\{cmd} in a form pg_dump does not write");
    match words.as_slice() {
        ["connect" | "c", rest @ ..] => {
            let name = match rest {
                [name] => plain_connect_target(name),
                ["-reuse-previous=on", conninfo] => conninfo_connect_target(conninfo),
                _ => None,
            };
            name.map(Statement::Connect).ok_or_else(|| form("connect"))
        }
        ["restrict" | "unrestrict", key] if key.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(Statement::Schema(Info::None))
        }
        ["restrict" | "unrestrict", ..] => Err(form("restrict")),
        ["encoding", e] => {
            let utf8 = if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") {
                true
            } else if e.eq_ignore_ascii_case("sql_ascii") {
                // pg_dumpall, before a \connect to a database with an unusual name.
                false
            } else {
                return Err("a client encoding other than UTF8 (dump with --encoding=UTF8)".into());
            };
            Ok(Statement::Schema(Info::Session(Session {
                utf8,
                ..session.clone()
            })))
        }
        [cmd, ..] => Err(format!(
            "the psql meta-command {}",
            if META_COMMANDS.contains(cmd) {
                format!("\\{cmd}")
            } else {
                "that starts this line".into()
            }
        )),
        [] => Err("a lone backslash".into()),
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

/// A double-quoted meta-command argument: its text (`""` inside is one quote).
fn double_quoted(arg: &str) -> Option<String> {
    let inner = arg.strip_prefix('"')?.strip_suffix('"')?;
    if inner.replace("\"\"", "").contains('"') || inner.contains(['\n', '\r']) {
        return None;
    }
    Some(inner.replace("\"\"", "\""))
}

/// `\connect name` as pg_dumpall writes it: a name of letters, digits, `_` and `.`, perhaps in
/// double quotes (any other text would be read by psql as a connection string).
fn plain_connect_target(arg: &str) -> Option<String> {
    let name = if arg.starts_with('"') {
        double_quoted(arg)?
    } else {
        arg.to_string()
    };
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    .then_some(name)
}

/// `"dbname='x'"` after `-reuse-previous=on`: a connection string with only `dbname`, its value
/// quoted as libpq reads it (`\'` and `\\` inside quotes).
fn conninfo_connect_target(arg: &str) -> Option<String> {
    let inner = double_quoted(arg)?;
    let value = inner.strip_prefix("dbname=")?;
    let name = if let Some(q) = value.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = q.chars();
        loop {
            match chars.next()? {
                '\\' => out.push(chars.next()?),
                '\'' => break,
                c => out.push(c),
            }
        }
        if chars.next().is_some() {
            return None;
        }
        out
    } else {
        if value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
            return None;
        }
        value.to_string()
    };
    (!name.is_empty()).then_some(name)
}

/// The `\connect` line this tool writes for a database: pg_dumpall's plain form for a simple name,
/// its connection-string form for any other.
pub fn connect_line(name: &str) -> String {
    let simple = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if simple {
        format!("\\connect {name}\n")
    } else {
        let value = format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"));
        let conninfo = format!("dbname={value}");
        format!(
            "\\connect -reuse-previous=on \"{}\"\n",
            conninfo.replace('"', "\"\"")
        )
    }
}

/// The settings whose value changes how this reader must read the text after them.
const TRACKED: &[&str] = &[
    "standard_conforming_strings",
    "client_encoding",
    "search_path",
];

/// One value of a SET: a word (folded), a quoted name, a string or a number.
fn set_value(c: &mut Cursor) -> Option<String> {
    match c.peek_kind()? {
        Kind::Word => {
            let w = c.peek_word();
            c.next();
            w
        }
        Kind::QuotedIdent => c.ident(),
        Kind::Str(_) => c.string(),
        Kind::Number => {
            let t = c.next()?;
            Some(String::from_utf8_lossy(&c.text[t.start..t.end]).into_owned())
        }
        _ => None,
    }
}

fn set_statement(c: &mut Cursor, session: &Session) -> Result<Statement, String> {
    c.eat("set");
    let local = c.eat("local");
    if !local {
        c.eat("session");
    }
    if setting_name(c, c.i).is_some_and(|n| secret_name(&n)) {
        // `SET app.jwt_secret = …`: production's secret, in the session only, but in the output.
        return Ok(Statement::Rewritten {
            text: Vec::new(),
            removed: Secret::Setting,
        });
    }
    let name = match c.peek_kind() {
        Some(Kind::Word | Kind::QuotedIdent) => c.ident(),
        _ => None,
    }
    .ok_or_else(|| "a SET this reader cannot read".to_string())?;
    let names = name == "names";
    let name = if names { "client_encoding" } else { &name };
    if !TRACKED.contains(&name) {
        return Ok(Statement::Schema(Info::None));
    }
    if local || session.in_transaction {
        return Err(format!(
            "a SET {} that is local or inside a transaction block (only a plain SET outside \
             transactions is followed)",
            name.to_uppercase()
        ));
    }
    if !names {
        let eq = c
            .peek()
            .is_some_and(|t| t.kind == Kind::Op && &c.text[t.start..t.end] == b"=");
        if !(eq && c.eat_kind(Kind::Op) || c.eat("to")) {
            return Err("a SET this reader cannot read".into());
        }
    }
    let default = c.peek_word().as_deref() == Some("default");
    let mut values = Vec::new();
    loop {
        values.push(set_value(c).ok_or_else(|| "a SET this reader cannot read".to_string())?);
        if !c.eat_kind(Kind::Comma) {
            break;
        }
    }
    if !c.at_end() {
        return Err("a SET this reader cannot read".into());
    }
    let default = default && values.len() == 1;
    let mut next = session.clone();
    match name {
        "standard_conforming_strings" => {
            next.scs = match values[0].to_lowercase().as_str() {
                _ if default => None,
                _ if values.len() > 1 => return Err("a SET this reader cannot read".into()),
                "on" | "true" | "yes" | "1" => Some(true),
                "off" | "false" | "no" | "0" => Some(false),
                _ => return Err("a SET standard_conforming_strings this reader cannot read".into()),
            }
        }
        "client_encoding" => {
            next.utf8 = match values[0].to_lowercase().as_str() {
                _ if default => false,
                "utf8" | "utf-8" | "unicode" if values.len() == 1 => true,
                _ => {
                    return Err(
                        "a client encoding other than UTF8 (dump with --encoding=UTF8)".into(),
                    )
                }
            }
        }
        _ => {
            next.search_path = if default {
                SearchPath::Unset
            } else {
                SearchPath::of_list(&values)
            }
        }
    }
    Ok(Statement::Schema(Info::Session(next)))
}

/// `RESET name` or `RESET ALL`: back to the server's defaults, which this reader does not know.
fn reset_statement(c: &mut Cursor, session: &Session) -> Result<Statement, String> {
    c.eat("reset");
    let name = c.ident().unwrap_or_default();
    let all = name == "all" && c.at_end();
    if !(all || TRACKED.contains(&name.as_str())) {
        return Ok(Statement::Schema(Info::None));
    }
    if session.in_transaction {
        return Err("a RESET inside a transaction block".into());
    }
    let mut next = session.clone();
    if all || name == "standard_conforming_strings" {
        next.scs = None;
    }
    if all || name == "client_encoding" {
        next.utf8 = false;
    }
    if all || name == "search_path" {
        next.search_path = SearchPath::Unset;
    }
    Ok(Statement::Schema(Info::Session(next)))
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

fn create(c: &mut Cursor, text: &[u8], session: &Session) -> Result<Statement, String> {
    c.eat("create");
    while c
        .peek_word()
        .is_some_and(|w| CREATE_MODIFIERS.contains(&w.as_str()))
    {
        c.next();
    }
    let kind = c.peek_word().unwrap_or_default();
    if let Some(s) = secret_setting(c, &kind)? {
        return Ok(s);
    }
    if !CREATE_KINDS.contains(&kind.as_str()) {
        return Err(format!(
            "CREATE {}",
            named(
                &kind,
                CREATE_OTHER_KINDS,
                "of an object this reader does not know"
            )
        ));
    }
    match kind.as_str() {
        "table" => create_table(c),
        "role" | "user" | "group" => {
            if c.word_at(c.i + 1).as_deref() == Some("mapping") {
                return foreign(user_mapping(c, text)?, text, None);
            }
            role_password(c, text)
        }
        "server" => foreign(
            strip_options(c, text, Secret::ServerOption, server_secret)?,
            text,
            None,
        ),
        "foreign" if c.word_at(c.i + 1).as_deref() == Some("table") => {
            c.i += 2;
            let _ = c.eat("if") && c.eat("not") && c.eat("exists");
            let table = c.qualified();
            foreign(Statement::Schema(Info::None), text, table)
        }
        "subscription" => subscription_connection(c, text),
        "database" => database_settings(c, session),
        "view" => {
            c.eat("view");
            let _ = c.eat("if") && c.eat("not") && c.eat("exists");
            Ok(Statement::Schema(match c.qualified() {
                Some(name) => Info::NotATable(name),
                None => Info::None,
            }))
        }
        "rule" => {
            // `CREATE RULE r AS ON INSERT TO t DO …`: an INSERT into t does something else.
            let on_insert = (c.i..c.toks.len()).find(|&i| {
                c.word_at(i).as_deref() == Some("on")
                    && c.word_at(i + 1).as_deref() == Some("insert")
                    && c.word_at(i + 2).as_deref() == Some("to")
            });
            Ok(Statement::Schema(match on_insert {
                Some(i) => {
                    c.i = i + 3;
                    match c.qualified() {
                        Some(name) => Info::NotATable(name),
                        None => {
                            return Err("a CREATE RULE ON INSERT this reader cannot read".into())
                        }
                    }
                }
                None => Info::None,
            }))
        }
        _ => Ok(Statement::Schema(Info::None)),
    }
}

/// Kinds of object a dump does not create, named when refused.
const CREATE_OTHER_KINDS: &[&str] = &["temp", "temporary", "tablespace", "unlogged"];

/// A `SET name = value` (or `TO`) in an ALTER DATABASE/ROLE, or a function's `SET` clause, whose
/// name says it holds a secret (`app.jwt_secret`, `app.api_key`): production's own secret. The
/// ALTER goes whole; any other statement with one is refused.
fn secret_setting(c: &Cursor, kind: &str) -> Result<Option<Statement>, String> {
    if !matches!(
        kind,
        "database" | "role" | "user" | "group" | "function" | "procedure" | "routine"
    ) {
        return Ok(None);
    }
    // Outside parentheses, and before a routine's body (whose UPDATE … SET is no setting).
    let mut depth = 0i32;
    let mut named_like_secret = false;
    for i in c.i..c.toks.len() {
        match c.toks[i].kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            Kind::Word if depth == 0 => match c.word_at(i).as_deref() {
                // A routine's body: `BEGIN ATOMIC` (`AS '…'` and `RETURN …` are options among
                // others; the options may follow them).
                Some("begin")
                    if c.word_at(i + 1).as_deref() == Some("atomic")
                        && (i == 0 || c.toks[i - 1].kind != Kind::Dot) =>
                {
                    break
                }
                Some("set") => {
                    named_like_secret |= setting_name(c, i + 1).is_some_and(|n| secret_name(&n))
                }
                _ => {}
            },
            _ => {}
        }
    }
    if !named_like_secret {
        return Ok(None);
    }
    if matches!(kind, "database" | "role" | "user" | "group") {
        return Ok(Some(Statement::Rewritten {
            text: Vec::new(),
            removed: Secret::Setting,
        }));
    }
    Err(
        "a SET of a setting named like a secret (pass, key, token, secret, …) in a function or \
         other object"
            .into(),
    )
}

/// A setting whose name says it holds a secret (`app.jwt_secret`, `jwt_secret`), other than
/// PostgreSQL's own settings whose names only look so.
fn secret_name(name: &str) -> bool {
    const OWN: &[&str] = &[
        "authorization",
        "session_authorization",
        "password_encryption",
        "authentication_timeout",
        "krb_server_keyfile",
        "ssl_key_file",
        "ssl_passphrase_command",
        "ssl_passphrase_command_supports_reload",
    ];
    !OWN.contains(&name) && server_secret(name)
}

/// The (lower-case) name of a setting from token `i`: words and quoted names joined by dots.
fn setting_name(c: &Cursor, mut i: usize) -> Option<String> {
    let mut name = String::new();
    loop {
        let t = c.toks.get(i)?;
        match t.kind {
            Kind::Word => name.push_str(&lexer::word(c.text, t)?),
            // A name in U&"…" or with escapes this reader does not decode counts as a secret.
            Kind::QuotedIdent => match unquote_ident(&c.text[t.start..t.end]) {
                Some(n) => name.push_str(&n.to_lowercase()),
                None => return Some(format!("{name}undecoded.secret")),
            },
            _ => return None,
        }
        if c.toks.get(i + 1).map(|t| t.kind) == Some(Kind::Dot) {
            name.push('.');
            i += 2;
        } else {
            return Some(name);
        }
    }
}

/// A foreign server option that may hold a credential.
fn server_secret(name: &str) -> bool {
    ["pass", "pw", "secret", "key", "token", "credential", "auth"]
        .iter()
        .any(|s| name.contains(s))
}

/// `client_encoding` set on a database or role (`ALTER DATABASE … SET`, `ALTER ROLE … SET`)
/// applies after the next `\connect`: only UTF8 may be set there.
fn database_settings(c: &Cursor, _session: &Session) -> Result<Statement, String> {
    for i in c.i..c.toks.len() {
        if c.word_at(i).as_deref() == Some("set")
            && matches!(c.word_at(i + 1).as_deref(), Some("client_encoding"))
        {
            let mut sub = Cursor {
                text: c.text,
                toks: c.toks[i..].to_vec(),
                i: 0,
                comments: false,
                backslash_string: false,
                unqualified: false,
            };
            let mut plain = Session::pg_dump();
            plain.in_transaction = false;
            set_statement(&mut sub, &plain)?;
        }
    }
    Ok(Statement::Schema(Info::None))
}

/// A statement about foreign data, with its secrets already cut out.
fn foreign(s: Statement, text: &[u8], table: Option<QualifiedName>) -> Result<Statement, String> {
    Ok(match s {
        Statement::Rewritten { text, .. } => Statement::Foreign { text, table },
        Statement::Schema(_) => Statement::Foreign {
            text: text.to_vec(),
            table,
        },
        other => other,
    })
}

fn alter(c: &mut Cursor, text: &[u8]) -> Result<Statement, String> {
    c.eat("alter");
    let kind = c.peek_word().unwrap_or_default();
    if let Some(s) = secret_setting(c, &kind)? {
        return Ok(s);
    }
    match kind.as_str() {
        "system" => Err("ALTER SYSTEM".into()),
        "large" => Ok(Statement::LargeObject),
        "role" | "user" | "group" => {
            if c.word_at(c.i + 1).as_deref() == Some("mapping") {
                return foreign(user_mapping(c, text)?, text, None);
            }
            database_settings(c, &Session::default())?;
            role_password(c, text)
        }
        "database" => database_settings(c, &Session::default()),
        "schema" if mentions_pair(c, 1, "rename", "to") => Ok(Statement::Schema(Info::ForgetAll)),
        "server" => foreign(
            strip_options(c, text, Secret::ServerOption, server_secret)?,
            text,
            None,
        ),
        "foreign" if c.word_at(c.i + 1).as_deref() == Some("table") => {
            foreign(Statement::Schema(Info::None), text, None)
        }
        "subscription" => subscription_connection(c, text),
        "table" => alter_table(c),
        _ if CREATE_KINDS.contains(&kind.as_str())
            || ["default", "operator", "large"].contains(&kind.as_str()) =>
        {
            Ok(Statement::Schema(Info::None))
        }
        other => Err(format!(
            "ALTER {}",
            named(
                other,
                CREATE_OTHER_KINDS,
                "of an object this reader does not know"
            )
        )),
    }
}

/// `DROP TABLE a, b` forgets those tables; any `DROP … CASCADE` may drop columns of any table
/// (a type, domain or function a column depends on).
fn drop_statement(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("drop");
    let cascade = (c.i..c.toks.len()).any(|i| c.word_at(i).as_deref() == Some("cascade"));
    if cascade {
        return Ok(Statement::Schema(Info::ForgetAll));
    }
    if !c.eat("table") {
        return Ok(Statement::Schema(Info::None));
    }
    let _ = c.eat("if") && c.eat("exists");
    let mut gone = Vec::new();
    loop {
        c.unqualified = false;
        let Some(t) = c.qualified() else {
            return Ok(Statement::Schema(Info::ForgetAll));
        };
        gone.push((t, c.unqualified));
        if !c.eat_kind(Kind::Comma) {
            break;
        }
    }
    Ok(Statement::Schema(Info::Dropped(gone)))
}

/// `ALTER TABLE [ONLY] parent ATTACH PARTITION child …` is noted; a subcommand that adds, drops
/// or renames a column, renames the table or moves it makes the reader forget its columns (data
/// for it must then name its columns); other forms pass.
fn alter_table(c: &mut Cursor) -> Result<Statement, String> {
    c.eat("table");
    let _ = c.eat("if") && c.eat("exists");
    c.eat("only");
    let Some(table) = c.qualified() else {
        return Ok(Statement::Schema(Info::ForgetAll));
    };
    let unqualified = c.unqualified;
    if c.eat("attach") && c.eat("partition") {
        if let Some(child) = c.qualified() {
            return Ok(Statement::Schema(Info::Attach(child, table)));
        }
    }
    // Subcommands: split at commas outside parentheses.
    let mut depth = 0i32;
    let mut starts = vec![c.i];
    for i in c.i..c.toks.len() {
        match c.toks[i].kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            Kind::Comma if depth == 0 => starts.push(i + 1),
            _ => {}
        }
    }
    // A key is read from an ALTER TABLE of that one subcommand (as pg_dump writes them).
    if starts.len() == 1 {
        if let Some(info) = key_constraint(c, &table) {
            return Ok(Statement::Schema(info));
        }
    }
    let references = c.mentions("references");
    let changes = starts.iter().any(|&i| {
        let w = |k: usize| c.word_at(i + k);
        match w(0).as_deref() {
            Some("add") => !matches!(
                w(1).as_deref(),
                Some("constraint" | "primary" | "unique" | "check" | "foreign" | "exclude")
            ),
            Some("drop") => w(1).as_deref() != Some("constraint"),
            Some("rename") => w(1).as_deref() != Some("constraint"),
            Some("set") => w(1).as_deref() == Some("schema"),
            Some("inherit" | "of" | "not" | "detach") => true,
            Some("no") => w(1).as_deref() == Some("inherit"),
            Some("alter") => (i..c.toks.len().min(i + 8))
                .map(|k| c.word_at(k))
                .collect::<Vec<_>>()
                .windows(2)
                .any(|p| p[0].as_deref() == Some("drop") && p[1].as_deref() == Some("expression")),
            _ => false,
        }
    });
    Ok(Statement::Schema(if references {
        Info::UnreadReference {
            table,
            forget: changes,
            unqualified,
        }
    } else if changes {
        Info::Forget { table, unqualified }
    } else {
        Info::None
    }))
}

/// `ADD [CONSTRAINT name] FOREIGN KEY (a, b) REFERENCES t [(x, y)] …` or `ADD [CONSTRAINT name]
/// PRIMARY KEY (a, b)` as pg_dump (or a hand) writes them, one per ALTER TABLE; `None` for anything
/// else. A reference without its columns has none (the primary key of `t`, resolved by the reader).
fn key_constraint(c: &Cursor, table: &QualifiedName) -> Option<Info> {
    let mut sub = Cursor {
        text: c.text,
        toks: c.toks[c.i..].to_vec(),
        i: 0,
        comments: false,
        backslash_string: false,
        unqualified: false,
    };
    if !sub.eat("add") {
        return None;
    }
    let name = match sub.eat("constraint") {
        true => sub.ident()?,
        false => "(unnamed)".to_string(),
    };
    let columns = |sub: &mut Cursor| -> Option<Vec<String>> {
        if !sub.eat_kind(Kind::Open) {
            return None;
        }
        let mut cols = Vec::new();
        loop {
            cols.push(sub.ident()?);
            if sub.eat_kind(Kind::Close) {
                return Some(cols);
            }
            if !sub.eat_kind(Kind::Comma) {
                return None;
            }
        }
    };
    if sub.eat("primary") && sub.eat("key") {
        return Some(Info::PrimaryKey(table.clone(), columns(&mut sub)?));
    }
    if !(sub.eat("foreign") && sub.eat("key")) {
        return None;
    }
    let from_columns = columns(&mut sub)?;
    if !sub.eat("references") {
        return None;
    }
    let to = sub.qualified()?;
    // Without a column list the reference is to the table's primary key: left empty here, for
    // the reader to fill in from the dump's primary keys.
    let to_columns = match sub.toks.get(sub.i).map(|t| t.kind) {
        Some(Kind::Open) => columns(&mut sub)?,
        _ => Vec::new(),
    };
    (to_columns.is_empty() || from_columns.len() == to_columns.len()).then(|| {
        Info::ForeignKey(crate::schema::ForeignKey {
            name,
            from: table.clone(),
            from_columns,
            to,
            to_columns,
        })
    })
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
        unqualified: c.unqualified,
        references: c.mentions("references"),
        types: Default::default(),
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
        def.unqualified |= c.unqualified;
        return Ok(Statement::Schema(Info::CreateTable(def)));
    }
    if c.eat_kind(Kind::Open) {
        def.columns = table_elements(c, &mut def.types);
    }
    if c.eat("inherits") && c.eat_kind(Kind::Open) {
        while let Some(p) = c.qualified() {
            def.parents.push(p);
            if !c.eat_kind(Kind::Comma) {
                break;
            }
        }
    }
    def.unqualified |= c.unqualified;
    Ok(Statement::Schema(Info::CreateTable(def)))
}

/// The column definitions of a table's element list (after its `(`), up to the matching `)`.
fn table_elements(
    c: &mut Cursor,
    types: &mut std::collections::BTreeMap<String, String>,
) -> Option<Vec<(String, bool)>> {
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
                    comments: false,
                    backslash_string: false,
                    unqualified: false,
                };
                let name = sub.ident()?;
                types.insert(name.clone(), column_type(&sub));
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

/// A column definition's type from the cursor after its name: its words (and dots, and `[]`)
/// up to the first constraint or option keyword, without what parentheses hold.
fn column_type(c: &Cursor) -> String {
    const ENDS: &[&str] = &[
        "not",
        "null",
        "default",
        "constraint",
        "primary",
        "unique",
        "check",
        "references",
        "generated",
        "collate",
        "compression",
        "storage",
    ];
    let mut out = String::new();
    let mut depth = 0i32;
    for i in c.i..c.toks.len() {
        let t = &c.toks[i];
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            _ if depth > 0 => {}
            Kind::Word | Kind::QuotedIdent => {
                let w = c.word_at(i).unwrap_or_default();
                if t.kind == Kind::Word && ENDS.contains(&w.as_str()) {
                    break;
                }
                if !out.is_empty() && !out.ends_with('.') {
                    out.push(' ');
                }
                if t.kind == Kind::QuotedIdent {
                    out.push('"');
                }
                out.push_str(&w);
            }
            Kind::Dot => out.push('.'),
            Kind::OpenBracket => out.push('['),
            Kind::CloseBracket => out.push(']'),
            _ => {}
        }
    }
    out
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
                    // 'a' followed by 'b' on the next line is one string: cut them all.
                    let mut last = i + 1;
                    while matches!(toks.get(last + 1).map(|t| t.kind), Some(Kind::Str(_))) {
                        last += 1;
                    }
                    cuts.push((toks[from].start, toks[last].end));
                    i = last + 1;
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

/// CREATE/ALTER USER MAPPING: every option goes (they are production's credentials, under
/// whatever name the wrapper gives them).
fn user_mapping(c: &mut Cursor, text: &[u8]) -> Result<Statement, String> {
    strip_options(c, text, Secret::UserMapping, |_| true)
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
    let is_alter = c.word_at(0).as_deref() == Some("alter");
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
        // A name this reader cannot decode (`U&"…"`) counts as a secret.
        .filter(|e| e.0 < e.1 && !name_of(*e).is_none_or(|n| secret(&n.to_lowercase())))
        .collect();
    if keep.len() == entries.len() {
        return Ok(Statement::Schema(Info::None));
    }
    if keep.is_empty() && is_alter {
        // An ALTER that only changed secrets changes nothing (and without OPTIONS it is not SQL).
        return Ok(Statement::Rewritten {
            text: Vec::new(),
            removed: kind,
        });
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
            let mut last = i + 1;
            while matches!(toks.get(last + 1).map(|t| t.kind), Some(Kind::Str(_))) {
                last += 1;
            }
            let mut out = text[..t.start].to_vec();
            out.extend_from_slice(b"''");
            out.extend_from_slice(&text[toks[last].end..]);
            Ok(Statement::Rewritten {
                text: out,
                removed: Secret::SubscriptionConnection,
            })
        }
        _ => Err("a subscription connection this reader cannot read".into()),
    }
}

/// An argument of a function call pg_dump writes.
#[derive(Debug, PartialEq)]
enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
    Word(String),
}

/// `( arg, … )`: constants and plain words only.
fn call_args(c: &mut Cursor) -> Option<Vec<Arg>> {
    if !c.eat_kind(Kind::Open) {
        return None;
    }
    let mut out = Vec::new();
    if c.eat_kind(Kind::Close) {
        return Some(out);
    }
    loop {
        let t = *c.peek()?;
        let arg = match t.kind {
            Kind::Str(_) => Arg::Str(c.string()?),
            Kind::Number => {
                c.next();
                Arg::Int(
                    std::str::from_utf8(&c.text[t.start..t.end])
                        .ok()?
                        .parse()
                        .ok()?,
                )
            }
            Kind::Word => {
                let w = c.peek_word()?;
                c.next();
                match w.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    _ => Arg::Word(w),
                }
            }
            _ => return None,
        };
        out.push(arg);
        if c.eat_kind(Kind::Comma) {
            continue;
        }
        return c.eat_kind(Kind::Close).then_some(out);
    }
}

/// A large object's oid as pg_dump writes it: `'16401'` (or a bare number).
fn oid_arg(a: &Arg) -> bool {
    match a {
        Arg::Str(s) => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
        Arg::Int(n) => *n >= 0,
        _ => false,
    }
}

/// A sequence name in `setval`: a (qualified) name and nothing else.
fn sequence_name(s: &str) -> bool {
    let Ok(mut c) = Cursor::new(s.as_bytes(), true) else {
        return false;
    };
    c.qualified().is_some() && c.i == c.toks.len() && !c.comments
}

/// The SELECTs pg_dump writes, each in its exact form: `setval('name', n, bool)`,
/// `set_config('search_path', '…', false)` and the large-object calls.
fn select(c: &mut Cursor, session: &Session) -> Result<Statement, String> {
    let refused = || {
        Err(
            "a SELECT statement (only pg_dump's own setval, set_config and large-object calls \
             pass, in the forms it writes)"
                .to_string(),
        )
    };
    c.eat("select");
    if c.eat("pg_catalog") && !c.eat_kind(Kind::Dot) {
        return refused();
    }
    let f = c.peek_word().unwrap_or_default();
    c.next();
    let Some(args) = call_args(c) else {
        return refused();
    };
    // `SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = 'N'`
    // (pg_dump --clean).
    if f == "lo_unlink" && args == [Arg::Word("oid".into())] {
        let form = c.eat("from")
            && c.eat("pg_catalog")
            && c.eat_kind(Kind::Dot)
            && c.eat("pg_largeobject_metadata")
            && c.eat("where")
            && c.eat("oid")
            && c.peek().is_some_and(|t| &c.text[t.start..t.end] == b"=")
            && c.next().is_some()
            && c.string().is_some_and(|s| oid_arg(&Arg::Str(s)))
            && c.at_end();
        return if form {
            Ok(Statement::LargeObject)
        } else {
            refused()
        };
    }
    if !c.at_end() {
        return refused();
    }
    match (f.as_str(), args.as_slice()) {
        ("setval", [Arg::Str(name), Arg::Int(_), Arg::Bool(_)]) if sequence_name(name) => {
            Ok(Statement::Schema(Info::None))
        }
        ("set_config", [Arg::Str(name), Arg::Str(value), Arg::Bool(false)])
            if name == "search_path" =>
        {
            if session.in_transaction {
                return Err("a set_config of search_path inside a transaction block".into());
            }
            Ok(Statement::Schema(Info::Session(Session {
                search_path: SearchPath::of_string(value),
                ..session.clone()
            })))
        }
        ("lo_create" | "lo_unlink", [oid]) if oid_arg(oid) => Ok(Statement::LargeObject),
        ("lo_open", [oid, Arg::Int(131072)]) if oid_arg(oid) => Ok(Statement::LargeObject),
        ("lo_close", [Arg::Int(0)]) => Ok(Statement::LargeObject),
        ("lowrite", [Arg::Int(0), Arg::Str(bytes)])
            if bytes
                .strip_prefix("\\x")
                .is_some_and(|h| h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit())) =>
        {
            Ok(Statement::LargeObject)
        }
        _ => refused(),
    }
}

fn copy(c: &mut Cursor) -> Result<Statement, String> {
    if c.comments {
        return Err(
            "a COPY statement with a comment inside it (comments in data statements do \
                    not pass)"
                .into(),
        );
    }
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
        unqualified: c.unqualified,
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
                        "binary" => return bad("FORMAT BINARY"),
                        _ => return bad("FORMAT that this reader does not know"),
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
                "force_not_null" | "force_null" | "force_quote" | "on_error" | "log_verbosity"
                | "default" => return bad(&name.to_uppercase()),
                _ => return bad("that this reader does not know"),
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
                _ => return bad("that this reader does not know"),
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
    if c.comments {
        return Err(
            "an INSERT with a comment inside it (comments in data statements do not pass)".into(),
        );
    }
    if !(c.eat("insert") && c.eat("into")) {
        return Ok(None);
    }
    let table = c
        .qualified()
        .ok_or_else(|| "an INSERT whose table this reader cannot read".to_string())?;
    let unqualified = c.unqualified;
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
    let mut overriding = None;
    if c.eat("overriding") {
        overriding = if c.eat("system") {
            Some("SYSTEM")
        } else if c.eat("user") {
            Some("USER")
        } else {
            return Ok(None);
        };
        if !c.eat("value") {
            return Ok(None);
        }
    }
    if c.eat("values") && c.i == c.toks.len() {
        return Ok(Some(InsertHeader {
            table,
            columns,
            overriding,
            unqualified,
        }));
    }
    Ok(None)
}

/// Whether the text after an INSERT's last tuple is allowed: nothing, or `ON CONFLICT [target] DO
/// NOTHING` (a DO UPDATE writes values the rules do not see), then the statement's end.
pub fn insert_suffix_ok(text: &[u8], scs: bool) -> bool {
    let Ok(mut c) = Cursor::new(text, scs) else {
        return false;
    };
    if c.comments {
        return false;
    }
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
        classify(s.as_bytes(), &Session::pg_dump())
    }

    #[test]
    fn foreign_keys_are_read_with_their_columns() {
        let q = |s: &str, t: &str| QualifiedName::new(s, t);
        assert_eq!(
            class("ALTER TABLE ONLY public.orders ADD CONSTRAINT orders_c_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id);"),
            Statement::Schema(Info::ForeignKey(crate::schema::ForeignKey {
                name: "orders_c_fkey".into(),
                from: q("public", "orders"),
                from_columns: vec!["customer_id".into()],
                to: q("public", "customers"),
                to_columns: vec!["id".into()],
            }))
        );
        assert_eq!(
            class("ALTER TABLE \"Sales\".\"Lines\" ADD CONSTRAINT \"L fk\" FOREIGN KEY (\"Order\", n) REFERENCES \"Sales\".\"Orders\"(\"Id\", n) ON DELETE CASCADE NOT VALID;"),
            Statement::Schema(Info::ForeignKey(crate::schema::ForeignKey {
                name: "L fk".into(),
                from: q("Sales", "Lines"),
                from_columns: vec!["Order".into(), "n".into()],
                to: q("Sales", "Orders"),
                to_columns: vec!["Id".into(), "n".into()],
            }))
        );
        // Without the referenced columns (the primary key, which the reader fills in) or the
        // constraint's name.
        assert_eq!(
            class("ALTER TABLE public.a ADD FOREIGN KEY (b) REFERENCES public.b;"),
            Statement::Schema(Info::ForeignKey(crate::schema::ForeignKey {
                name: "(unnamed)".into(),
                from: q("public", "a"),
                from_columns: vec!["b".into()],
                to: q("public", "b"),
                to_columns: vec![],
            }))
        );
        assert_eq!(
            class("ALTER TABLE public.a ADD PRIMARY KEY (id);"),
            Statement::Schema(Info::PrimaryKey(q("public", "a"), vec!["id".into()]))
        );
        // Keys among several subcommands are not read: a reference is flagged, a column change
        // still forgets the table's columns.
        assert_eq!(
            class("ALTER TABLE public.a ADD PRIMARY KEY (id), ADD FOREIGN KEY (b) REFERENCES public.b;"),
            Statement::Schema(Info::UnreadReference {
                table: q("public", "a"),
                forget: false,
                unqualified: false
            })
        );
        assert_eq!(
            class("ALTER TABLE public.a ADD PRIMARY KEY (id), ADD COLUMN x int;"),
            Statement::Schema(Info::Forget {
                table: q("public", "a"),
                unqualified: false
            })
        );
    }

    #[test]
    fn settings_named_like_secrets_are_cut_out_or_refused() {
        for s in [
            "ALTER DATABASE shop SET \"app.jwt_secret\" TO 'SECRET_jwt';",
            "ALTER ROLE app IN DATABASE shop SET app.api_key = 'k';",
            "ALTER ROLE app SET app.token TO 'k';",
        ] {
            match class(s) {
                Statement::Rewritten { text, removed } => {
                    assert!(text.is_empty(), "{s}");
                    assert_eq!(removed, Secret::Setting);
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(matches!(
            class(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.token = 'x' AS $$SELECT 1$$;"
            ),
            Statement::Refused(_)
        ));
        assert!(matches!(
            class("CREATE FUNCTION public.f1() RETURNS int AS $$select 1$$ LANGUAGE sql SET app.jwt_secret = 'S3CRET';"),
            Statement::Refused(_)
        ));
        for s in [
            "CREATE FUNCTION public.f4() RETURNS public.begin LANGUAGE sql SET app.jwt_secret = 'x' AS $$select 1$$;",
            "CREATE FUNCTION public.f5() RETURNS SETOF public.return LANGUAGE sql SET \"app.jwt_secret\" TO 'x' AS $$select 1$$;",
            "CREATE FUNCTION public.f3() RETURNS int LANGUAGE sql SET app.U&\"jwt_secret\" = 'x' AS $$select 1$$;",
        ] {
            assert!(matches!(class(s), Statement::Refused(_)), "{s}: {:?}", class(s));
        }
        for s in [
            "SET SESSION AUTHORIZATION 'app_user';",
            "ALTER DATABASE shop SET password_encryption = 'scram-sha-256';",
        ] {
            assert!(
                matches!(class(s), Statement::Schema(_)),
                "{s}: {:?}",
                class(s)
            );
        }
        for s in [
            "SET app.jwt_secret = 'PRODSECRET1';",
            "SET SESSION app.token TO 'x';",
            "SET jwt_secret = 'x';",
            "SET app.U&\"jwt_secret\" = 'x';",
            "ALTER ROLE postgres SET app.U&\"jwt_secret\" = 'x';",
        ] {
            assert!(
                matches!(class(s), Statement::Rewritten { ref text, removed: Secret::Setting } if text.is_empty()),
                "{s}"
            );
        }
        for s in [
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC UPDATE t SET token = 1; END;",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = public AS $$SELECT 1$$;",
            "ALTER DATABASE shop SET search_path TO public;",
        ] {
            assert!(matches!(class(s), Statement::Schema(_)), "{s}: {:?}", class(s));
        }
        // Server options named pw, or in a form this reader does not decode, go too.
        assert_eq!(
            foreign_text("CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (pw 'a', U&\"p\\0061ss\" 'b', host 'h');"),
            "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'h');"
        );
    }

    #[test]
    fn views_and_insert_rules_are_not_tables() {
        assert!(matches!(
            class("CREATE OR REPLACE VIEW public.t AS SELECT 1 AS id;"),
            Statement::Schema(Info::NotATable(_))
        ));
        assert!(matches!(
            class("CREATE RULE r AS ON INSERT TO public.t DO INSTEAD INSERT INTO public.u VALUES (NEW.id);"),
            Statement::Schema(Info::NotATable(_))
        ));
        assert!(matches!(
            class("CREATE RULE \"_RETURN\" AS ON SELECT TO public.v DO INSTEAD SELECT 1;"),
            Statement::Schema(Info::None)
        ));
    }

    #[test]
    fn text_the_server_would_split_into_more_statements_is_refused() {
        for s in [
            "CREATE FUNCTION public.begin(begin atomic.x) RETURNS integer LANGUAGE sql AS $$SELECT 1$$; INSERT INTO public.t VALUES (1); END;",
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql 1begin atomic; INSERT INTO public.t VALUES (1); END;",
            "CREATE VIEW v AS SELECT 1E'\\';",
            "CREATE VIEW v AS SELECT $1e'x';",
            "CREATE VIEW v AS SELECT .5e'x';",
            "CREATE VIEW v AS SELECT 0x'a';",
            "CREATE FUNCTION public.begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$; INSERT INTO public.t VALUES (1); CREATE FUNCTION public.end() RETURNS int LANGUAGE sql AS $$SELECT 1$$;",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS begin; END; INSERT INTO public.t VALUES (1); END;",
            "CREATE VIEW v AS SELECT 1; INSERT INTO public.t VALUES (1);",
        ] {
            assert!(matches!(class(s), Statement::Refused(_)), "{s}");
        }
        for s in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;",
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC END;",
            "CREATE RULE r AS ON INSERT TO public.t DO ALSO (INSERT INTO public.u VALUES (1); INSERT INTO public.u VALUES (2););",
        ] {
            assert!(matches!(class(s), Statement::Schema(_)), "{s}: {:?}", class(s));
        }
    }

    #[test]
    fn text_a_lost_quote_swallowed_is_refused() {
        for s in [
            // A default's quote deleted: the COPY block after it is one string.
            "ALTER TABLE ONLY public.c ALTER COLUMN id SET DEFAULT nextval(public.c_id_seq'::regclass);\n\nCOPY public.c (id, email) FROM stdin;\n1\ta@b.test\n\\.\n\nSELECT pg_catalog.setval('public.c_id_seq', 1, true);",
            // The same with the block's end marker only.
            "COMMENT ON TABLE public.c IS 'x;\n1\ta@b.test\n\\.\n';",
            // INSERT statements read as a string: a line ending with `;` and a command under it.
            "ALTER TABLE public.c ALTER COLUMN n SET DEFAULT 'x'::text, ALTER COLUMN m SET DEFAULT 'y;\nINSERT INTO public.c VALUES (1, 'a@b.test');\nINSERT INTO public.c VALUES (2, ';",
            // pg_dump's comment lines and blank lines between the two do not hide it.
            "CREATE VIEW public.v AS SELECT 'a);\n\n--\n-- Name: c; Type: TABLE DATA\n--\n\nINSERT INTO public.c VALUES (1, ' AS x;",
            // A quoted name or a block comment swallows too.
            "CREATE INDEX \"i ON public.c (id);\nCOPY public.c (id, email) FROM stdin;\n1\ta@b.test\n\\.\nCREATE INDEX \" ON public.c (id);",
            "CREATE INDEX i ON public.c /* x;\nGRANT SELECT ON public.c TO r;\n*/ (id);",
            // A dollar quote holds a COPY block only by mistake.
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $_$\nCOPY public.c (id) FROM stdin;\n1\n\\.\n$_$;",
            // `;` inside parentheses: only a CREATE RULE's actions hold one.
            "ALTER TABLE ONLY public.c ALTER COLUMN id SET DEFAULT nextval(public.c_id_seq;",
            "CREATE VIEW public.v AS SELECT (1; 2);",
        ] {
            match class(s) {
                Statement::Refused(why) => assert!(!why.contains("a@b"), "{why}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        for s in [
            // Function bodies hold statements.
            "CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  INSERT INTO public.log VALUES (1);\nINSERT INTO public.log VALUES (2);\n  RETURN NEW;\nEND;\n$$;",
            // Strings over several lines that hold no statement boundary.
            "ALTER TABLE ONLY public.c ALTER COLUMN n SET DEFAULT 'line one\nline two; and\nselect is a word'::text;",
            "CREATE VIEW public.v AS SELECT 'a;\n  SELECT indented'::text AS x;",
            "CREATE TABLE public.\"odd\nname\" (id int);",
            // Prose in a comment: pg_dump writes commands in upper case.
            "COMMENT ON TABLE public.c IS 'Legacy table, read only;\ndo not write here.';",
        ] {
            assert!(
                matches!(class(s), Statement::Schema(_) | Statement::Comment),
                "{s}: {:?}",
                class(s)
            );
        }
    }

    fn foreign_text(s: &str) -> String {
        match class(s) {
            Statement::Foreign { text, .. } => String::from_utf8(text).unwrap(),
            other => panic!("{s}: {other:?}"),
        }
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
            ("SELECT * FROM t;", "a SELECT statement (only pg_dump's own setval, set_config and large-object calls pass, in the forms it writes)"),
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
            foreign_text("CREATE USER MAPPING FOR r1 SERVER s1 OPTIONS (\n    password 'mappingpw',\n    \"user\" 'u'\n);"),
            "CREATE USER MAPPING FOR r1 SERVER s1;"
        );
        // Every user-mapping option goes, whatever the wrapper calls it.
        assert_eq!(
            foreign_text(
                "CREATE USER MAPPING FOR r1 SERVER s1 OPTIONS (username 'u', secret 's', api_key 'k');"
            ),
            "CREATE USER MAPPING FOR r1 SERVER s1;"
        );
        assert_eq!(
            foreign_text("ALTER USER MAPPING FOR r1 SERVER s1 OPTIONS (SET password 'x');"),
            "",
            "an ALTER left without options is no statement: it goes"
        );
        assert_eq!(
            foreign_text("ALTER SERVER s1 OPTIONS (SET pwd 'x', host 'h');"),
            "ALTER SERVER s1 OPTIONS (host 'h');"
        );
        // Server options that may hold a credential go; the others stay.
        assert_eq!(
            foreign_text("CREATE SERVER s1 FOREIGN DATA WRAPPER w OPTIONS (host 'h', api_token 't', client_secret 's', sslkey 'k', dbname 'd');"),
            "CREATE SERVER s1 FOREIGN DATA WRAPPER w OPTIONS (host 'h', dbname 'd');"
        );
        // A string continued on the next line is one string: all of it goes.
        assert_eq!(
            rewritten_text("ALTER ROLE r1 PASSWORD ''\n'SECRET';"),
            ("ALTER ROLE r1 ;".into(), Secret::RolePassword)
        );
        assert_eq!(
            rewritten_text("CREATE SUBSCRIPTION s CONNECTION 'host=prod password=pw' PUBLICATION p WITH (connect = false);"),
            ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p WITH (connect = false);".into(), Secret::SubscriptionConnection)
        );
        assert_eq!(
            rewritten_text(
                "CREATE SUBSCRIPTION s CONNECTION 'host=prod '\n'password=pw' PUBLICATION p;"
            ),
            (
                "CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p;".into(),
                Secret::SubscriptionConnection
            )
        );
        assert_eq!(
            foreign_text("CREATE SERVER s1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'p', host 'prod');"),
            "CREATE SERVER s1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'p', host 'prod');"
        );
    }

    fn in_session(s: &str, session: &Session) -> Statement {
        classify(s.as_bytes(), session)
    }

    fn session_after(s: &str, session: &Session) -> Session {
        match in_session(s, session) {
            Statement::Schema(Info::Session(next)) => next,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn session_settings_are_followed() {
        let start = Session::default();
        assert_eq!(start.scs, None);
        assert!(!start.utf8);
        let s = session_after("SET standard_conforming_strings = off;", &start);
        assert_eq!(s.scs, Some(false));
        let s = session_after("SET client_encoding = 'UTF8';", &s);
        assert!(s.utf8);
        assert!(session_after("SET \"client_encoding\" TO 'utf-8';", &start).utf8);
        assert!(session_after("SET NAMES 'UTF8';", &start).utf8);
        for refused in [
            "SET NAMES 'SJIS';",
            "SET \"client_encoding\" = 'BIG5';",
            "ALTER DATABASE d SET client_encoding TO 'GBK';",
            "ALTER ROLE r IN DATABASE d SET client_encoding = 'LATIN1';",
        ] {
            assert!(
                matches!(in_session(refused, &start), Statement::Refused(_)),
                "{refused}"
            );
        }
        // Back to the server's default: not known any more.
        let on = session_after("SET standard_conforming_strings = on;", &start);
        for reset in [
            "RESET standard_conforming_strings;",
            "RESET ALL;",
            "SET standard_conforming_strings TO DEFAULT;",
        ] {
            assert_eq!(session_after(reset, &on).scs, None, "{reset}");
        }
        // Changes that a rollback could undo, or that last for one transaction: refused.
        let tx = session_after("BEGIN;", &on);
        assert!(tx.in_transaction);
        for refused in [
            "SET standard_conforming_strings = off;",
            "SET search_path = other;",
            "RESET ALL;",
            "SELECT pg_catalog.set_config('search_path', 'other', false);",
        ] {
            assert!(
                matches!(in_session(refused, &tx), Statement::Refused(_)),
                "{refused}"
            );
        }
        assert!(matches!(
            in_session("SET LOCAL standard_conforming_strings = off;", &on),
            Statement::Refused(_)
        ));
        assert!(!session_after("COMMIT;", &tx).in_transaction);
        // search_path.
        assert_eq!(on.search_path, SearchPath::Unset);
        let empty = session_after(
            "SELECT pg_catalog.set_config('search_path', '', false);",
            &on,
        );
        assert_eq!(empty.search_path, SearchPath::Other);
        assert_eq!(
            session_after("SET search_path = \"$user\", public;", &on).search_path,
            SearchPath::Public
        );
        assert_eq!(
            session_after("SET search_path TO secret, public;", &on).search_path,
            SearchPath::Other
        );
        assert_eq!(
            session_after("RESET search_path;", &empty).search_path,
            SearchPath::Unset
        );
        // Before standard_conforming_strings is known, a backslash in a plain string is refused.
        assert!(matches!(
            in_session("COMMENT ON TABLE t IS 'a\\';", &start),
            Statement::Refused(_)
        ));
    }

    #[test]
    fn pg_dump_selects_pass_only_in_their_exact_form() {
        for (s, large_object) in [
            ("SELECT pg_catalog.setval('public.t_id_seq', 2, true);", false),
            ("SELECT pg_catalog.setval('public.\"T\"', 1, false);", false),
            ("SELECT pg_catalog.lo_create('16401');", true),
            ("SELECT pg_catalog.lo_open('16401', 131072);", true),
            ("SELECT pg_catalog.lowrite(0, '\\x6c6f');", true),
            ("SELECT pg_catalog.lo_close(0);", true),
            ("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '16401';", true),
        ] {
            let c = class(s);
            assert_eq!(matches!(c, Statement::LargeObject), large_object, "{s}: {c:?}");
            assert!(!matches!(c, Statement::Refused(_)), "{s}: {c:?}");
        }
        for s in [
            "SELECT pg_catalog.setval('public.t_id_seq', 2, true), 'leak@corp.test';",
            "SELECT pg_catalog.setval('public.t_id_seq', 2, true) FROM secrets;",
            "SELECT pg_catalog.setval('leak@corp.test', 2, true);",
            "SELECT pg_catalog.set_config('search_path', '', false) UNION SELECT email FROM t;",
            "SELECT pg_catalog.set_config('application_name', 'leak', false);",
            "SELECT pg_catalog.lowrite(0, 'leak@corp.test');",
            "SELECT pg_catalog.lo_create('16401'), 'leak';",
            "SELECT pg_catalog.lo_truncate(0, 1);",
        ] {
            assert!(
                matches!(class(s), Statement::Refused(_)),
                "{s}: {:?}",
                class(s)
            );
        }
    }

    #[test]
    fn meta_commands_pass_only_in_pg_dump_forms() {
        let connect = |s: &str| match class(s) {
            Statement::Connect(db) => db,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(connect("\\connect app\n"), "app");
        assert_eq!(connect("\\connect \"My_DB\"\n"), "My_DB");
        assert_eq!(
            connect("\\connect -reuse-previous=on \"dbname='it\\'s'\"\n"),
            "it's"
        );
        for refused in [
            "\\connect app \\\\ \\! touch /tmp/x\n",
            "\\connect `id`\n",
            "\\connect app leak@corp.test\n",
            "\\connect -reuse-previous=on \"dbname='x' password=secret\"\n",
            "\\connect \"host=prod dbname=x\"\n",
            "\\connect :var\n",
            "\\restrict abc def\n",
            "\\restrict `id`\n",
            "\\encoding LATIN1\n",
            "\\LEAKMEJOHN\n",
        ] {
            match class(refused) {
                Statement::Refused(why) => {
                    for word in ["LEAKMEJOHN", "leak@", "secret", "prod"] {
                        assert!(!why.contains(word), "{refused}: {why}");
                    }
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
        assert_eq!(connect_line("app"), "\\connect app\n");
        assert_eq!(
            connect_line("it's \"x\""),
            "\\connect -reuse-previous=on \"dbname='it\\'s \"\"x\"\"'\"\n"
        );
        assert_eq!(connect(&connect_line("it's \"x\"")), "it's \"x\"");
    }

    #[test]
    fn refusals_name_only_keywords() {
        for s in [
            "LEAKMEJOHN SMITH;",
            "CREATE LEAKME x;",
            "ALTER LEAKME x;",
            "COPY t FROM stdin WITH (LEAKME true);",
            "COPY t FROM stdin WITH (FORMAT leakme);",
            "COPY t FROM stdin LEAKME;",
        ] {
            match class(s) {
                Statement::Refused(why) => {
                    assert!(!why.to_lowercase().contains("leakme"), "{s}: {why}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn comments_inside_data_statements_are_refused() {
        assert!(matches!(
            class("COPY public.t (a) /* leak@corp.test */ FROM stdin;"),
            Statement::Refused(_)
        ));
        assert!(parse_insert_header(b"INSERT INTO t /* leak */ VALUES", true).is_err());
        assert!(!insert_suffix_ok(b" -- leak\n;", true));
    }

    #[test]
    fn alter_table_forgets_columns_it_changes() {
        let info = |s: &str| match class(s) {
            Statement::Schema(i) => i,
            other => panic!("{s}: {other:?}"),
        };
        for s in [
            "ALTER TABLE public.t ADD COLUMN x text;",
            "ALTER TABLE public.t ADD x text;",
            "ALTER TABLE ONLY public.t DROP COLUMN x;",
            "ALTER TABLE public.t RENAME COLUMN a TO b;",
            "ALTER TABLE public.t RENAME a TO b;",
            "ALTER TABLE public.t RENAME TO u;",
            "ALTER TABLE public.t SET SCHEMA other;",
            "ALTER TABLE public.t OWNER TO x, ADD COLUMN y int;",
            "ALTER TABLE public.t ALTER COLUMN g DROP EXPRESSION;",
            "ALTER TABLE public.t INHERIT public.p;",
        ] {
            assert_eq!(
                info(s),
                Info::Forget {
                    table: QualifiedName::new("public", "t"),
                    unqualified: false
                },
                "{s}"
            );
        }
        // A primary key changes no column (it is read as the table's key, for subsets).
        assert_eq!(
            info("ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);"),
            Info::PrimaryKey(QualifiedName::new("public", "t"), vec!["id".into()])
        );
        for s in [
            "ALTER TABLE public.t OWNER TO x;",
            "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('s'::regclass);",
            "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY;",
        ] {
            assert_eq!(info(s), Info::None, "{s}");
        }
        assert_eq!(
            info("DROP TABLE public.a, b;"),
            Info::Dropped(vec![
                (QualifiedName::new("public", "a"), false),
                (QualifiedName::new("public", "b"), true)
            ])
        );
        assert_eq!(info("DROP TYPE public.ty CASCADE;"), Info::ForgetAll);
    }

    #[test]
    fn foreign_data_is_told_apart() {
        for s in [
            "CREATE SERVER s1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'prod');",
            "ALTER SERVER s1 OWNER TO postgres;",
            "CREATE FOREIGN TABLE public.ft (a int) SERVER s1;",
            "ALTER FOREIGN TABLE public.ft OWNER TO postgres;",
            "IMPORT FOREIGN SCHEMA public FROM SERVER s1 INTO staging;",
            "GRANT USAGE ON FOREIGN SERVER s1 TO bob;",
            "COMMENT ON FOREIGN TABLE public.ft IS 'x';",
            "COMMENT ON SERVER s1 IS 'x';",
        ] {
            assert!(
                matches!(class(s), Statement::Foreign { .. }),
                "{s}: {:?}",
                class(s)
            );
        }
        match class("CREATE USER MAPPING FOR r SERVER s OPTIONS (password 'x');") {
            Statement::Foreign { text, .. } => {
                assert_eq!(text, b"CREATE USER MAPPING FOR r SERVER s;")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            class("CREATE FOREIGN TABLE IF NOT EXISTS s.ft (a int) SERVER x;"),
            Statement::Foreign {
                text: b"CREATE FOREIGN TABLE IF NOT EXISTS s.ft (a int) SERVER x;".to_vec(),
                table: Some(QualifiedName::new("s", "ft"))
            }
        );
        assert_eq!(
            names_in(b"GRANT SELECT ON TABLE public.ft TO bob;", true),
            vec![
                QualifiedName::new("public", "grant"),
                QualifiedName::new("public", "select"),
                QualifiedName::new("public", "on"),
                QualifiedName::new("public", "table"),
                QualifiedName::new("public", "ft"),
                QualifiedName::new("public", "to"),
                QualifiedName::new("public", "bob"),
            ]
        );
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
            Statement::Refused("the COPY option FORMAT BINARY".into())
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
        let types: Vec<(&str, &str)> = d
            .types
            .iter()
            .map(|(c, t)| (c.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("Email", "text"),
                ("g", "integer"),
                ("i", "int"),
                ("id", "integer"),
                ("n", "numeric"),
            ]
        );
        let d = def("CREATE TABLE t (a character varying(20) COLLATE pg_catalog.\"C\", b public.email_address NOT NULL, c text[], d timestamp(3) with time zone, e double precision);");
        assert_eq!(d.types["a"], "character varying");
        assert_eq!(d.types["b"], "public.email_address");
        assert_eq!(d.types["c"], "text[]");
        assert_eq!(d.types["d"], "timestamp with time zone");
        assert_eq!(d.types["e"], "double precision");
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
                columns: Some(vec!["id".into(), "E".into()]),
                overriding: Some("SYSTEM"),
                unqualified: false,
            })
        );
        assert_eq!(
            h("insert into Users values").unwrap(),
            Some(InsertHeader {
                table: QualifiedName::new("public", "users"),
                columns: None,
                overriding: None,
                unqualified: true,
            })
        );
        assert_eq!(h("INSERT INTO t SELECT").unwrap(), None);
        assert_eq!(h("INSERT INTO t OVERRIDING VALUES").unwrap(), None);
        assert!(
            h("INSERT INTO t (a) VALUES (:v)").is_err() || h("INSERT INTO t VALUES :'v'").is_err()
        );
        assert!(h("INSERT INTO :\"t\" VALUES").is_err());
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
            class("\\connect \"App\"\n"),
            Statement::Connect("App".into())
        );
        // Other names come in the connection-string form; in a plain one psql would read them as
        // a connection string.
        assert!(matches!(
            class("\\connect \"Odd\"\"Name\"\n"),
            Statement::Refused(_)
        ));
    }
}
