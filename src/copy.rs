//! PostgreSQL's COPY formats: the one place that knows their escapes and quoting.
//!
//! The standard text format (tab, `\N`) is the fast path every source speaks; text with another
//! delimiter or NULL string and CSV are decoded to values and encoded back with their own options
//! ([`CopyFormat`]).
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
    #[error("a CSV field opens a quote that is never closed")]
    UnterminatedQuote,
    #[error("a CSV field has text after its closing quote")]
    TextAfterQuote,
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
    unescape(field).map(Some)
}

/// The value of a field that is not NULL: its escapes resolved.
pub fn unescape(field: &str) -> Result<Cow<'_, str>, CodecError> {
    if memchr::memchr(b'\\', field.as_bytes()).is_none() {
        return Ok(Cow::Borrowed(field));
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
        .map(Cow::Owned)
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

/// The format of a COPY block's rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CopyFormat {
    /// Text with tab and `\N`: what pg_dump writes.
    #[default]
    Text,
    /// Text with another delimiter or NULL string.
    TextWith(TextOptions),
    Csv(CsvOptions),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextOptions {
    pub delimiter: u8,
    pub null: String,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            delimiter: b'\t',
            null: "\\N".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub null: String,
    pub quote: u8,
    /// `None`: the quote character.
    pub escape: Option<u8>,
    /// The first line names the columns (passed through as it is).
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            null: String::new(),
            quote: b'"',
            escape: None,
            header: false,
        }
    }
}

impl CsvOptions {
    fn escape(&self) -> u8 {
        self.escape.unwrap_or(self.quote)
    }

    /// Whether a record that started inside quotes (`quoted`) is still inside quotes after `line`:
    /// a CSV record may span lines.
    pub fn inside_quotes_after(&self, line: &[u8], mut quoted: bool) -> bool {
        let (q, e) = (self.quote, self.escape());
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if quoted {
                if b == e && e != q && matches!(line.get(i + 1), Some(&c) if c == q || c == e) {
                    i += 2;
                    continue;
                }
                if b == q {
                    // A doubled quote (when the escape is the quote) stays inside.
                    if e == q && line.get(i + 1) == Some(&q) {
                        i += 2;
                        continue;
                    }
                    quoted = false;
                }
            } else if b == q {
                quoted = true;
            }
            i += 1;
        }
        quoted
    }
}

/// One field of a row in a format other than standard text: its raw bytes and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField<'a> {
    pub raw: &'a str,
    pub value: Option<Cow<'a, str>>,
}

impl CopyFormat {
    /// The fields of one row (a line without its end, or a whole CSV record).
    pub fn fields<'a>(&self, row: &'a str) -> Result<Vec<RawField<'a>>, CodecError> {
        match self {
            CopyFormat::Text => text_fields(row, &TextOptions::default()),
            CopyFormat::TextWith(o) => text_fields(row, o),
            CopyFormat::Csv(o) => csv_fields(row, o),
        }
    }

    /// Append the field form of a value.
    pub fn encode(&self, value: Option<&str>, out: &mut Vec<u8>) {
        match self {
            CopyFormat::Text => encode(value, out),
            CopyFormat::TextWith(o) => match value {
                None => out.extend_from_slice(o.null.as_bytes()),
                Some(v) => encode_text_with(v, o.delimiter, out),
            },
            CopyFormat::Csv(o) => encode_csv(value, o, out),
        }
    }

    /// The byte that separates fields.
    pub fn delimiter(&self) -> u8 {
        match self {
            CopyFormat::Text => b'\t',
            CopyFormat::TextWith(o) => o.delimiter,
            CopyFormat::Csv(o) => o.delimiter,
        }
    }

    /// Whether the block starts with a header line of column names.
    pub fn header(&self) -> bool {
        matches!(self, CopyFormat::Csv(o) if o.header)
    }
}

fn text_fields<'a>(row: &'a str, o: &TextOptions) -> Result<Vec<RawField<'a>>, CodecError> {
    // A delimiter inside a value is written after a backslash: split on the others only.
    let bytes = row.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == o.delimiter => {
                parts.push(&row[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    parts.push(&row[start.min(row.len())..]);
    parts
        .into_iter()
        .map(|raw| {
            // Same escapes as the standard format; only the null string is NULL.
            let value = if raw == o.null {
                None
            } else {
                Some(unescape(raw)?)
            };
            Ok(RawField { raw, value })
        })
        .collect()
}

fn encode_text_with(v: &str, delimiter: u8, out: &mut Vec<u8>) {
    let start = out.len();
    encode(Some(v), out);
    if delimiter != b'\t' && memchr::memchr(delimiter, &out[start..]).is_some() {
        let escaped: Vec<u8> = out[start..]
            .iter()
            .flat_map(|&b| {
                if b == delimiter {
                    vec![b'\\', b]
                } else {
                    vec![b]
                }
            })
            .collect();
        out.truncate(start);
        out.extend_from_slice(&escaped);
    }
}

fn csv_fields<'a>(row: &'a str, o: &CsvOptions) -> Result<Vec<RawField<'a>>, CodecError> {
    let bytes = row.as_bytes();
    let (d, q, e) = (o.delimiter, o.quote, o.escape());
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        if bytes.get(i) == Some(&q) {
            // Quoted: up to the closing quote, escapes resolved.
            let mut value = Vec::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(CodecError::UnterminatedQuote),
                    Some(&b)
                        if b == e
                            && matches!(bytes.get(i + 1), Some(&c) if c == q || c == e)
                            && (e != q || bytes.get(i + 1) == Some(&q)) =>
                    {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) if b == q => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            if i < bytes.len() && bytes[i] != d {
                return Err(CodecError::TextAfterQuote);
            }
            let value = String::from_utf8(value).map_err(|_| CodecError::InvalidUtf8)?;
            out.push(RawField {
                raw: &row[start..i],
                value: Some(Cow::Owned(value)),
            });
        } else {
            let end = memchr::memchr(d, &bytes[i..]).map_or(bytes.len(), |n| i + n);
            let raw = &row[start..end];
            i = end;
            out.push(RawField {
                raw,
                value: (raw != o.null).then_some(Cow::Borrowed(raw)),
            });
        }
        if i >= bytes.len() {
            return Ok(out);
        }
        // At a delimiter: another field follows, perhaps an empty one at the end.
        i += 1;
    }
}

fn encode_csv(value: Option<&str>, o: &CsvOptions, out: &mut Vec<u8>) {
    let Some(v) = value else {
        out.extend_from_slice(o.null.as_bytes());
        return;
    };
    let (q, e) = (o.quote, o.escape());
    let needs_quotes = v == o.null
        || v == "\\."
        || v.bytes()
            .any(|b| b == o.delimiter || b == q || b == b'\n' || b == b'\r')
        || (e != q && v.bytes().any(|b| b == e));
    if !needs_quotes {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.push(q);
    for b in v.bytes() {
        if b == q || (b == e && e != q) {
            out.push(e);
        }
        out.push(b);
    }
    out.push(q);
}

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

    #[test]
    fn csv_fields_quotes_escapes_and_nulls() {
        let f = CopyFormat::Csv(CsvOptions::default());
        let got = f.fields("a,\"b,\"\"c\",,\"\",x y,").unwrap();
        let values: Vec<Option<&str>> = got.iter().map(|f| f.value.as_deref()).collect();
        assert_eq!(
            values,
            vec![Some("a"), Some("b,\"c"), None, Some(""), Some("x y"), None]
        );
        assert_eq!(got[1].raw, "\"b,\"\"c\"");
        let f = CopyFormat::Csv(CsvOptions {
            escape: Some(b'\\'),
            null: "NA".into(),
            ..CsvOptions::default()
        });
        let values: Vec<Option<String>> = f
            .fields("\"a\\\"b\",NA,\"NA\"")
            .unwrap()
            .into_iter()
            .map(|f| f.value.map(Cow::into_owned))
            .collect();
        assert_eq!(values, vec![Some("a\"b".into()), None, Some("NA".into())]);
        assert_eq!(
            CopyFormat::Csv(CsvOptions::default()).fields("\"open"),
            Err(CodecError::UnterminatedQuote)
        );
        assert_eq!(
            CopyFormat::Csv(CsvOptions::default()).fields("\"a\"b"),
            Err(CodecError::TextAfterQuote)
        );
    }

    #[test]
    fn csv_records_span_lines_inside_quotes() {
        let o = CsvOptions::default();
        assert!(o.inside_quotes_after(b"1,\"two", false));
        assert!(o.inside_quotes_after(b"lines \"\" here", true));
        assert!(!o.inside_quotes_after(b"end\",3", true));
        let e = CsvOptions {
            escape: Some(b'\\'),
            ..CsvOptions::default()
        };
        assert!(e.inside_quotes_after(b"\"a\\\"", false));
    }

    #[test]
    fn text_with_other_delimiter_and_null() {
        let f = CopyFormat::TextWith(TextOptions {
            delimiter: b'|',
            null: String::new(),
        });
        let values: Vec<Option<String>> = f
            .fields("a\\|b||\\N|c\td")
            .unwrap()
            .into_iter()
            .map(|f| f.value.map(Cow::into_owned))
            .collect();
        assert_eq!(
            values,
            vec![
                Some("a|b".into()),
                None,
                Some("N".into()),
                Some("c\td".into())
            ]
        );
        let mut out = Vec::new();
        f.encode(Some("x|y\tz"), &mut out);
        assert_eq!(out, b"x\\|y\\tz");
    }

    proptest! {
        /// Every format reads back what it writes.
        #[test]
        fn formats_round_trip(
            values in proptest::collection::vec(proptest::option::of("[a-c,|;\"'\\\\\t\n\r .N]{0,6}"), 1..5),
            which in 0usize..4,
        ) {
            let format = match which {
                0 => CopyFormat::Text,
                1 => CopyFormat::TextWith(TextOptions { delimiter: b'|', null: "NULL".into() }),
                2 => CopyFormat::Csv(CsvOptions::default()),
                _ => CopyFormat::Csv(CsvOptions { delimiter: b';', null: "\\N".into(), quote: b'\'', escape: Some(b'\\'), header: false }),
            };
            // A value equal to the NULL string cannot be told from NULL in text formats.
            let text_null = match &format { CopyFormat::TextWith(o) => Some(o.null.as_str()), CopyFormat::Text => Some("\\N"), _ => None };
            prop_assume!(values.iter().all(|v| v.as_deref() != text_null || text_null.is_none()));
            let mut row = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    row.push(format.delimiter());
                }
                format.encode(v.as_deref(), &mut row);
            }
            let row = String::from_utf8(row).unwrap();
            let back: Vec<Option<String>> = format.fields(&row).unwrap().into_iter().map(|f| f.value.map(Cow::into_owned)).collect();
            prop_assert_eq!(back, values);
        }
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
