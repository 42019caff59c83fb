//! `noise = { percent }` / `noise = { absolute }`: move numbers by a keyed, bounded amount.
//!
//! ```toml
//! salary = { noise = { percent = 10 } }      # 52000.00 -> somewhere in 46800.00..=57200.00
//! age    = { noise = { absolute = 3 } }      # 41 -> 38..=44
//! ```
//!
//! The number of decimal places is kept (integers stay integers, `12.50` keeps two places) and so is
//! the sign: a result that would cross zero is mirrored back. Arithmetic is exact on the scaled
//! integer for values up to 38 digits; only the size of the noise is computed in floating point.
//! `NaN` and `±Infinity` pass unchanged. Noise is not promised to change every value: a small integer
//! with a small percentage often stays the same.

use super::seed::Prf;
use super::{decimal_digits, ValueError};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseAmount {
    Percent(f64),
    Absolute(f64),
}

#[derive(Debug, Clone)]
pub struct Noise {
    prf: Prf,
    amount: NoiseAmount,
    /// The column whose original value keys the factor (`by`), instead of the number itself.
    by: Option<String>,
    /// The largest magnitude the column holds, in units of its last decimal place, and its number
    /// of decimals: results are clamped to it (numeric(p, s), smallint, integer, bigint).
    limit: Option<(i128, usize)>,
}

struct Decimal {
    negative: bool,
    /// All digits without the point.
    scaled: i128,
    decimals: usize,
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // All the digits as one integer; past i128 (39 digits) the caller falls back to floating point.
    let mut scaled = 0i128;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        scaled = scaled.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(Decimal {
        negative,
        scaled: if negative { -scaled } else { scaled },
        decimals: frac.len(),
    })
}

impl Noise {
    pub fn new(prf: Prf, amount: NoiseAmount) -> Self {
        Noise {
            prf,
            amount,
            by: None,
            limit: None,
        }
    }

    /// Clamp results to a column of this type, when it bounds its values: `numeric(p, s)` and
    /// the integer types. Returns `None` for other types (nothing to clamp).
    pub fn within_type(&self, type_name: &str) -> Option<Self> {
        let limit = match type_name {
            "smallint" => (i128::from(i16::MAX), 0),
            "integer" => (i128::from(i32::MAX), 0),
            "bigint" => (i128::from(i64::MAX), 0),
            t => {
                let inner = t.strip_prefix("numeric(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
                let (p, s): (u32, u32) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                (10i128.checked_pow(p)? - 1, s as usize)
            }
        };
        let mut n = self.clone();
        n.limit = Some(limit);
        Some(n)
    }

    /// Key the factor on another column's value (an entity id): every number of the entity
    /// under the same domain moves by the same factor, so their ratios stay.
    pub fn by(mut self, column: String) -> Self {
        self.by = Some(column);
        self
    }

    pub fn by_column(&self) -> Option<&str> {
        self.by.as_deref()
    }

    /// The keyed factor for a key, uniform in [-1, 1].
    fn factor(&self, key: &[u8]) -> f64 {
        self.prf.rng(key).unit() * 2.0 - 1.0
    }

    /// The value moved by the factor keyed on the value itself.
    pub fn apply(&self, value: &str) -> Result<String, ValueError> {
        self.apply_keyed(value, value.as_bytes())
    }

    /// The value moved by the factor keyed on `key` (the `by` column's value).
    pub fn apply_keyed(&self, value: &str, key: &[u8]) -> Result<String, ValueError> {
        let v = value.trim();
        if matches!(v, "NaN" | "Infinity" | "-Infinity" | "inf" | "-inf") {
            return Ok(value.to_string());
        }
        let u = self.factor(key);
        if let Some(d) = parse_decimal(v) {
            let scale = 10f64.powi(d.decimals as i32);
            let delta = match self.amount {
                NoiseAmount::Percent(p) => (d.scaled as f64 * u * p / 100.0).round(),
                NoiseAmount::Absolute(a) => (a * u * scale).round(),
            };
            if delta.abs() < 1e37 {
                let mut new = d.scaled.saturating_add(delta as i128);
                if (d.scaled > 0 && new < 0) || (d.scaled < 0 && new > 0) {
                    new = -new;
                }
                if d.scaled == 0 {
                    new = new.abs();
                }
                if let Some((max, decimals)) = self.limit {
                    if decimals == d.decimals {
                        new = new.clamp(-max, max);
                    }
                }
                return Ok(format_scaled(new, d.decimals, d.negative && new == 0));
            }
        }
        // Exponent notation (float columns) or more than 38 digits: floating point.
        let x: f64 = v.parse().map_err(|_| ValueError::NotANumber)?;
        let mut new = match self.amount {
            NoiseAmount::Percent(p) => x * (1.0 + u * p / 100.0),
            NoiseAmount::Absolute(a) => x + a * u,
        };
        if x.signum() != new.signum() {
            new = -new;
        }
        Ok(format!("{new}"))
    }
}

/// `v` / 10^decimals written with exactly `decimals` places.
fn format_scaled(v: i128, decimals: usize, negative_zero: bool) -> String {
    let mut buf = [0u8; 39];
    let digits = decimal_digits(v.unsigned_abs(), &mut buf);
    // At least one digit before the point: 5 with two places is 0.05.
    let zeros = (decimals + 1).saturating_sub(digits.len());
    let mut out = String::with_capacity(zeros + digits.len() + 2);
    if v < 0 || negative_zero {
        out.push('-');
    }
    let padded = std::iter::repeat_n(b'0', zeros).chain(digits.iter().copied());
    let point = zeros + digits.len() - decimals;
    for (i, d) in padded.enumerate() {
        if i == point && decimals > 0 {
            out.push('.');
        }
        out.push(char::from(d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::seed::tests::key;
    use proptest::prelude::*;

    fn noise(amount: NoiseAmount) -> Noise {
        Noise::new(key("a").domain("noise"), amount)
    }

    proptest! {
        #[test]
        fn scaled_numbers_print_as_the_decimal_they_are(v in any::<i128>(), decimals in 0usize..45, neg_zero in any::<bool>()) {
            let sign = if v < 0 || neg_zero { "-" } else { "" };
            let digits = format!("{:0>width$}", v.unsigned_abs(), width = decimals + 1);
            let (int, frac) = digits.split_at(digits.len() - decimals);
            let want = if decimals == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
            prop_assert_eq!(format_scaled(v, decimals, neg_zero), want);
        }

        #[test]
        fn decimals_parse_to_their_digits(int in "[0-9]{0,42}", frac in "[0-9]{0,5}", sign in "[-+]?") {
            let text = format!("{sign}{int}.{frac}");
            let digits = format!("{int}{frac}");
            let want: Option<i128> = if digits.is_empty() { Some(0) } else { digits.parse().ok() };
            let got = parse_decimal(&text);
            prop_assert_eq!(got.as_ref().map(|d| d.scaled.abs()), if int.is_empty() && frac.is_empty() { None } else { want });
            if let Some(d) = got {
                prop_assert_eq!(d.decimals, frac.len());
                prop_assert_eq!(d.negative, sign == "-");
            }
        }
    }

    #[test]
    fn keeps_precision_and_passes_specials() {
        let n = noise(NoiseAmount::Percent(10.0));
        let out = n.apply("52000.00").unwrap();
        assert_eq!(out.split('.').nth(1).map(str::len), Some(2), "{out}");
        let v: f64 = out.parse().unwrap();
        assert!((46800.0..=57200.0).contains(&v), "{out}");
        assert!(!n.apply("1234567").unwrap().contains('.'));
        assert_eq!(n.apply("NaN").unwrap(), "NaN");
        assert_eq!(n.apply("abc"), Err(ValueError::NotANumber));
        assert_eq!(n.apply(""), Err(ValueError::NotANumber));
        let f = n.apply("1.5e+20").unwrap();
        assert!(f.parse::<f64>().unwrap() > 1.3e20, "{f}");
        assert_eq!(format_scaled(5, 3, false), "0.005");
        assert_eq!(format_scaled(-1234, 2, false), "-12.34");
    }

    proptest! {
        #[test]
        fn bounded_sign_kept_deterministic(int in -1_000_000i64..1_000_000, frac in "[0-9]{0,6}", abs in 0.5f64..50.0) {
            let input = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            let x: f64 = input.parse().unwrap();
            for amount in [NoiseAmount::Percent(20.0), NoiseAmount::Absolute(abs)] {
                let n = noise(amount);
                let out = n.apply(&input).unwrap();
                // Another instance from the same key, as another run builds it.
                prop_assert_eq!(&out, &noise(amount).apply(&input).unwrap());
                let decimals = |v: &str| v.split('.').nth(1).map(str::len);
                prop_assert_eq!(decimals(&out), decimals(&input), "{} -> {}", input, out);
                let y: f64 = out.parse().unwrap();
                let bound = match amount {
                    NoiseAmount::Percent(p) => x.abs() * p / 100.0,
                    NoiseAmount::Absolute(a) => a,
                } + 10f64.powi(-(frac.len() as i32));
                // Mirroring across zero can only bring the value closer to the input.
                prop_assert!((y - x).abs() <= bound || (y + x).abs() <= bound, "{} -> {}", input, out);
                prop_assert!(x == 0.0 || y == 0.0 || x.signum() == y.signum(), "{} -> {}", input, out);
            }
        }
    }

    #[test]
    fn key_changes_the_noise() {
        let a = noise(NoiseAmount::Percent(10.0));
        let b = Noise::new(key("b").domain("noise"), NoiseAmount::Percent(10.0));
        let differing = (0..50)
            .filter(|i| {
                let v = format!("{}.00", 10_000 + i);
                a.apply(&v).unwrap() != b.apply(&v).unwrap()
            })
            .count();
        assert!(differing >= 45, "{differing}");
    }
}
