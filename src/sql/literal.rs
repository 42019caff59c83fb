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
    #[error("a comment inside the VALUES tuple")]
    Comment,
}

/// The elements of one tuple, whose text is `( … )`.
pub fn elements(tuple: &[u8], scs: bool) -> Result<Vec<Element>, TupleError> {
    let mut out = Vec::with_capacity(16);
    each_element(tuple, scs, |e| out.push(e))?;
    Ok(out)
}

/// Check a tuple's elements without keeping them; their number.
pub fn check(tuple: &[u8], scs: bool) -> Result<usize, TupleError> {
    let mut n = 0;
    each_element(tuple, scs, |_| n += 1)?;
    Ok(n)
}

/// The common element, read without the general lexer: a plain constant (`'…'`, a number, NULL,
/// DEFAULT, TRUE, FALSE) between spaces and then `,` or `)`. `None` when the element is anything
/// else (the general path reads it, or says why not). Returns the element and the position of its
/// terminator.
fn plain_element(tuple: &[u8], mut pos: usize, scs: bool) -> Option<(Element, usize)> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    while tuple.get(pos).copied().is_some_and(is_space) {
        pos += 1;
    }
    let start = pos;
    let (kind, end) = match *tuple.get(pos)? {
        b'\'' => (Const::Str(Str::Plain), string_end(tuple, pos, !scs)?),
        b'0'..=b'9' | b'-' => {
            let mut e = pos + usize::from(tuple[pos] == b'-');
            let digits = e;
            while tuple
                .get(e)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
            {
                e += 1;
            }
            if e == digits || matches!(tuple.get(e), Some(b'e' | b'E')) {
                return None;
            }
            (Const::Number, e)
        }
        b'N' | b'n' | b'D' | b'd' | b'T' | b't' | b'F' | b'f' => {
            let e = pos
                + tuple[pos..]
                    .iter()
                    .position(|b| !b.is_ascii_alphabetic())
                    .unwrap_or(tuple.len() - pos);
            let word = &tuple[pos..e];
            let kind = if word.eq_ignore_ascii_case(b"null") {
                Const::Null
            } else if word.eq_ignore_ascii_case(b"default") {
                Const::Default
            } else if word.eq_ignore_ascii_case(b"true") || word.eq_ignore_ascii_case(b"false") {
                Const::Bool
            } else {
                return None;
            };
            (kind, e)
        }
        _ => return None,
    };
    let mut after = end;
    while tuple.get(after).copied().is_some_and(is_space) {
        after += 1;
    }
    matches!(tuple.get(after), Some(b',' | b')')).then_some((
        Element {
            kind,
            start,
            end,
            const_end: end,
        },
        after,
    ))
}

/// Read a tuple's elements one by one (a handful of tokens each), handing each to `f`.
fn each_element(tuple: &[u8], scs: bool, mut f: impl FnMut(Element)) -> Result<(), TupleError> {
    // Fast path: every element a plain constant.
    if tuple.first() == Some(&b'(') && tuple.last() == Some(&b')') {
        let mut found: smallvec::SmallVec<[Element; 16]> = smallvec::SmallVec::new();
        let mut pos = 1;
        let ok = loop {
            match plain_element(tuple, pos, scs) {
                Some((e, at)) => {
                    found.push(e);
                    if tuple[at] == b')' {
                        break at + 1 == tuple.len();
                    }
                    pos = at + 1;
                }
                None => break false,
            }
        };
        if ok {
            found.into_iter().for_each(&mut f);
            return Ok(());
        }
    }
    let mut toks: smallvec::SmallVec<[lexer::Token; 8]> = smallvec::SmallVec::new();
    let mut pos = 0;
    let mut depth = 0i32;
    let mut n = 0;
    let mut opened = false;
    loop {
        let t = match lexer::next(tuple, pos, scs, true) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(TupleError::Malformed),
            Err(_) => return Err(TupleError::Malformed),
        };
        pos = t.end;
        if matches!(t.kind, Kind::LineComment | Kind::BlockComment) {
            // A comment would pass between the constants the rules rewrite.
            return Err(TupleError::Comment);
        }
        if !lexer::significant(&t) {
            continue;
        }
        if !opened {
            if t.kind != Kind::Open {
                return Err(TupleError::Malformed);
            }
            opened = true;
            continue;
        }
        match t.kind {
            Kind::Open | Kind::OpenBracket => depth += 1,
            Kind::CloseBracket => depth -= 1,
            Kind::Close if depth > 0 => depth -= 1,
            Kind::Close | Kind::Comma if depth == 0 => {
                let last = t.kind == Kind::Close;
                if !(last && n == 0 && toks.is_empty()) {
                    n += 1;
                    f(element(tuple, &toks, n)?);
                }
                toks.clear();
                if last {
                    return if pos == tuple.len()
                        || lexer::tokens(&tuple[pos..], scs)
                            .is_ok_and(|r| r.iter().all(|t| !lexer::significant(t)))
                    {
                        Ok(())
                    } else {
                        Err(TupleError::Malformed)
                    };
                }
                continue;
            }
            _ => {}
        }
        toks.push(t);
    }
}

/// The input ends inside a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unterminated;

/// A string continued on another line inside a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continued;

/// Where the tuple that opens at `buf[start]` (a `(`) closes: the position after its `)`.
/// `Ok(None)`: the bytes end first (and `eof` is not set). Quotes, quoted names, dollar quotes,
/// comments and nested parentheses are stepped over without reading them token by token.
pub fn tuple_end(
    buf: &[u8],
    start: usize,
    scs: bool,
    eof: bool,
) -> Result<Option<usize>, Result<Unterminated, Continued>> {
    let mut i = start;
    let mut depth = 0usize;
    let incomplete = |eof: bool| if eof { Err(Ok(Unterminated)) } else { Ok(None) };
    while i < buf.len() {
        match buf[i] {
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Ok(Some(i));
                }
            }
            b'\'' => {
                let escape = !scs
                    || (i > 0
                        && matches!(buf[i - 1], b'e' | b'E')
                        && (i < 2 || !lexer_ident_char(buf[i - 2])));
                match string_end(buf, i, escape) {
                    Some(e) => i = e,
                    None => return incomplete(eof),
                }
                // A string continued on the next line reads its continuation the way its first
                // piece is read: refused in a tuple (the server could end it elsewhere).
                match lexer::continuation(buf, i, eof) {
                    Ok(None) => {}
                    Ok(Some(_)) => return Err(Err(Continued)),
                    Err(lexer::Stop::Incomplete) => return Ok(None),
                    Err(_) => return Err(Ok(Unterminated)),
                }
            }
            b'"' => {
                let mut j = i + 1;
                loop {
                    match memchr::memchr(b'"', &buf[j..]) {
                        Some(n) if buf.get(j + n + 1) == Some(&b'"') => j += n + 2,
                        Some(n) if j + n + 1 < buf.len() || eof => {
                            i = j + n + 1;
                            break;
                        }
                        _ => return incomplete(eof),
                    }
                }
            }
            b'-' if buf.get(i + 1) == Some(&b'-') => match memchr::memchr2(b'\n', b'\r', &buf[i..])
            {
                Some(n) => i += n + 1,
                None => return incomplete(eof),
            },
            b'$' | b'/' => match lexer::next(buf, i, scs, eof) {
                Ok(Some(t)) => i = t.end,
                Ok(None) => return incomplete(eof),
                Err(lexer::Stop::Incomplete) => return Ok(None),
                Err(_) => return Err(Ok(Unterminated)),
            },
            _ => {
                // Nothing special until the next byte that could be.
                let n = buf[i + 1..]
                    .iter()
                    .position(|b| matches!(b, b'(' | b')' | b'\'' | b'"' | b'-' | b'$' | b'/'))
                    .map_or(buf.len(), |n| i + 1 + n);
                i = n;
            }
        }
    }
    incomplete(eof)
}

fn lexer_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// After the quote at `buf[q]`: the position after the string's closing quote, or `None` when the
/// bytes end first (a quote at the very end may be doubled by the next byte).
fn string_end(buf: &[u8], q: usize, backslash: bool) -> Option<usize> {
    let mut i = q + 1;
    loop {
        let n = if backslash {
            memchr::memchr2(b'\'', b'\\', &buf[i..])?
        } else {
            memchr::memchr(b'\'', &buf[i..])?
        };
        i += n;
        if buf[i] == b'\\' {
            i += 2;
            if i > buf.len() {
                return None;
            }
            continue;
        }
        match buf.get(i + 1) {
            Some(b'\'') => i += 2,
            None => return None,
            _ => return Some(i + 1),
        }
    }
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
        // The common string, with no quote or backslash inside: borrowed as it is.
        Const::Str(Str::Plain)
            if memchr::memchr2(b'\'', b'\\', &raw[1..raw.len() - 1]).is_none() =>
        {
            Some(Cow::Borrowed(
                std::str::from_utf8(&raw[1..raw.len() - 1]).map_err(|_| TupleError::BadString)?,
            ))
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
        return Ok(if memchr::memchr(b'\'', s.as_bytes()).is_some() {
            s.replace("''", "'")
        } else {
            s.to_string()
        });
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
        let (n, skip) = if let Some(r) = after.strip_prefix('\\') {
            out.push('\\');
            rest = r;
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
    let bytes = v.as_bytes();
    let mut start = 0;
    loop {
        let found = if scs {
            memchr::memchr(b'\'', &bytes[start..])
        } else {
            memchr::memchr2(b'\'', b'\\', &bytes[start..])
        };
        match found {
            Some(n) => {
                out.extend_from_slice(&bytes[start..=start + n]);
                out.push(bytes[start + n]);
                start += n + 1;
            }
            None => {
                out.extend_from_slice(&bytes[start..]);
                break;
            }
        }
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
