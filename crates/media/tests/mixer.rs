//! The N-party conference mixer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use media::{Mixer, ToneGenerator, ToneSpec, tone_level_dbm0};

const FRAME: usize = 160;

fn max_step(samples: &[i16]) -> i32 {
    samples
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

/// Runs `ticks` frames: each tick every talker pushes one frame of its tone, then
/// `before_mix` may change membership, then the mixer mixes. Returns every participant's
/// output.
fn run(
    mixer: &mut Mixer,
    talkers: &mut HashMap<u32, ToneGenerator>,
    ticks: usize,
    mut before_mix: impl FnMut(usize, &mut Mixer, &mut HashMap<u32, ToneGenerator>),
) -> HashMap<u32, Vec<i16>> {
    let mut heard: HashMap<u32, Vec<i16>> = HashMap::new();
    for tick in 0..ticks {
        for (&id, generator) in talkers.iter_mut() {
            let mut frame = [0i16; FRAME];
            generator.fill(&mut frame);
            mixer.push(id, &frame);
        }
        before_mix(tick, mixer, talkers);
        let mut frames_this_tick = 0;
        mixer.mix(|id, frame| {
            assert_eq!(frame.len(), FRAME);
            heard.entry(id).or_default().extend_from_slice(frame);
            frames_this_tick += 1;
        });
        assert_eq!(
            frames_this_tick,
            mixer.len(),
            "one frame per participant per tick"
        );
    }
    heard
}

fn three_tones() -> (Mixer, HashMap<u32, ToneGenerator>) {
    let mut mixer = Mixer::new(FRAME);
    let mut talkers = HashMap::new();
    for (id, frequency) in [(1u32, 500.0), (2, 1100.0), (3, 1700.0)] {
        mixer.join(id);
        talkers.insert(
            id,
            ToneGenerator::new(ToneSpec::single(frequency, -15.0, None)),
        );
    }
    (mixer, talkers)
}

#[test]
fn each_hears_the_others_and_not_itself() {
    let (mut mixer, mut talkers) = three_tones();
    assert_eq!(mixer.len(), 3);
    let heard = run(&mut mixer, &mut talkers, 20, |_, _, _| {});
    let frequencies = [(1u32, 500.0), (2, 1100.0), (3, 1700.0)];
    for (listener, _) in frequencies {
        let audio = &heard[&listener][FRAME * 2..];
        assert_eq!(heard[&listener].len(), 20 * FRAME);
        for (talker, frequency) in frequencies {
            let level = tone_level_dbm0(audio, frequency);
            if talker == listener {
                assert!(level < -15.0 - 40.0, "{listener} hears itself at {level}");
            } else {
                assert!(
                    (level + 15.0).abs() < 0.3,
                    "{listener} hears {talker} at {level}"
                );
            }
        }
    }
}

#[test]
fn two_party_mixing_is_plain_forwarding() {
    let mut mixer = Mixer::new(FRAME);
    mixer.join(10);
    mixer.join(20);
    let a: Vec<i16> = (0..FRAME * 5)
        .map(|n| ((n * 7919) % 65536) as u16 as i16)
        .collect();
    let b: Vec<i16> = (0..FRAME * 5)
        .map(|n| ((n * 104_729 + 3) % 65536) as u16 as i16)
        .collect();
    let mut to_a = Vec::new();
    let mut to_b = Vec::new();
    for tick in 0..5 {
        mixer.push(10, &a[tick * FRAME..(tick + 1) * FRAME]);
        mixer.push(20, &b[tick * FRAME..(tick + 1) * FRAME]);
        mixer.mix(|id, frame| match id {
            10 => to_a.extend_from_slice(frame),
            20 => to_b.extend_from_slice(frame),
            _ => panic!("unknown {id}"),
        });
    }
    // After the join frame (faded in), each gets the other's samples exactly.
    assert_eq!(to_a[FRAME..], b[FRAME..]);
    assert_eq!(to_b[FRAME..], a[FRAME..]);
    // The join frame is the other's audio ramped up: |out| ≤ |in|, ending close to it.
    for (out, original) in to_a[..FRAME].iter().zip(&b[..FRAME]) {
        assert!(out.unsigned_abs() <= original.unsigned_abs());
    }
    assert!(
        (i32::from(to_a[FRAME - 1]) - i32::from(b[FRAME - 1])).abs()
            <= i32::from(b[FRAME - 1]).abs() / 100 + 1
    );
}

#[test]
fn sums_saturate() {
    let mut mixer = Mixer::new(4);
    for id in 1..=4 {
        mixer.join(id);
    }
    // Warm-up frame (fade in).
    for id in 1..=4 {
        mixer.push(id, &[0; 4]);
    }
    mixer.mix(|_, _| {});
    mixer.push(1, &[30000, -30000, 20000, 0]);
    mixer.push(2, &[30000, -30000, -20000, 0]);
    mixer.push(3, &[30000, -30000, 0, 0]);
    mixer.push(4, &[0, 0, 0, 1]);
    let mut outputs = HashMap::new();
    mixer.mix(|id, frame| {
        outputs.insert(id, frame.to_vec());
    });
    assert_eq!(outputs[&4], vec![i16::MAX, i16::MIN, 0, 0]);
    assert_eq!(outputs[&1], vec![i16::MAX, i16::MIN, -20000, 1]);
    assert_eq!(outputs[&3], vec![i16::MAX, i16::MIN, 0, 1]);
}

fn tone(frequency: f64, samples: usize) -> Vec<i16> {
    let mut generator = ToneGenerator::new(ToneSpec::single(frequency, -15.0, None));
    let mut out = vec![0i16; samples];
    generator.fill(&mut out);
    out
}

#[test]
fn a_participant_leaving_mid_stream_causes_no_click() {
    // Low tones, whose own sample-to-sample steps are small next to their amplitude, so a
    // cut would stand out; 210 Hz is 4.2 periods per frame, so frame edges are not zero
    // crossings.
    let mut mixer = Mixer::new(FRAME);
    let mut talkers = HashMap::new();
    for (id, frequency) in [(1u32, 130.0), (2, 290.0), (3, 210.0)] {
        mixer.join(id);
        talkers.insert(
            id,
            ToneGenerator::new(ToneSpec::single(frequency, -15.0, None)),
        );
    }
    let leave_at = 11;
    let ticks = 20;
    let heard = run(&mut mixer, &mut talkers, ticks, |tick, mixer, talkers| {
        // 3 said its last frame on this tick, then leaves: that frame is faded out.
        if tick == leave_at {
            mixer.leave(3);
            talkers.remove(&3);
            assert!(!mixer.contains(3));
            assert_eq!(mixer.len(), 2);
        }
    });
    // The others got a frame on every tick, the leaver none after it left.
    assert_eq!(heard[&1].len(), ticks * FRAME);
    assert_eq!(heard[&2].len(), ticks * FRAME);
    assert_eq!(heard[&3].len(), leave_at * FRAME);
    assert_eq!(mixer.len(), 2);

    // What 1 hears minus 2's tone is 3's contribution: the tone, faded out over the leave
    // frame, then nothing.
    let total = ticks * FRAME;
    let two = tone(290.0, total);
    let three = tone(210.0, total);
    let residual: Vec<i32> = heard[&1]
        .iter()
        .zip(&two)
        .map(|(&h, &t)| i32::from(h) - i32::from(t))
        .collect();
    let (from, to) = (FRAME * leave_at, FRAME * (leave_at + 1));
    for n in FRAME..from {
        assert_eq!(residual[n], i32::from(three[n]), "before the leave, at {n}");
    }
    assert!(residual[to..].iter().all(|&r| r == 0), "after the fade");
    let peak = media::dbm0_to_amplitude(-15.0);
    let fade_slope = (peak / 161.0).ceil() as i32 + 1;
    let own_step = max_step(&three[FRAME..from]);
    let residual_step = residual[from - FRAME..to + FRAME]
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .max()
        .unwrap();
    assert!(
        residual_step <= own_step + fade_slope,
        "{residual_step} vs {own_step}"
    );
    // In what 1 hears: no step beyond the steady mix's own plus the fade's slope.
    let steady = max_step(&heard[&1][FRAME..from]);
    let around = max_step(&heard[&1][from - FRAME..to + FRAME]);
    assert!(
        around <= steady + fade_slope,
        "step {around} vs steady {steady}"
    );
    // A cut at either edge of the leave frame would have stepped by 3's value there.
    let cut = i32::from(three[from])
        .abs()
        .min(i32::from(three[to - 1]).abs());
    assert!(
        cut > steady + fade_slope,
        "the test would catch a click ({cut} vs {steady})"
    );
    // After the fade, 210 Hz is gone and 290 Hz is as it was.
    let after = &heard[&1][to..];
    assert!(tone_level_dbm0(after, 210.0) < -60.0);
    assert!((tone_level_dbm0(after, 290.0) + 15.0).abs() < 0.3);
}

#[test]
fn a_participant_joining_mid_stream_fades_in() {
    let mut mixer = Mixer::new(FRAME);
    let mut talkers = HashMap::new();
    for (id, frequency) in [(1u32, 130.0), (2, 290.0)] {
        mixer.join(id);
        talkers.insert(
            id,
            ToneGenerator::new(ToneSpec::single(frequency, -15.0, None)),
        );
    }
    let join_at = 6;
    let heard = run(&mut mixer, &mut talkers, 12, |tick, mixer, talkers| {
        if tick == join_at - 1 {
            // Joins after this tick's pushes: it has said nothing in this mix, so it is
            // faded in over the next frame, its first with audio.
            mixer.join(3);
            let mut late = ToneGenerator::new(ToneSpec::single(210.0, -15.0, None));
            // Its tone is already running (a call that was talking before it joined).
            late.fill(&mut [0i16; FRAME * 3]);
            talkers.insert(3, late);
        }
    });
    // It hears the others from the mix right after it joined.
    assert_eq!(heard[&3].len(), (12 - join_at + 1) * FRAME);
    let from = FRAME * join_at;
    let two = tone(290.0, 12 * FRAME);
    let residual: Vec<i32> = heard[&1]
        .iter()
        .zip(&two)
        .map(|(&h, &t)| i32::from(h) - i32::from(t))
        .collect();
    assert!(
        residual[FRAME..from].iter().all(|&r| r == 0),
        "nothing from 3 before it joined"
    );
    // The join frame ramps 3's tone up from one step above silence.
    let peak = media::dbm0_to_amplitude(-15.0);
    let fade_slope = (peak / 161.0).ceil() as i32 + 1;
    assert!(residual[from].abs() <= fade_slope);
    let steady = max_step(&heard[&1][FRAME..from]);
    let around = max_step(&heard[&1][from - FRAME..from + 2 * FRAME]);
    let own = max_step(&tone(210.0, 4 * FRAME));
    assert!(around <= steady + own + fade_slope, "{around}");
    let after = &heard[&1][from + FRAME..];
    assert!((tone_level_dbm0(after, 210.0) + 15.0).abs() < 0.3);
}

#[test]
fn a_dry_fifo_is_silence_never_a_gap() {
    let mut mixer = Mixer::new(FRAME);
    mixer.join(1);
    mixer.join(2);
    mixer.push(1, &[1000; FRAME]);
    // 2 said nothing, 1 said half a frame on the next tick.
    let mut ticks = Vec::new();
    mixer.mix(|id, frame| ticks.push((id, frame.to_vec())));
    mixer.push(1, &[1000; FRAME / 2]);
    mixer.mix(|id, frame| ticks.push((id, frame.to_vec())));
    mixer.mix(|id, frame| ticks.push((id, frame.to_vec())));
    assert_eq!(ticks.len(), 6);
    let for_two: Vec<&Vec<i16>> = ticks
        .iter()
        .filter(|(id, _)| *id == 2)
        .map(|(_, f)| f)
        .collect();
    assert!(for_two.iter().all(|f| f.len() == FRAME));
    assert!(for_two[1][..FRAME / 2].iter().all(|&x| x == 1000));
    assert!(for_two[1][FRAME / 2..].iter().all(|&x| x == 0));
    assert!(for_two[2].iter().all(|&x| x == 0));
    assert!(
        ticks
            .iter()
            .filter(|(id, _)| *id == 1)
            .all(|(_, f)| f.iter().all(|&x| x == 0))
    );
}

#[test]
fn membership() {
    let mut mixer = Mixer::new(FRAME);
    assert!(mixer.is_empty());
    mixer.join(7);
    mixer.join(7);
    assert_eq!(mixer.len(), 1);
    assert!(mixer.contains(7));
    // Leaving before ever being mixed: gone at once.
    mixer.leave(7);
    assert!(mixer.is_empty());
    let mut calls = 0;
    mixer.mix(|_, _| calls += 1);
    assert_eq!(calls, 0);
    // Unknown ids are ignored.
    mixer.leave(99);
    mixer.push(99, &[1; FRAME]);
    // Joining again during a leave cancels it.
    mixer.join(1);
    mixer.join(2);
    mixer.push(1, &[0; FRAME]);
    mixer.push(2, &[0; FRAME]);
    mixer.mix(|_, _| {});
    mixer.leave(2);
    assert!(!mixer.contains(2));
    mixer.join(2);
    assert!(mixer.contains(2));
    mixer.push(2, &[500; FRAME]);
    let mut heard = Vec::new();
    mixer.mix(|id, frame| {
        if id == 1 {
            heard.extend_from_slice(frame);
        }
    });
    assert_eq!(
        heard,
        vec![500; FRAME],
        "not faded: the leave was cancelled"
    );
    // FIFOs hold three frames; older audio is dropped and counted.
    mixer.push(1, &[1; FRAME * 4]);
    assert_eq!(mixer.overflowed(1), Some(FRAME as u64));
    assert_eq!(mixer.overflowed(42), None);
}

#[test]
fn many_participants_are_mixed_in_one_pass() {
    let mut mixer = Mixer::new(FRAME);
    for id in 0..50u32 {
        mixer.join(id);
        mixer.push(id, &[0; FRAME]);
    }
    // Warm-up frame (fade in).
    mixer.mix(|_, _| {});
    for id in 0..50u32 {
        mixer.push(id, &[i16::try_from(id).unwrap(); FRAME]);
    }
    let total: i32 = (0..50).sum();
    let mut count = 0;
    mixer.mix(|id, frame| {
        count += 1;
        let expected = total - i32::try_from(id).unwrap();
        assert!(frame.iter().all(|&x| i32::from(x) == expected), "{id}");
    });
    assert_eq!(count, 50);
}
