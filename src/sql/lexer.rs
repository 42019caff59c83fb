//! PostgreSQL's lexical structure, as far as a dump needs it: where each token starts and ends.
//!
//! Strings (`'…'` with `''`, `E'…'` with backslash escapes, `'…'` with backslash escapes when
//! `standard_conforming_strings` is off, `$tag$…$tag$`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`), quoted
//! identifiers (which may hold newlines and quotes), line comments and nested block comments,
//! numbers, words, operators, punctuation and psql's backslash. A token never ends inside a quote or
//! comment: the lexer says when the bytes it has end too early, so a streaming reader can wait for
//! more. It knows nothing of statements; see [`super::split`].

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Space,
    LineComment,
    BlockComment,
    /// A keyword or an unquoted identifier.
    Word,
    QuotedIdent,
    Str(Str),
    Number,
    /// `$1`.
    Param,
    /// An operator (`=`, `<>`, `-`, `+`, …).
    Op,
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
    Semicolon,
    Dot,
    /// `::`
    Cast,
    Colon,
    /// psql's `\`, outside quotes: a meta-command starts here.
    Backslash,
}

/// The kinds of string constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Str {
    /// `'…'`; backslashes are plain characters when `standard_conforming_strings` is on.
    Plain,
    /// `E'…'`: backslash escapes.
    Escape,
    /// `$tag$…$tag$`
    Dollar,
    /// `B'0101'`
    Bit,
    /// `X'1F'`
    Hex,
    /// `N'…'`
    National,
    /// `U&'…'`
    Unicode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Why no token could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The bytes end inside a token that may go on: give more bytes (or say it is the end).
    Incomplete,
    /// The input ends inside a quote or comment that is never closed.
    Unterminated(Kind),
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

fn is_op_char(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

/// The token at `pos`. `eof` says no byte follows `buf`; `scs` is `standard_conforming_strings`.
/// `Ok(None)` at the end of the input.
pub fn next(buf: &[u8], pos: usize, scs: bool, eof: bool) -> Result<Option<Token>, Stop> {
    let Some(&b) = buf.get(pos) else {
        return if eof { Ok(None) } else { Err(Stop::Incomplete) };
    };
    let at = |i: usize| buf.get(i).copied();
    let tok = |kind, end| {
        Ok(Some(Token {
            kind,
            start: pos,
            end,
        }))
    };
    // The byte after `i`, which decides how a token goes on: unknown until the input says.
    let peek = |i: usize| -> Result<Option<u8>, Stop> {
        match buf.get(i) {
            Some(&c) => Ok(Some(c)),
            None if eof => Ok(None),
            None => Err(Stop::Incomplete),
        }
    };
    match b {
        _ if is_space(b) => {
            let end = buf[pos..]
                .iter()
                .position(|c| !is_space(*c))
                .map_or(buf.len(), |n| pos + n);
            if end == buf.len() && !eof {
                // More space may follow; harmless to return what there is.
                return tok(Kind::Space, end);
            }
            tok(Kind::Space, end)
        }
        // A line comment ends at `\n` or `\r`, as the server and psql read it.
        b'-' if peek(pos + 1)? == Some(b'-') => match memchr::memchr2(b'\n', b'\r', &buf[pos..]) {
            Some(n) => tok(Kind::LineComment, pos + n + 1),
            None if eof => tok(Kind::LineComment, buf.len()),
            None => Err(Stop::Incomplete),
        },
        b'/' if peek(pos + 1)? == Some(b'*') => block_comment(buf, pos, eof),
        b'\'' => quoted(buf, pos, pos, !scs, Str::Plain, eof),
        b'"' => double_quoted(buf, pos, eof),
        b'$' => match peek(pos + 1)? {
            Some(c) if c.is_ascii_digit() => {
                let mut end = digits_end(buf, pos + 1);
                if end == buf.len() && !eof {
                    return Err(Stop::Incomplete);
                }
                // Trailing junk (`$1e`), as psql reads it.
                if buf.get(end).is_some_and(|&b| is_ident_start(b)) {
                    end += 1;
                }
                tok(Kind::Param, end)
            }
            _ => dollar(buf, pos, eof),
        },
        b'(' => tok(Kind::Open, pos + 1),
        b')' => tok(Kind::Close, pos + 1),
        b'[' => tok(Kind::OpenBracket, pos + 1),
        b']' => tok(Kind::CloseBracket, pos + 1),
        b',' => tok(Kind::Comma, pos + 1),
        b';' => tok(Kind::Semicolon, pos + 1),
        b':' => match peek(pos + 1)? {
            Some(b':') => tok(Kind::Cast, pos + 2),
            _ => tok(Kind::Colon, pos + 1),
        },
        b'\\' => tok(Kind::Backslash, pos + 1),
        b'.' => match peek(pos + 1)? {
            Some(c) if c.is_ascii_digit() => number(buf, pos, eof),
            _ => tok(Kind::Dot, pos + 1),
        },
        b'0'..=b'9' => number(buf, pos, eof),
        _ if is_ident_start(b) => {
            // String prefixes: E'…', B'…', X'…', N'…', U&'…' (and U&"…").
            let next1 = peek(pos + 1)?;
            match (b.to_ascii_lowercase(), next1) {
                (b'e', Some(b'\'')) => return quoted(buf, pos, pos + 1, true, Str::Escape, eof),
                (b'b', Some(b'\'')) => return quoted(buf, pos, pos + 1, false, Str::Bit, eof),
                (b'x', Some(b'\'')) => return quoted(buf, pos, pos + 1, false, Str::Hex, eof),
                (b'n', Some(b'\'')) => return quoted(buf, pos, pos + 1, !scs, Str::National, eof),
                (b'u', Some(b'&')) => match peek(pos + 2)? {
                    Some(b'\'') => return quoted(buf, pos, pos + 2, false, Str::Unicode, eof),
                    Some(b'"') => {
                        return double_quoted(buf, pos + 2, eof)
                            .map(|t| t.map(|t| Token { start: pos, ..t }))
                    }
                    _ => {}
                },
                _ => {}
            }
            let end = buf[pos..]
                .iter()
                .position(|c| !is_ident_char(*c))
                .map_or(buf.len(), |n| pos + n);
            if end == buf.len() && !eof {
                return Err(Stop::Incomplete);
            }
            tok(Kind::Word, end)
        }
        _ if is_op_char(b) => {
            // An operator is a run of operator characters that never holds `--` or `/*`.
            let mut end = pos;
            while let Some(c) = at(end) {
                if !is_op_char(c) {
                    break;
                }
                if end > pos
                    && ((c == b'-' && at(end - 1) == Some(b'-'))
                        || (c == b'*' && at(end - 1) == Some(b'/')))
                {
                    end -= 1;
                    break;
                }
                end += 1;
            }
            if end == buf.len() && !eof {
                return Err(Stop::Incomplete);
            }
            tok(Kind::Op, end.max(pos + 1))
        }
        // Any other byte stands alone (control characters and the like): the statement that holds
        // it is judged by its words, and unknown statements are refused anyway.
        _ => tok(Kind::Op, pos + 1),
    }
}

fn digits_end(buf: &[u8], from: usize) -> usize {
    buf[from..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(buf.len(), |n| from + n)
}

fn number(buf: &[u8], pos: usize, eof: bool) -> Result<Option<Token>, Stop> {
    let mut end = digits_end(buf, pos);
    if buf.get(end) == Some(&b'.') && buf.get(end + 1) != Some(&b'.') {
        end = digits_end(buf, end + 1);
    }
    let mut complete = true;
    if matches!(buf.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(buf.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        if buf.get(e).is_some_and(u8::is_ascii_digit) {
            end = digits_end(buf, e);
        } else if e >= buf.len() && !eof {
            return Err(Stop::Incomplete);
        } else {
            // `1e`, `1e+`: one token for psql (PostgreSQL 15's "realfail"), so what follows —
            // a quote — starts a plain string, not an `E'…'` one.
            end = e;
            complete = false;
        }
    }
    if end >= buf.len() && !eof {
        return Err(Stop::Incomplete);
    }
    // Trailing junk (`1x`, `0x'…'`): one more character in the token, as psql reads it.
    if complete && buf.get(end).is_some_and(|&b| is_ident_start(b)) {
        end += 1;
    }
    Ok(Some(Token {
        kind: Kind::Number,
        start: pos,
        end,
    }))
}

fn block_comment(buf: &[u8], pos: usize, eof: bool) -> Result<Option<Token>, Stop> {
    let mut depth = 0usize;
    let mut i = pos;
    while i + 1 < buf.len() {
        match (buf[i], buf[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Ok(Some(Token {
                        kind: Kind::BlockComment,
                        start: pos,
                        end: i,
                    }));
                }
            }
            _ => i += 1,
        }
    }
    if eof {
        Err(Stop::Unterminated(Kind::BlockComment))
    } else {
        Err(Stop::Incomplete)
    }
}

/// Whether a number or parameter token has trailing junk (`1x`, `1e`, `$1e`): not valid SQL, and
/// read differently by psql versions (before 15, `1e'…'` is `1` and an `E'…'` string).
pub fn junk(token: &[u8]) -> bool {
    token
        .last()
        .is_some_and(|&b| !b.is_ascii_digit() && b != b'.')
}

/// After a string's closing quote (at `after`): the position of the quote that continues it, when
/// whitespace holding a newline (and perhaps `--` comments) and then a quote follow — the server
/// and psql read `'a'` NEWLINE `'b'` as one string `ab`. `None` when the string ends here.
pub fn continuation(buf: &[u8], after: usize, eof: bool) -> Result<Option<usize>, Stop> {
    let mut j = after;
    let mut newline = false;
    loop {
        match buf.get(j) {
            Some(b' ' | b'\t' | 0x0c) => j += 1,
            Some(b'\n' | b'\r') => {
                newline = true;
                j += 1;
            }
            Some(b'-') => match buf.get(j + 1) {
                Some(b'-') => match memchr::memchr2(b'\n', b'\r', &buf[j..]) {
                    Some(n) => j += n,
                    None if eof => return Ok(None),
                    None => return Err(Stop::Incomplete),
                },
                None if !eof => return Err(Stop::Incomplete),
                _ => return Ok(None),
            },
            Some(b'\'') => return Ok(newline.then_some(j)),
            Some(_) => return Ok(None),
            None if eof => return Ok(None),
            None => return Err(Stop::Incomplete),
        }
    }
}

/// A single-quoted string whose quote is at `quote`; `backslash` says whether `\` escapes.
/// Adjacent quoted strings separated by whitespace with a newline are one constant in SQL; each is
/// a token here (the statement keeps its text as written).
fn quoted(
    buf: &[u8],
    pos: usize,
    quote: usize,
    backslash: bool,
    kind: Str,
    eof: bool,
) -> Result<Option<Token>, Stop> {
    let mut i = quote + 1;
    loop {
        let found = if backslash {
            memchr::memchr2(b'\'', b'\\', &buf[i..])
        } else {
            memchr::memchr(b'\'', &buf[i..])
        };
        let Some(n) = found else {
            return Err(if eof {
                Stop::Unterminated(Kind::Str(kind))
            } else {
                Stop::Incomplete
            });
        };
        i += n;
        if buf[i] == b'\\' {
            i += 2;
            if i > buf.len() {
                return Err(if eof {
                    Stop::Unterminated(Kind::Str(kind))
                } else {
                    Stop::Incomplete
                });
            }
            continue;
        }
        // A quote: doubled means one quote inside the string (not in B'' and X'', which end at
        // their first quote as the server reads them).
        match buf.get(i + 1) {
            Some(b'\'') if !matches!(kind, Str::Bit | Str::Hex) => i += 2,
            None if !eof => return Err(Stop::Incomplete),
            _ => match continuation(buf, i + 1, eof)? {
                // `'a'` + whitespace with a newline + `'b'` is one string, read all along the
                // way its first piece is (an `E'…'` piece's continuation has escapes too).
                Some(q) => i = q + 1,
                None => {
                    return Ok(Some(Token {
                        kind: Kind::Str(kind),
                        start: pos,
                        end: i + 1,
                    }))
                }
            },
        }
    }
}

fn double_quoted(buf: &[u8], pos: usize, eof: bool) -> Result<Option<Token>, Stop> {
    let mut i = pos + 1;
    loop {
        let Some(n) = memchr::memchr(b'"', &buf[i..]) else {
            return Err(if eof {
                Stop::Unterminated(Kind::QuotedIdent)
            } else {
                Stop::Incomplete
            });
        };
        i += n;
        match buf.get(i + 1) {
            Some(b'"') => i += 2,
            None if !eof => return Err(Stop::Incomplete),
            _ => {
                return Ok(Some(Token {
                    kind: Kind::QuotedIdent,
                    start: pos,
                    end: i + 1,
                }))
            }
        }
    }
}

/// `$tag$ … $tag$`, or a lone `$` (an operator character in some contexts; a dump has none).
fn dollar(buf: &[u8], pos: usize, eof: bool) -> Result<Option<Token>, Stop> {
    let mut i = pos + 1;
    while let Some(&c) = buf.get(i) {
        if c == b'$' {
            break;
        }
        let ok = if i == pos + 1 {
            is_ident_start(c)
        } else {
            is_ident_start(c) || c.is_ascii_digit()
        };
        if !ok {
            return Ok(Some(Token {
                kind: Kind::Op,
                start: pos,
                end: pos + 1,
            }));
        }
        i += 1;
    }
    if i >= buf.len() {
        return if eof {
            Ok(Some(Token {
                kind: Kind::Op,
                start: pos,
                end: pos + 1,
            }))
        } else {
            Err(Stop::Incomplete)
        };
    }
    let tag = &buf[pos..=i];
    let body = i + 1;
    match memchr::memmem::find(&buf[body..], tag) {
        Some(n) => Ok(Some(Token {
            kind: Kind::Str(Str::Dollar),
            start: pos,
            end: body + n + tag.len(),
        })),
        None if eof => Err(Stop::Unterminated(Kind::Str(Str::Dollar))),
        None => Err(Stop::Incomplete),
    }
}

/// Every token of a complete text (a whole statement), or where it stops.
pub fn tokens(text: &[u8], scs: bool) -> Result<Vec<Token>, Stop> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(t) = next(text, pos, scs, true)? {
        pos = t.end;
        out.push(t);
    }
    Ok(out)
}

/// Whether a token carries meaning (not space or a comment).
pub fn significant(t: &Token) -> bool {
    !matches!(t.kind, Kind::Space | Kind::LineComment | Kind::BlockComment)
}

/// A word's text in lower case, for comparing with keywords.
pub fn word<'a>(text: &'a [u8], t: &Token) -> Option<std::borrow::Cow<'a, str>> {
    if t.kind != Kind::Word {
        return None;
    }
    let s = std::str::from_utf8(&text[t.start..t.end]).ok()?;
    Some(if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        tokens(text.as_bytes(), true)
            .unwrap()
            .into_iter()
            .filter(significant)
            .map(|t| (t.kind, &text[t.start..t.end]))
            .collect()
    }

    #[test]
    fn strings_continue_across_a_newline_and_comments_end_at_cr() {
        use Kind::*;
        // The continuation is read as its first piece is: `\'` escapes a quote in an E'' string.
        assert_eq!(
            kinds("E'x'\n'\\' AS b, ' c"),
            vec![(Str(super::Str::Escape), "E'x'\n'\\' AS b, '"), (Word, "c")]
        );
        assert_eq!(
            kinds("'a' -- note\n  'b' x"),
            vec![(Str(super::Str::Plain), "'a' -- note\n  'b'"), (Word, "x")]
        );
        // Without a newline between, two strings (a syntax error for the server).
        assert_eq!(kinds("'a' 'b'").len(), 2);
        // A bare carriage return ends a line comment.
        assert_eq!(
            kinds("SELECT -- c\rFROM"),
            vec![(Word, "SELECT"), (Word, "FROM")]
        );
    }

    #[test]
    fn numbers_take_their_trailing_junk_as_psql_15_does() {
        use Kind::*;
        assert_eq!(
            kinds("1e'\\' 1.5e+ 2x $1e'a' 1e5 1. .5"),
            vec![
                (Number, "1e"),
                (Str(super::Str::Plain), "'\\'"),
                (Number, "1.5e+"),
                (Number, "2x"),
                (Param, "$1e"),
                (Str(super::Str::Plain), "'a'"),
                (Number, "1e5"),
                (Number, "1."),
                (Number, ".5"),
            ]
        );
        assert!(junk(b"1e") && junk(b"2x") && junk(b"$1e") && junk(b"1e+"));
        assert!(!junk(b"1e5") && !junk(b"1.") && !junk(b"$1"));
    }

    #[test]
    fn bit_and_hex_strings_end_at_their_first_quote() {
        use Kind::*;
        assert_eq!(
            kinds("X'ab''cd' B'1'"),
            vec![
                (Str(super::Str::Hex), "X'ab'"),
                (Str(super::Str::Plain), "'cd'"),
                (Str(super::Str::Bit), "B'1'"),
            ]
        );
    }

    #[test]
    fn table_of_tokens() {
        use Kind::*;
        assert_eq!(
            kinds("INSERT INTO \"My\"\"T\nx\" VALUES ('it''s', E'a\\'b', $x$ ; ' $x$, -1.5e3, $1)::int;"),
            vec![
                (Word, "INSERT"),
                (Word, "INTO"),
                (QuotedIdent, "\"My\"\"T\nx\""),
                (Word, "VALUES"),
                (Open, "("),
                (Str(super::Str::Plain), "'it''s'"),
                (Comma, ","),
                (Str(super::Str::Escape), "E'a\\'b'"),
                (Comma, ","),
                (Str(super::Str::Dollar), "$x$ ; ' $x$"),
                (Comma, ","),
                (Op, "-"),
                (Number, "1.5e3"),
                (Comma, ","),
                (Param, "$1"),
                (Close, ")"),
                (Cast, "::"),
                (Word, "int"),
                (Semicolon, ";"),
            ]
        );
        assert_eq!(
            kinds("a--x;\n/* 1 /* 2 */ ; */b B'01' X'1f' N'n' U&'u' U&\"v\" foo$bar $$$$"),
            vec![
                (Word, "a"),
                (Word, "b"),
                (Str(super::Str::Bit), "B'01'"),
                (Str(super::Str::Hex), "X'1f'"),
                (Str(super::Str::National), "N'n'"),
                (Str(super::Str::Unicode), "U&'u'"),
                (QuotedIdent, "U&\"v\""),
                (Word, "foo$bar"),
                (Str(super::Str::Dollar), "$$$$"),
            ]
        );
        assert_eq!(
            kinds("x<>-1 a.b .5 1..2 \\connect"),
            vec![
                (Word, "x"),
                (Op, "<>-"),
                (Number, "1"),
                (Word, "a"),
                (Dot, "."),
                (Word, "b"),
                (Number, ".5"),
                (Number, "1"),
                (Dot, "."),
                (Number, ".2"),
                (Backslash, "\\"),
                (Word, "connect"),
            ]
        );
    }

    #[test]
    fn standard_conforming_strings_off_makes_backslash_escape() {
        let text = b"'a\\'b' x";
        assert_eq!(tokens(text, false).unwrap()[0].end, 6);
        // With it on, the backslash is a plain character and the string ends at the second quote.
        assert_eq!(next(text, 0, true, true).unwrap().unwrap().end, 4);
    }

    #[test]
    fn unclosed_quotes_and_comments_are_incomplete_or_unterminated() {
        for text in ["'abc", "E'ab\\", "\"id", "$q$ body", "/* a /* b */", "x"] {
            assert_eq!(
                next(text.as_bytes(), 0, true, false),
                Err(Stop::Incomplete),
                "{text}"
            );
        }
        for text in ["'abc", "\"id", "$q$ body", "/* a /* b */"] {
            assert!(
                matches!(
                    next(text.as_bytes(), 0, true, true),
                    Err(Stop::Unterminated(_))
                ),
                "{text}"
            );
        }
        // A quote at the end may be doubled by the next byte: wait and see.
        assert_eq!(next(b"'ab'", 0, true, false), Err(Stop::Incomplete));
        assert_eq!(next(b"'ab'", 0, true, true).unwrap().unwrap().end, 4);
    }

    proptest! {
        /// Fed in any two pieces, the tokens are those of the whole text: a streaming reader that
        /// waits on `Incomplete` sees the same statement.
        #[test]
        fn tokens_do_not_depend_on_where_the_input_is_cut(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "Ab_1", " ", "\n", "'x''y'", "E'\\\\n\\''", "$t$ ; $t$", "\"q\"\"\"", "--c\n",
                "/* /* n */ */", "1.5", "e-3", "::", ";", "(", ")", ",", "-", "$1", "\\", ".", "é",
            ]), 0..12),
            cut in 0usize..200,
        ) {
            let text: String = parts.concat();
            let bytes = text.as_bytes();
            let whole = tokens(bytes, true);
            let cut = cut.min(bytes.len());
            // Streaming: read what the first piece allows, then the rest with eof.
            let mut pos = 0;
            let mut streamed = Vec::new();
            while let Ok(Some(t)) = next(&bytes[..cut], pos, true, false) {
                streamed.push(t);
                pos = t.end;
            }
            let rest: Result<Vec<Token>, Stop> = (|| {
                let mut out = Vec::new();
                while let Some(t) = next(bytes, pos, true, true)? {
                    pos = t.end;
                    out.push(t);
                }
                Ok(out)
            })();
            match (whole, rest) {
                (Ok(w), Ok(r)) => {
                    streamed.extend(r);
                    // Space tokens may be split at the cut; compare the meaningful ones.
                    let keep = |v: Vec<Token>| v.into_iter().filter(|t| t.kind != Kind::Space).collect::<Vec<_>>();
                    prop_assert_eq!(keep(streamed), keep(w));
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
            }
        }
    }
}
