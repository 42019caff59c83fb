//! `fake = KIND`: realistic synthetic values from the `fake` crate, seeded by the keyed PRF.
//!
//! ```toml
//! first_name = { fake = "first_name" }
//! email      = { fake = "email", unique = true }       # always @example.com / .org / .net
//! city       = { fake = "city", locale = "fr_fr" }
//! ```
//!
//! The generator is seeded with HMAC(key, domain ‖ input), so one input always gets the same fake.
//! Kinds that can promise `unique = true` carry a 100-bit keyed tag of the input (emails, usernames,
//! URLs) or are 122/96 bits wide themselves (uuid, ipv6): two distinct inputs collide with probability
//! below n²/2¹⁰¹, about 4·10⁻¹³ for a billion rows. Other kinds are refused with `unique` when the
//! rules are built. A value is never its own fake: an equal draw is drawn again.

use fake::faker::address::raw::{
    BuildingNumber, CityName, CityPrefix, CitySuffix, CountryName, StateName, StreetSuffix, ZipCode,
};
use fake::faker::company::raw::CompanyName;
use fake::faker::job::raw::Title as JobTitle;
use fake::faker::lorem::raw::{Sentence, Word};
use fake::faker::name::raw::{FirstName, LastName, Name};
use fake::faker::phone_number::raw::PhoneNumber;
use fake::locales::{Data, DE_DE, EN, FR_FR, IT_IT, JA_JP, NL_NL, PT_BR, ZH_CN};
use fake::Fake;

use super::push_padded;
use super::seed::{KeyedRng, Prf};

macro_rules! kinds {
    ($($variant:ident => $name:literal, unique: $unique:literal;)+) => {
        /// The kinds of fake value.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum FakeKind { $($variant),+ }

        impl FakeKind {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(FakeKind::$variant),)+ _ => None }
            }

            pub fn name(self) -> &'static str {
                match self { $(FakeKind::$variant => $name),+ }
            }

            /// Whether distinct inputs are promised distinct outputs.
            pub fn supports_unique(self) -> bool {
                match self { $(FakeKind::$variant => $unique),+ }
            }
        }
    };
}

kinds! {
    FirstName => "first_name", unique: false;
    LastName => "last_name", unique: false;
    Name => "name", unique: false;
    Email => "email", unique: true;
    Username => "username", unique: true;
    Phone => "phone", unique: false;
    StreetAddress => "street_address", unique: false;
    City => "city", unique: false;
    State => "state", unique: false;
    Zip => "zip", unique: false;
    Country => "country", unique: false;
    Company => "company", unique: false;
    JobTitle => "job_title", unique: false;
    Ipv4 => "ipv4", unique: false;
    Ipv6 => "ipv6", unique: true;
    Uuid => "uuid", unique: true;
    CreditCard => "credit_card", unique: false;
    Iban => "iban", unique: false;
    Url => "url", unique: true;
    Word => "word", unique: false;
    Sentence => "sentence", unique: false;
    Paragraph => "paragraph", unique: false;
    DateOfBirth => "date_of_birth", unique: false;
}

/// Locales the `fake` crate has data for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    FrFr,
    DeDe,
    ItIt,
    PtBr,
    NlNl,
    JaJp,
    ZhCn,
}

impl Locale {
    pub const NAMES: &'static [&'static str] = &[
        "en", "fr_fr", "de_de", "it_it", "pt_br", "nl_nl", "ja_jp", "zh_cn",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "en" | "en_us" => Locale::En,
            "fr_fr" | "fr" => Locale::FrFr,
            "de_de" | "de" => Locale::DeDe,
            "it_it" | "it" => Locale::ItIt,
            "pt_br" => Locale::PtBr,
            "nl_nl" | "nl" => Locale::NlNl,
            "ja_jp" | "ja" => Locale::JaJp,
            "zh_cn" => Locale::ZhCn,
            _ => return None,
        })
    }

    /// The locale as the rules file writes it (`de_de`).
    pub fn name(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::FrFr => "fr_fr",
            Locale::DeDe => "de_de",
            Locale::ItIt => "it_it",
            Locale::PtBr => "pt_br",
            Locale::NlNl => "nl_nl",
            Locale::JaJp => "ja_jp",
            Locale::ZhCn => "zh_cn",
        }
    }

    /// The locale's part of a fake rule's default domain, written out so that renaming a variant
    /// cannot change a pseudonym (these are the names the first releases derived from `Debug`;
    /// `tests/golden.rs` pins the outputs).
    pub fn domain_name(self) -> &'static str {
        match self {
            Locale::En => "En",
            Locale::FrFr => "FrFr",
            Locale::DeDe => "DeDe",
            Locale::ItIt => "ItIt",
            Locale::PtBr => "PtBr",
            Locale::NlNl => "NlNl",
            Locale::JaJp => "JaJp",
            Locale::ZhCn => "ZhCn",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Faker {
    prf: Prf,
    kind: FakeKind,
    locale: Locale,
    unique: bool,
}

/// Emails and URLs only ever point at domains reserved for documentation (RFC 2606).
const RESERVED_DOMAINS: [&str; 3] = ["example.com", "example.org", "example.net"];
/// Card prefixes of well-known test numbers, so a fake card is never a live one by design.
const CARD_PREFIXES: [&str; 4] = ["400000", "411111", "555555", "222300"];

impl Faker {
    pub fn new(prf: Prf, kind: FakeKind, locale: Locale, unique: bool) -> Self {
        Faker {
            prf,
            kind,
            locale,
            unique,
        }
    }

    /// The longest output of kinds whose length is fixed by their format.
    pub fn is_unique(&self) -> bool {
        self.unique
    }

    /// The most characters an output can have, where the kind bounds it.
    pub fn max_len(&self) -> Option<usize> {
        let longest = |words: &[&str]| words.iter().map(|w| w.chars().count()).max().unwrap_or(0);
        // Emails, usernames and URLs hold the words transliterated to ASCII (or "user").
        let slug = |words: &[&str]| {
            words
                .iter()
                .map(|w| ascii_slug(w, '.').len())
                .max()
                .unwrap_or(0)
                .max(4)
        };
        let (first, last, word) = match self.locale {
            Locale::En => word_lists(EN),
            Locale::FrFr => word_lists(FR_FR),
            Locale::DeDe => word_lists(DE_DE),
            Locale::ItIt => word_lists(IT_IT),
            Locale::PtBr => word_lists(PT_BR),
            Locale::NlNl => word_lists(NL_NL),
            Locale::JaJp => word_lists(JA_JP),
            Locale::ZhCn => word_lists(ZH_CN),
        };
        // The unique tag, or the number drawn instead of it.
        let (tag_email, tag_user, tag_url) = if self.unique { (20, 20, 20) } else { (2, 4, 5) };
        match self.kind {
            // first.last.tag@example.com
            FakeKind::Email => return Some(slug(first) + 1 + slug(last) + 1 + tag_email + 12),
            FakeKind::Username => return Some(slug(first) + usize::from(self.unique) + tag_user),
            // https://example.com/word/tag
            FakeKind::Url => return Some(8 + 11 + 1 + slug(word) + 1 + tag_url),
            FakeKind::FirstName => return Some(longest(first)),
            FakeKind::LastName => return Some(longest(last)),
            _ => {}
        }
        match self.kind {
            FakeKind::Uuid => Some(36),
            FakeKind::Ipv4 => Some(15),
            FakeKind::Ipv6 => Some(39),
            FakeKind::CreditCard => Some(16),
            FakeKind::Iban => Some(22),
            FakeKind::DateOfBirth => Some(10),
            _ => None,
        }
    }

    pub fn apply(&self, input: &str) -> String {
        self.draw(input, usize::MAX)
    }

    /// The fake of `input` in at most `max` characters: the first of its draws that fits (the
    /// same value as [`Faker::apply`] when that one fits), else the last draw cut to `max`. Only
    /// for kinds that do not promise unique values (a cut could make two equal).
    pub fn apply_within(&self, input: &str, max: usize) -> String {
        let out = self.draw(input, max);
        match out.char_indices().nth(max) {
            None => out,
            // A unique kind is never cut: its short form, which holds the same tag.
            Some(_) if self.unique => self.short_form(input).unwrap_or(out),
            Some((cut, _)) => out[..cut].to_string(),
        }
    }

    /// The fewest characters a unique kind can be written in: its short form (see
    /// [`Faker::apply_within`]). `None` for other kinds.
    pub fn min_unique_len(&self) -> Option<usize> {
        if !self.unique {
            return None;
        }
        match self.kind {
            FakeKind::Email => Some(20 + 12),
            FakeKind::Username => Some(20),
            FakeKind::Url => Some(8 + 11 + 1 + 20),
            _ => None,
        }
    }

    /// The tag alone in the kind's shape — `tag@example.com`, `tag`, `https://example.com/tag` —
    /// for a column too short for every draw. Distinct inputs still get distinct values: the tag
    /// tells them apart, and no full form (`first.last.tag@…`, `name_tag`, `…/word/tag`) has the
    /// short form's shape.
    fn short_form(&self, input: &str) -> Option<String> {
        let digest = self.prf.digest(input.as_bytes());
        let tag_bytes = tag(&digest);
        let tag = std::str::from_utf8(&tag_bytes).expect("ASCII");
        Some(match self.kind {
            FakeKind::Email => format!("{tag}@example.com"),
            FakeKind::Username => tag.to_string(),
            FakeKind::Url => format!("https://example.com/{tag}"),
            _ => return None,
        })
    }

    /// Draws until one differs from the input and has at most `max` characters (at most 16 draws
    /// when every one fits, 48 otherwise).
    fn draw(&self, input: &str, max: usize) -> String {
        // One digest seeds the generator and, for unique kinds, gives the tag.
        let digest = self.prf.digest(input.as_bytes());
        let mut rng = KeyedRng::from_seed(digest);
        let tag_bytes = tag(&digest);
        let tag = self
            .unique
            .then(|| std::str::from_utf8(&tag_bytes).expect("ASCII"));
        let mut out = String::new();
        for attempt in 0..48 {
            if attempt == 16 && max == usize::MAX {
                break;
            }
            out = match self.locale {
                Locale::En => self.generate(EN, &mut rng, tag),
                Locale::FrFr => self.generate(FR_FR, &mut rng, tag),
                Locale::DeDe => self.generate(DE_DE, &mut rng, tag),
                Locale::ItIt => self.generate(IT_IT, &mut rng, tag),
                Locale::PtBr => self.generate(PT_BR, &mut rng, tag),
                Locale::NlNl => self.generate(NL_NL, &mut rng, tag),
                Locale::JaJp => self.generate(JA_JP, &mut rng, tag),
                Locale::ZhCn => self.generate(ZH_CN, &mut rng, tag),
            };
            if out != input && (max == usize::MAX || out.chars().count() <= max) {
                break;
            }
        }
        out
    }

    fn generate<L: Data + Copy + fake::faker::impls::address::CityNameGenFn>(
        &self,
        l: L,
        rng: &mut KeyedRng,
        tag: Option<&str>,
    ) -> String {
        match self.kind {
            FakeKind::FirstName => FirstName(l).fake_with_rng(rng),
            FakeKind::LastName => LastName(l).fake_with_rng(rng),
            FakeKind::Name => Name(l).fake_with_rng(rng),
            FakeKind::Email => {
                let first: &str = FirstName(l).fake_with_rng(rng);
                let last: &str = LastName(l).fake_with_rng(rng);
                let domain = RESERVED_DOMAINS[rng.below(3) as usize];
                // Built by hand: this is the hottest fake kind, and format! costs more than it does.
                let mut out = String::with_capacity(first.len() + last.len() + 40);
                push_slug(&mut out, first, '.');
                out.push('.');
                push_slug(&mut out, last, '.');
                match tag {
                    Some(tag) => {
                        out.push('.');
                        out.push_str(tag);
                    }
                    None => push_padded(&mut out, rng.below(100), 1),
                }
                out.push('@');
                out.push_str(domain);
                out
            }
            FakeKind::Username => {
                let first: &str = FirstName(l).fake_with_rng(rng);
                let base = ascii_slug(first, '_');
                match tag {
                    Some(tag) => format!("{base}_{tag}"),
                    None => format!("{base}{}", rng.below(10_000)),
                }
            }
            FakeKind::Phone => PhoneNumber(l).fake_with_rng(rng),
            FakeKind::StreetAddress => {
                let mut out: String = BuildingNumber(l).fake_with_rng(rng);
                out.push(' ');
                push_street_name(&mut out, l, rng);
                out
            }
            // These two locales generate cities their own way.
            FakeKind::City if matches!(self.locale, Locale::DeDe | Locale::NlNl) => {
                CityName(l).fake_with_rng(rng)
            }
            FakeKind::City => city_name(l, rng),
            FakeKind::State => StateName(l).fake_with_rng(rng),
            FakeKind::Zip => ZipCode(l).fake_with_rng(rng),
            FakeKind::Country => CountryName(l).fake_with_rng(rng),
            FakeKind::Company => CompanyName(l).fake_with_rng(rng),
            FakeKind::JobTitle => JobTitle(l).fake_with_rng(rng),
            FakeKind::Ipv4 => {
                // 10.0.0.0/8: private, never routed to anyone real.
                let v = rng.next_u64();
                let mut out = String::with_capacity(15);
                out.push_str("10.");
                push_padded(&mut out, v & 255, 1);
                out.push('.');
                push_padded(&mut out, (v >> 8) & 255, 1);
                out.push('.');
                push_padded(&mut out, 1 + (v >> 16) % 254, 1);
                out
            }
            FakeKind::Ipv6 => {
                // 2001:db8::/32 is reserved for documentation; 96 keyed bits below it.
                let (hi, lo) = (rng.next_u64(), rng.next_u64());
                let groups: Vec<String> = (0..6)
                    .map(|i| {
                        let word = if i < 4 {
                            hi >> (16 * i)
                        } else {
                            lo >> (16 * (i - 4))
                        };
                        format!("{:x}", word & 0xffff)
                    })
                    .collect();
                format!("2001:db8:{}", groups.join(":"))
            }
            FakeKind::Uuid => {
                let mut b = [0u8; 16];
                for chunk in b.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut out = String::with_capacity(36);
                for (i, x) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push('-');
                    }
                    out.push(HEX[usize::from(x >> 4)] as char);
                    out.push(HEX[usize::from(x & 15)] as char);
                }
                out
            }
            FakeKind::CreditCard => {
                let mut digits: Vec<u8> = CARD_PREFIXES[rng.below(4) as usize]
                    .bytes()
                    .map(|b| b - b'0')
                    .collect();
                while digits.len() < 15 {
                    digits.push(rng.below(10) as u8);
                }
                digits.push(luhn_check_digit(&digits));
                let mut out = String::with_capacity(digits.len());
                out.extend(digits.iter().map(|d| char::from(b'0' + d)));
                out
            }
            FakeKind::Iban => {
                let bban: String = (0..18)
                    .map(|_| char::from(b'0' + rng.below(10) as u8))
                    .collect();
                iban("DE", &bban)
            }
            FakeKind::Url => {
                let word: &str = Word(l).fake_with_rng(rng);
                let domain = RESERVED_DOMAINS[rng.below(3) as usize];
                let path = ascii_slug(word, '-');
                match tag {
                    Some(tag) => format!("https://{domain}/{path}/{tag}"),
                    None => format!("https://{domain}/{path}/{}", rng.below(100_000)),
                }
            }
            FakeKind::Word => Word(l).fake_with_rng(rng),
            FakeKind::Sentence => Sentence(l, 4..12).fake_with_rng(rng),
            FakeKind::Paragraph => {
                let n = 3 + rng.below(4);
                let sentences: Vec<String> = (0..n)
                    .map(|_| Sentence(l, 4..12).fake_with_rng(rng))
                    .collect();
                sentences.join(" ")
            }
            FakeKind::DateOfBirth => {
                // Ages 18 to 90 on a fixed reference day (2025-01-01), not on today: outputs must not
                // change from one night to the next.
                let reference = super::dates::days_from_civil(2025, 1, 1);
                let age_days = 18 * 365 + rng.below(72 * 365) as i64;
                let (y, m, d) = super::dates::civil_from_days(reference - age_days);
                format!("{y:04}-{m:02}-{d:02}")
            }
        }
    }
}

// The fake crate builds cities and street names with a chain of `str::replace` calls on a locale
// template, which costs more than the rest of the value. These draw the same parts in the same order
// from the generator and fill the template in one pass: the same strings (the golden test pins
// them), at half the cost.

/// A city name: the fake crate's default `CityName` (every locale here but de_DE and nl_NL).
fn city_name<L: Data + Copy>(l: L, rng: &mut KeyedRng) -> String {
    let mut out = String::with_capacity(32);
    match (0..5).fake_with_rng::<u8, _>(rng) {
        0 => {
            let prefix: &str = CityPrefix(l).fake_with_rng(rng);
            let name: String = Name(l).fake_with_rng(rng);
            let suffix: &str = CitySuffix(l).fake_with_rng(rng);
            let parts = [
                ("{CityPrefix}", prefix),
                ("{CityName}", &name),
                ("{CitySuffix}", suffix),
            ];
            fill_template(&mut out, L::ADDRESS_CITY_WITH_PREFIX_TPL, &parts);
        }
        n => {
            let name: &str = if n == 1 {
                FirstName(l).fake_with_rng(rng)
            } else {
                LastName(l).fake_with_rng(rng)
            };
            let suffix: &str = CitySuffix(l).fake_with_rng(rng);
            let parts = [("{CityName}", name), ("{CitySuffix}", suffix)];
            fill_template(&mut out, L::ADDRESS_CITY_TPL, &parts);
        }
    }
    out
}

/// A locale's first names, last names and words, which bound some kinds' lengths.
fn word_lists<L: Data>(
    _: L,
) -> (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
) {
    (L::NAME_FIRST_NAME, L::NAME_LAST_NAME, L::LOREM_WORD)
}

/// Append a street name: the fake crate's `StreetName`.
fn push_street_name<L: Data + Copy>(out: &mut String, l: L, rng: &mut KeyedRng) {
    let name: &str = if fake::Faker.fake_with_rng::<bool, _>(rng) {
        FirstName(l).fake_with_rng(rng)
    } else {
        LastName(l).fake_with_rng(rng)
    };
    let suffix: &str = StreetSuffix(l).fake_with_rng(rng);
    let parts = [("{StreetName}", name), ("{StreetSuffix}", suffix)];
    fill_template(out, L::ADDRESS_STREET_TPL, &parts);
}

/// Append `template` with each `{Placeholder}` of `parts` replaced by its value (the values hold no
/// placeholders, so one pass gives what replacing them one after the other gives).
fn fill_template(out: &mut String, template: &str, parts: &[(&str, &str)]) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        match parts.iter().find(|(k, _)| rest.starts_with(k)) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

/// 100 bits of the keyed digest of the input, as 20 base-32 characters (no 0/1/l/o to read well).
fn tag(digest: &[u8; 32]) -> [u8; 20] {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    // The last 16 bytes: the generator's first draws come from the first ones.
    let v = u128::from_le_bytes(digest[16..].try_into().expect("16 bytes"));
    std::array::from_fn(|i| ALPHABET[((v >> (i * 5)) & 31) as usize])
}

/// Lower-case ASCII letters and digits, other runs of characters folded into `sep`.
fn ascii_slug(s: &str, sep: char) -> String {
    let mut out = String::with_capacity(s.len());
    push_slug(&mut out, s, sep);
    out
}

/// Append the slug of `s` (never empty: "user" when nothing is left).
fn push_slug(out: &mut String, s: &str, sep: char) {
    let start = out.len();
    let ascii: std::borrow::Cow<str> = if s.is_ascii() {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(deunicode::deunicode(s))
    };
    // Runs of letters and digits, joined by one `sep` where anything else stood between them.
    let mut gap = false;
    for b in ascii.bytes() {
        if b.is_ascii_alphanumeric() {
            if gap && out.len() > start {
                out.push(sep);
            }
            gap = false;
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            gap = true;
        }
    }
    if out.len() == start {
        out.push_str("user");
    }
}

/// The digit that makes `digits` + it pass the Luhn check.
pub fn luhn_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether a digit string passes the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&last, rest)) if !rest.is_empty() => luhn_check_digit(rest) == last,
        _ => false,
    }
}

/// An IBAN with correct ISO 7064 mod-97 check digits.
fn iban(country: &str, bban: &str) -> String {
    let check = 98 - iban_mod97(&format!("{bban}{country}00"));
    format!("{country}{check:02}{bban}")
}

/// The mod-97 remainder of an IBAN-style string (letters count as 10..35).
pub fn iban_mod97(s: &str) -> u32 {
    let mut rem = 0u32;
    for c in s.chars() {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => continue,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::seed::tests::key;
    use std::collections::HashSet;

    fn faker(kind: FakeKind, unique: bool) -> Faker {
        Faker::new(key("a").domain(kind.name()), kind, Locale::En, unique)
    }

    proptest::proptest! {
        #[test]
        fn slugs_are_runs_of_letters_and_digits_joined_by_one_separator(s in "[a-zA-Z0-9 ._'é-]{0,12}") {
            // What the slug was first defined as: push a separator after content, trim the end.
            let mut want = String::new();
            for c in deunicode::deunicode(&s).chars() {
                if c.is_ascii_alphanumeric() {
                    want.push(c.to_ascii_lowercase());
                } else if !want.is_empty() && !want.ends_with('.') {
                    want.push('.');
                }
            }
            while want.ends_with('.') {
                want.pop();
            }
            if want.is_empty() {
                want.push_str("user");
            }
            let mut got = String::from("x@");
            push_slug(&mut got, &s, '.');
            proptest::prop_assert_eq!(&got[2..], want);
        }
    }

    /// Cities and street names built here are the fake crate's, draw for draw.
    fn same_as_the_fake_crate<L: Data + Copy + fake::faker::impls::address::CityNameGenFn>(
        l: L,
        cities: bool,
    ) {
        use fake::faker::address::raw::StreetName;
        let prf = key("a").domain("same");
        for i in 0..2000u32 {
            let seed = prf.digest(&i.to_be_bytes());
            if cities {
                let want: String = CityName(l).fake_with_rng(&mut KeyedRng::from_seed(seed));
                assert_eq!(city_name(l, &mut KeyedRng::from_seed(seed)), want);
            }
            let (mut a, mut b) = (KeyedRng::from_seed(seed), KeyedRng::from_seed(seed));
            let want: String = StreetName(l).fake_with_rng(&mut a);
            let mut got = String::new();
            push_street_name(&mut got, l, &mut b);
            assert_eq!(got, want);
            // The generator is left where the fake crate leaves it.
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn cities_and_streets_match_the_fake_crate_in_every_locale() {
        same_as_the_fake_crate(EN, true);
        same_as_the_fake_crate(FR_FR, true);
        same_as_the_fake_crate(IT_IT, true);
        same_as_the_fake_crate(PT_BR, true);
        same_as_the_fake_crate(JA_JP, true);
        same_as_the_fake_crate(ZH_CN, true);
        // de_DE and nl_NL cities come from the fake crate itself; their streets do not.
        same_as_the_fake_crate(DE_DE, false);
        same_as_the_fake_crate(NL_NL, false);
    }

    #[test]
    fn every_kind_is_deterministic_key_sensitive_and_not_the_input() {
        for name in FakeKind::NAMES {
            let kind = FakeKind::parse(name).unwrap();
            let a = faker(kind, false);
            let b = Faker::new(key("b").domain(name), kind, Locale::En, false);
            let mut differs = false;
            for i in 0..20 {
                let input = format!("input-{i}");
                let out = a.apply(&input);
                assert!(!out.is_empty(), "{name}");
                // Another instance from the same key, as another run or thread builds it.
                assert_eq!(out, faker(kind, false).apply(&input), "{name}");
                assert_ne!(out, input, "{name}");
                differs |= out != b.apply(&input);
            }
            assert!(differs, "{name}: another key must give other values");
        }
    }

    #[test]
    fn emails_use_reserved_domains_only() {
        let f = faker(FakeKind::Email, false);
        let fu = faker(FakeKind::Email, true);
        for i in 0..500 {
            for out in [
                f.apply(&format!("p{i}@corp.io")),
                fu.apply(&format!("p{i}@corp.io")),
            ] {
                let domain = out.rsplit('@').next().unwrap();
                assert!(RESERVED_DOMAINS.contains(&domain), "{out}");
                assert!(out.is_ascii());
            }
        }
    }

    #[test]
    fn cards_pass_luhn_and_ibans_pass_mod97() {
        let card = faker(FakeKind::CreditCard, false);
        let ib = faker(FakeKind::Iban, false);
        for i in 0..200 {
            let c = card.apply(&i.to_string());
            let digits: Vec<u8> = c.bytes().map(|b| b - b'0').collect();
            assert_eq!(digits.len(), 16);
            assert!(luhn_valid(&digits), "{c}");
            let iban = ib.apply(&i.to_string());
            let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
            assert_eq!(iban_mod97(&rearranged), 1, "{iban}");
        }
        assert!(luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        ]));
    }

    #[test]
    fn uuids_and_dates_are_well_formed() {
        let u = faker(FakeKind::Uuid, false).apply("x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let d = faker(FakeKind::DateOfBirth, false).apply("1980-04-02");
        let year: i64 = d[..4].parse().unwrap();
        assert!((1934..=2007).contains(&year), "{d}");
    }

    #[test]
    fn locales_change_the_data() {
        let en = faker(FakeKind::City, false);
        let ja = Faker::new(key("a").domain("city"), FakeKind::City, Locale::JaJp, false);
        let all_ascii = (0..50).all(|i| ja.apply(&i.to_string()).is_ascii());
        assert!(!all_ascii);
        assert!((0..50).all(|i| en.apply(&i.to_string()).is_ascii()));
        // Non-Latin names still give an ASCII email.
        let mail = Faker::new(key("a").domain("e"), FakeKind::Email, Locale::ZhCn, false);
        assert!(mail.apply("x").is_ascii());
    }

    #[test]
    fn unique_email_is_injective_on_a_million_inputs() {
        let f = faker(FakeKind::Email, true);
        let mut seen = HashSet::with_capacity(1_000_000);
        for i in 0..1_000_000u32 {
            assert!(
                seen.insert(f.apply(&format!("user{i}@mail.test"))),
                "collision at {i}"
            );
        }
    }

    #[test]
    fn unique_kinds_are_the_wide_ones() {
        assert!(FakeKind::Email.supports_unique());
        assert!(FakeKind::Uuid.supports_unique());
        assert!(!FakeKind::Phone.supports_unique());
        assert!(!FakeKind::FirstName.supports_unique());
    }

    #[test]
    fn bounded_kinds_never_write_past_their_bound_in_any_locale() {
        let locales = Locale::NAMES.iter().map(|n| Locale::parse(n).unwrap());
        for locale in locales {
            for (kind, unique) in [
                (FakeKind::Email, true),
                (FakeKind::Email, false),
                (FakeKind::Username, true),
                (FakeKind::Username, false),
                (FakeKind::Url, true),
                (FakeKind::Url, false),
                (FakeKind::FirstName, false),
                (FakeKind::LastName, false),
                (FakeKind::Ipv4, false),
            ] {
                let f = Faker::new(key("a").domain(kind.name()), kind, locale, unique);
                let max = f.max_len().expect("bounded");
                for i in 0..1500 {
                    let out = f.apply(&format!("value {i}"));
                    assert!(
                        out.chars().count() <= max,
                        "{locale:?} {kind:?} {out} > {max}"
                    );
                }
            }
        }
    }
}
