//! `hash = { length, format }`: keyed pseudonyms (HMAC-SHA256 under the secret key).
//!
//! ```toml
//! ssn       = { hash = { length = 12 } }                    # 12 hex characters
//! token     = { hash = { length = 20, format = "base32" } }
//! account   = { hash = { length = 10, format = "digits" } }
//! tax_id    = { hash = { format = "preserve" }, unique = true }   # "123-45-6789" -> "804-17-3352"
//! ```
//!
//! `hex`, `base32` and `digits` draw `length` characters from the PRF. `preserve` keeps the length
//! and the class of every character (digit → digit, lower → lower, upper → upper, others kept) with a
//! keyed format-preserving permutation (an alternating Feistel network over the mixed-radix number the
//! letters and digits form), turned into a single cycle so it has no fixed point: `preserve` is
//! injective, so it satisfies `unique = true` by construction, and never returns its input (but for
//! a number of zeros only). A plain number (`-12.50`, `00731`) maps to a number with the same sign,
//! point and leading zeros whose first other digit is not 0, so integer ids stay canonical and
//! distinct after the cast.

use super::seed::{Prf, SipKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    Hex,
    Base32,
    Digits,
    Preserve,
}

impl HashFormat {
    pub const NAMES: &'static [&'static str] = &["hex", "base32", "digits", "preserve"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hex" => HashFormat::Hex,
            "base32" => HashFormat::Base32,
            "digits" => HashFormat::Digits,
            "preserve" => HashFormat::Preserve,
            _ => return None,
        })
    }

    /// Bits of entropy per output character.
    pub fn bits_per_char(self) -> f64 {
        match self {
            HashFormat::Hex => 4.0,
            HashFormat::Base32 => 5.0,
            HashFormat::Digits => std::f64::consts::LOG2_10,
            HashFormat::Preserve => f64::INFINITY,
        }
    }

    pub fn default_length(self) -> usize {
        match self {
            HashFormat::Hex | HashFormat::Base32 => 16,
            HashFormat::Digits => 12,
            HashFormat::Preserve => 0,
        }
    }
}

/// The longest `length` accepted.
pub const MAX_LENGTH: usize = 128;

#[derive(Debug, Clone)]
pub struct Hash {
    prf: Prf,
    format: HashFormat,
    length: usize,
    /// Identifies this transform's key and domain in the per-thread round-key cache.
    id: u64,
    /// `preserve` on an integer column: the largest value it holds (see [`Hash::within_integer`]).
    int_max: Option<u128>,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl Hash {
    pub fn new(prf: Prf, format: HashFormat, length: usize) -> Self {
        Hash {
            prf,
            format,
            length,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            int_max: None,
        }
    }

    /// `preserve` on an integer column whose values are at most `max` (and at least `-max - 1`):
    /// an image past it is permuted again until it is not ("cycle walking": the permutation is
    /// one cycle, so this stays a permutation, without fixed points, of the values the column
    /// holds). Other formats are unchanged.
    pub fn within_integer(&self, max: u128) -> Self {
        let mut h = self.clone();
        if self.format == HashFormat::Preserve {
            h.int_max = Some(max);
        }
        h
    }

    /// The output length, unless it follows the input (`preserve`).
    pub fn output_len(&self) -> Option<usize> {
        (self.format != HashFormat::Preserve).then_some(self.length)
    }

    pub fn apply(&self, input: &str) -> String {
        if self.format == HashFormat::Preserve {
            let mut out = preserve(&self.prf, self.id, input);
            if let Some(max) = self.int_max {
                let (negative, digits) = match input.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, input),
                };
                let limit = if negative { max + 1 } else { max };
                let magnitude = |v: &str| v.trim_start_matches('-').parse::<u128>().ok();
                // Only values the column can hold walk (they reach one it holds again).
                if digits.bytes().all(|b| b.is_ascii_digit())
                    && magnitude(input).is_some_and(|v| v <= limit)
                {
                    while magnitude(&out).is_some_and(|v| v > limit) {
                        out = preserve(&self.prf, self.id, &out);
                    }
                }
            }
            return out;
        }
        // A drawn value equal to its input would leak it; draw again with a counter (deterministic).
        let mut attempt = 0u32;
        loop {
            let out = self.draw(input, attempt);
            if out != input || attempt == 3 {
                return out;
            }
            attempt += 1;
        }
    }

    fn draw(&self, input: &str, attempt: u32) -> String {
        let seed_input: Vec<u8>;
        let bytes_in: &[u8] = if attempt == 0 {
            input.as_bytes()
        } else {
            seed_input = [input.as_bytes(), &[0xff], &attempt.to_be_bytes()].concat();
            &seed_input
        };
        let mut out = String::with_capacity(self.length);
        match self.format {
            HashFormat::Hex => {
                let bytes = self.prf.expand(bytes_in, self.length.div_ceil(2));
                for b in bytes {
                    out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
                    out.push(char::from_digit(u32::from(b & 15), 16).expect("nibble"));
                }
                out.truncate(self.length);
            }
            HashFormat::Base32 => {
                for b in self.prf.expand(bytes_in, self.length) {
                    // 256 is a multiple of 32: no bias.
                    out.push(BASE32[usize::from(b & 31)] as char);
                }
            }
            HashFormat::Digits => {
                // 19 digits per u64 chunk; the bias of u64 mod 10^19 is below 2^-3.
                let chunks = self.length.div_ceil(19);
                let bytes = self.prf.expand(bytes_in, chunks * 8);
                for chunk in bytes.chunks(8) {
                    let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"))
                        % 10_000_000_000_000_000_000;
                    out.push_str(&format!("{v:019}"));
                }
                out.truncate(self.length);
            }
            HashFormat::Preserve => unreachable!("handled in apply"),
        }
        out
    }
}

/// Character classes `preserve` permutes within.
#[derive(Clone, Copy)]
enum Class {
    Digit,
    /// The first digit of a number: 1 to 9.
    Lead,
    Lower,
    Upper,
}

impl Class {
    fn of(c: char) -> Option<(Class, u128)> {
        match c {
            '0'..='9' => Some((Class::Digit, u128::from(c as u32 - '0' as u32))),
            'a'..='z' => Some((Class::Lower, u128::from(c as u32 - 'a' as u32))),
            'A'..='Z' => Some((Class::Upper, u128::from(c as u32 - 'A' as u32))),
            // Letters and digits outside ASCII are replaced inside their case; the permutation is
            // then no longer injective for them, which the README says.
            c if c.is_numeric() => Some((Class::Digit, u128::from(c as u32 % 10))),
            c if c.is_uppercase() => Some((Class::Upper, u128::from(c as u32 % 26))),
            c if c.is_alphanumeric() => Some((Class::Lower, u128::from(c as u32 % 26))),
            _ => None,
        }
    }

    fn radix(self) -> u128 {
        match self {
            Class::Digit => 10,
            Class::Lead => 9,
            Class::Lower | Class::Upper => 26,
        }
    }

    fn char(self, d: u128) -> char {
        let d = d as u8;
        (match self {
            Class::Digit => b'0' + d,
            Class::Lead => b'1' + d,
            Class::Lower => b'a' + d,
            Class::Upper => b'A' + d,
        }) as char
    }
}

const ROUNDS: u8 = 8;
/// Largest mixed-radix block permuted at once; longer values are cut into blocks of at most this.
const BLOCK_LIMIT: u128 = 1 << 100;

/// One block of positions: a mixed-radix number split into halves A and B.
struct Block<'a> {
    radices: &'a [u128],
    split: usize,
    /// Round key: HMAC of the layout (classes and separators) and the block number, so values of
    /// another shape get an unrelated permutation.
    key: SipKey,
}

impl Block<'_> {
    fn modulus(r: &[u128]) -> u128 {
        r.iter().product()
    }

    fn to_num(digits: &[u128], radices: &[u128]) -> u128 {
        digits
            .iter()
            .zip(radices)
            .fold(0u128, |acc, (d, r)| acc * r + d)
    }

    fn from_num(v: u128, radices: &[u128], out: &mut [u128]) {
        // Most blocks fit in 64 bits, where division is several times cheaper.
        if let Ok(mut v) = u64::try_from(v) {
            for (slot, r) in out.iter_mut().zip(radices).rev() {
                let r = *r as u64;
                *slot = u128::from(v % r);
                v /= r;
            }
            return;
        }
        let mut v = v;
        for (slot, r) in out.iter_mut().zip(radices).rev() {
            *slot = v % r;
            v /= r;
        }
    }

    fn round(&self, round: u8, other: u128, modulus: u128) -> u128 {
        let lo = self.key.hash_18(round, 0, other);
        if modulus <= 1 << 60 {
            return u128::from(lo % modulus as u64);
        }
        let hi = self.key.hash_18(round, 1, other);
        ((u128::from(hi) << 64) | u128::from(lo)) % modulus
    }

    /// The keyed permutation P or its inverse on (a, b), halves of moduli `na` and `nb`.
    fn feistel(
        &self,
        (mut a, mut b): (u128, u128),
        na: u128,
        nb: u128,
        inverse: bool,
    ) -> (u128, u128) {
        for i in 0..ROUNDS {
            let r = if inverse { ROUNDS - 1 - i } else { i };
            if r % 2 == 0 {
                let f = self.round(r, b, na);
                a = if inverse {
                    sub_mod(a, f, na)
                } else {
                    add_mod(a, f, na)
                };
            } else {
                let f = self.round(r, a, nb);
                b = if inverse {
                    sub_mod(b, f, nb)
                } else {
                    add_mod(b, f, nb)
                };
            }
        }
        (a, b)
    }

    /// Q = P⁻¹ ∘ (+1 mod N) ∘ P: a permutation made of a single N-cycle, so no value maps to itself.
    fn cycle(&self, digits: &mut [u128]) {
        let (ra, rb) = self.radices.split_at(self.split);
        let (na, nb) = (Self::modulus(ra), Self::modulus(rb));
        let (a, b) = self.feistel(
            (
                Self::to_num(&digits[..self.split], ra),
                Self::to_num(&digits[self.split..], rb),
            ),
            na,
            nb,
            false,
        );
        // Add one to the combined number a·nb + b, carrying from b into a.
        let (a, b) = if b + 1 < nb {
            (a, b + 1)
        } else {
            ((a + 1) % na, 0)
        };
        let (a, b) = self.feistel((a, b), na, nb, true);
        let (da, db) = digits.split_at_mut(self.split);
        Self::from_num(a, ra, da);
        Self::from_num(b, rb, db);
    }
}

/// Whether a value is written as a plain number: `[+-]digits[.digits][e[+-]digits]`.
fn is_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Which characters `preserve` permutes, in order: every letter and digit; in a plain number the
/// digits of the mantissa only, with its leading zeros kept and its first other digit drawn from
/// 1–9 ([`Class::Lead`]). Numbers so map to numbers of the same sign, digits and leading zeros: an
/// id never gains a leading zero that an integer column would drop (`0123` read as `123`, another
/// id's image). Values that are not plain numbers keep their own layouts, so the two never meet.
struct Classifier {
    number: bool,
    lead_pending: bool,
    fraction: bool,
    exponent: bool,
}

impl Classifier {
    fn new(number: bool) -> Self {
        Classifier {
            number,
            lead_pending: true,
            fraction: false,
            exponent: false,
        }
    }

    fn class(&mut self, c: char) -> Option<(Class, u128)> {
        if !self.number {
            return Class::of(c);
        }
        match c {
            _ if self.exponent => None,
            'e' | 'E' => {
                self.exponent = true;
                None
            }
            '.' => {
                self.fraction = true;
                None
            }
            '0' if self.lead_pending && !self.fraction => None,
            '1'..='9' if self.lead_pending && !self.fraction => {
                self.lead_pending = false;
                Some((Class::Lead, u128::from(c as u32 - '1' as u32)))
            }
            '0'..='9' => Some((Class::Digit, u128::from(c as u32 - '0' as u32))),
            _ => None,
        }
    }
}

/// Per-thread working memory of `preserve`: the digit buffers of the value being permuted and the
/// round keys already derived, so a value costs no allocation but its output and, for a layout
/// already seen, no HMAC.
#[derive(Default)]
struct Scratch {
    classes: Vec<Class>,
    digits: Vec<u128>,
    radices: Vec<u128>,
    layout: Vec<u8>,
    /// Most recently used round keys first, (transform, block, layout): a column's values mostly
    /// share a few layouts, found here without hashing or allocating.
    recent: Vec<(u64, u32, Vec<u8>, SipKey)>,
    /// Every round key derived, by transform id, block number and layout. Bounded.
    all: std::collections::HashMap<Vec<u8>, SipKey>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

const RECENT_ROUND_KEYS: usize = 8;
/// Positions the digit buffers keep between values: a rare long value must not hold its buffers
/// for the rest of the run.
const SCRATCH_KEEP: usize = 256;
const ROUND_KEY_CACHE: usize = 4096;

impl Scratch {
    fn round_key(&mut self, prf: &Prf, id: u64, block_no: u32) -> SipKey {
        let layout = &self.layout;
        if let Some(i) = self
            .recent
            .iter()
            .position(|(i, b, l, _)| *i == id && *b == block_no && l == layout)
        {
            self.recent[..=i].rotate_right(1);
            return self.recent[0].3;
        }
        let mut cache_key = Vec::with_capacity(12 + layout.len());
        cache_key.extend_from_slice(&id.to_le_bytes());
        cache_key.extend_from_slice(&block_no.to_le_bytes());
        cache_key.extend_from_slice(layout);
        let key = match self.all.get(&cache_key) {
            Some(k) => *k,
            None => {
                let k = SipKey::from_digest(&prf.digest_parts(&[layout, &block_no.to_be_bytes()]));
                if self.all.len() >= ROUND_KEY_CACHE {
                    self.all.clear();
                }
                self.all.insert(cache_key, k);
                k
            }
        };
        // Long layouts (rare long values) are not kept twice.
        if layout.len() <= SCRATCH_KEEP {
            if self.recent.len() == RECENT_ROUND_KEYS {
                self.recent.pop();
            }
            self.recent.insert(0, (id, block_no, layout.clone(), key));
        }
        key
    }
}

/// (a + b) mod n for a, b < n, without a division.
fn add_mod(a: u128, b: u128, n: u128) -> u128 {
    let s = a + b;
    if s >= n {
        s - n
    } else {
        s
    }
}

/// (a - b) mod n for a, b < n.
fn sub_mod(a: u128, b: u128, n: u128) -> u128 {
    if a >= b {
        a - b
    } else {
        a + n - b
    }
}

/// Format-preserving keyed pseudonym of `input`.
pub fn preserve(prf: &Prf, id: u64, input: &str) -> String {
    SCRATCH.with(|s| preserve_with(&mut s.borrow_mut(), prf, id, input))
}

fn preserve_with(s: &mut Scratch, prf: &Prf, id: u64, input: &str) -> String {
    let out = permute(s, prf, id, input, is_number(input));
    if s.layout.capacity() > SCRATCH_KEEP {
        s.classes.clear();
        s.digits.clear();
        s.radices.clear();
        s.layout.clear();
        s.classes.shrink_to(SCRATCH_KEEP);
        s.digits.shrink_to(SCRATCH_KEEP);
        s.radices.shrink_to(SCRATCH_KEEP);
        s.layout.shrink_to(SCRATCH_KEEP);
    }
    out
}

fn permute(s: &mut Scratch, prf: &Prf, id: u64, input: &str, numbers: bool) -> String {
    s.classes.clear();
    s.digits.clear();
    s.radices.clear();
    s.layout.clear();
    let mut classifier = Classifier::new(numbers);
    for c in input.chars() {
        match classifier.class(c) {
            Some((class, d)) => {
                s.classes.push(class);
                s.digits.push(d);
                s.radices.push(class.radix());
                s.layout.push(match class {
                    Class::Digit => b'9',
                    Class::Lead => b'1',
                    Class::Lower => b'a',
                    Class::Upper => b'A',
                });
            }
            None => s
                .layout
                .extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
        }
    }
    let mut start = 0;
    let mut block_no = 0u32;
    while start < s.radices.len() {
        let mut end = start;
        let mut n: u128 = 1;
        while end < s.radices.len() && n * s.radices[end] <= BLOCK_LIMIT {
            n *= s.radices[end];
            end += 1;
        }
        let len = end - start;
        let key = s.round_key(prf, id, block_no);
        let block = Block {
            radices: &s.radices[start..end],
            // A lone position is its own half A; B is empty (modulus 1).
            split: len.div_ceil(2),
            key,
        };
        block.cycle(&mut s.digits[start..end]);
        start = end;
        block_no += 1;
    }
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut classifier = Classifier::new(numbers);
    for c in input.chars() {
        if classifier.class(c).is_some() {
            out.push(s.classes[i].char(s.digits[i]));
            i += 1;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::seed::tests::key;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn hash(format: HashFormat, length: usize) -> Hash {
        Hash::new(key("a").domain("hash"), format, length)
    }

    #[test]
    fn formats_have_their_alphabet_and_length() {
        let h = hash(HashFormat::Hex, 12).apply("123-45-6789");
        assert_eq!(h.len(), 12);
        assert!(h
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let b = hash(HashFormat::Base32, 33).apply("x");
        assert_eq!(b.len(), 33);
        assert!(b.bytes().all(|c| BASE32.contains(&c)));
        let d = hash(HashFormat::Digits, 40).apply("x");
        assert_eq!(d.len(), 40);
        assert!(d.chars().all(|c| c.is_ascii_digit()));
        let long = hash(HashFormat::Hex, 128).apply("x");
        assert_eq!(long.len(), 128);
    }

    #[test]
    fn preserve_keeps_shape() {
        let p = hash(HashFormat::Preserve, 0);
        let out = p.apply("AB-123-xyz é!");
        assert_eq!(out.chars().count(), "AB-123-xyz é!".chars().count());
        let shape = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '0'..='9' => '9',
                    'a'..='z' | 'é' => 'a',
                    'A'..='Z' => 'A',
                    o => o,
                })
                .collect::<String>()
        };
        assert_eq!(shape(&out), shape("AB-123-xyz é!"));
        assert_eq!(p.apply("---"), "---");
        assert_eq!(p.apply(""), "");
    }

    #[test]
    fn preserve_is_a_derangement_on_a_small_domain() {
        // All 1000 three-digit strings: a permutation with no fixed point but 000 (a number of
        // zeros only, which has nothing to permute).
        let p = hash(HashFormat::Preserve, 0);
        let mut seen = HashSet::new();
        for i in 0..1000 {
            let s = format!("{i:03}");
            let out = p.apply(&s);
            assert_eq!(out == s, i == 0, "{s}");
            assert!(seen.insert(out));
        }
        // Single position: still never itself, but 0.
        for c in '0'..='9' {
            assert_eq!(p.apply(&c.to_string()) == c.to_string(), c == '0');
        }
        for c in 'a'..='z' {
            assert_ne!(p.apply(&c.to_string()), c.to_string());
        }
    }

    #[test]
    fn preserve_handles_values_longer_than_one_block() {
        let p = hash(HashFormat::Preserve, 0);
        let input = "12345678901234567890123456789012345678901234567890abcdefghijklmnopqrstuvwxyz";
        let out = p.apply(input);
        assert_eq!(out.len(), input.len());
        assert_ne!(&out[..30], &input[..30]);
        assert_ne!(&out[50..], &input[50..]);
    }

    #[test]
    fn a_long_value_does_not_keep_its_buffers() {
        let p = hash(HashFormat::Preserve, 0);
        let long = "7".repeat(100_000);
        assert_eq!(p.apply(&long).len(), long.len());
        SCRATCH.with(|s| {
            let s = s.borrow();
            assert!(
                s.digits.capacity() <= 4 * SCRATCH_KEEP && s.layout.capacity() <= 4 * SCRATCH_KEEP
            );
            assert!(s.recent.iter().all(|r| r.2.len() <= SCRATCH_KEEP));
        });
    }

    #[test]
    fn preserve_on_numbers_permutes_canonical_numbers_of_every_id_up_to_a_million() {
        let p = hash(HashFormat::Preserve, 0);
        let mut seen = vec![false; 10_000_000];
        for i in 1..=1_000_000u32 {
            let input = i.to_string();
            let out = p.apply(&input);
            // Canonical (no leading zero), the same number of digits, so the cast keeps it.
            assert_eq!(out.len(), input.len(), "{input}");
            assert!(!out.starts_with('0'), "{input} -> {out}");
            let n: usize = out.parse().unwrap();
            assert!(!seen[n], "{input} collides");
            seen[n] = true;
        }
        // Sign, point, leading zeros and an exponent stay.
        for (input, shape) in [
            ("-4711", "-dddd"),
            ("0.05", "0.dd"),
            ("-0.5", "-0.d"),
            ("123.450", "ddd.ddd"),
            ("1.5e+20", "d.de+20"),
            ("0", "0"),
            ("007", "00d"),
            ("02134", "0dddd"),
        ] {
            let out = p.apply(input);
            let got: String = out
                .chars()
                .zip(shape.chars())
                .map(|(o, s)| {
                    if s == 'd' && o.is_ascii_digit() {
                        'd'
                    } else {
                        o
                    }
                })
                .collect();
            assert_eq!(
                (got.as_str(), out.len()),
                (shape, input.len()),
                "{input} -> {out}"
            );
            // The first digit after the sign and the leading zeros is not a zero.
            let lead = |v: &str| v.trim_start_matches(['-', '0']).chars().next();
            assert_ne!(lead(&out), Some('0'), "{input} -> {out}");
        }
        // Every 4-character string of digits, with or without leading zeros, and the non-numbers
        // of the same length: still one-to-one.
        let all: Vec<String> = (0..10_000)
            .map(|i| format!("{i:04}"))
            .chain((0..1000).map(|i| format!("{i:03}x")))
            .collect();
        let outs: HashSet<String> = all.iter().map(|v| p.apply(v)).collect();
        assert_eq!(outs.len(), all.len());
        assert!(!is_number("1.") && !is_number("-") && !is_number("1e") && !is_number("NaN"));
        assert!(is_number("+1.5E-3") && is_number("-0"));
    }

    #[test]
    fn preserve_within_an_integer_type_stays_in_its_range() {
        // smallint: every value from 10000 to 32767 (and their negatives down to -32768) maps to
        // a distinct value the column holds, never itself.
        let p = hash(HashFormat::Preserve, 0).within_integer(32767);
        let mut seen = HashSet::new();
        for i in (10_000..=32_767i64).chain(-32_768..=-10_000) {
            let out = p.apply(&i.to_string());
            let v: i64 = out.parse().unwrap();
            assert!((-32_768..=32_767).contains(&v), "{i} -> {v}");
            assert_ne!(v, i);
            assert!(seen.insert(v), "{i} collides");
        }
        // Below the top digit count nothing changes.
        assert_eq!(p.apply("4711"), hash(HashFormat::Preserve, 0).apply("4711"));
        let big = hash(HashFormat::Preserve, 0).within_integer(i64::MAX as u128);
        for i in 0..2000u64 {
            let v = 9_200_000_000_000_000_000u64 + i * 1_000_000_007;
            let out: u128 = big.apply(&v.to_string()).parse().unwrap();
            assert!(out <= i64::MAX as u128, "{v} -> {out}");
        }
    }

    #[test]
    fn preserve_is_injective_on_100k_ids() {
        let p = hash(HashFormat::Preserve, 0);
        let outs: HashSet<String> = (0..100_000)
            .map(|i| p.apply(&format!("ID-{i:08}")))
            .collect();
        assert_eq!(outs.len(), 100_000);
    }

    proptest! {
        #[test]
        fn deterministic_key_sensitive_and_never_the_input(s in "\\PC{1,40}", length in 1usize..=MAX_LENGTH) {
            for format in [HashFormat::Hex, HashFormat::Base32, HashFormat::Digits, HashFormat::Preserve] {
                let length = if format == HashFormat::Preserve { 0 } else { length };
                let a = Hash::new(key("a").domain("h"), format, length);
                // Another instance built from the same key: what another run or thread builds.
                let again = Hash::new(key("a").domain("h"), format, length);
                let b = Hash::new(key("b").domain("h"), format, length);
                let out = a.apply(&s);
                prop_assert_eq!(&out, &again.apply(&s));
                prop_assert!(out.is_ascii() || format == HashFormat::Preserve);
                match format {
                    HashFormat::Preserve => prop_assert_eq!(out.chars().count(), s.chars().count()),
                    _ => prop_assert_eq!(out.len(), length),
                }
                // Preserve keeps what it does not permute (separators, a number's sign, point,
                // exponent and leading zeros: `-00.0e5` has one digit to permute, `0` none), and a
                // value with nothing to permute has nothing to hide; a short hash may equal a short
                // input by chance, so only long outputs count.
                let mut classifier = Classifier::new(is_number(&s));
                let permuted = s.chars().filter(|&c| classifier.class(c).is_some()).count();
                if (format == HashFormat::Preserve && permuted > 0)
                    || (format != HashFormat::Preserve && length >= 8)
                {
                    prop_assert_ne!(&out, &s);
                }
                if (format == HashFormat::Preserve && permuted >= 6)
                    || (format != HashFormat::Preserve && length >= 8)
                {
                    prop_assert_ne!(&out, &b.apply(&s));
                }
            }
        }
    }
}
