//! PostgreSQL's COPY text format: the one place that knows its escapes.
//!
//! A row is one line; fields are separated by raw tab bytes (a tab inside a value is always escaped,
//! so splitting on raw tabs is exact); `\N` alone is NULL. Decoding accepts every escape the server
//! accepts (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, `\NNN` octal, `\xHH` hex, and `\c` for any other
//! character c); encoding writes what the server's COPY TO writes. Fields without a backslash decode
//! without copying. Rules never see escaped text.

use std::borrow::Cow;

/// Why a field could not be decoded. Positions only, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("invalid UTF-8 in a COPY field")]
    InvalidUtf8,
    #[error("a COPY field ends with a lone backslash")]
    TrailingBackslash,
}

/// The fields of one row (without its line end).
pub fn fields(line: &[u8]) -> memchr::Memchr<'_> {
    memchr::memchr_iter(b'\t', line)
}

/// The rows of a batch of COPY lines, split into fields in one pass over the whole batch (one
/// search for tabs and newlines together, instead of one per line and one per row): the same rows
/// as splitting the lines (a final newline ends the last row, it does not start an empty one) and
/// then each line with `split`.
pub struct Rows<'a> {
    text: &'a str,
    pos: usize,
    separators: memchr::Memchr2<'a>,
}

impl<'a> Rows<'a> {
    pub fn new(text: &'a str) -> Self {
        Rows {
            text,
            pos: 0,
            separators: memchr::memchr2_iter(b'\t', b'\n', text.as_bytes()),
        }
    }

    /// The fields of the next row into `out`; false when there is none left.
    pub fn next_row(&mut self, out: &mut Vec<&'a str>) -> bool {
        out.clear();
        if self.pos >= self.text.len() {
            return false;
        }
        let mut start = self.pos;
        // Tabs and newlines are single bytes, never inside a character: these are char boundaries.
        for at in self.separators.by_ref() {
            out.push(&self.text[start..at]);
            start = at + 1;
            if self.text.as_bytes()[at] == b'\n' {
                self.pos = start;
                return true;
            }
        }
        out.push(&self.text[start..]);
        self.pos = self.text.len();
        true
    }
}

/// Split a row (already known to be UTF-8) into its fields, reusing `out`.
pub fn split<'a>(line: &'a str, out: &mut Vec<&'a str>) {
    out.clear();
    let mut start = 0;
    // A tab is one byte and never inside a multi-byte character, so these are char boundaries.
    for tab in fields(line.as_bytes()) {
        out.push(&line[start..tab]);
        start = tab + 1;
    }
    out.push(&line[start..]);
}

/// Decode one field: `None` for NULL. Without a backslash the field is borrowed as it is; escapes
/// (octal and hex ones can make any byte) are checked to decode to UTF-8.
pub fn decode(field: &str) -> Result<Option<Cow<'_, str>>, CodecError> {
    if field == "\\N" {
        return Ok(None);
    }
    if memchr::memchr(b'\\', field.as_bytes()).is_none() {
        return Ok(Some(Cow::Borrowed(field)));
    }
    let field = field.as_bytes();
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&c) = field.get(i + 1) else {
            return Err(CodecError::TrailingBackslash);
        };
        i += 2;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    v = v * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut v = hex(field[i]);
                i += 1;
                if i < field.len() && field[i].is_ascii_hexdigit() {
                    v = v * 16 + hex(field[i]);
                    i += 1;
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out)
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|_| CodecError::InvalidUtf8)
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Append the COPY text form of a value.
pub fn encode(value: Option<&str>, out: &mut Vec<u8>) {
    let Some(s) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // One table lookup per byte; most values have nothing to escape.
        let letter = ESCAPES[usize::from(b)];
        if letter == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(&[b'\\', letter]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// For each byte, the letter of its COPY escape (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`), or 0.
const ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\\' as usize] = b'\\';
    t[b'\t' as usize] = b't';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[0x0b] = b'v';
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        // Backslashes with t, n and N after them: escaped tabs and newlines are not separators.
        fn rows_are_the_lines_split_into_fields(text in "[atnN\t\né\\\\]{0,40}") {
            let mut want: Vec<Vec<&str>> = Vec::new();
            if !text.is_empty() {
                let body = text.strip_suffix('\n').unwrap_or(&text);
                for line in body.split('\n') {
                    let mut f = Vec::new();
                    split(line, &mut f);
                    want.push(f);
                }
            }
            let mut got = Vec::new();
            let mut rows = Rows::new(&text);
            let mut f = Vec::new();
            while rows.next_row(&mut f) {
                got.push(f.clone());
            }
            prop_assert_eq!(got, want);
        }
    }

    fn dec(s: &[u8]) -> Option<String> {
        decode(std::str::from_utf8(s).unwrap())
            .unwrap()
            .map(Cow::into_owned)
    }

    #[test]
    fn decodes_every_escape() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\\N", None),
            (b"", Some("")),
            (b"plain", Some("plain")),
            (b"a\\tb\\nc\\rd\\\\e", Some("a\tb\nc\rd\\e")),
            (b"\\b\\f\\v", Some("\x08\x0c\x0b")),
            (b"\\101\\0612\\7", Some("A12\x07")),
            (b"\\x41\\x4a\\x4", Some("AJ\x04")),
            (b"\\xg", Some("xg")),
            (b"\\N\\N", Some("NN")),
            (b"\\q", Some("q")),
            (b"\\303\\251", Some("é")),
            ("zoë 🦀".as_bytes(), Some("zoë 🦀")),
        ];
        for (input, want) in cases {
            assert_eq!(
                dec(input).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(decode("a\\"), Err(CodecError::TrailingBackslash));
        assert_eq!(decode("\\377"), Err(CodecError::InvalidUtf8));
        assert_eq!(decode("\\xe9t\\xc3\\xa9"), Err(CodecError::InvalidUtf8));
    }

    #[test]
    fn encodes_like_the_server() {
        let mut out = Vec::new();
        encode(Some("a\tb\nc\\d\re\x08\x0c\x0b"), &mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\re\\b\\f\\v");
        out.clear();
        encode(None, &mut out);
        assert_eq!(out, b"\\N");
        out.clear();
        encode(Some("\\N"), &mut out);
        assert_eq!(out, b"\\\\N");
    }

    #[test]
    fn splits_on_raw_tabs() {
        let mut f = Vec::new();
        split("1\ta\\tb\t\\N\té", &mut f);
        assert_eq!(f, vec!["1", "a\\tb", "\\N", "é"]);
    }

    proptest! {
        #[test]
        fn round_trip(value in proptest::option::of(any::<String>())) {
            let mut out = Vec::new();
            encode(value.as_deref(), &mut out);
            prop_assert!(!out.contains(&b'\t') && !out.contains(&b'\n'));
            prop_assert_eq!(dec(&out), value);
        }

        #[test]
        fn decoding_garbage_never_panics(s in "(\\\\|[0-7xN]|\\PC){0,40}") {
            let _ = decode(&s);
        }
    }
}
