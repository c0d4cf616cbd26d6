//! WAV loading (conversion, mix-down, resampling), the player and the recorder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::f64::consts::PI;
use std::io::Cursor;
use std::sync::Arc;

use media::{
    MediaError, Player, Recorder, SampleSink, ToneGenerator, ToneSpec, create_recording,
    dbm0_to_amplitude, level_dbm0, load_wav, load_wav_file, tone_level_dbm0,
};

/// A WAV file in memory, written by hound, `frames` frames of `channels` channels where
/// `value(frame, channel)` is in [-1, 1).
fn wav_bytes(spec: hound::WavSpec, frames: usize, value: impl Fn(usize, u16) -> f64) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for frame in 0..frames {
            for channel in 0..spec.channels {
                let v = value(frame, channel);
                match spec.sample_format {
                    hound::SampleFormat::Float => writer.write_sample(v as f32).unwrap(),
                    hound::SampleFormat::Int => {
                        let full = f64::from(1u32 << (spec.bits_per_sample - 1));
                        let x = (v * full).round().clamp(-full, full - 1.0) as i32;
                        writer.write_sample(x).unwrap();
                    }
                }
            }
        }
        writer.finalize().unwrap();
    }
    cursor.into_inner()
}

fn spec(rate: u32, channels: u16, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    }
}

/// A sine at `dbm0` as a fraction of 16-bit full scale (32768), at `rate`.
fn tone(frequency: f64, dbm0: f64, rate: u32) -> impl Fn(usize, u16) -> f64 {
    let amplitude = dbm0_to_amplitude(dbm0) / 32768.0;
    move |n, _| amplitude * (2.0 * PI * frequency * n as f64 / f64::from(rate)).sin()
}

fn middle(samples: &[i16]) -> &[i16] {
    let quarter = samples.len() / 4;
    &samples[quarter..samples.len() - quarter]
}

#[test]
fn recorder_round_trip_through_a_cursor() {
    let mut generator = ToneGenerator::new(ToneSpec::dial());
    let mut written = Vec::new();
    let mut recorder = Recorder::new(Cursor::new(Vec::new())).unwrap();
    for size in [160usize, 160, 7, 0, 1000] {
        let mut frame = vec![0i16; size];
        generator.fill(&mut frame);
        recorder.write(&frame).unwrap();
        written.extend_from_slice(&frame);
    }
    assert_eq!(recorder.samples_written(), 1327);
    // finish() through the trait object, as a flow holds it.
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut sink: Box<dyn SampleSink> = Box::new(Recorder::new(&mut cursor).unwrap());
        sink.write(&written).unwrap();
        assert_eq!(sink.finish().unwrap(), 1327);
    }
    let bytes = cursor.into_inner();
    assert_eq!(
        bytes.len(),
        44 + 2 * 1327,
        "canonical 44-byte header, 16-bit mono"
    );
    let reader = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(reader.spec(), spec(8000, 1, 16, hound::SampleFormat::Int));
    assert_eq!(load_wav(Cursor::new(&bytes)).unwrap(), written);
}

#[test]
fn a_16_khz_file_loads_as_8_khz_with_the_tone_at_its_level() {
    let bytes = wav_bytes(
        spec(16000, 1, 16, hound::SampleFormat::Int),
        16000,
        tone(1000.0, -10.0, 16000),
    );
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(samples.len(), 8000);
    let level = tone_level_dbm0(middle(&samples), 1000.0);
    assert!((level + 10.0).abs() < 0.1, "{level}");
    // And nothing but the tone.
    assert!((level_dbm0(middle(&samples)) + 10.0).abs() < 0.1);
}

#[test]
fn a_44_1_khz_stereo_file_loads_as_8_khz_mono() {
    let bytes = wav_bytes(
        spec(44100, 2, 16, hound::SampleFormat::Int),
        44100,
        tone(1000.0, -10.0, 44100),
    );
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(samples.len(), 8000);
    let level = tone_level_dbm0(middle(&samples), 1000.0);
    assert!((level + 10.0).abs() < 0.1, "{level}");
    // The telephone band is flat: 300 and 3400 Hz too.
    for frequency in [300.0, 3000.0, 3400.0] {
        let bytes = wav_bytes(
            spec(44100, 2, 16, hound::SampleFormat::Int),
            22050,
            tone(frequency, -10.0, 44100),
        );
        let samples = load_wav(Cursor::new(bytes)).unwrap();
        assert_eq!(samples.len(), 4000);
        let level = tone_level_dbm0(middle(&samples), frequency);
        assert!((level + 10.0).abs() < 0.3, "{frequency} Hz: {level}");
    }
}

#[test]
fn channels_are_averaged() {
    // Left carries the tone, right is silent: the mix is 6.02 dB down.
    let left_only = {
        let t = tone(1000.0, -10.0, 8000);
        move |n: usize, channel: u16| if channel == 0 { t(n, 0) } else { 0.0 }
    };
    let bytes = wav_bytes(spec(8000, 2, 16, hound::SampleFormat::Int), 8000, left_only);
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(samples.len(), 8000);
    let level = tone_level_dbm0(middle(&samples), 1000.0);
    assert!((level + 10.0 + 20.0 * 2f64.log10()).abs() < 0.05, "{level}");
}

#[test]
fn content_above_4_khz_does_not_alias() {
    // A 6 kHz tone at 44.1 kHz would fold to 2 kHz if decimated without a low-pass.
    let bytes = wav_bytes(
        spec(44100, 1, 16, hound::SampleFormat::Int),
        44100,
        tone(6000.0, 0.0, 44100),
    );
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(samples.len(), 8000);
    let alias = tone_level_dbm0(middle(&samples), 2000.0);
    assert!(alias <= -20.0, "alias at {alias} dBm0");
    assert!(level_dbm0(middle(&samples)) <= -20.0);
    // 5 kHz at 16 kHz (folds to 3 kHz) too.
    let bytes = wav_bytes(
        spec(16000, 1, 16, hound::SampleFormat::Int),
        16000,
        tone(5000.0, 0.0, 16000),
    );
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert!(tone_level_dbm0(middle(&samples), 3000.0) <= -20.0);
}

#[test]
fn a_lower_rate_is_resampled_up() {
    let bytes = wav_bytes(
        spec(6000, 1, 16, hound::SampleFormat::Int),
        6000,
        tone(1000.0, -10.0, 6000),
    );
    let samples = load_wav(Cursor::new(bytes)).unwrap();
    assert_eq!(samples.len(), 8000);
    let level = tone_level_dbm0(middle(&samples), 1000.0);
    assert!((level + 10.0).abs() < 0.1, "{level}");
}

#[test]
fn sample_formats_are_converted() {
    // Half of full scale in each format is 16384 on the 16-bit scale.
    let half = |_: usize, _: u16| 0.5;
    let minus_half = |_: usize, _: u16| -0.5;
    for (bits, format) in [
        (8, hound::SampleFormat::Int),
        (16, hound::SampleFormat::Int),
        (24, hound::SampleFormat::Int),
        (32, hound::SampleFormat::Int),
        (32, hound::SampleFormat::Float),
    ] {
        let bytes = wav_bytes(spec(8000, 1, bits, format), 10, half);
        assert_eq!(
            load_wav(Cursor::new(bytes)).unwrap(),
            vec![16384; 10],
            "{bits}-bit {format:?}"
        );
        let bytes = wav_bytes(spec(8000, 1, bits, format), 3, minus_half);
        assert_eq!(
            load_wav(Cursor::new(bytes)).unwrap(),
            vec![-16384; 3],
            "{bits}-bit {format:?}"
        );
    }
    // Float beyond ±1 clips.
    let bytes = wav_bytes(spec(8000, 1, 32, hound::SampleFormat::Float), 2, |n, _| {
        if n == 0 { 3.0 } else { -3.0 }
    });
    assert_eq!(
        load_wav(Cursor::new(bytes)).unwrap(),
        vec![i16::MAX, i16::MIN]
    );
}

#[test]
fn garbage_and_unsupported_files_are_wav_errors() {
    let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
    match load_wav(Cursor::new(garbage)) {
        Err(MediaError::Wav { reason }) => assert!(reason.contains("not a WAV file"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        load_wav(Cursor::new(Vec::new())),
        Err(MediaError::Wav { .. })
    ));
    assert!(matches!(
        load_wav(Cursor::new(b"RIFF".to_vec())),
        Err(MediaError::Wav { .. })
    ));

    // A header hound refuses (ADPCM) is described from its fmt chunk.
    let mut adpcm = wav_bytes(spec(8000, 1, 16, hound::SampleFormat::Int), 100, |_, _| 0.0);
    assert_eq!(&adpcm[12..16], b"fmt ");
    adpcm[20] = 2; // wFormatTag = WAVE_FORMAT_ADPCM
    match load_wav(Cursor::new(adpcm)) {
        Err(MediaError::Wav { reason }) => {
            assert!(
                reason.contains("format 0x0002 (ADPCM), 8000 Hz, 1 channel, 16-bit"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // A truncated file names the format it found.
    let mut bytes = wav_bytes(
        spec(44100, 2, 24, hound::SampleFormat::Int),
        1000,
        |_, _| 0.1,
    );
    bytes.truncate(bytes.len() - 100);
    match load_wav(Cursor::new(bytes)) {
        Err(MediaError::Wav { reason }) => {
            assert!(
                reason.contains("44100 Hz, 2 channels, 24-bit int"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // No sample rate.
    let mut bytes = wav_bytes(spec(8000, 1, 16, hound::SampleFormat::Int), 10, |_, _| 0.0);
    bytes[24..32].fill(0); // nSamplesPerSec and nAvgBytesPerSec
    match load_wav(Cursor::new(bytes)) {
        Err(MediaError::Wav { reason }) => assert!(reason.contains("0 Hz"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A rate no prompt has (resampling it would cost too much).
    let bytes = wav_bytes(
        spec(1_000_000, 1, 16, hound::SampleFormat::Int),
        10,
        |_, _| 0.0,
    );
    match load_wav(Cursor::new(bytes)) {
        Err(MediaError::Wav { reason }) => {
            assert!(
                reason.contains("1000000 Hz, 1 channel, 16-bit int: sample rate outside"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_on_disk() {
    let dir = std::env::temp_dir().join(format!("tandem-media-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recording.wav");
    let samples: Vec<i16> = (0..4000).map(|n| ((n * 37) % 2000 - 1000) as i16).collect();
    let mut recorder = create_recording(&path).unwrap();
    recorder.write(&samples[..1000]).unwrap();
    recorder.write(&samples[1000..]).unwrap();
    assert_eq!(Box::new(recorder).finish().unwrap(), 4000);
    assert_eq!(load_wav_file(&path).unwrap(), samples);
    assert!(matches!(
        load_wav_file(&dir.join("missing.wav")),
        Err(MediaError::Io(_))
    ));
    assert!(matches!(
        create_recording(&dir.join("no/such/dir.wav")),
        Err(MediaError::Io(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_player_plays_once_or_loops() {
    let prompt: Arc<[i16]> = (1..=10).collect::<Vec<i16>>().into();
    let mut once = Player::new(Arc::clone(&prompt), false);
    assert_eq!(once.len(), 10);
    assert!(!once.is_empty());
    let mut out = [0i16; 4];
    assert_eq!(once.fill(&mut out), 4);
    assert_eq!(out, [1, 2, 3, 4]);
    assert_eq!(once.position(), 4);
    let mut out = [-1i16; 8];
    assert_eq!(once.fill(&mut out), 6);
    assert_eq!(out, [5, 6, 7, 8, 9, 10, -1, -1], "the rest is untouched");
    assert!(once.finished());
    assert_eq!(once.fill(&mut out), 0);

    let mut looping = Player::new(Arc::clone(&prompt), true);
    let mut out = [0i16; 25];
    assert_eq!(looping.fill(&mut out), 25);
    let expected: Vec<i16> = (0..25).map(|i| (i % 10 + 1) as i16).collect();
    assert_eq!(out.to_vec(), expected);
    assert!(!looping.finished());
    assert_eq!(looping.position(), 5);
    // Two players share the prompt without copying it.
    assert_eq!(Arc::strong_count(&prompt), 3);

    let empty: Arc<[i16]> = Arc::from(Vec::new());
    for looped in [false, true] {
        let mut player = Player::new(Arc::clone(&empty), looped);
        assert!(player.is_empty());
        assert_eq!(player.fill(&mut [0; 10]), 0);
        assert!(player.finished());
    }
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes, and any corruption of a real file's header, give samples or an error.
        #[test]
        fn load_wav_never_panics(
            random in proptest::collection::vec(any::<u8>(), 0..200),
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..6),
            rate in prop_oneof![Just(8000u32), Just(16000), Just(44100), 1000u32..50000],
            channels in 1u16..4,
        ) {
            let _ = load_wav(Cursor::new(random));
            let mut bytes = wav_bytes(spec(rate, channels, 16, hound::SampleFormat::Int), 50, |n, _| (n as f64 / 50.0) - 0.5);
            for (at, value) in flips {
                bytes[at] = value;
            }
            if let Ok(samples) = load_wav(Cursor::new(bytes)) {
                prop_assert!(samples.len() < 1_000_000);
            }
        }
    }
}
