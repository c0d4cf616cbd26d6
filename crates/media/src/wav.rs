//! WAV files: loading prompts as 8 kHz mono, playing them, and recording to 8 kHz mono
//! 16-bit WAV (RIFF WAVE, read and written by `hound`).

use std::f64::consts::PI;
use std::fmt;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::MediaError;
use crate::level::SAMPLE_RATE;

/// The sample rates accepted (resampling cost grows with the rate).
const MIN_RATE: u32 = 1000;
const MAX_RATE: u32 = 384_000;
/// Half-width of the resampling kernel, in periods of the lower of the two rates.
const KERNEL_HALF_WIDTH: f64 = 32.0;
/// The low-pass cutoff as a fraction of the lower rate (3700 Hz when resampling to 8 kHz):
/// flat through the telephone band (300-3400 Hz), stopband from about 4 kHz.
const CUTOFF: f64 = 0.4625;
/// Kaiser window β (≈ 80 dB stopband).
const KAISER_BETA: f64 = 8.0;
/// Kernel table resolution: points per period of the lower rate.
const TABLE_STEPS: usize = 512;

/// Describes a WAV format for error messages: "44100 Hz, 2 channels, 24-bit int".
fn describe(spec: &hound::WavSpec) -> String {
    let format = match spec.sample_format {
        hound::SampleFormat::Int => "int",
        hound::SampleFormat::Float => "float",
    };
    let channels = if spec.channels == 1 {
        "1 channel".to_owned()
    } else {
        format!("{} channels", spec.channels)
    };
    format!(
        "{} Hz, {channels}, {}-bit {format}",
        spec.sample_rate, spec.bits_per_sample
    )
}

fn wav_error(reason: impl Into<String>) -> MediaError {
    MediaError::Wav {
        reason: reason.into(),
    }
}

/// Reads a WAV file into 8 kHz mono i16.
///
/// 8 kHz mono 16-bit is taken as is. Otherwise channels are mixed down (averaged), 8-, 16-,
/// 24- and 32-bit integer and 32-bit float samples are converted, and any other sample rate
/// (1000 to 384 000 Hz) is resampled to 8000 Hz with a Kaiser-windowed sinc low-pass (cutoff 3700 Hz when
/// decimating, so content above 4 kHz does not alias into the telephone band). Anything
/// hound cannot read gives [`MediaError::Wav`] naming what was found.
pub fn load_wav<R: Read>(mut reader: R) -> Result<Vec<i16>, MediaError> {
    // Keep the start of the file so that a header hound refuses can still be described.
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut reader)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| wav_error(format!("reading the header: {e}")))?;
    let reader = match hound::WavReader::new(std::io::Cursor::new(&head[..]).chain(reader)) {
        Ok(reader) => reader,
        Err(e) => {
            return Err(wav_error(match sniff_format(&head) {
                Some(found) => format!("{found}: {e}"),
                None => format!("not a WAV file: {e}"),
            }));
        }
    };
    let spec = reader.spec();
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(wav_error(format!(
            "{}: sample rate outside {MIN_RATE}-{MAX_RATE} Hz",
            describe(&spec)
        )));
    }
    let channels = usize::from(spec.channels.max(1));
    if spec.sample_rate == SAMPLE_RATE
        && channels == 1
        && spec.bits_per_sample == 16
        && spec.sample_format == hound::SampleFormat::Int
    {
        let mut out = Vec::new();
        for sample in reader.into_samples::<i16>() {
            out.push(sample.map_err(|e| wav_error(format!("{}: {e}", describe(&spec))))?);
        }
        return Ok(out);
    }

    let mono = read_mono(reader, &spec, channels)?;
    let samples = if spec.sample_rate == SAMPLE_RATE {
        mono
    } else {
        resample(&mono, spec.sample_rate, SAMPLE_RATE)
    };
    Ok(samples.iter().map(|&x| to_i16(x)).collect())
}

/// Reads every frame, mixed down to one channel, as values scaled to the 16-bit range.
fn read_mono<R: Read>(
    reader: hound::WavReader<R>,
    spec: &hound::WavSpec,
    channels: usize,
) -> Result<Vec<f64>, MediaError> {
    let failed = |e: hound::Error| wav_error(format!("{}: {e}", describe(spec)));
    let mut mono = Vec::new();
    let mut frame_sum = 0.0;
    let mut in_frame = 0usize;
    let mut push = |value: f64| {
        frame_sum += value;
        in_frame += 1;
        if in_frame == channels {
            mono.push(frame_sum / channels as f64);
            frame_sum = 0.0;
            in_frame = 0;
        }
    };
    match spec.sample_format {
        hound::SampleFormat::Int => {
            if !matches!(spec.bits_per_sample, 8 | 16 | 24 | 32) {
                return Err(wav_error(format!("{}: unsupported", describe(spec))));
            }
            // Full scale of the file's integers onto ±32768.
            let scale = 32768.0 / 2f64.powi(i32::from(spec.bits_per_sample) - 1);
            for sample in reader.into_samples::<i32>() {
                push(f64::from(sample.map_err(failed)?) * scale);
            }
        }
        hound::SampleFormat::Float => {
            for sample in reader.into_samples::<f32>() {
                let value = f64::from(sample.map_err(failed)?);
                push(if value.is_finite() {
                    value * 32768.0
                } else {
                    0.0
                });
            }
        }
    }
    Ok(mono)
}

/// How much of the start of a file is kept to describe a header hound refuses.
const HEAD_BYTES: usize = 4096;

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// Describes the `fmt ` chunk of a RIFF WAVE header ("format 0x0002 (ADPCM), 8000 Hz,
/// 1 channel, 4-bit"), if the start of the file holds one.
fn sniff_format(head: &[u8]) -> Option<String> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    loop {
        let id = head.get(at..at.checked_add(4)?)?;
        let len = usize::try_from(le_u32(head, at + 4)?).ok()?;
        let body = at.checked_add(8)?;
        if id == b"fmt " {
            let tag = le_u16(head, body)?;
            let channels = le_u16(head, body + 2)?;
            let rate = le_u32(head, body + 4)?;
            let bits = le_u16(head, body + 14)?;
            let name = match tag {
                0x0001 => "PCM",
                0x0002 => "ADPCM",
                0x0003 => "IEEE float",
                0x0006 => "A-law",
                0x0007 => "µ-law",
                0x0011 => "IMA ADPCM",
                0x0031 => "GSM 6.10",
                0x0055 => "MP3",
                0xFFFE => "extensible",
                _ => "unknown",
            };
            let channels = if channels == 1 {
                "1 channel".to_owned()
            } else {
                format!("{channels} channels")
            };
            return Some(format!(
                "format 0x{tag:04X} ({name}), {rate} Hz, {channels}, {bits}-bit"
            ));
        }
        // Chunks are padded to an even length (RIFF).
        at = body.checked_add(len)?.checked_add(len & 1)?;
    }
}

fn to_i16(value: f64) -> i16 {
    value
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// Reads the WAV file at `path` with [`load_wav`].
pub fn load_wav_file(path: &Path) -> Result<Vec<i16>, MediaError> {
    let file = std::fs::File::open(path)
        .map_err(|e| MediaError::Io(format!("{}: {e}", path.display())))?;
    load_wav(std::io::BufReader::new(file))
}

/// Zeroth-order modified Bessel function of the first kind (series), for the Kaiser window.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        let factor = half / f64::from(k);
        term *= factor * factor;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// The low-pass kernel h(u), u in periods of the lower rate, tabulated over
/// [0, KERNEL_HALF_WIDTH] (it is even) with `TABLE_STEPS` points per period.
fn kernel_table() -> Vec<f64> {
    let points = KERNEL_HALF_WIDTH as usize * TABLE_STEPS + 2;
    let norm = bessel_i0(KAISER_BETA);
    (0..points)
        .map(|i| {
            let u = i as f64 / TABLE_STEPS as f64;
            let x = 2.0 * CUTOFF * u;
            let sinc = if x == 0.0 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            };
            let r = u / KERNEL_HALF_WIDTH;
            let window = if r >= 1.0 {
                0.0
            } else {
                bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
            };
            2.0 * CUTOFF * sinc * window
        })
        .collect()
}

/// Band-limited resampling from `from` Hz to `to` Hz (windowed-sinc interpolation with the
/// cutoff relative to the lower rate). The output has round(len × to / from) samples.
fn resample(input: &[f64], from: u32, to: u32) -> Vec<f64> {
    let table = kernel_table();
    let lookup = |u: f64| -> f64 {
        let position = u.abs() * TABLE_STEPS as f64;
        let index = position.floor();
        let fraction = position - index;
        let index = index as usize;
        match (table.get(index), table.get(index + 1)) {
            (Some(a), Some(b)) => a + (b - a) * fraction,
            _ => 0.0,
        }
    };
    let from_f = f64::from(from);
    let to_f = f64::from(to);
    let low = from_f.min(to_f);
    // Input samples per lower-rate period, and the kernel reach in input samples.
    let step = low / from_f;
    let reach = KERNEL_HALF_WIDTH * from_f / low;
    let out_len =
        ((input.len() as u128 * u128::from(to) + u128::from(from) / 2) / u128::from(from)) as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        // Output time in input samples.
        let center = n as f64 * from_f / to_f;
        let first = (center - reach).ceil().max(0.0) as usize;
        let last = ((center + reach).floor().max(0.0) as usize).min(input.len().saturating_sub(1));
        let mut acc = 0.0;
        if let Some(window) = input.get(first..=last) {
            for (k, &x) in (first..).zip(window) {
                acc += x * lookup((k as f64 - center) * step);
            }
        }
        out.push(acc * step);
    }
    out
}

/// Plays a prompt held in memory: many players can share one `Arc<[i16]>`.
#[derive(Debug, Clone)]
pub struct Player {
    samples: Arc<[i16]>,
    looping: bool,
    position: usize,
}

impl Player {
    /// A player at the start of `samples`; with `looping` it starts again at the end.
    pub fn new(samples: Arc<[i16]>, looping: bool) -> Self {
        Player {
            samples,
            looping,
            position: 0,
        }
    }

    /// Writes up to `out.len()` samples and returns how many it wrote: fewer only when a
    /// non-looping prompt ran out (an empty prompt writes nothing, looping or not). The
    /// rest of `out` is untouched.
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut written = 0;
        while written < out.len() {
            if self.position >= self.samples.len() {
                if self.looping && !self.samples.is_empty() {
                    self.position = 0;
                } else {
                    break;
                }
            }
            let source = self.samples.get(self.position..).unwrap_or_default();
            let target = out.get_mut(written..).unwrap_or_default();
            let count = source.len().min(target.len());
            if let (Some(to), Some(from)) = (target.get_mut(..count), source.get(..count)) {
                to.copy_from_slice(from);
            }
            written += count;
            self.position += count;
        }
        written
    }

    /// Whether a non-looping prompt has been played to its end (a looping one finishes only
    /// when it is empty).
    pub fn finished(&self) -> bool {
        (self.samples.is_empty() || !self.looping) && self.position >= self.samples.len()
    }

    /// The next sample to play, as an index into the prompt.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The prompt's length in samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the prompt has no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Goes back to the start.
    pub fn rewind(&mut self) {
        self.position = 0;
    }
}

/// Where recorded audio goes.
pub trait SampleSink: Send {
    /// Appends `samples` (8 kHz mono).
    fn write(&mut self, samples: &[i16]) -> Result<(), MediaError>;
    /// Completes the recording and returns how many samples it holds.
    fn finish(self: Box<Self>) -> Result<u64, MediaError>;
}

/// The most samples one WAV file can hold: its data chunk length is a 32-bit byte count.
const MAX_RECORDED_SAMPLES: u64 = (u32::MAX as u64 - 64) / 2;

/// Records 8 kHz mono 16-bit WAV.
pub struct Recorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
    written: u64,
}

impl<W: Write + Seek> fmt::Debug for Recorder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("samples_written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> Recorder<W> {
    /// Starts a recording (writes the WAV header).
    pub fn new(writer: W) -> Result<Self, MediaError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::new(writer, spec)
            .map_err(|e| wav_error(format!("cannot start a recording: {e}")))?;
        Ok(Recorder { writer, written: 0 })
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.written
    }

    fn write_samples(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let count = samples.len() as u64;
        if self.written.saturating_add(count) > MAX_RECORDED_SAMPLES {
            return Err(wav_error(format!(
                "recording full: a WAV file holds at most {MAX_RECORDED_SAMPLES} samples"
            )));
        }
        for &sample in samples {
            self.writer
                .write_sample(sample)
                .map_err(|e| wav_error(format!("recording: {e}")))?;
        }
        self.written += count;
        Ok(())
    }
}

impl<W: Write + Seek + Send> SampleSink for Recorder<W> {
    fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        self.write_samples(samples)
    }

    fn finish(self: Box<Self>) -> Result<u64, MediaError> {
        let written = self.written;
        self.writer
            .finalize()
            .map_err(|e| wav_error(format!("finishing the recording: {e}")))?;
        Ok(written)
    }
}

/// Creates (or truncates) the file at `path` and starts a recording into it.
pub fn create_recording(
    path: &Path,
) -> Result<Recorder<std::io::BufWriter<std::fs::File>>, MediaError> {
    let file = std::fs::File::create(path)
        .map_err(|e| MediaError::Io(format!("{}: {e}", path.display())))?;
    Recorder::new(std::io::BufWriter::new(file))
}
