//! `json = { PATH = RULE, ... }`: apply rules inside json and jsonb values.
//!
//! ```toml
//! profile = { json = { "$.email" = { fake = "email" }, "$.address.phone" = { mask = { keep_last = 2 } }, "$.tags[*]" = { hash = { length = 8 } } } }
//! ```
//!
//! Paths: `$`, `.key`, `["key"]`, `[N]`, `[*]` and `.*`. Paths not named are kept byte for byte
//! (key order, spacing and number formatting stay as they were). A rule applies to
//! the scalars a path reaches: strings as they are, numbers and booleans as their text (a result that
//! still parses as a number stays a number). JSON `null` stays null unless the rule is `"null"`.

use std::borrow::Cow;

use super::{Transform, ValueError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
    Any,
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path: {0}")]
pub struct PathError(pub &'static str);

pub fn parse_path(path: &str) -> Result<Vec<Step>, PathError> {
    let rest = path
        .strip_prefix('$')
        .ok_or(PathError("a path starts with `$`"))?;
    let mut steps = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                let key = &rest[start..end];
                if key.is_empty() {
                    return Err(PathError("empty key after `.`"));
                }
                steps.push(if key == "*" {
                    Step::Any
                } else {
                    Step::Key(key.to_string())
                });
                i = end;
            }
            b'[' => {
                let close = rest[i..]
                    .find(']')
                    .map(|c| i + c)
                    .ok_or(PathError("unclosed `[`"))?;
                let inner = rest[i + 1..close].trim();
                if inner == "*" {
                    steps.push(Step::Any);
                } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(Step::Key(q.to_string()));
                } else {
                    let n = inner
                        .parse()
                        .map_err(|_| PathError("`[...]` holds a number, `*` or a quoted key"))?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            _ => return Err(PathError("expected `.` or `[` after `$` or a step")),
        }
    }
    Ok(steps)
}

#[derive(Debug, Clone)]
pub struct JsonRule {
    rules: Vec<(String, Vec<Step>, Transform)>,
}

impl JsonRule {
    pub fn new(rules: Vec<(String, Vec<Step>, Transform)>) -> Self {
        JsonRule { rules }
    }

    /// Rewrite the values the paths reach; every other byte of the document (key order, spacing,
    /// number formatting) is copied as it was. The whole document is validated on the way.
    pub fn apply(&self, text: &str) -> Result<String, ValueError> {
        let mut sc = Scanner {
            doc: text,
            s: text.as_bytes(),
            pos: 0,
            shape: None,
        };
        let mut out = String::with_capacity(text.len() + 16);
        let all: RuleSet = (0..self.rules.len()).collect();
        sc.copy_ws(&mut out);
        self.value(&mut sc, 0, &all, &mut out)
            .map_err(|e| e.at(text))?;
        sc.copy_ws(&mut out);
        if sc.pos != sc.s.len() {
            return Err(Fail::Syntax(sc.pos).at(text));
        }
        if let Some(path) = sc.shape {
            return Err(ValueError::JsonShape(path));
        }
        Ok(out)
    }

    /// One value at `depth`; `active` are the rules whose first `depth` steps led here.
    fn value(
        &self,
        sc: &mut Scanner,
        depth: usize,
        active: &[usize],
        out: &mut String,
    ) -> Result<(), Fail> {
        // Most of a document is reached by no rule: validate and copy it in one go.
        if active.is_empty() {
            return sc.copy_value(out);
        }
        let complete: RuleSet = active
            .iter()
            .copied()
            .filter(|&r| self.rules[r].1.len() == depth)
            .collect();
        let continuing: RuleSet = active
            .iter()
            .copied()
            .filter(|&r| self.rules[r].1.len() > depth)
            .collect();
        match sc.peek() {
            Some(b'{') | Some(b'[') => {
                if let Some(&r) = complete.first() {
                    return Err(Fail::Value(ValueError::JsonNotScalar(
                        self.rules[r].0.clone(),
                    )));
                }
                if continuing.is_empty() {
                    return sc.copy_value(out);
                }
                let object = sc.peek() == Some(b'{');
                // Below the top level, where the path already matched, a step of the other kind
                // (a key on an array, an index on an object) means the document's shape changed
                // and would let the value it meant pass as it is: the run stops instead. (A top
                // level of the other kind is another kind of document, copied as before.)
                if let Some(&r) = continuing.iter().filter(|_| depth > 0).find(|&&r| {
                    matches!(
                        (&self.rules[r].1[depth], object),
                        (Step::Key(_), false) | (Step::Index(_), true)
                    )
                }) {
                    if sc.shape.is_none() {
                        sc.shape = Some(self.rules[r].0.clone());
                    }
                    return sc.copy_value(out);
                }
                let close = if object { b'}' } else { b']' };
                sc.pos += 1;
                out.push(if object { '{' } else { '[' });
                sc.copy_ws(out);
                if sc.peek() == Some(close) {
                    sc.pos += 1;
                    out.push(close as char);
                    return Ok(());
                }
                let mut index = 0usize;
                loop {
                    let child: RuleSet = if object {
                        let start = sc.pos;
                        let key = sc.string()?;
                        out.push_str(sc.text(start));
                        sc.copy_ws(out);
                        sc.expect(b':')?;
                        out.push(':');
                        sc.copy_ws(out);
                        continuing
                            .iter()
                            .copied()
                            .filter(|&r| match &self.rules[r].1[depth] {
                                Step::Key(k) => k.as_str() == key,
                                Step::Any => true,
                                Step::Index(_) => false,
                            })
                            .collect()
                    } else {
                        continuing
                            .iter()
                            .copied()
                            .filter(|&r| match &self.rules[r].1[depth] {
                                Step::Index(i) => *i == index,
                                Step::Any => true,
                                Step::Key(_) => false,
                            })
                            .collect()
                    };
                    self.value(sc, depth + 1, &child, out)?;
                    sc.copy_ws(out);
                    match sc.peek() {
                        Some(b',') => {
                            sc.pos += 1;
                            out.push(',');
                            sc.copy_ws(out);
                            index += 1;
                        }
                        Some(c) if c == close => {
                            sc.pos += 1;
                            out.push(close as char);
                            return Ok(());
                        }
                        _ => return Err(Fail::Syntax(sc.pos)),
                    }
                }
            }
            _ => {
                let start = sc.pos;
                let (text, kind) = match sc.peek() {
                    Some(b'"') => (sc.string()?, Scalar::String),
                    Some(b'n') => {
                        sc.literal(b"null")?;
                        (Cow::Borrowed(""), Scalar::Null)
                    }
                    Some(b't') => {
                        sc.literal(b"true")?;
                        (Cow::Borrowed("true"), Scalar::Bool)
                    }
                    Some(b'f') => {
                        sc.literal(b"false")?;
                        (Cow::Borrowed("false"), Scalar::Bool)
                    }
                    _ => {
                        sc.number()?;
                        (Cow::Borrowed(sc.text(start)), Scalar::Number)
                    }
                };
                if complete.is_empty() {
                    out.push_str(sc.text(start));
                    return Ok(());
                }
                // JSON null stays null unless a rule is "null"; rules apply in path order.
                let mut value = (kind != Scalar::Null).then_some(text);
                for &r in &complete {
                    let t = &self.rules[r].2;
                    value = match (value, t) {
                        (_, Transform::Null) => None,
                        (None, _) => None,
                        (Some(v), t) => t.apply(Some(&v)).map_err(Fail::Value)?.map(Cow::Owned),
                    };
                }
                match value {
                    None => out.push_str("null"),
                    Some(v)
                        if kind == Scalar::Number && v.parse::<serde_json::Number>().is_ok() =>
                    {
                        out.push_str(&v)
                    }
                    Some(v) => push_json_string(out, &v),
                }
                Ok(())
            }
        }
    }
}

/// The rules (indexes) a step of the walk concerns: a handful, kept off the heap.
type RuleSet = smallvec::SmallVec<[usize; 8]>;

/// Append `v` as a JSON string, escaped as serde_json escapes it: `"`, `\` and control characters,
/// with the short forms where JSON has them (a test compares the two).
fn push_json_string(out: &mut String, v: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&v[start..i]);
        start = i + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&v[start..]);
    out.push('"');
}

#[derive(PartialEq, Eq)]
enum Scalar {
    String,
    Number,
    Bool,
    Null,
}

/// Why a document failed: bad syntax at a byte offset, or a rule's own error.
enum Fail {
    Syntax(usize),
    Value(ValueError),
}

impl Fail {
    /// The error with the offset turned into the line and column it names (no content).
    fn at(self, text: &str) -> ValueError {
        match self {
            Fail::Value(v) => v,
            Fail::Syntax(pos) => {
                let before = &text.as_bytes()[..pos.min(text.len())];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let col = pos
                    - before
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p + 1)
                    + 1;
                ValueError::InvalidJson(format!("line {line} column {col}"))
            }
        }
    }
}

/// A validating JSON tokenizer over the raw text.
struct Scanner<'a> {
    doc: &'a str,
    s: &'a [u8],
    pos: usize,
    /// The first path that met a container of the other kind (reported once the whole document
    /// is known to be valid JSON).
    shape: Option<String>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// The raw text from `start` to the current position.
    fn text(&self, start: usize) -> &'a str {
        // Tokens start and end on ASCII bytes, so these are char boundaries.
        &self.doc[start..self.pos]
    }

    fn copy_ws(&mut self, out: &mut String) {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        out.push_str(self.text(start));
    }

    fn expect(&mut self, b: u8) -> Result<(), Fail> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Fail::Syntax(self.pos))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Fail> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Fail::Syntax(self.pos))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), Fail> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Fail::Syntax(self.pos)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Fail::Syntax(self.pos));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Fail::Syntax(self.pos));
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Fail> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or(Fail::Syntax(self.pos))?;
        let v = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or(Fail::Syntax(self.pos))?;
        self.pos += 4;
        Ok(v)
    }

    /// A string token, decoded; borrowed from the document when it has no escape.
    fn string(&mut self) -> Result<std::borrow::Cow<'a, str>, Fail> {
        self.expect(b'"')?;
        let first = self.pos;
        while !matches!(self.peek(), Some(b'"' | b'\\') | None) && self.s[self.pos] >= 0x20 {
            self.pos += 1;
        }
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(std::borrow::Cow::Borrowed(&self.doc[first..self.pos - 1]));
        }
        let mut out = self.text(first).to_string();
        loop {
            let start = self.pos;
            while !matches!(self.peek(), Some(b'"' | b'\\') | None) && self.s[self.pos] >= 0x20 {
                self.pos += 1;
            }
            out.push_str(self.text(start));
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(std::borrow::Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or(Fail::Syntax(self.pos))?;
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let at = self.pos;
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(Fail::Syntax(at));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            }
                            out.push(char::from_u32(cp).ok_or(Fail::Syntax(at))?);
                        }
                        _ => return Err(Fail::Syntax(self.pos - 1)),
                    }
                }
                _ => return Err(Fail::Syntax(self.pos)),
            }
        }
    }

    /// Copy one whole value that no rule reaches, validating it.
    fn copy_value(&mut self, out: &mut String) -> Result<(), Fail> {
        let start = self.pos;
        self.skip_value(0)?;
        out.push_str(self.text(start));
        Ok(())
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), Fail> {
        // Deeper than any real document: refuse rather than overflow the stack.
        if depth > 512 {
            return Err(Fail::Syntax(self.pos));
        }
        match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.skip_ws();
                        self.expect(b':')?;
                        self.skip_ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.skip_ws();
                        }
                        Some(c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Fail::Syntax(self.pos)),
                    }
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            _ => self.number(),
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::mask::Mask;

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(v in "(\\PC|[\u{0}-\u{1f}\u{7f}\"\\\\/])*") {
            let mut out = String::new();
            push_json_string(&mut out, &v);
            proptest::prop_assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
    }

    /// A rule from (path, transform) pairs.
    fn rule(paths: Vec<(&str, Transform)>) -> JsonRule {
        JsonRule::new(
            paths
                .into_iter()
                .map(|(p, t)| (p.to_string(), parse_path(p).unwrap(), t))
                .collect(),
        )
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("$.a[0][*].b[\"c d\"].*").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(0),
                Step::Any,
                Step::Key("b".into()),
                Step::Key("c d".into()),
                Step::Any
            ]
        );
        assert_eq!(parse_path("$").unwrap(), vec![]);
        assert!(parse_path("a.b").is_err());
        assert!(parse_path("$.a[").is_err());
        assert!(parse_path("$..a").is_err());
        assert!(parse_path("$[x]").is_err());
    }

    #[test]
    fn applies_to_named_paths_only() {
        let rule = rule(vec![
            ("$.phone", Transform::Mask(Mask::new(0, 2, '*'))),
            ("$.tags[*]", Transform::Set("t".into())),
            ("$.age", Transform::Set("40".into())),
            ("$.gone", Transform::Null),
        ]);
        let out = rule
            .apply(r#"{"phone":"555-0134","tags":["a","b"],"age":31,"keep":{"x":1},"gone":"y","missing":null}"#)
            .unwrap();
        assert_eq!(
            out,
            r#"{"phone":"***-**34","tags":["t","t"],"age":40,"keep":{"x":1},"gone":null,"missing":null}"#
        );
    }

    #[test]
    fn untouched_bytes_stay_as_they_were() {
        let rule = rule(vec![
            ("$.b", Transform::Set("x\"y\u{e9}\n".into())),
            ("$.n", Transform::Set("12.50".into())),
            ("$.s", Transform::Mask(Mask::new(0, 0, '*'))),
        ]);
        let doc = "{ \"z\": [1, 2.0e3, {\"k\": \"\\u00e9\"}],\n  \"b\": \"old\", \"n\": 7, \"s\": \"a\\tb\\ud83e\\udd80\" }";
        assert_eq!(
            rule.apply(doc).unwrap(),
            "{ \"z\": [1, 2.0e3, {\"k\": \"\\u00e9\"}],\n  \"b\": \"x\\\"y\u{e9}\\n\", \"n\": 12.50, \"s\": \"****\" }"
        );
    }

    #[test]
    fn invalid_documents_name_their_position() {
        let rule = rule(vec![("$.a", Transform::Keep)]);
        let cases = [
            ("{\"a\": 1,}", "line 1 column 9"),
            ("{\"a\": \"open", "line 1 column 12"),
            ("{\"a\": 01}", "line 1 column 8"),
            ("{\"a\": 1} x", "line 1 column 10"),
            ("[\"\\ud800\"]", "line 1 column 5"),
            ("{\n\"a\":\ntru}", "line 3 column 1"),
            ("", "line 1 column 1"),
        ];
        for (doc, want) in cases {
            assert_eq!(
                rule.apply(doc),
                Err(ValueError::InvalidJson(want.into())),
                "{doc:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn accepts_exactly_what_serde_json_accepts_and_copies_it(doc in "[\\[\\]{},: \"a1.eE+\\-tn0\\\\ué]{0,24}") {
            let rule = rule(vec![("$.q", Transform::Keep)]);
            let ours = rule.apply(&doc);
            let serde = serde_json::from_str::<serde_json::Value>(&doc);
            proptest::prop_assert_eq!(ours.is_ok(), serde.is_ok(), "{:?}", doc);
            if let Ok(out) = ours {
                proptest::prop_assert_eq!(out, doc);
            }
        }
    }

    #[test]
    fn invalid_json_and_non_scalars_are_errors_without_content() {
        let rule = rule(vec![("$.a", Transform::Set("x".into()))]);
        assert_eq!(
            rule.apply("{\"a\": secret"),
            Err(ValueError::InvalidJson("line 1 column 7".into()))
        );
        assert_eq!(
            rule.apply(r#"{"a": {"b": 1}}"#),
            Err(ValueError::JsonNotScalar("$.a".into()))
        );
        // A path that meets a container of the other kind stops instead of copying what it
        // meant to reach.
        let rule = self::rule(vec![("$.address.phone", Transform::Set("x".into()))]);
        assert_eq!(
            rule.apply(r#"{"address": [{"phone": "+1 415 555 0134"}]}"#),
            Err(ValueError::JsonShape("$.address.phone".into()))
        );
        assert_eq!(
            rule.apply(r#"{"address": {"phone": "+1 415 555 0134"}}"#)
                .unwrap(),
            r#"{"address": {"phone": "x"}}"#
        );
        let rule = self::rule(vec![("$.a[0]", Transform::Set("x".into()))]);
        assert_eq!(
            rule.apply(r#"{"a": {"0": "v"}}"#),
            Err(ValueError::JsonShape("$.a[0]".into()))
        );
    }
}
