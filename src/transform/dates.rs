//! Dates and timestamps: `shift = { days }` and `truncate = "day" | "month" | "year"`.
//!
//! ```toml
//! birth_date = { shift = { days = 180 } }     # moved by a keyed offset in ±1..=180 days, never 0
//! created_at = { truncate = "month" }         # 2024-05-17 13:45:10+00 -> 2024-05-01 00:00:00+00
//! ```
//!
//! Values are PostgreSQL's ISO output (`YYYY-MM-DD`, then optionally a time and a zone, then
//! optionally ` BC`). Only the calendar part moves: the time of day and the zone stay as they were, so
//! a shifted timestamp keeps its precision. `infinity` and `-infinity` pass unchanged.

use super::seed::Prf;
use super::{push_padded, ValueError};

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is year 0).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A parsed date or timestamp: the calendar part and the untouched rest.
struct Parsed<'a> {
    /// Astronomical year.
    year: i64,
    month: u32,
    day: u32,
    /// Everything after the date (time and zone), without a trailing " BC".
    rest: &'a str,
}

fn parse(value: &str) -> Result<Option<Parsed<'_>>, ValueError> {
    if value == "infinity" || value == "-infinity" {
        return Ok(None);
    }
    let (body, bc) = match value.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (value, false),
    };
    let bytes = body.as_bytes();
    let year_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if year_len < 4 || bytes.len() < year_len + 6 {
        return Err(ValueError::NotADate);
    }
    let tail = &body[year_len..];
    let tb = tail.as_bytes();
    if tb[0] != b'-' || tb[3] != b'-' || !tb[1..3].iter().chain(&tb[4..6]).all(u8::is_ascii_digit) {
        return Err(ValueError::NotADate);
    }
    let year: i64 = body[..year_len].parse().map_err(|_| ValueError::NotADate)?;
    let month: u32 = tail[1..3].parse().map_err(|_| ValueError::NotADate)?;
    let day: u32 = tail[4..6].parse().map_err(|_| ValueError::NotADate)?;
    if !(1..=12).contains(&month) || day == 0 || day > 31 {
        return Err(ValueError::NotADate);
    }
    let rest = &tail[6..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('T')) {
        return Err(ValueError::NotADate);
    }
    Ok(Some(Parsed {
        year: if bc { 1 - year } else { year },
        month,
        day,
        rest,
    }))
}

/// `YYYY-MM-DD`, then the pieces of `rest`, then ` BC` for years before 1.
fn format_date(out: &mut String, year: i64, month: u32, day: u32, rest: &[&str]) {
    let (shown, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    push_padded(out, shown.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(month), 2);
    out.push('-');
    push_padded(out, u64::from(day), 2);
    for piece in rest {
        out.push_str(piece);
    }
    if bc {
        out.push_str(" BC");
    }
}

#[derive(Debug, Clone)]
pub struct Shift {
    prf: Prf,
    days: u32,
    /// The column whose original value keys the offset (`by`), instead of the date itself.
    by: Option<String>,
    /// Dates left as they are (`keep`), as days since 1970-01-01.
    keep: Vec<i64>,
}

/// A plain `YYYY-MM-DD` (or with ` BC`) as days since 1970-01-01; `None` for anything else.
pub fn date_days(s: &str) -> Option<i64> {
    match parse(s) {
        Ok(Some(p)) if p.rest.is_empty() && p.day <= days_in_month(p.year, p.month) => {
            Some(days_from_civil(p.year, p.month, p.day))
        }
        _ => None,
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    (next - days_from_civil(year, month, 1)) as u32
}

impl Shift {
    pub fn new(prf: Prf, days: u32) -> Self {
        Shift {
            prf,
            days,
            by: None,
            keep: Vec::new(),
        }
    }

    /// Key the offset on another column's value (an entity id): every date of the entity moves
    /// by the same number of days, so intervals and order within it stay.
    pub fn by(mut self, column: String) -> Self {
        self.by = Some(column);
        self
    }

    /// Leave these dates (days since 1970-01-01) as they are, whatever time of day follows them.
    pub fn keeping(mut self, days: Vec<i64>) -> Self {
        self.keep = days;
        self
    }

    pub fn by_column(&self) -> Option<&str> {
        self.by.as_deref()
    }

    /// The keyed offset for a key: in `-days..=-1` or `1..=days`.
    fn offset(&self, key: &[u8]) -> i64 {
        let mut rng = self.prf.rng(key);
        let magnitude = 1 + rng.below(u64::from(self.days)) as i64;
        if rng.next_u64() & 1 == 0 {
            magnitude
        } else {
            -magnitude
        }
    }

    /// The value moved by the offset keyed on the value itself.
    pub fn apply(&self, value: &str) -> Result<String, ValueError> {
        self.apply_keyed(value, value.as_bytes())
    }

    /// The value moved by the offset keyed on `key` (the `by` column's value).
    pub fn apply_keyed(&self, value: &str, key: &[u8]) -> Result<String, ValueError> {
        let Some(p) = parse(value)? else {
            return Ok(value.to_string());
        };
        let from = days_from_civil(p.year, p.month, p.day);
        if self.keep.contains(&from) {
            return Ok(value.to_string());
        }
        let days = from + self.offset(key);
        let (y, m, d) = civil_from_days(days);
        let mut out = String::with_capacity(value.len() + 3);
        format_date(&mut out, y, m, d, &[p.rest]);
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncate {
    Day,
    Month,
    Year,
}

impl Truncate {
    pub const NAMES: &'static [&'static str] = &["day", "month", "year"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => Truncate::Day,
            "month" => Truncate::Month,
            "year" => Truncate::Year,
            _ => return None,
        })
    }

    pub fn apply(self, value: &str) -> Result<String, ValueError> {
        let Some(p) = parse(value)? else {
            return Ok(value.to_string());
        };
        let (month, day) = match self {
            Truncate::Day => (p.month, p.day),
            Truncate::Month => (p.month, 1),
            Truncate::Year => (1, 1),
        };
        // Keep the separator and the zone; zero the time of day and drop fractions.
        let mut out = String::with_capacity(value.len());
        if p.rest.is_empty() {
            format_date(&mut out, p.year, month, day, &[]);
        } else {
            let sep = &p.rest[..1];
            let time = &p.rest[1..];
            let zone_at = time
                .char_indices()
                .find(|&(i, c)| i > 0 && (c == '+' || c == '-'))
                .map(|(i, _)| i);
            let zone = zone_at.map_or("", |i| &time[i..]);
            format_date(&mut out, p.year, month, day, &[sep, "00:00:00", zone]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::seed::tests::key;
    use proptest::prelude::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -719_528, -1, 0, 1, 11_016, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn truncate_table() {
        let cases = [
            (Truncate::Month, "2024-05-17", "2024-05-01"),
            (Truncate::Year, "2024-05-17", "2024-01-01"),
            (
                Truncate::Day,
                "2024-05-17 13:45:10.123+02",
                "2024-05-17 00:00:00+02",
            ),
            (
                Truncate::Month,
                "2024-05-17 13:45:10-03:30",
                "2024-05-01 00:00:00-03:30",
            ),
            (Truncate::Year, "2024-05-17T13:45:10", "2024-01-01T00:00:00"),
            (Truncate::Month, "0044-03-15 BC", "0044-03-01 BC"),
            (Truncate::Year, "infinity", "infinity"),
        ];
        for (t, input, want) in cases {
            assert_eq!(t.apply(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn shift_by_moves_every_date_of_an_entity_alike_and_keeps_sentinels() {
        let s = Shift::new(key("a").domain("by:shift"), 365)
            .by("emp_no".into())
            .keeping(vec![date_days("9999-01-01").unwrap()]);
        assert_eq!(s.by_column(), Some("emp_no"));
        let days = |v: &str| date_days(&v[..10]).unwrap();
        for id in ["1", "2", "10001", "abc"] {
            let from = s.apply_keyed("1990-03-01", id.as_bytes()).unwrap();
            let to = s
                .apply_keyed("1995-07-14 08:00:00+00", id.as_bytes())
                .unwrap();
            // Same offset for both dates of the entity: the interval is kept to the day.
            assert_eq!(
                days(&to) - days(&from),
                days("1995-07-14") - days("1990-03-01"),
                "{id}"
            );
            assert!(to.ends_with(" 08:00:00+00"));
            // The open-period sentinel stays, with or without a time.
            assert_eq!(
                s.apply_keyed("9999-01-01", id.as_bytes()).unwrap(),
                "9999-01-01"
            );
            assert_eq!(
                s.apply_keyed("9999-01-01 00:00:00", id.as_bytes()).unwrap(),
                "9999-01-01 00:00:00"
            );
        }
        // Entities get different offsets (about 1 in 730 collide; these four do not).
        let moved: std::collections::BTreeSet<String> = ["1", "2", "3", "4"]
            .iter()
            .map(|id| s.apply_keyed("2000-01-01", id.as_bytes()).unwrap())
            .collect();
        assert_eq!(moved.len(), 4);
        // Without by the date keys itself, as before.
        let plain = Shift::new(key("a").domain("shift"), 365);
        assert_eq!(
            plain.apply("2000-01-01").unwrap(),
            plain.apply_keyed("2000-01-01", b"2000-01-01").unwrap()
        );
        for bad in ["2024-02-30", "2024-01-01 10:00", "9999-1-1", "soon"] {
            assert_eq!(date_days(bad), None, "{bad}");
        }
        assert_eq!(date_days("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
    }

    #[test]
    fn shift_keeps_time_zone_and_era_format() {
        let s = Shift::new(key("a").domain("shift"), 30);
        let out = s.apply("2022-02-15 09:34:33.5+00").unwrap();
        assert!(out.ends_with(" 09:34:33.5+00"), "{out}");
        assert_ne!(&out[..10], "2022-02-15");
        assert_eq!(s.apply("-infinity").unwrap(), "-infinity");
        // Around year 1 BC / AD 1 the era flips correctly: 1 day before 0001-01-01 is 0001-12-31 BC.
        let mut out = String::new();
        format_date(&mut out, 0, 12, 31, &[]);
        assert_eq!(out, "0001-12-31 BC");
        // Years past 9999 keep all their digits; short ones are padded.
        out.clear();
        format_date(&mut out, 12345, 1, 2, &[" 00:00:00", "+02"]);
        assert_eq!(out, "12345-01-02 00:00:00+02");
        out.clear();
        format_date(&mut out, 7, 10, 20, &[]);
        assert_eq!(out, "0007-10-20");
        let bc = s.apply("0500-06-01 BC").unwrap();
        assert!(bc.ends_with(" BC"), "{bc}");
    }

    #[test]
    fn non_dates_are_errors() {
        let s = Shift::new(key("a").domain("shift"), 3);
        for bad in [
            "",
            "yesterday",
            "2024/01/01",
            "24-01-01",
            "2024-13-01",
            "2024-01-01X",
        ] {
            assert_eq!(s.apply(bad), Err(ValueError::NotADate), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn shift_moves_within_bounds_never_zero(
            // From 4713 BC (PostgreSQL's first date) to 9999 AD, BC years included.
            z in -2_440_000i64..2_930_000,
            days in 1u32..400,
            time in proptest::option::of("[ T][0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?([+-][01][0-9])?"),
        ) {
            let (y, m, d) = civil_from_days(z);
            let time = time.unwrap_or_default();
            let input = if y <= 0 {
                format!("{:04}-{m:02}-{d:02}{time} BC", 1 - y)
            } else {
                format!("{y:04}-{m:02}-{d:02}{time}")
            };
            let s = Shift::new(key("a").domain("shift"), days);
            let out = s.apply(&input).unwrap();
            // Another instance from the same key, as another run builds it.
            prop_assert_eq!(&out, &Shift::new(key("a").domain("shift"), days).apply(&input).unwrap());
            // The time of day and zone are kept, and BC stays written as PostgreSQL writes it.
            let body = out.strip_suffix(" BC").unwrap_or(&out);
            prop_assert!(body.ends_with(&time), "{} -> {}", input, out);
            let p = parse(&out).unwrap().unwrap();
            let moved = days_from_civil(p.year, p.month, p.day) - z;
            prop_assert!(moved != 0 && moved.unsigned_abs() <= u64::from(days), "{} -> {}", input, out);
        }
    }

    #[test]
    fn another_key_gives_other_offsets() {
        let a = Shift::new(key("a").domain("shift"), 365);
        let b = Shift::new(key("b").domain("shift"), 365);
        let differing = (1..=28)
            .filter(|d| {
                let v = format!("2020-01-{d:02}");
                a.apply(&v).unwrap() != b.apply(&v).unwrap()
            })
            .count();
        assert!(differing >= 25, "{differing}");
    }
}
