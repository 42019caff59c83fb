//! `mask = { keep_first, keep_last, char }`: hide characters, keep separators where they stand.
//!
//! ```toml
//! phone = { mask = { keep_last = 4 } }            # "+1 (415) 555-0134" -> "+* (***) ***-0134"
//! card  = { mask = { keep_first = 2, keep_last = 2, char = "#" } }
//! ```
//!
//! Only masking, no key: the output shows its shape on purpose. A value with no more maskable
//! characters than `keep_first + keep_last` is masked whole, so the output never equals a non-empty
//! input (unless it was already made only of separators and mask characters).

/// Characters kept in place: they carry shape, not identity.
pub fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '@' | '+' | '(' | ')')
}

#[derive(Debug, Clone)]
pub struct Mask {
    keep_first: usize,
    keep_last: usize,
    ch: char,
}

impl Mask {
    pub fn new(keep_first: usize, keep_last: usize, ch: char) -> Self {
        Mask {
            keep_first,
            keep_last,
            ch,
        }
    }

    pub fn apply(&self, input: &str) -> String {
        let maskable = input.chars().filter(|c| !is_separator(*c)).count();
        let (first, last) = if maskable > self.keep_first + self.keep_last {
            (self.keep_first, self.keep_last)
        } else {
            (0, 0)
        };
        let mut out = String::with_capacity(input.len());
        let mut seen = 0;
        for c in input.chars() {
            if is_separator(c) {
                out.push(c);
                continue;
            }
            if seen < first || seen >= maskable - last {
                out.push(c);
            } else {
                out.push(self.ch);
            }
            seen += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases = [
            (0, 4, '*', "+1 (415) 555-0134", "+* (***) ***-0134"),
            (2, 2, '#', "4111111111111111", "41############11"),
            (1, 0, '*', "jane.doe@mail.com", "j***.***@****.***"),
            (0, 4, '*', "1234", "****"),
            (0, 0, 'x', "", ""),
            (0, 1, '*', "Zoë", "**ë"),
        ];
        for (first, last, ch, input, want) in cases {
            assert_eq!(Mask::new(first, last, ch).apply(input), want, "{input}");
        }
    }

    proptest! {
        #[test]
        fn keeps_length_and_separators_and_hides_something(s in "[a-z0-9 .@-]{0,40}", first in 0usize..4, last in 0usize..4) {
            let out = Mask::new(first, last, '*').apply(&s);
            prop_assert_eq!(out.chars().count(), s.chars().count());
            for (a, b) in s.chars().zip(out.chars()) {
                prop_assert_eq!(is_separator(a), is_separator(b));
            }
            if s.chars().any(|c| !is_separator(c) && c != '*') {
                prop_assert_ne!(out, s);
            }
        }
    }
}
