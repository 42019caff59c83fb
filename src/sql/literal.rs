//! SQL constants in `INSERT … VALUES` tuples: read to values, written back as constants of the same
//! kind (a quoted string stays a quoted string in its escape style, a number stays bare when the new
//! value is a number, a cast after a constant stays). Anything in a tuple that is not a constant —
//! a function call, an expression, `ARRAY[…]` — is an error: its value cannot be seen.

use std::borrow::Cow;

use super::lexer::{self, Kind, Str};

/// What kind of constant a tuple element was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Const {
    Null,
    /// `DEFAULT`: no value in the dump; it passes as it is.
    Default,
    Bool,
    /// A bare number, with its sign.
    Number,
    Str(Str),
}

/// One element of a tuple: where it is in the tuple's text and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub kind: Const,
    /// The whole element, without surrounding space.
    pub start: usize,
    pub end: usize,
    /// Where the constant ends and its cast (`::type`), if any, begins.
    pub const_end: usize,
}

/// Why a tuple cannot be read. Positions only, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TupleError {
    #[error("element {0} of the VALUES tuple is not a constant (an expression or function call, whose value no rule can see)")]
    NotAConstant(usize),
    #[error("the VALUES tuple cannot be read")]
    Malformed,
    #[error("a string constant in the VALUES tuple is not valid")]
    BadString,
}

/// The elements of one tuple, whose text is `( … )`.
pub fn elements(tuple: &[u8], scs: bool) -> Result<Vec<Element>, TupleError> {
    let toks: Vec<lexer::Token> = lexer::tokens(tuple, scs)
        .map_err(|_| TupleError::Malformed)?
        .into_iter()
        .filter(lexer::significant)
        .collect();
    if toks.first().map(|t| t.kind) != Some(Kind::Open)
        || toks.last().map(|t| t.kind) != Some(Kind::Close)
    {
        return Err(TupleError::Malformed);
    }
    let inner = &toks[1..toks.len() - 1];
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    for (n, part) in split_top(inner).into_iter().enumerate() {
        out.push(element(tuple, part, n + 1)?);
    }
    Ok(out)
}

/// Token slices between top-level commas.
fn split_top(toks: &[lexer::Token]) -> Vec<&[lexer::Token]> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Open | Kind::OpenBracket => depth += 1,
            Kind::Close | Kind::CloseBracket => depth -= 1,
            Kind::Comma if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}

fn element(text: &[u8], toks: &[lexer::Token], n: usize) -> Result<Element, TupleError> {
    let Some(first) = toks.first() else {
        return Err(TupleError::Malformed);
    };
    let word = |t: &lexer::Token| lexer::word(text, t);
    let (kind, used) = match first.kind {
        Kind::Str(s) => (Const::Str(s), 1),
        Kind::Number => (Const::Number, 1),
        Kind::Op
            if matches!(&text[first.start..first.end], b"-" | b"+")
                && toks.get(1).map(|t| t.kind) == Some(Kind::Number) =>
        {
            (Const::Number, 2)
        }
        Kind::Word => match word(first).as_deref() {
            Some("null") => (Const::Null, 1),
            Some("default") => (Const::Default, 1),
            Some("true" | "false") => (Const::Bool, 1),
            _ => return Err(TupleError::NotAConstant(n)),
        },
        _ => return Err(TupleError::NotAConstant(n)),
    };
    let const_end = toks[used - 1].end;
    // What follows may only be casts: `::type`, where a type is words, quoted names, dots,
    // parenthesized modifiers and brackets.
    let rest = &toks[used..];
    let mut i = 0;
    while i < rest.len() {
        if rest[i].kind != Kind::Cast {
            return Err(TupleError::NotAConstant(n));
        }
        i += 1;
        let mut depth = 0i32;
        let mut any = false;
        while i < rest.len() {
            match rest[i].kind {
                Kind::Cast if depth == 0 => break,
                Kind::Word | Kind::QuotedIdent | Kind::Dot => {}
                Kind::Open | Kind::OpenBracket => depth += 1,
                Kind::Close | Kind::CloseBracket => depth -= 1,
                Kind::Number | Kind::Comma if depth > 0 => {}
                _ => return Err(TupleError::NotAConstant(n)),
            }
            any = true;
            i += 1;
        }
        if !any || depth != 0 {
            return Err(TupleError::NotAConstant(n));
        }
    }
    if kind == Const::Default && !rest.is_empty() {
        return Err(TupleError::NotAConstant(n));
    }
    Ok(Element {
        kind,
        start: first.start,
        end: toks.last().expect("non-empty").end,
        const_end,
    })
}

/// The value an element holds (`None` for NULL and DEFAULT).
pub fn value<'a>(
    tuple: &'a [u8],
    e: &Element,
    scs: bool,
) -> Result<Option<Cow<'a, str>>, TupleError> {
    let raw = &tuple[e.start..e.const_end];
    let text = || std::str::from_utf8(raw).map_err(|_| TupleError::BadString);
    Ok(match e.kind {
        Const::Null | Const::Default => None,
        Const::Bool => Some(Cow::Owned(
            if raw.eq_ignore_ascii_case(b"true") {
                "t"
            } else {
                "f"
            }
            .to_string(),
        )),
        // A signed number is an operator and a number token; the space between goes.
        Const::Number => {
            let t = text()?;
            Some(if t.contains(char::is_whitespace) {
                Cow::Owned(t.chars().filter(|c| !c.is_whitespace()).collect())
            } else {
                Cow::Borrowed(t)
            })
        }
        Const::Str(kind) => Some(string_value(raw, kind, scs)?.into()),
    })
}

/// The value of a string constant token (`'…'`, `E'…'`, `$$…$$`, `B'…'`, `X'…'`, `N'…'`,
/// `U&'…'`).
pub fn string_value(raw: &[u8], kind: Str, scs: bool) -> Result<String, TupleError> {
    let s = std::str::from_utf8(raw).map_err(|_| TupleError::BadString)?;
    let inner = |prefix: usize| -> Result<&str, TupleError> {
        s.get(prefix + 1..s.len() - 1).ok_or(TupleError::BadString)
    };
    Ok(match kind {
        Str::Plain => unquote(inner(0)?, !scs)?,
        Str::National => unquote(inner(1)?, !scs)?,
        Str::Escape => unquote(inner(1)?, true)?,
        Str::Bit | Str::Hex => inner(1)?.to_string(),
        Str::Unicode => unicode(&unquote(inner(2)?, false)?)?,
        Str::Dollar => {
            let tag_end = s[1..].find('$').ok_or(TupleError::BadString)? + 2;
            s.get(tag_end..s.len() - tag_end)
                .ok_or(TupleError::BadString)?
                .to_string()
        }
    })
}

/// The text between the quotes, with `''` as one quote and, when `backslash`, the C-like escapes
/// of `E''` strings.
fn unquote(s: &str, backslash: bool) -> Result<String, TupleError> {
    if !backslash {
        return Ok(s.replace("''", "'"));
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                out.push(b'\'');
                i += 2;
            }
            b'\\' => {
                let c = *b.get(i + 1).ok_or(TupleError::BadString)?;
                i += 2;
                match c {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && b.get(i).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push((v & 0xff) as u8);
                    }
                    b'x' if b.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 && b.get(i).is_some_and(u8::is_ascii_hexdigit) {
                            v = v * 16 + (b[i] as char).to_digit(16).expect("hex");
                            i += 1;
                            n += 1;
                        }
                        out.push(v as u8);
                    }
                    b'u' | b'U' => {
                        let n = if c == b'u' { 4 } else { 8 };
                        let hex = s.get(i..i + n).ok_or(TupleError::BadString)?;
                        let cp = u32::from_str_radix(hex, 16).map_err(|_| TupleError::BadString)?;
                        let ch = char::from_u32(cp).ok_or(TupleError::BadString)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    other => out.push(other),
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| TupleError::BadString)
}

/// `U&'…'`: `\XXXX` and `\+XXXXXX` code points, `\\` a backslash (no UESCAPE clause).
fn unicode(s: &str) -> Result<String, TupleError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (n, skip) = if after.starts_with('\\') {
            out.push('\\');
            rest = &after[1..];
            continue;
        } else if let Some(h) = after.strip_prefix('+') {
            (h.get(..6), 7)
        } else {
            (after.get(..4), 4)
        };
        let cp = n
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .ok_or(TupleError::BadString)?;
        out.push(cp);
        rest = &after[skip..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a value can be written as a bare SQL number.
fn is_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    let int = digits(&mut i);
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = digits(&mut i);
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Append `value` as a constant like the element `like` was (its cast, taken from `tuple`, after).
pub fn encode(value: Option<&str>, like: &Element, tuple: &[u8], scs: bool, out: &mut Vec<u8>) {
    let Some(v) = value else {
        out.extend_from_slice(b"NULL");
        out.extend_from_slice(&tuple[like.const_end..like.end]);
        return;
    };
    match like.kind {
        Const::Number if is_number(v) => out.extend_from_slice(v.as_bytes()),
        Const::Bool if matches!(v, "t" | "true" | "f" | "false") => {
            out.extend_from_slice(if v.starts_with('t') {
                b"true"
            } else {
                b"false"
            })
        }
        Const::Str(Str::Bit) if !v.is_empty() && v.bytes().all(|b| b == b'0' || b == b'1') => {
            out.extend_from_slice(format!("B'{v}'").as_bytes())
        }
        Const::Str(Str::Hex) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            out.extend_from_slice(format!("X'{v}'").as_bytes())
        }
        Const::Str(Str::Escape) => escape_string(v, out),
        Const::Str(Str::National) => {
            out.push(b'N');
            plain_string(v, scs, out);
        }
        _ => plain_string(v, scs, out),
    }
    out.extend_from_slice(&tuple[like.const_end..like.end]);
}

/// `'…'` with quotes doubled (and backslashes doubled when they escape).
fn plain_string(v: &str, scs: bool, out: &mut Vec<u8>) {
    out.push(b'\'');
    for b in v.bytes() {
        if b == b'\'' || (b == b'\\' && !scs) {
            out.push(b);
        }
        out.push(b);
    }
    out.push(b'\'');
}

/// `E'…'` with backslash escapes.
fn escape_string(v: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"E'");
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"''"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(tuple: &str, scs: bool) -> Vec<Option<String>> {
        let t = tuple.as_bytes();
        elements(t, scs)
            .unwrap()
            .iter()
            .map(|e| value(t, e, scs).unwrap().map(Cow::into_owned))
            .collect()
    }

    #[test]
    fn constants_of_every_kind() {
        assert_eq!(
            values("(1, -1.5, 'it''s', E'a\\nb\\\\', NULL, DEFAULT, true, FALSE, B'0101', X'1f', $q$x'y$q$, '2024-01-01'::date, '{1,2}'::integer[], 'x'::character varying(10), U&'d\\0061t\\+000061', N'n')", true),
            vec![
                Some("1".into()),
                Some("-1.5".into()),
                Some("it's".into()),
                Some("a\nb\\".into()),
                None,
                None,
                Some("t".into()),
                Some("f".into()),
                Some("0101".into()),
                Some("1f".into()),
                Some("x'y".into()),
                Some("2024-01-01".into()),
                Some("{1,2}".into()),
                Some("x".into()),
                Some("data".into()),
                Some("n".into()),
            ]
        );
        // standard_conforming_strings off: backslashes escape in plain strings too.
        assert_eq!(values("('a\\'b\\\\c')", false), vec![Some("a'b\\c".into())]);
        assert_eq!(values("('a\\\\b')", true), vec![Some("a\\\\b".into())]);
        assert_eq!(values("()", true), Vec::<Option<String>>::new());
    }

    #[test]
    fn expressions_are_not_constants() {
        for (tuple, n) in [
            ("(now())", 1),
            ("(1, lower('X'))", 2),
            ("(ARRAY[1,2])", 1),
            ("(1 + 2)", 1),
            ("('a' || 'b')", 1),
            ("((SELECT 1))", 1),
            ("(DEFAULT::int)", 1),
            ("('x'::)", 1),
        ] {
            assert_eq!(
                elements(tuple.as_bytes(), true),
                Err(TupleError::NotAConstant(n)),
                "{tuple}"
            );
        }
    }

    #[test]
    fn written_back_as_the_same_kind() {
        let enc = |tuple: &str, i: usize, v: Option<&str>, scs: bool| {
            let t = tuple.as_bytes();
            let e = elements(t, scs).unwrap()[i];
            let mut out = Vec::new();
            encode(v, &e, t, scs, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(enc("(5)", 0, Some("7.25"), true), "7.25");
        assert_eq!(enc("(5)", 0, Some("a3f"), true), "'a3f'");
        assert_eq!(enc("('x')", 0, Some("o'k\\"), true), "'o''k\\'");
        assert_eq!(enc("('x')", 0, Some("o'k\\"), false), "'o''k\\\\'");
        assert_eq!(enc("(E'x')", 0, Some("a\nb"), true), "E'a\\nb'");
        assert_eq!(enc("('x'::text)", 0, Some("y"), true), "'y'::text");
        assert_eq!(enc("('x'::text)", 0, None, true), "NULL::text");
        assert_eq!(enc("(true)", 0, Some("f"), true), "false");
        assert_eq!(enc("(B'01')", 0, Some("10"), true), "B'10'");
        assert_eq!(enc("(N'x')", 0, Some("y"), true), "N'y'");
    }

    proptest! {
        /// What `encode` writes, `value` reads back, for every kind of constant and both settings of
        /// standard_conforming_strings.
        #[test]
        fn encode_then_value_is_the_value(v in "\\PC{0,20}|[0-9.e+-]{1,8}", like in 0usize..8, scs in any::<bool>()) {
            let samples = ["(1)", "('x')", "(E'x')", "(true)", "(B'1')", "(X'1')", "(N'x')", "('x'::text)"];
            let tuple = samples[like].as_bytes();
            let e = elements(tuple, scs).unwrap()[0];
            let mut out = b"(".to_vec();
            encode(Some(&v), &e, tuple, scs, &mut out);
            out.push(b')');
            let back = elements(&out, scs).unwrap();
            prop_assert_eq!(back.len(), 1);
            let got = value(&out, &back[0], scs).unwrap().map(Cow::into_owned);
            let want = match (like, v.as_str()) {
                (3, "t" | "true") => "t".to_string(),
                (3, "f" | "false") => "f".to_string(),
                _ => v.clone(),
            };
            prop_assert_eq!(got, Some(want));
        }
    }
}
