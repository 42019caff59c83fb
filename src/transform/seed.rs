//! Keyed seeding: the only source of "randomness" in the whole tool.
//!
//! Every synthetic value is derived from HMAC-SHA256(secret key, domain ‖ input), so the same input in
//! the same consistency domain gives the same output on every run, in every table, and another key gives
//! unrelated output. The keyed HMAC state is built once per domain and cloned per cell, so a cell costs
//! two SHA-256 compressions for short inputs, not a key schedule. This module must not read clocks,
//! the OS entropy pool or anything else that varies between runs.

use std::convert::Infallible;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret key accepted, in bytes: a shorter key can be brute-forced from known pseudonyms.
pub const MIN_KEY_LEN: usize = 16;

/// The secret key with its HMAC state absorbed. Never printed.
#[derive(Clone)]
pub struct SecretKey {
    mac: HmacSha256,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Why a key was refused. The key itself is never part of the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the secret key is {len} bytes long; at least {MIN_KEY_LEN} bytes are required")]
    TooShort { len: usize },
    #[error("the secret key is only whitespace; use a random string (openssl rand -hex 32)")]
    Blank,
    #[error("the secret key has only {distinct} distinct byte values; at least {MIN_KEY_DISTINCT} are required (use a random string: openssl rand -hex 32)")]
    Repetitive { distinct: usize },
}

/// Fewest distinct byte values a key may have: a key of one repeated character is no secret.
pub const MIN_KEY_DISTINCT: usize = 8;

impl SecretKey {
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: key.len() });
        }
        if key.iter().all(u8::is_ascii_whitespace) {
            return Err(KeyError::Blank);
        }
        let mut seen = [false; 256];
        for b in key {
            seen[usize::from(*b)] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct < MIN_KEY_DISTINCT {
            return Err(KeyError::Repetitive { distinct });
        }
        let mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
        Ok(SecretKey { mac })
    }

    /// The PRF of one consistency domain: HMAC under a per-domain key derived as
    /// HMAC(key, "domain" ‖ len ‖ domain). Deriving the key once keeps the per-cell HMAC at two
    /// SHA-256 compressions for short values, however long the domain name is.
    pub fn domain(&self, domain: &str) -> Prf {
        let mut mac = self.mac.clone();
        mac.update(b"domain");
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain.as_bytes());
        let derived: [u8; 32] = mac.finalize().into_bytes().into();
        Prf::from_key(&derived)
    }
}

/// A keyed pseudo-random function bound to one domain: HMAC-SHA256 under the domain's derived key.
/// `Copy`, `Send + Sync`. HMAC is computed directly on the SHA-256 compression function from the two
/// precomputed pad states, so a short input costs exactly two compressions and no buffer handling
/// (the `hmac` crate computes the same bytes; a test checks it).
#[derive(Clone, Copy)]
pub struct Prf {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl fmt::Debug for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prf(<keyed>)")
    }
}

const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[(*block).into()]);
}

/// Finish a SHA-256 whose state has absorbed `prefix_len` bytes (whole blocks) and now takes `msg`.
fn finish(mut state: [u32; 8], prefix_len: usize, msg: &[u8]) -> [u8; 32] {
    let mut chunks = msg.chunks_exact(64);
    for block in &mut chunks {
        compress(&mut state, block.try_into().expect("64 bytes"));
    }
    let rest = chunks.remainder();
    let mut block = [0u8; 64];
    block[..rest.len()].copy_from_slice(rest);
    block[rest.len()] = 0x80;
    let bits = ((prefix_len + msg.len()) as u64) * 8;
    if rest.len() >= 56 {
        compress(&mut state, &block);
        block = [0u8; 64];
    }
    block[56..].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &block);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

impl Prf {
    /// The PRF keyed with `key` (32 bytes from the domain derivation).
    fn from_key(key: &[u8; 32]) -> Self {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let (mut inner, mut outer) = (SHA256_IV, SHA256_IV);
        compress(&mut inner, &ipad);
        compress(&mut outer, &opad);
        Prf { inner, outer }
    }

    /// 32 pseudo-random bytes for `input`: HMAC-SHA256(domain key, input).
    pub fn digest(&self, input: &[u8]) -> [u8; 32] {
        let inner = finish(self.inner, 64, input);
        finish(self.outer, 64, &inner)
    }

    /// 32 pseudo-random bytes for several input parts, each length-prefixed.
    pub fn digest_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut msg = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
        for part in parts {
            msg.extend_from_slice(&(part.len() as u64).to_be_bytes());
            msg.extend_from_slice(part);
        }
        self.digest(&msg)
    }

    /// A deterministic random stream for `input`.
    pub fn rng(&self, input: &[u8]) -> KeyedRng {
        KeyedRng::from_seed(self.digest(input))
    }

    /// `n` pseudo-random bytes for `input` (HMAC in counter mode beyond 32 bytes).
    pub fn expand(&self, input: &[u8], n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut counter = 0u32;
        while out.len() < n {
            let block = self.digest_parts(&[input, &counter.to_be_bytes()]);
            let take = (n - out.len()).min(block.len());
            out.extend_from_slice(&block[..take]);
            counter += 1;
        }
        out
    }
}

/// SipHash-2-4 under a key derived from the PRF: a fast keyed function for inner loops (the rounds
/// of the format-preserving permutation), where one HMAC per call would dominate the run time.
#[derive(Clone, Copy)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    pub fn from_digest(d: &[u8; 32]) -> Self {
        SipKey {
            k0: u64::from_le_bytes(d[..8].try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(d[8..16].try_into().expect("8 bytes")),
        }
    }

    pub fn hash(&self, m: &[u8]) -> u64 {
        let mut chunks = m.chunks_exact(8);
        let words = (&mut chunks).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        let mut v = self.absorb(words);
        let rest = chunks.remainder();
        let mut last = (m.len() as u64 & 0xff) << 56;
        for (i, b) in rest.iter().enumerate() {
            last |= u64::from(*b) << (8 * i);
        }
        Self::finish(&mut v, last)
    }

    /// The hash of the 18-byte message `[a, b, x as 16 little-endian bytes]`, the shape of a
    /// Feistel round's input, without building it: the same value as `hash` on those bytes.
    #[inline]
    pub fn hash_18(&self, a: u8, b: u8, x: u128) -> u64 {
        let w0 = u64::from(a) | u64::from(b) << 8 | (x as u64) << 16;
        let w1 = (x >> 48) as u64;
        let last = (18u64 << 56) | (x >> 112) as u64;
        let mut v = self.absorb([w0, w1]);
        Self::finish(&mut v, last)
    }

    #[inline]
    fn absorb(&self, words: impl IntoIterator<Item = u64>) -> [u64; 4] {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        for w in words {
            v[3] ^= w;
            sip_round(&mut v);
            sip_round(&mut v);
            v[0] ^= w;
        }
        v
    }

    #[inline]
    fn finish(v: &mut [u64; 4], last: u64) -> u64 {
        v[3] ^= last;
        sip_round(v);
        sip_round(v);
        v[0] ^= last;
        v[2] ^= 0xff;
        for _ in 0..4 {
            sip_round(v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// xoshiro256** seeded from a PRF digest. Not cryptographic by itself: its seed is, and it only
/// draws the handful of choices one synthetic value needs. Its algorithm is fixed here so outputs
/// cannot change when a dependency changes its default generator.
#[derive(Clone)]
pub struct KeyedRng {
    s: [u64; 4],
}

impl KeyedRng {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (i, word) in s.iter_mut().enumerate() {
            *word = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        if s == [0; 4] {
            s[0] = 0x9E37_79B9_7F4A_7C15;
        }
        KeyedRng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0), by rejection so small ranges are unbiased.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl rand_core::TryRng for KeyedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(s: &str) -> SecretKey {
        SecretKey::new(format!("test-key-{s}-0123456789").as_bytes()).unwrap()
    }

    #[test]
    fn short_keys_are_refused_without_echoing_them() {
        let err = SecretKey::new(b"demo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the secret key is 4 bytes long; at least 16 bytes are required"
        );
        assert!(SecretKey::new(b"0123456701234567").is_ok());
        assert_eq!(
            SecretKey::new(&[b' '; 20]).unwrap_err().to_string(),
            "the secret key is only whitespace; use a random string (openssl rand -hex 32)"
        );
        assert_eq!(
            SecretKey::new(b" \t\n \t\n \t\n \t\n \t\n \r").unwrap_err(),
            KeyError::Blank
        );
        assert_eq!(
            SecretKey::new(&[7u8; 16]).unwrap_err().to_string(),
            "the secret key has only 1 distinct byte values; at least 8 are required (use a random string: openssl rand -hex 32)"
        );
        assert_eq!(
            SecretKey::new(b"abababababababababab").unwrap_err(),
            KeyError::Repetitive { distinct: 2 }
        );
    }

    #[test]
    fn digests_depend_on_key_domain_and_input() {
        let a = key("a").domain("d1").digest(b"x");
        assert_eq!(a, key("a").domain("d1").digest(b"x"));
        assert_ne!(a, key("b").domain("d1").digest(b"x"));
        assert_ne!(a, key("a").domain("d2").digest(b"x"));
        assert_ne!(a, key("a").domain("d1").digest(b"y"));
        // Length prefixing: moving a byte across the domain/input boundary changes the output.
        assert_ne!(
            key("a").domain("ab").digest(b"c"),
            key("a").domain("a").digest(b"bc")
        );
    }

    #[test]
    fn the_direct_hmac_is_hmac_sha256() {
        let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let prf = Prf::from_key(&key);
        // Every padding case: empty, short, 55/56/63/64 bytes at the block edges, several blocks.
        for len in [0usize, 1, 31, 55, 56, 57, 63, 64, 65, 119, 120, 200] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let mut reference = HmacSha256::new_from_slice(&key).unwrap();
            reference.update(&msg);
            let want: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(prf.digest(&msg), want, "length {len}");
        }
    }

    #[test]
    fn expand_is_a_prefix_stable_stream() {
        let prf = key("a").domain("d");
        let long = prf.expand(b"v", 80);
        assert_eq!(long.len(), 80);
        assert_eq!(&prf.expand(b"v", 40)[..], &long[..40]);
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // Key 00..0f, messages 00..(n-1): the first vectors of the SipHash paper's test suite.
        let key: Vec<u8> = (0u8..32).collect();
        let k = SipKey::from_digest(&key.try_into().unwrap());
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(k.hash(&msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(k.hash(&msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(k.hash(&msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(k.hash(&msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn the_feistel_shaped_siphash_is_siphash() {
        let k = SipKey::from_digest(&[9u8; 32]);
        for (a, b, x) in [
            (0u8, 0u8, 0u128),
            (7, 1, 123_456_789),
            (3, 0, u128::MAX),
            (255, 1, 1 << 100),
        ] {
            let mut m = [0u8; 18];
            m[0] = a;
            m[1] = b;
            m[2..].copy_from_slice(&x.to_le_bytes());
            assert_eq!(k.hash_18(a, b, x), k.hash(&m));
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = key("a").domain("d").rng(b"v");
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..100 {
                assert!(rng.below(n) < n);
            }
        }
        let u = rng.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
