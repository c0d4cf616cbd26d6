//! Tags, branches and SDP session ids. The core reads no clock and no OS entropy: the
//! generator is seeded by its owner (the runtime seeds it from the OS at start, tests
//! with a constant), so a test run is reproducible.

/// SplitMix64: small, fast, and good enough for identifiers that must be unique and
/// unguessable only to the degree RFC 3261 §19.3 asks (globally unique, 32 bits of
/// randomness for tags).
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        IdGenerator { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A From/To tag (RFC 3261 §19.3): 64 random bits in hex.
    pub fn tag(&mut self) -> String {
        let mut out = Vec::with_capacity(16);
        sip_message::ascii::push_hex64(&mut out, self.next_u64());
        String::from_utf8(out).unwrap_or_default()
    }

    /// A branch with the RFC 3261 §8.1.1.7 magic cookie.
    pub fn branch(&mut self) -> String {
        let mut out = Vec::with_capacity(23);
        self.push_branch(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`branch`](Self::branch), written at the end of `out`.
    pub fn push_branch(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"z9hG4bK");
        sip_message::ascii::push_hex64(out, self.next_u64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids = IdGenerator::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let b = ids.branch();
            assert!(b.starts_with("z9hG4bK"));
            assert_eq!(b.len(), 7 + 16);
            assert!(seen.insert(b));
        }
        assert_ne!(ids.tag(), ids.tag());
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (IdGenerator::new(1), IdGenerator::new(1));
        assert_eq!(a.tag(), b.tag());
        assert_ne!(IdGenerator::new(1).tag(), IdGenerator::new(2).tag());
    }
}
