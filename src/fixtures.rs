//! `[[fixtures]]`: the test scenarios staging needs and production does not have (QA accounts,
//! feature flags, edge-case customers), put back by every refresh after the anonymized data.
//!
//! A fixture is an SQL file or a CSV file with its table. Both are read and validated when the
//! rules are built (the file exists, the SQL splits into statements a server may run inside the
//! refresh's transaction, the CSV has a header and rows of its width), so a broken fixture stops
//! the run before anything is written. Fixture rows are written as they are: they are staging's
//! own data, never production's, and are not anonymized.

use std::fmt::Write as _;

use crate::schema::{quote_ident, QualifiedName};
use crate::sql::lexer;
use crate::sql::split::{Found, Splitter};

/// One fixture, read and validated.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The path as the rules file gives it (relative to the working directory, like `key_file`).
    pub file: String,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    Sql(Vec<Statement>),
    Csv {
        table: QualifiedName,
        columns: Vec<String>,
        /// The file's records after the header, as CSV.
        data: Vec<u8>,
        rows: u64,
    },
}

/// One statement of an SQL fixture and the line (from 1) it starts on.
#[derive(Debug, Clone)]
pub struct Statement {
    pub text: String,
    pub line: usize,
}

/// What a fixture put into staging, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Applied {
    pub file: String,
    /// `sql` or `csv`.
    pub kind: &'static str,
    pub statements: usize,
    /// Rows the server counted for each statement (inserted, updated, deleted, or returned by a
    /// SELECT); for a dump, the CSV's records and none for SQL, which only psql runs.
    pub rows: u64,
}

/// Statements that would end, split or leave the refresh's transaction, or cannot run in one.
const REFUSED_FIRST_WORDS: &[&str] = &[
    "begin",
    "start",
    "commit",
    "end",
    "rollback",
    "abort",
    "prepare",
    "vacuum",
    "checkpoint",
    "reindex",
    "cluster",
    "discard",
    "listen",
    "notify",
    "copy",
    "set",
    "reset",
];

/// Read an SQL fixture: its statements with their lines, or why it cannot be used (with the line).
pub fn parse_sql(file: &str, text: &str) -> Result<Vec<Statement>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let buf = text.as_bytes();
    let mut splitter = Splitter::new(true);
    let mut statements = Vec::new();
    let line_of = |at: usize| buf[..at].iter().filter(|b| **b == b'\n').count() + 1;
    loop {
        let found = splitter.next(buf, true).map_err(|e| {
            format!(
                "fixture {file}: {} (from line {})",
                match e {
                    crate::sql::split::SplitError::Unterminated(_) =>
                        "ends inside a quote or comment that is never closed",
                    crate::sql::split::SplitError::UnbalancedParen => "has a ) without its (",
                },
                splitter.content().map_or(1, line_of)
            )
        })?;
        match found {
            Some(Found::Statement { content, end }) => {
                let line = line_of(content);
                let stmt = &text[content..end];
                let toks = lexer::tokens(stmt.as_bytes(), true).unwrap_or_default();
                // psql runs a backslash command wherever it stands (`\!` runs a shell), and a
                // dump's fixtures are read by psql.
                if let Some(t) = toks.iter().find(|t| t.kind == lexer::Kind::Backslash) {
                    return Err(format!(
                        "fixture {file}:{}: psql meta-commands (\\…) are not run; write SQL statements",
                        line_of(content + t.start)
                    ));
                }
                // One statement each: a `;` inside one is legitimate only in a `BEGIN ATOMIC`
                // body (a word `begin` elsewhere would otherwise hide a COMMIT behind it).
                // Words of the significant tokens, in order (punctuation as no word), so that
                // `BEGIN ATOMIC` must be those two words next to each other.
                let words: Vec<String> = toks
                    .iter()
                    .filter(|t| lexer::significant(t))
                    .map(|t| {
                        lexer::word(stmt.as_bytes(), t)
                            .map(|w| w.to_lowercase())
                            .unwrap_or_default()
                    })
                    .collect();
                let inner = toks
                    .iter()
                    .filter(|t| t.kind == lexer::Kind::Semicolon)
                    .any(|t| !stmt[t.end..].trim().is_empty());
                if inner
                    && !words
                        .windows(2)
                        .any(|w| w[0] == "begin" && w[1] == "atomic")
                {
                    return Err(format!(
                        "fixture {file}:{line}: reads as several statements in one; end each with `;` (a word `begin` outside BEGIN ATOMIC confuses statement boundaries)"
                    ));
                }
                let first = toks
                    .iter()
                    .filter(|t| lexer::significant(t))
                    .find_map(|t| lexer::word(stmt.as_bytes(), t))
                    .map(|w| w.to_lowercase())
                    .unwrap_or_default();
                if REFUSED_FIRST_WORDS.contains(&first.as_str()) {
                    return Err(format!(
                        "fixture {file}:{line}: {} statements are not run in a fixture ({})",
                        first.to_uppercase(),
                        if first == "copy" {
                            "give rows as a CSV fixture: { csv = \"…\", table = \"…\" }"
                        } else if matches!(first.as_str(), "set" | "reset") {
                            "a setting would outlive the fixture; use SET LOCAL inside a DO block or set_config(…, true)"
                        } else {
                            "a fixture runs inside the refresh's own transaction"
                        }
                    ));
                }
                statements.push(Statement {
                    text: stmt.trim_end().to_string(),
                    line,
                });
            }
            Some(Found::Meta { content, .. }) => {
                return Err(format!(
                    "fixture {file}:{}: psql meta-commands (\\…) are not run; write SQL statements",
                    line_of(content)
                ))
            }
            Some(Found::End) | None => break,
            Some(Found::Open { .. } | Found::Close { .. }) => {}
        }
    }
    if statements.is_empty() {
        return Err(format!("fixture {file}: holds no SQL statement"));
    }
    Ok(statements)
}

/// Read a CSV fixture: the header's column names, the records after it and their count.
pub fn parse_csv(
    file: &str,
    text: &str,
    table: QualifiedName,
) -> Result<(Vec<String>, Vec<u8>, u64), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // One kind of line end: PostgreSQL's CSV reader refuses a mix.
    let text = text.replace("\r\n", "\n");
    let text = text.as_str();
    let mut records = Records::new(text);
    let Some((header, _)) = records
        .next_record()
        .map_err(|e| format!("fixture {file}:{e}"))?
    else {
        return Err(format!(
            "fixture {file}: empty; the first line names the columns of {table}"
        ));
    };
    let columns: Vec<String> = header.iter().map(|c| c.trim().to_string()).collect();
    if let Some(i) = columns.iter().position(|c| c.is_empty()) {
        return Err(format!(
            "fixture {file}:1: column {} of the header has no name",
            i + 1
        ));
    }
    let mut rows = 0u64;
    // The records alone, without the blank lines between them (PostgreSQL would read one as a
    // row of one empty field).
    let mut data = Vec::new();
    loop {
        let at = records.skip_blank_lines();
        let Some((fields, line)) = records
            .next_record()
            .map_err(|e| format!("fixture {file}:{e}"))?
        else {
            break;
        };
        let raw = &text[at..records.pos];
        // psql ends the rows of a COPY in a script at a line `\.`, even in CSV.
        if raw.trim_end_matches(['\n', '\r']) == "\\." {
            return Err(format!(
                "fixture {file}:{line}: a line `\\.` ends COPY data; quote it"
            ));
        }
        data.extend_from_slice(raw.as_bytes());
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        if fields.len() != columns.len() {
            return Err(format!(
                "fixture {file}:{line}: {} field(s) where the header names {}",
                fields.len(),
                columns.len()
            ));
        }
        rows += 1;
    }
    Ok((columns, data, rows))
}

/// The records of a CSV text (RFC 4180: `"` quotes, `""` inside quotes, CRLF or LF).
struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Records<'a> {
    fn new(text: &'a str) -> Self {
        Records {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The next record's fields and the line it starts on; an error says `line: why`.
    #[allow(clippy::type_complexity)]
    /// Skip blank lines (no row); returns where the next record starts.
    fn skip_blank_lines(&mut self) -> usize {
        while self.text[self.pos..].starts_with('\n') {
            self.pos += 1;
            self.line += 1;
        }
        self.pos
    }

    fn next_record(&mut self) -> Result<Option<(Vec<String>, usize)>, String> {
        self.skip_blank_lines();
        if self.pos >= self.text.len() {
            return Ok(None);
        }
        let start_line = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = self.text[self.pos..].char_indices().peekable();
        let mut quoted = false;
        let mut was_quoted = false;
        let mut end = self.text.len();
        while let Some((i, c)) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek().is_some_and(|(_, n)| *n == '"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err(format!("{}: a quote inside an unquoted field", self.line)),
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek().is_some_and(|(_, n)| *n == '\n') => {}
                '\n' => {
                    end = self.pos + i + 1;
                    self.line += 1;
                    break;
                }
                _ if was_quoted => {
                    return Err(format!(
                        "{}: text after a quoted field's closing quote",
                        self.line
                    ))
                }
                _ => field.push(c),
            }
        }
        if quoted {
            return Err(format!("{start_line}: a quoted field is never closed"));
        }
        fields.push(field);
        self.pos = end;
        Ok(Some((fields, start_line)))
    }
}

/// The COPY statement that loads a CSV fixture's records.
pub fn copy_sql(table: &QualifiedName, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "COPY {table} ({}) FROM stdin WITH (FORMAT csv)",
        cols.join(", ")
    )
}

/// The fixtures as a dump's closing section: SQL as written, CSV as a COPY block psql reads.
pub fn dump_text(fixtures: &[Fixture]) -> (String, Vec<Applied>) {
    let mut out = String::new();
    let mut applied = Vec::new();
    for f in fixtures {
        let _ = writeln!(out, "\n--\n-- Fixture {}\n--\n", f.file.replace('\n', " "));
        match &f.body {
            Body::Sql(statements) => {
                for s in statements {
                    out.push_str(&s.text);
                    // A last statement without its `;` may end in a `--` comment.
                    out.push_str(if s.text.ends_with(';') { "\n" } else { "\n;\n" });
                }
                applied.push(Applied {
                    file: f.file.clone(),
                    kind: "sql",
                    statements: statements.len(),
                    rows: 0,
                });
            }
            Body::Csv {
                table,
                columns,
                data,
                rows,
            } => {
                let _ = writeln!(out, "{};", copy_sql(table, columns));
                out.push_str(&String::from_utf8_lossy(data));
                out.push_str("\\.\n");
                applied.push(Applied {
                    file: f.file.clone(),
                    kind: "csv",
                    statements: 1,
                    rows: *rows,
                });
            }
        }
    }
    (out, applied)
}

/// Where in a fixture an error happened: the statement's line, moved on by the error's position
/// (a character offset from 1 into the statement) when the server gives one.
pub fn error_line(statement: &Statement, position: Option<u32>) -> usize {
    let Some(p) = position else {
        return statement.line;
    };
    let before: String = statement
        .text
        .chars()
        .take((p as usize).saturating_sub(1))
        .collect();
    statement.line + before.matches('\n').count()
}

/// Apply the fixtures on a staging session (inside the refresh's transaction, or a transaction of
/// their own on a swap's new database). A failure names the fixture file and line.
pub async fn apply(
    client: &tokio_postgres::Client,
    fixtures: &[Fixture],
) -> Result<Vec<Applied>, crate::db::DbError> {
    use futures_util::SinkExt;
    let settings = session_settings(client).await?;
    let mut applied = Vec::new();
    for f in fixtures {
        match &f.body {
            Body::Sql(statements) => {
                let mut rows = 0;
                for s in statements {
                    // The extended protocol runs exactly one statement: whatever the splitter
                    // made of the text, the server refuses a second one (a hidden COMMIT).
                    let n = client.execute(s.text.as_str(), &[]).await.map_err(|e| {
                        let position = e.as_db_error().and_then(|d| match d.position() {
                            Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                            _ => None,
                        });
                        crate::db::DbError::Query {
                            context: format!("fixture {}:{}", f.file, error_line(s, position)),
                            message: crate::db::describe(&e),
                        }
                    })?;
                    rows += n;
                }
                applied.push(Applied {
                    file: f.file.clone(),
                    kind: "sql",
                    statements: statements.len(),
                    rows,
                });
            }
            Body::Csv {
                table,
                columns,
                data,
                ..
            } => {
                let err = |e: tokio_postgres::Error| {
                    // A COPY error's context line says which record: the file's line is one more
                    // (the header).
                    let line = e
                        .as_db_error()
                        .and_then(|d| d.where_())
                        .and_then(|w| w.rsplit("line ").next())
                        .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .map_or(String::new(), |n| format!(":{}", n + 1));
                    crate::db::DbError::Query {
                        context: format!("fixture {}{line} (into {table})", f.file),
                        message: crate::db::describe(&e),
                    }
                };
                let sink = client
                    .copy_in(&copy_sql(table, columns))
                    .await
                    .map_err(err)?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::copy_from_slice(data))
                    .await
                    .map_err(err)?;
                let rows = sink.as_mut().finish().await.map_err(err)?;
                applied.push(Applied {
                    file: f.file.clone(),
                    kind: "csv",
                    statements: 1,
                    rows,
                });
            }
        }
    }
    restore_settings(client, &settings).await?;
    Ok(applied)
}

/// The session's settings a statement can change (with `set_config(…, false)` or a `SET` inside
/// a `DO` block), and who it runs as.
async fn session_settings(
    client: &tokio_postgres::Client,
) -> Result<(Vec<(String, String)>, String), crate::db::DbError> {
    let err = crate::db::query_err("reading the session's settings around the fixtures");
    let rows = client
        .query(
            "SELECT name, setting FROM pg_settings WHERE context IN ('user', 'superuser') \
             AND name NOT LIKE 'transaction\\_%' ORDER BY name",
            &[],
        )
        .await
        .map_err(&err)?;
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(&err)?
        .get(0);
    Ok((rows.iter().map(|r| (r.get(0), r.get(1))).collect(), role))
}

/// Put back what the fixtures changed of the session, so that the rest of the refresh runs as
/// before them (a `search_path` or `TimeZone` left behind would change what it does).
async fn restore_settings(
    client: &tokio_postgres::Client,
    before: &(Vec<(String, String)>, String),
) -> Result<(), crate::db::DbError> {
    // The timeouts first: a fixture's 1 ms statement_timeout would cancel the reading of the rest.
    let err = crate::db::query_err("restoring the session's settings after the fixtures");
    for (name, value) in before.0.iter().filter(|(n, _)| n.ends_with("_timeout")) {
        client
            .execute("SELECT set_config($1, $2, false)", &[name, value])
            .await
            .map_err(&err)?;
    }
    let after = session_settings(client).await?;
    if after.1 != before.1 {
        return Err(crate::db::DbError::Query {
            context: "fixtures".into(),
            message: "a fixture changed the role the refresh runs as (SET ROLE); fixtures may not"
                .into(),
        });
    }
    // By name: a fixture can add settings (the first DO block loads plpgsql's).
    let now: std::collections::BTreeMap<&str, &str> = after
        .0
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    for (name, value) in &before.0 {
        if now.get(name.as_str()).is_some_and(|v| v != value) {
            client
                .execute("SELECT set_config($1, $2, false)", &[name, value])
                .await
                .map_err(&err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_fixtures_split_with_lines_and_refuse_what_would_leave_the_transaction() {
        let s = parse_sql(
            "qa.sql",
            "-- QA\nINSERT INTO t VALUES (1, 'a;b');\n\nUPDATE t\n  SET x = 1;\nDO $$ BEGIN END $$",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].line, s[1].line, s[2].line), (2, 4, 6));
        assert!(s[0].text.starts_with("INSERT") && s[0].text.ends_with(';'));
        for bad in [
            "COMMIT;",
            "begin;",
            "copy t from stdin;",
            "SET search_path = x;",
            "\\connect x\n",
            "INSERT INTO t VALUES (1) \\! touch x\n;",
            "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1';\nCOMMIT;",
            "CREATE FUNCTION begin(atomic int) RETURNS int LANGUAGE sql AS 'select 1';\nCOMMIT;",
        ] {
            let e = parse_sql("f.sql", &format!("SELECT 1;\n{bad}")).unwrap_err();
            assert!(e.starts_with("fixture f.sql:2:"), "{e}");
        }
        assert!(parse_sql("f.sql", "SELECT 'open;\n")
            .unwrap_err()
            .contains("never closed"));
        assert!(parse_sql("f.sql", "-- nothing\n")
            .unwrap_err()
            .contains("no SQL"));
        let st = Statement {
            text: "INSERT INTO t\nVALUES (x)".into(),
            line: 7,
        };
        assert_eq!(error_line(&st, Some(22)), 8);
        assert_eq!(error_line(&st, None), 7);
    }

    #[test]
    fn csv_fixtures_need_a_header_and_rows_of_its_width() {
        let t = QualifiedName::parse("public.flags").unwrap();
        let (cols, data, rows) = parse_csv(
            "f.csv",
            "name, enabled\r\n\"a,\"\"b\"\"\",true\n\"multi\nline\",false",
            t.clone(),
        )
        .unwrap();
        assert_eq!(cols, ["name", "enabled"]);
        assert_eq!(rows, 2);
        assert!(data.ends_with(b"false\n"));
        let e = parse_csv("f.csv", "a,b\n1,2\n3\n", t.clone()).unwrap_err();
        assert_eq!(e, "fixture f.csv:3: 1 field(s) where the header names 2");
        assert!(parse_csv("f.csv", "a,b\n\"x,2\n", t.clone())
            .unwrap_err()
            .contains(":2: a quoted"));
        assert!(parse_csv("f.csv", "", t.clone())
            .unwrap_err()
            .contains("empty"));
        assert!(parse_csv("f.csv", "a\n\\.\n", t.clone())
            .unwrap_err()
            .contains(":2:"));
        // A byte-order mark, mixed line ends and blank lines are not sent to the server.
        let (cols, data, rows) = parse_csv("f.csv", "\u{feff}a,b\r\n1,2\n\n3,4\r\n\n", t).unwrap();
        assert_eq!(cols, ["a", "b"]);
        assert_eq!((data.as_slice(), rows), (&b"1,2\n3,4\n"[..], 2));
    }
}
