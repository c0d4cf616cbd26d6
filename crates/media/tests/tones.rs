//! Levels, tone generation and Goertzel measurement.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use media::{
    DBM0_PEAK, G711, Goertzel, SAMPLE_RATE, ToneGenerator, ToneSpec, amplitude_to_dbm0,
    dbm0_to_amplitude, level_dbm0, tone_level_dbm0, ulaw_decode,
};

fn generate(spec: ToneSpec, samples: usize) -> Vec<i16> {
    let mut generator = ToneGenerator::new(spec);
    let mut out = vec![0i16; samples];
    let written = generator.fill(&mut out);
    out.truncate(written);
    out
}

fn sine(frequency: f64, dbm0: f64, samples: usize) -> Vec<i16> {
    generate(ToneSpec::single(frequency, dbm0, None), samples)
}

fn max_step(samples: &[i16]) -> i32 {
    samples
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn zero_dbm0_is_3_17_db_below_the_mu_law_full_scale_sine() {
    let peak = dbm0_to_amplitude(0.0);
    assert!((peak - 22_656.714).abs() < 0.01, "{peak}");
    assert_eq!(peak, DBM0_PEAK);
    // 8159 × 4 is +3.17 dBm0.
    assert!((amplitude_to_dbm0(8159.0 * 4.0) - 3.17).abs() < 1e-9);
    for level in [-40.0, -13.0, -3.0, 0.0, 3.0] {
        assert!((amplitude_to_dbm0(dbm0_to_amplitude(level)) - level).abs() < 1e-9);
    }
    assert!((dbm0_to_amplitude(-20.0) - peak / 10.0).abs() < 1e-6);
    assert_eq!(amplitude_to_dbm0(0.0), f64::NEG_INFINITY);
}

#[test]
fn the_digital_milliwatt_measures_0_dbm0() {
    // G.711 Table 5: the µ-law digital milliwatt is 0 dBm0 by definition.
    let ulaw = [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E];
    let samples: Vec<i16> = ulaw
        .iter()
        .cycle()
        .take(800)
        .map(|&c| ulaw_decode(c))
        .collect();
    assert!(
        level_dbm0(&samples).abs() < 0.01,
        "{}",
        level_dbm0(&samples)
    );
    assert!(tone_level_dbm0(&samples, 1000.0).abs() < 0.01);
    // A-law's (Table 6) on the same µ-law reference reads 0.065 dB higher.
    let alaw = [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4];
    let mut samples = Vec::new();
    G711::Pcma.decode(&alaw.repeat(100), &mut samples);
    let level = level_dbm0(&samples);
    assert!((level - 0.065).abs() < 0.01, "{level}");
}

#[test]
fn generated_tones_measure_their_level() {
    for frequency in [100.0, 300.0, 697.0, 1000.0, 1633.0, 2500.0, 3400.0, 3900.0] {
        for level in [3.0, 0.0, -10.0, -24.0, -40.0] {
            let samples = sine(frequency, level, 160);
            let measured = tone_level_dbm0(&samples, frequency);
            assert!(
                (measured - level).abs() < 0.3,
                "{frequency} Hz at {level} dBm0 measured {measured}"
            );
            // Every other window length from 160 up measures as well.
            let longer = sine(frequency, level, 237);
            let measured = tone_level_dbm0(&longer, frequency);
            assert!(
                (measured - level).abs() < 0.3,
                "{frequency} Hz, 237 samples: {measured}"
            );
            // Total power of a single sine: the same level.
            let total = level_dbm0(&sine(frequency, level, 8000));
            assert!((total - level).abs() < 0.05, "total {total} for {level}");
        }
    }
    assert_eq!(tone_level_dbm0(&[], 1000.0), f64::NEG_INFINITY);
    assert_eq!(level_dbm0(&[0; 160]), f64::NEG_INFINITY);
}

#[test]
fn goertzel_power_of_a_whole_number_of_periods() {
    // 1 kHz over 160 samples is 20 whole periods: |X|² = (A·N/2)². (A plain sine: the
    // generator's onset ramp would take some power away.)
    let amplitude = dbm0_to_amplitude(-10.0);
    let samples: Vec<i16> = (0..160)
        .map(|n| {
            (amplitude * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0 + 0.3).sin())
                .round() as i16
        })
        .collect();
    let power = Goertzel::new(1000.0, SAMPLE_RATE).power(&samples);
    let expected = (amplitude * 160.0 / 2.0).powi(2);
    assert!(
        (power / expected - 1.0).abs() < 0.01,
        "{power} vs {expected}"
    );
    // 1.4 kHz is 8 bins away: nothing there.
    let off = Goertzel::new(1400.0, SAMPLE_RATE).power(&samples);
    assert!(off < expected * 1e-4);
}

#[test]
fn tones_survive_g711_within_half_a_db() {
    for law in [G711::Pcmu, G711::Pcma] {
        for level in [0.0, -10.0, -20.0, -30.0, -40.0] {
            let samples = sine(1000.0, level, 800);
            let mut payload = Vec::new();
            law.encode(&samples, &mut payload);
            let mut decoded = Vec::new();
            law.decode(&payload, &mut decoded);
            let measured = tone_level_dbm0(&decoded, 1000.0);
            assert!(
                (measured - level).abs() < 0.5,
                "{law:?} {level} dBm0: {measured}"
            );
        }
    }
}

#[test]
fn off_frequency_components_are_rejected() {
    let samples = sine(1000.0, -10.0, 160);
    let on = tone_level_dbm0(&samples, 1000.0);
    for other in [1400.0, 1300.0, 600.0, 2000.0] {
        let off = tone_level_dbm0(&samples, other);
        assert!(on - off >= 30.0, "{other} Hz only {} dB down", on - off);
    }
    // Also for a frequency that is not a whole number of periods in the window.
    let samples = sine(1033.0, -10.0, 160);
    assert!(tone_level_dbm0(&samples, 1033.0) - tone_level_dbm0(&samples, 1433.0) >= 30.0);
}

#[test]
fn dial_tone_has_both_components_and_nothing_else() {
    // 350 and 440 Hz are 90 Hz apart: 100 ms tells them apart.
    let samples = generate(ToneSpec::dial(), 800);
    assert_eq!(samples.len(), 800);
    for frequency in [350.0, 440.0] {
        let level = tone_level_dbm0(&samples, frequency);
        assert!((level + 13.0).abs() < 0.3, "{frequency}: {level}");
    }
    for frequency in [480.0, 620.0, 1000.0] {
        assert!(
            tone_level_dbm0(&samples, frequency) < -13.0 - 30.0,
            "{frequency}"
        );
    }
    // Two components at −13 dBm0 each: −9.99 dBm0 in all.
    let total = level_dbm0(&generate(ToneSpec::dial(), 8000));
    assert!((total + 13.0 - 10.0 * 2f64.log10()).abs() < 0.05, "{total}");
}

#[test]
fn ringback_and_busy_follow_their_cadence() {
    // Ringback: 2 s on, 4 s off, repeating.
    let samples = generate(ToneSpec::ringback(), 8000 * 13);
    let second = |s: usize| &samples[s * 8000..(s + 1) * 8000];
    for s in [0, 1, 6, 7, 12] {
        let level = tone_level_dbm0(&second(s)[1000..1800], 440.0);
        assert!((level + 19.0).abs() < 0.3, "second {s}: {level}");
        assert!((tone_level_dbm0(&second(s)[1000..1800], 480.0) + 19.0).abs() < 0.3);
    }
    for s in [2, 3, 4, 5, 8, 9, 10, 11] {
        assert!(second(s).iter().all(|&x| x == 0), "second {s} is silent");
    }
    // Busy: 0.5 s on, 0.5 s off.
    let samples = generate(ToneSpec::busy(), 8000 * 3);
    for half in 0..6 {
        let part = &samples[half * 4000..(half + 1) * 4000];
        if half % 2 == 0 {
            assert!((tone_level_dbm0(&part[1000..1800], 620.0) + 24.0).abs() < 0.3);
        } else {
            assert!(part.iter().all(|&x| x == 0), "half {half}");
        }
    }
}

#[test]
fn edges_are_ramped_so_there_is_no_click() {
    // 1111 Hz bursts of 100 ms every 200 ms: the phase at each edge is far from a zero
    // crossing (111.1 and 222.2 periods), so an unramped edge would jump by most of the peak.
    let spec = ToneSpec {
        frequencies: vec![1111.0],
        level_dbm0: -10.0,
        cadence: vec![(Duration::from_millis(100), Duration::from_millis(100))],
        duration: None,
    };
    let samples = generate(spec, 4800);
    let peak = dbm0_to_amplitude(-10.0);
    let steady = max_step(&samples[100..700]);
    // A 16-sample raised cosine moves at most π/32 of the peak per sample.
    let ramp_slope = peak * std::f64::consts::PI / 32.0;
    for on in [0usize, 1600, 3200] {
        // The burst starts from near silence and never steps more than tone + ramp allow.
        assert!(
            f64::from(samples[on].abs()) < peak * 0.05,
            "onset {on}: {}",
            samples[on]
        );
        let step = max_step(&samples[on.saturating_sub(5)..on + 40]);
        assert!(
            f64::from(step) <= f64::from(steady) + ramp_slope,
            "onset {on}: step {step}"
        );
        let off = on + 800;
        assert!(f64::from(samples[off - 1].abs()) < peak * 0.05, "end {off}");
        assert_eq!(samples[off], 0);
        let step = max_step(&samples[off - 40..off + 5]);
        assert!(
            f64::from(step) <= f64::from(steady) + ramp_slope,
            "end {off}: step {step}"
        );
    }
    // The unramped tone right at those edges is large: the ramp is what keeps them quiet.
    let raw = |n: f64| peak * (2.0 * std::f64::consts::PI * 1111.0 * n / 8000.0).sin();
    assert!(raw(1600.0).abs() > peak * 0.9 && raw(2400.0).abs() > peak * 0.9);
}

#[test]
fn fill_is_phase_continuous_across_calls() {
    let whole = generate(ToneSpec::dial(), 5000);
    let mut generator = ToneGenerator::new(ToneSpec::dial());
    let mut pieces = Vec::new();
    for size in [1usize, 7, 160, 33, 1000, 2, 3797] {
        let mut buffer = vec![0i16; size];
        assert_eq!(generator.fill(&mut buffer), size);
        pieces.extend_from_slice(&buffer);
    }
    assert_eq!(pieces, whole);
    assert_eq!(generator.position(), 5000);
    assert!(!generator.finished(), "a continuous tone never finishes");
}

#[test]
fn a_tone_with_a_duration_ends() {
    let spec = ToneSpec::single(1000.0, -10.0, Some(Duration::from_millis(100)));
    let mut generator = ToneGenerator::new(spec);
    let mut buffer = vec![12345i16; 500];
    assert_eq!(generator.fill(&mut buffer), 500);
    assert!(!generator.finished());
    let mut buffer = vec![12345i16; 500];
    assert_eq!(generator.fill(&mut buffer), 300, "800 samples in all");
    assert!(
        buffer[300..].iter().all(|&x| x == 12345),
        "the rest is untouched"
    );
    assert!(generator.finished());
    // The end is ramped down.
    assert!(buffer[299].abs() < 300, "last {}", buffer[299]);
    assert_eq!(generator.fill(&mut buffer), 0);
}

#[test]
fn dtmf_digits_are_the_q23_pairs() {
    let pairs = [
        ('1', 697.0, 1209.0),
        ('2', 697.0, 1336.0),
        ('3', 697.0, 1477.0),
        ('A', 697.0, 1633.0),
        ('4', 770.0, 1209.0),
        ('5', 770.0, 1336.0),
        ('6', 770.0, 1477.0),
        ('B', 770.0, 1633.0),
        ('7', 852.0, 1209.0),
        ('8', 852.0, 1336.0),
        ('9', 852.0, 1477.0),
        ('C', 852.0, 1633.0),
        ('*', 941.0, 1209.0),
        ('0', 941.0, 1336.0),
        ('#', 941.0, 1477.0),
        ('D', 941.0, 1633.0),
    ];
    let all = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
    for (digit, low, high) in pairs {
        let spec = ToneSpec::dtmf(digit, Duration::from_millis(50)).unwrap();
        assert_eq!(spec.frequencies, vec![low, high]);
        let samples = generate(spec, 1000);
        assert_eq!(samples.len(), 400, "50 ms");
        for frequency in all {
            let level = tone_level_dbm0(&samples[16..384], frequency);
            if frequency == low || frequency == high {
                assert!((level + 7.0).abs() < 0.3, "{digit} {frequency}: {level}");
            } else {
                assert!(level < -7.0 - 20.0, "{digit} {frequency}: {level}");
            }
        }
    }
    assert_eq!(
        ToneSpec::dtmf('a', Duration::from_millis(40))
            .unwrap()
            .frequencies,
        vec![697.0, 1633.0]
    );
    assert!(ToneSpec::dtmf('x', Duration::from_millis(40)).is_none());
    assert!(ToneSpec::dtmf('E', Duration::from_millis(40)).is_none());
}

#[test]
fn levels_beyond_full_scale_clip_instead_of_wrapping() {
    let samples = generate(ToneSpec::single(1000.0, 9.0, None), 160);
    assert!(samples.contains(&i16::MAX) && samples.contains(&i16::MIN));
    // Still a sine's sign pattern: clipping, not wrap-around.
    for w in samples.windows(2) {
        assert!((i32::from(w[1]) - i32::from(w[0])).abs() < 40000);
    }
}
