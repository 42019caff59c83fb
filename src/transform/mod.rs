//! Runtime transformers: pure functions from one decoded cell to its anonymized value.
//!
//! Each rule of the rules file is built once (in `rules/`) into a [`Transform`] with its key, domain
//! and options resolved; the per-row loop only calls [`Transform::apply`]. Nothing here does I/O,
//! knows about databases or the COPY format, or looks anything up by name. Errors name what is wrong
//! with a value, never the value itself.

pub mod condition;
pub mod dates;
pub mod fake;
pub mod hash;
pub mod json;
pub mod mask;
pub mod numbers;
pub mod scrub;
pub mod seed;
pub mod text;

/// Why one value could not be transformed. The caller adds table, column and row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("value is not a date or timestamp (expected YYYY-MM-DD[ time][zone][ BC])")]
    NotADate,
    #[error("value is not a number")]
    NotANumber,
    #[error("invalid JSON ({0})")]
    InvalidJson(String),
    #[error("JSON path {0} matches an object or array; rules apply to scalar values")]
    JsonNotScalar(String),
    /// A key step met an array, or an index step an object: the document's shape is not the one
    /// the path describes, and what it meant to reach would be copied as it is.
    #[error("JSON path {0} meets an array where it names a key, or an object where it names an index; write [*] or the key")]
    JsonShape(String),
    /// An external command failed (its message names the command and counts, never a value).
    #[error("{0}")]
    Command(String),
    /// A generated value of a unique column passes the test of a `keep` branch's condition, so
    /// it could equal a kept value.
    #[error("a generated value passes the column test of a keep branch's condition, so it could equal a kept value of this unique column; make the keep condition's test of the column narrower")]
    CouldEqualKept,
}

/// A built transform: everything resolved, `Send + Sync`, no I/O.
#[derive(Debug, Clone)]
pub enum Transform {
    Keep,
    Null,
    Set(String),
    Mask(mask::Mask),
    Hash(hash::Hash),
    Fake(fake::Faker),
    Shift(dates::Shift),
    Truncate(dates::Truncate),
    Noise(numbers::Noise),
    Scrub(scrub::Scrub),
    Regex(text::RegexReplace),
    Json(json::JsonRule),
    /// A rule's text output kept within a column's length (`max_length`, or the column's
    /// varchar(n) / char(n)): a fake is drawn again until it fits, other text is cut. Never
    /// around a rule that promises unique values.
    Fit(Box<Transform>, usize),
    /// An external command (`command = [...]`): the one transform that talks to a process. The
    /// pipeline sends it whole batches; `apply` sends one value.
    External(std::sync::Arc<crate::external::Command>),
    /// A rule of a unique column beside `keep` branches: an output that passes a keep branch's
    /// test of the column is refused (it could equal a kept value).
    Guarded(Box<Transform>, std::sync::Arc<[condition::Guard]>),
}

impl Transform {
    /// The rule under its wrappers (`Fit`, `Guarded`).
    pub fn innermost(&self) -> &Transform {
        match self {
            Transform::Fit(inner, _) | Transform::Guarded(inner, _) => inner.innermost(),
            other => other,
        }
    }

    /// The external command this rule runs, if it is one.
    pub fn external(&self) -> Option<&crate::external::Command> {
        match self.innermost() {
            Transform::External(c) => Some(c),
            _ => None,
        }
    }

    /// `out`, unless a guard refuses it (see [`Transform::Guarded`]).
    pub fn guard(&self, out: Option<String>) -> Result<Option<String>, ValueError> {
        match (self, &out) {
            (Transform::Guarded(_, guards), Some(v)) if guards.iter().any(|g| g.matches(v)) => {
                Err(ValueError::CouldEqualKept)
            }
            _ => Ok(out),
        }
    }

    /// The most characters an output can have, when the rule fixes it (for fitting varchar(n)).
    pub fn max_output_chars(&self) -> Option<usize> {
        match self {
            Transform::Guarded(inner, _) => inner.max_output_chars(),
            Transform::Set(s) => Some(s.chars().count()),
            Transform::Hash(h) => h.output_len(),
            Transform::Fake(f) => f.max_len(),
            Transform::Fit(_, max) => Some(*max),
            _ => None,
        }
    }

    /// This rule with its outputs kept within `max` characters (see [`Transform::Fit`]).
    pub fn fitted(self, max: usize) -> Transform {
        match self {
            Transform::Fit(inner, m) => Transform::Fit(inner, m.min(max)),
            other => Transform::Fit(Box::new(other), max),
        }
    }

    /// `out` (this rule's output for `input`) within `max` characters.
    fn fit(&self, input: &str, out: String, max: usize) -> String {
        match out.char_indices().nth(max) {
            None => out,
            Some(_) if matches!(self, Transform::Fake(_)) => match self {
                Transform::Fake(f) => f.apply_within(input, max),
                _ => unreachable!("matched above"),
            },
            Some((cut, _)) => out[..cut].to_string(),
        }
    }

    /// The columns of the row a `scrub` with the `names` detector looks for.
    pub fn names_from(&self) -> &[String] {
        match self {
            Transform::Scrub(s) => s.names_from(),
            Transform::Fit(inner, _) | Transform::Guarded(inner, _) => inner.names_from(),
            _ => &[],
        }
    }

    /// The anonymized value of one cell under a `scrub` with the `names` detector, given the
    /// row's (original, anonymized) name values.
    pub fn apply_with_names(
        &self,
        value: Option<&str>,
        names: &[(&str, Option<&str>)],
    ) -> Result<Option<String>, ValueError> {
        let Some(v) = value else {
            return Ok(None);
        };
        Ok(Some(match self {
            Transform::Guarded(inner, _) => {
                return self.guard(inner.apply_with_names(value, names)?)
            }
            Transform::Scrub(s) => s.apply_with_names(v, names),
            Transform::Fit(inner, max) => {
                let out = inner.apply_with_names(value, names)?.unwrap_or_default();
                inner.fit(v, out, *max)
            }
            other => return other.apply(value),
        }))
    }

    /// The column whose original value keys this rule (`by`), if any.
    pub fn by_column(&self) -> Option<&str> {
        match self {
            Transform::Shift(s) => s.by_column(),
            Transform::Noise(n) => n.by_column(),
            Transform::Fit(inner, _) | Transform::Guarded(inner, _) => inner.by_column(),
            _ => None,
        }
    }

    /// The anonymized value of one cell under a rule keyed `by` another column, whose original
    /// value is `key` (NULL keys every such row alike). Other rules ignore `key`.
    pub fn apply_by(
        &self,
        value: Option<&str>,
        key: Option<&str>,
    ) -> Result<Option<String>, ValueError> {
        let Some(v) = value else {
            return Ok(None);
        };
        let key_bytes = key.map_or(&b"\\N"[..], str::as_bytes);
        match self {
            Transform::Shift(s) => s.apply_keyed(v, key_bytes).map(Some),
            Transform::Noise(n) => n.apply_keyed(v, key_bytes).map(Some),
            Transform::Fit(inner, max) => Ok(inner
                .apply_by(value, key)?
                .map(|out| inner.fit(v, out, *max))),
            Transform::Guarded(inner, _) => self.guard(inner.apply_by(value, key)?),
            other => other.apply(value),
        }
    }

    /// The anonymized value of one cell. NULL stays NULL for every transform but `null` itself.
    pub fn apply(&self, value: Option<&str>) -> Result<Option<String>, ValueError> {
        let Some(v) = value else {
            return Ok(None);
        };
        match self {
            Transform::Fit(inner, max) => {
                return Ok(inner.apply(value)?.map(|out| inner.fit(v, out, *max)))
            }
            Transform::Guarded(inner, _) => return self.guard(inner.apply(value)?),
            Transform::External(c) => {
                let mut out = c
                    .run(&[v])
                    .map_err(|e| ValueError::Command(e.to_string()))?;
                return Ok(out.pop());
            }
            _ => {}
        }
        Ok(Some(match self {
            Transform::Keep => v.to_string(),
            Transform::Null => return Ok(None),
            Transform::Set(s) => s.clone(),
            Transform::Mask(m) => m.apply(v),
            Transform::Hash(h) => h.apply(v),
            Transform::Fake(f) => f.apply(v),
            Transform::Shift(s) => s.apply(v)?,
            Transform::Truncate(t) => t.apply(v)?,
            Transform::Noise(n) => n.apply(v)?,
            Transform::Scrub(s) => s.apply(v),
            Transform::Regex(r) => r.apply(v),
            Transform::Json(j) => j.apply(v)?,
            Transform::Fit(..) | Transform::Guarded(..) | Transform::External(_) => {
                unreachable!("applied above")
            }
        }))
    }
}

/// The decimal digits of `n`, written at the end of `buf`: what `{n}` prints, without `fmt`, which
/// costs more than the rest of a date or a number on the per-cell path.
pub(crate) fn decimal_digits(mut n: u128, buf: &mut [u8; 39]) -> &[u8] {
    let mut i = buf.len();
    // u128 division is a library call; most values fit in 64 bits.
    while n > u128::from(u64::MAX) {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut n = n as u64;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Append `v` in decimal, zero-padded to at least `width` digits (what `{v:0width$}` prints).
pub(crate) fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut buf = [0u8; 39];
    let digits = decimal_digits(u128::from(v), &mut buf);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(std::str::from_utf8(digits).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use seed::tests::key;

    #[test]
    fn null_stays_null_except_under_null() {
        let transforms = [
            Transform::Keep,
            Transform::Set("x".into()),
            Transform::Mask(mask::Mask::new(0, 0, '*')),
            Transform::Hash(hash::Hash::new(
                key("a").domain("h"),
                hash::HashFormat::Hex,
                8,
            )),
            Transform::Shift(dates::Shift::new(key("a").domain("s"), 3)),
        ];
        for t in transforms {
            assert_eq!(t.apply(None), Ok(None));
        }
        assert_eq!(Transform::Null.apply(Some("x")), Ok(None));
        assert_eq!(
            Transform::Set("US".into()).apply(Some("FR")),
            Ok(Some("US".into()))
        );
    }
}
