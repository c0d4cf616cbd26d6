//! G.711 against the ITU-T tables (all 256 codes), against the classic CCITT/Sun `g711.c`
//! encoder (all 65 536 inputs), and the decision thresholds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use media::{G711, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};

// ---------------------------------------------------------------------------------------
// ITU-T G.711 (11/88), typed in. (In the Recommendation Tables 1a/1b are A-law and
// Tables 2a/2b µ-law.) Each segment is listed as the decoder output value of its first
// interval, the interval size, and its last output value; the decision values are the
// interval edges. Positive and negative tables (a/b) are the same magnitudes.
// ---------------------------------------------------------------------------------------

/// Table 2a/G.711 (µ-law), normalised to 8159: (first y_n, interval size, last y_n).
const ULAW_SEGMENTS: [(i32, i32, i32); 8] = [
    (0, 2, 30),
    (33, 4, 93),
    (99, 8, 219),
    (231, 16, 471),
    (495, 32, 975),
    (1023, 64, 1983),
    (2079, 128, 3999),
    (4191, 256, 8031),
];
/// Table 2a: the decision values x_n (first edge above the first output, per segment).
/// Segment 1's first interval is [0, 1) (output 0); the overload point is 8159.
const ULAW_FIRST_DECISION: [i32; 8] = [1, 31, 95, 223, 479, 991, 2015, 4063];
const ULAW_OVERLOAD: i32 = 8159;

/// Table 1a/G.711 (A-law), normalised to 4096: (first y_n, interval size, last y_n).
const ALAW_SEGMENTS: [(i32, i32, i32); 8] = [
    (1, 2, 31),
    (33, 2, 63),
    (66, 4, 126),
    (132, 8, 252),
    (264, 16, 504),
    (528, 32, 1008),
    (1056, 64, 2016),
    (2112, 128, 4032),
];
/// Table 1a: the first decision value of each segment; the overload point is 4096.
const ALAW_FIRST_DECISION: [i32; 8] = [0, 32, 64, 128, 256, 512, 1024, 2048];
const ALAW_OVERLOAD: i32 = 4096;

/// The 128 output magnitudes of a table, in order of increasing magnitude.
fn outputs(segments: &[(i32, i32, i32); 8]) -> Vec<i32> {
    let mut values = Vec::new();
    for &(first, step, last) in segments {
        let segment: Vec<i32> = (0..16).map(|q| first + q * step).collect();
        assert_eq!(
            *segment.last().unwrap(),
            last,
            "typed table is inconsistent"
        );
        values.extend(segment);
    }
    values
}

/// µ-law character signal (Tables 2a/2b): sign bit 1 for positive; the other seven bits
/// count down from 1111111 (smallest magnitude) to 0000000 (largest).
fn ulaw_code(positive: bool, magnitude_index: usize) -> u8 {
    let low = 0x7F - magnitude_index as u8;
    if positive { 0x80 | low } else { low }
}

/// A-law character signal (Tables 1a/1b): sign bit 1 for positive, the seven bits count up
/// from 0000000 (smallest magnitude); even bits inverted for transmission (G.711 §3).
fn alaw_code(positive: bool, magnitude_index: usize) -> u8 {
    let code = magnitude_index as u8;
    (if positive { 0x80 | code } else { code }) ^ 0x55
}

#[test]
fn ulaw_decodes_all_256_codes_to_table_2() {
    let table = outputs(&ULAW_SEGMENTS);
    let mut seen = [false; 256];
    for (index, &y) in table.iter().enumerate() {
        for positive in [true, false] {
            let code = ulaw_code(positive, index);
            let expected = if positive { 4 * y } else { -4 * y };
            assert_eq!(i32::from(ulaw_decode(code)), expected, "code {code:#04x}");
            seen[usize::from(code)] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every code covered");
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(ulaw_decode(0x80), 32124);
    assert_eq!(ulaw_decode(0xFF), 0);
    assert_eq!(ulaw_decode(0x7F), 0);
}

#[test]
fn alaw_decodes_all_256_codes_to_table_1() {
    let table = outputs(&ALAW_SEGMENTS);
    let mut seen = [false; 256];
    for (index, &y) in table.iter().enumerate() {
        for positive in [true, false] {
            let code = alaw_code(positive, index);
            let expected = if positive { 8 * y } else { -8 * y };
            assert_eq!(i32::from(alaw_decode(code)), expected, "code {code:#04x}");
            seen[usize::from(code)] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every code covered");
    assert_eq!(alaw_decode(0xD5), 8);
    assert_eq!(alaw_decode(0x55), -8);
    assert_eq!(alaw_decode(0xAA), 32256);
    assert_eq!(alaw_decode(0x2A), -32256);
}

#[test]
fn digital_milliwatt_sequences_decode_as_table_5_and_6() {
    // G.711 Table 5 (µ-law) and Table 6 (A-law): the digital milliwatt, a 1 kHz sine at
    // 0 dBm0 sampled at ±22.5° and ±67.5°.
    let ulaw = [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E];
    let decoded: Vec<i16> = ulaw.iter().map(|&c| ulaw_decode(c)).collect();
    assert_eq!(
        decoded,
        [-8828, -20860, -20860, -8828, 8828, 20860, 20860, 8828]
    );
    let alaw = [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4];
    let decoded: Vec<i16> = alaw.iter().map(|&c| alaw_decode(c)).collect();
    assert_eq!(
        decoded,
        [-8960, -20992, -20992, -8960, 8960, 20992, 20992, 8960]
    );
}

/// The 127 inner decision values x_n of a table (the edges between consecutive outputs),
/// in order: edge i separates output i from output i + 1.
fn decision_values(segments: &[(i32, i32, i32); 8], first_decision: &[i32; 8]) -> Vec<i32> {
    let mut edges: Vec<i32> = Vec::new();
    for (s, &(_, step, _)) in segments.iter().enumerate() {
        for i in 0..16 {
            let edge = first_decision[s] + i * step;
            let below_next = s + 1 == 8 || edge < first_decision[s + 1];
            if edge > 0 && below_next {
                edges.push(edge);
            }
        }
    }
    edges
}

#[test]
fn encoders_switch_codes_exactly_at_the_decision_values() {
    // µ-law: decision values on the 16-bit scale are 4·x_n; the encoder quantises the
    // magnitude by truncation, so 4·x_n − 1 is in the lower interval and 4·x_n in the upper.
    let edges = decision_values(&ULAW_SEGMENTS, &ULAW_FIRST_DECISION);
    let outputs_u = outputs(&ULAW_SEGMENTS);
    assert_eq!(edges.len(), 127);
    // Each output above zero is the mid-point of its interval (G.711 Table 2a).
    for i in 1..128 {
        let upper = edges.get(i).copied().unwrap_or(ULAW_OVERLOAD);
        assert_eq!(
            2 * outputs_u[i],
            edges[i - 1] + upper,
            "µ-law y = {}",
            outputs_u[i]
        );
    }
    for (i, &x) in edges.iter().enumerate() {
        let below = ulaw_decode(ulaw_encode((4 * x - 1) as i16));
        let above = ulaw_decode(ulaw_encode((4 * x) as i16));
        assert_eq!(i32::from(below), 4 * outputs_u[i], "µ-law below x = {x}");
        assert_eq!(i32::from(above), 4 * outputs_u[i + 1], "µ-law at x = {x}");
        assert_eq!(
            i32::from(ulaw_decode(ulaw_encode((-4 * x) as i16))),
            -4 * outputs_u[i + 1]
        );
    }
    // Beyond the overload point (8159 → 32636): the largest code.
    assert_eq!(ulaw_decode(ulaw_encode((4 * ULAW_OVERLOAD) as i16)), 32124);
    assert_eq!(ulaw_encode(i16::MAX), 0x80);
    assert_eq!(ulaw_encode(i16::MIN), 0x00);

    // A-law's first decision value is 0 itself (the sign bit decides).
    let edges = decision_values(&ALAW_SEGMENTS, &ALAW_FIRST_DECISION);
    let outputs_a = outputs(&ALAW_SEGMENTS);
    assert_eq!(edges.len(), 127);
    // Each output is the mid-point of its interval (G.711 Table 1a).
    for i in 0..128 {
        let lower = if i == 0 { 0 } else { edges[i - 1] };
        let upper = edges.get(i).copied().unwrap_or(ALAW_OVERLOAD);
        assert_eq!(
            2 * outputs_a[i],
            lower + upper,
            "A-law y = {}",
            outputs_a[i]
        );
    }
    for (i, &x) in edges.iter().enumerate() {
        let below = alaw_decode(alaw_encode((8 * x - 1) as i16));
        let above = alaw_decode(alaw_encode((8 * x) as i16));
        assert_eq!(i32::from(below), 8 * outputs_a[i], "A-law below x = {x}");
        assert_eq!(i32::from(above), 8 * outputs_a[i + 1], "A-law at x = {x}");
        assert_eq!(
            i32::from(alaw_decode(alaw_encode((-8 * x) as i16))),
            -8 * outputs_a[i + 1]
        );
    }
    assert_eq!(alaw_decode(alaw_encode(0)), 8);
    assert_eq!(
        alaw_decode(alaw_encode((8 * ALAW_OVERLOAD - 1) as i16)),
        32256
    );
    assert_eq!(alaw_encode(i16::MAX), 0xAA);
    assert_eq!(alaw_encode(i16::MIN), 0x2A);
}

// ---------------------------------------------------------------------------------------
// The classic CCITT/Sun g711.c (Sun Microsystems, 1991), 16-bit input, transcribed.
// ---------------------------------------------------------------------------------------

const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];

fn search(value: i32, table: &[i32]) -> usize {
    table
        .iter()
        .position(|&end| value <= end)
        .unwrap_or(table.len())
}

fn sun_linear2ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut pcm_val = i32::from(sample);
    let mask: i32;
    if pcm_val < 0 {
        pcm_val = BIAS - pcm_val;
        mask = 0x7F;
    } else {
        pcm_val += BIAS;
        mask = 0xFF;
    }
    let seg = search(pcm_val, &SEG_END);
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let uval = ((seg as i32) << 4) | ((pcm_val >> (seg + 3)) & 0xF);
        (uval ^ mask) as u8
    }
}

/// Sun's linear2alaw. `negative_magnitude` is how the classic code turns a negative sample
/// into a magnitude: the 1991 file has `-pcm_val - 8`, which for −7…−1 gives a negative
/// "magnitude" (encoded as −248) and moves every negative decision value down by 8; the
/// sign-magnitude form `-pcm_val` (as in its own linear2ulaw, and in later copies such as
/// TI's) is the one symmetric around zero, which we implement.
fn sun_linear2alaw(sample: i16, negative_magnitude: fn(i32) -> i32) -> u8 {
    let mut pcm_val = i32::from(sample);
    let mask: i32;
    if pcm_val >= 0 {
        mask = 0xD5;
    } else {
        mask = 0x55;
        pcm_val = negative_magnitude(pcm_val);
    }
    let seg = search(pcm_val, &SEG_END);
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let mut aval = (seg as i32) << 4;
        if seg < 2 {
            aval |= (pcm_val >> 4) & 0xF;
        } else {
            aval |= (pcm_val >> (seg + 3)) & 0xF;
        }
        (aval ^ mask) as u8
    }
}

#[test]
fn ulaw_encode_matches_sun_g711c_on_every_input() {
    for sample in i16::MIN..=i16::MAX {
        assert_eq!(
            ulaw_encode(sample),
            sun_linear2ulaw(sample),
            "sample {sample}"
        );
    }
}

#[test]
fn alaw_encode_matches_sun_g711c_sign_magnitude_on_every_input() {
    for sample in i16::MIN..=i16::MAX {
        assert_eq!(
            alaw_encode(sample),
            sun_linear2alaw(sample, |x| -x),
            "sample {sample}"
        );
    }
}

#[test]
fn alaw_encode_differs_from_the_1991_sun_text_only_by_its_minus_8() {
    let classic = |sample: i16| sun_linear2alaw(sample, |x| -x - 8);
    for sample in 0..=i16::MAX {
        assert_eq!(alaw_encode(sample), classic(sample));
    }
    // Its −8 shifts negative decision values by 8: classic(x) == ours(x + 8).
    for sample in i16::MIN..=-9 {
        assert_eq!(classic(sample), alaw_encode(sample + 8), "sample {sample}");
    }
    assert_eq!(classic(-8), 0x55);
    // And −7…−1 come out as −248 there; here they are −8.
    for sample in -7..=-1 {
        assert_eq!(alaw_decode(classic(sample)), -248);
        assert_eq!(alaw_decode(alaw_encode(sample)), -8);
    }
}

#[test]
fn encoding_is_symmetric_around_zero() {
    for sample in 1..=i16::MAX {
        assert_eq!(ulaw_encode(-sample), ulaw_encode(sample) ^ 0x80, "{sample}");
        assert_eq!(alaw_encode(-sample), alaw_encode(sample) ^ 0x80, "{sample}");
    }
}

#[test]
fn every_code_survives_decode_then_encode() {
    for code in 0..=255u8 {
        let back = ulaw_encode(ulaw_decode(code));
        if code == 0x7F {
            // Negative zero decodes to 0, and 0 encodes as positive zero.
            assert_eq!(back, 0xFF);
        } else {
            assert_eq!(back, code, "µ-law {code:#04x}");
        }
        assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
    }
}

#[test]
fn decode_is_monotonic_in_code_order() {
    // µ-law: 0x00…0x7F rise from −32124 to 0, 0x80…0xFF fall from 32124 to 0.
    for code in 0..0x7Fu8 {
        assert!(ulaw_decode(code) < ulaw_decode(code + 1), "{code:#04x}");
    }
    for code in 0x80..0xFFu8 {
        assert!(ulaw_decode(code) > ulaw_decode(code + 1), "{code:#04x}");
    }
    // A-law: in the order of the code with its even bits restored, magnitudes rise.
    for index in 0..0x7Fu8 {
        let (a, b) = (index ^ 0x55, (index + 1) ^ 0x55);
        assert!(alaw_decode(a) > alaw_decode(b), "negative {index}");
        assert!(
            alaw_decode(a | 0x80) < alaw_decode(b | 0x80),
            "positive {index}"
        );
    }
}

#[test]
fn the_g711_type_names_payload_types_silence_and_buffers() {
    assert_eq!(G711::from_name("PCMU"), Some(G711::Pcmu));
    assert_eq!(G711::from_name("pcma"), Some(G711::Pcma));
    assert_eq!(G711::from_name("PcMu"), Some(G711::Pcmu));
    assert_eq!(G711::from_name("G722"), None);
    assert_eq!(G711::Pcmu.payload_type(), 0);
    assert_eq!(G711::Pcma.payload_type(), 8);
    assert_eq!(G711::Pcmu.silence(), 0xFF);
    assert_eq!(G711::Pcma.silence(), 0xD5);
    assert_eq!(G711::Pcmu.silence(), ulaw_encode(0));
    assert_eq!(G711::Pcma.silence(), alaw_encode(0));
    assert_eq!(G711::Pcmu.name(), "PCMU");

    let samples: Vec<i16> = (0..160).map(|i| (i * 400 - 32000) as i16).collect();
    for law in [G711::Pcmu, G711::Pcma] {
        let mut payload = vec![0xAB];
        law.encode(&samples, &mut payload);
        assert_eq!(payload.len(), 161, "appends");
        assert_eq!(payload[0], 0xAB);
        let mut decoded = vec![7];
        law.decode(&payload[1..], &mut decoded);
        assert_eq!(decoded.len(), 161, "appends");
        assert_eq!(decoded[0], 7);
        for (&original, &back) in samples.iter().zip(&decoded[1..]) {
            // Quantisation error within half the largest interval.
            assert!((i32::from(original) - i32::from(back)).abs() <= 512);
            assert_eq!(law.encode_sample(back), law.encode_sample(original));
            assert_eq!(law.decode_sample(law.encode_sample(original)), back);
        }
    }
}
