//! ITU-T G.711 pulse code modulation: µ-law (PCMU) and A-law (PCMA).
//!
//! Samples are 16-bit linear PCM. G.711 itself works on 14-bit (µ-law) and 13-bit (A-law)
//! uniform codes; the 16-bit value is that code scaled by 4 (µ-law) or 8 (A-law), so the
//! decoded values are the segment mid-points of G.711 Tables 1a/1b (A-law) and 2a/2b
//! (µ-law) times 4 or 8: µ-law decodes to ±32 124…0, A-law to ±32 256…±8.
//!
//! Encoding follows the classic CCITT/Sun `g711.c` on 16-bit input: the magnitude of the
//! sample (sign-magnitude, so `encode(-x)` is `encode(x)` with the sign bit flipped) is
//! quantised by truncation against the G.711 decision values, and values beyond the last
//! decision value clip to the largest code. Decoding is a 256-entry table built at compile
//! time; encoding finds the segment from the position of the leading one (no table, no
//! allocation).

/// One of the two G.711 laws, as named in an SDP `rtpmap` (RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, RTP payload type 0 (RFC 3551 §6).
    Pcmu,
    /// A-law, RTP payload type 8 (RFC 3551 §6).
    Pcma,
}

impl G711 {
    /// The law for an `rtpmap` encoding name: "PCMU" or "PCMA", case-insensitive
    /// (RFC 4566 §6 / RFC 3551 §6: encoding names are case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(G711::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(G711::Pcma)
        } else {
            None
        }
    }

    /// The static RTP payload type: 0 for PCMU, 8 for PCMA (RFC 3551 §6, Table 4).
    pub fn payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// The encoding name as it appears in an `rtpmap` ("PCMU" / "PCMA").
    pub fn name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// Encodes `samples`, appending one byte per sample to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len());
        match self {
            G711::Pcmu => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            G711::Pcma => out.extend(samples.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Decodes `payload`, appending one sample per byte to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        out.reserve(payload.len());
        match self {
            G711::Pcmu => out.extend(payload.iter().map(|&c| ulaw_decode(c))),
            G711::Pcma => out.extend(payload.iter().map(|&c| alaw_decode(c))),
        }
    }

    /// The code of a silent sample: 0xFF for µ-law (positive zero), 0xD5 for A-law (the
    /// smallest positive level, +8).
    pub fn silence(self) -> u8 {
        match self {
            G711::Pcmu => 0xFF,
            G711::Pcma => 0xD5,
        }
    }

    /// Encodes one sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            G711::Pcmu => ulaw_encode(sample),
            G711::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one code.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            G711::Pcmu => ulaw_decode(code),
            G711::Pcma => alaw_decode(code),
        }
    }

    /// The code in law `to` for each code of this law: decoded, then encoded again (a
    /// µ-law ↔ A-law conversion, as ITU-T G.711 Tables 3 and 4 tabulate it, up to the
    /// rounding of this encoder). A relay between a leg that negotiated PCMU and one that
    /// negotiated PCMA maps each payload octet through it; both laws run at 8 kHz with one
    /// octet per sample, so timestamps and lengths stay.
    pub fn translation_to(self, to: G711) -> [u8; 256] {
        let mut table = [0u8; 256];
        for (code, out) in (0u8..=255).zip(table.iter_mut()) {
            *out = to.encode_sample(self.decode_sample(code));
        }
        table
    }
}

/// µ-law bias (33 in 14-bit units, 132 on the 16-bit scale): adding it puts every
/// magnitude's leading one at the bit that names its segment.
const ULAW_BIAS: u32 = 0x84;

/// The µ-law decoder output for `code` (G.711 Tables 2a/2b, scaled by 4).
const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS as i32) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (ULAW_BIAS as i32 - t) as i16
    } else {
        (t - ULAW_BIAS as i32) as i16
    }
}

/// The A-law decoder output for `code` (G.711 Tables 1a/1b, scaled by 8).
const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    if seg == 0 {
        t += 8;
    } else {
        t = (t + 0x108) << (seg - 1);
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

// Only evaluated at compile time (for the statics below): an index out of range would be a
// compile error, never a run-time panic.
#[allow(clippy::indexing_slicing)]
const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        table[code] = if alaw {
            alaw_expand(code as u8)
        } else {
            ulaw_expand(code as u8)
        };
        code += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Decodes one µ-law code to 16-bit linear PCM (G.711 Tables 2a/2b).
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    // A u8 always indexes a 256-entry table.
    ULAW_TABLE.get(usize::from(code)).copied().unwrap_or(0)
}

/// Decodes one A-law code to 16-bit linear PCM (G.711 Tables 1a/1b).
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE.get(usize::from(code)).copied().unwrap_or(0)
}

/// Number of significant bits of a non-zero value.
#[inline]
fn bit_length(value: u32) -> u32 {
    u32::BITS - value.leading_zeros()
}

/// Encodes one 16-bit linear sample as µ-law (G.711 §2, Tables 2a/2b).
///
/// The magnitude plus the bias of 132 is clipped to 15 bits; the segment is the position of
/// its leading one (bit 7 for segment 0 … bit 14 for segment 7), the four bits below it are
/// the quantisation step, and the code is transmitted inverted.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let magnitude = u32::from(sample.unsigned_abs());
    let biased = (magnitude + ULAW_BIAS).min(0x7FFF);
    let segment = bit_length(biased) - 8; // biased ≥ 132, so bit_length ≥ 8
    let quant = (biased >> (segment + 3)) & 0x0F;
    let code = ((segment << 4) | quant) as u8;
    if sample < 0 { code ^ 0x7F } else { code ^ 0xFF }
}

/// Encodes one 16-bit linear sample as A-law (G.711 §2, Tables 1a/1b).
///
/// The magnitude is clipped to 15 bits; segments 0 and 1 share the quantisation step of 16
/// (on the 16-bit scale), each later segment doubles it; even bits are inverted for
/// transmission (XOR 0x55).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let magnitude = u32::from(sample.unsigned_abs()).min(0x7FFF);
    let segment = bit_length(magnitude).saturating_sub(8);
    let shift = if segment < 2 { 4 } else { segment + 3 };
    let quant = (magnitude >> shift) & 0x0F;
    let code = ((segment << 4) | quant) as u8;
    if sample < 0 { code ^ 0x55 } else { code ^ 0xD5 }
}
