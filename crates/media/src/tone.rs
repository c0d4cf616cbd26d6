//! Call-progress and DTMF tone generation at 8000 Hz.
//!
//! Call-progress tones follow the North American Precise Tone Plan (AT&T/Bellcore, as
//! published in ANSI T1.401 and Bellcore LSSGR GR-506: dial 350 + 440 Hz at −13 dBm0 per
//! component, audible ringing 440 + 480 Hz at −19 dBm0 (2 s on, 4 s off), busy
//! 480 + 620 Hz at −24 dBm0 (0.5 s on, 0.5 s off)). DTMF pairs are those of ITU-T Q.23.
//! Levels are in dBm0 per component on the scale of [`crate::level`].

use std::f64::consts::PI;
use std::time::Duration;

use crate::level::{SAMPLE_RATE, dbm0_to_amplitude};

/// Length of the on/off ramps: 16 samples, 2 ms at 8000 Hz (raised cosine).
const RAMP_SAMPLES: u64 = 16;

/// What to play: a sum of sines at one level, an optional on/off cadence, an optional
/// total duration.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneSpec {
    /// The component frequencies in Hz.
    pub frequencies: Vec<f64>,
    /// The level of each component in dBm0.
    pub level_dbm0: f64,
    /// The cadence as (on, off) pairs, repeated; empty means continuous.
    pub cadence: Vec<(Duration, Duration)>,
    /// How long the tone lasts in all (cadence included); `None` plays until stopped.
    pub duration: Option<Duration>,
}

impl ToneSpec {
    /// Dial tone: 350 + 440 Hz, −13 dBm0 per component, continuous (Precise Tone Plan).
    pub fn dial() -> Self {
        ToneSpec {
            frequencies: vec![350.0, 440.0],
            level_dbm0: -13.0,
            cadence: Vec::new(),
            duration: None,
        }
    }

    /// Audible ringing (ringback): 440 + 480 Hz, −19 dBm0, 2 s on 4 s off (Precise Tone Plan).
    pub fn ringback() -> Self {
        ToneSpec {
            frequencies: vec![440.0, 480.0],
            level_dbm0: -19.0,
            cadence: vec![(Duration::from_secs(2), Duration::from_secs(4))],
            duration: None,
        }
    }

    /// Busy (line busy): 480 + 620 Hz, −24 dBm0, 0.5 s on 0.5 s off (Precise Tone Plan).
    pub fn busy() -> Self {
        ToneSpec {
            frequencies: vec![480.0, 620.0],
            level_dbm0: -24.0,
            cadence: vec![(Duration::from_millis(500), Duration::from_millis(500))],
            duration: None,
        }
    }

    /// One continuous sine.
    pub fn single(frequency: f64, level_dbm0: f64, duration: Option<Duration>) -> Self {
        ToneSpec {
            frequencies: vec![frequency],
            level_dbm0,
            cadence: Vec::new(),
            duration,
        }
    }

    /// The in-band DTMF pair of ITU-T Q.23 for `digit` (0-9, *, #, A-D, case-insensitive),
    /// each component at −7 dBm0 (inside the per-frequency ranges of ITU-T Q.24), lasting
    /// `duration`. `None` for any other character.
    pub fn dtmf(digit: char, duration: Duration) -> Option<Self> {
        let (low, high) = dtmf_pair(digit)?;
        Some(ToneSpec {
            frequencies: vec![low, high],
            level_dbm0: -7.0,
            cadence: Vec::new(),
            duration: Some(duration),
        })
    }
}

/// The Q.23 (low group, high group) frequencies of a DTMF digit.
fn dtmf_pair(digit: char) -> Option<(f64, f64)> {
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, column) = match digit.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((*LOW.get(row)?, *HIGH.get(column)?))
}

/// A duration in samples at [`SAMPLE_RATE`], rounded to the nearest sample.
pub(crate) fn duration_to_samples(duration: Duration) -> u64 {
    let samples = (duration.as_nanos() * u128::from(SAMPLE_RATE) + 500_000_000) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// Generates the samples of a [`ToneSpec`].
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// Angular frequency per sample of each component.
    omegas: Vec<f64>,
    /// Peak amplitude of each component.
    amplitude: f64,
    /// (on, off) in samples.
    cadence: Vec<(u64, u64)>,
    /// Sum of the cadence; 0 when continuous.
    cycle: u64,
    /// Total samples, when the tone has a duration.
    total: Option<u64>,
    /// Samples produced so far.
    position: u64,
}

impl ToneGenerator {
    /// A generator at the start of `spec`.
    pub fn new(spec: ToneSpec) -> Self {
        let omegas = spec
            .frequencies
            .iter()
            .map(|f| 2.0 * PI * f / f64::from(SAMPLE_RATE))
            .collect();
        let cadence: Vec<(u64, u64)> = spec
            .cadence
            .iter()
            .map(|&(on, off)| (duration_to_samples(on), duration_to_samples(off)))
            .collect();
        let cycle = cadence.iter().fold(0u64, |sum, &(on, off)| {
            sum.saturating_add(on).saturating_add(off)
        });
        ToneGenerator {
            omegas,
            amplitude: dbm0_to_amplitude(spec.level_dbm0),
            cadence,
            cycle,
            total: spec.duration.map(duration_to_samples),
            position: 0,
        }
    }

    /// Writes up to `out.len()` samples, phase-continuous across calls, with on/off edges
    /// ramped over 2 ms (raised cosine) so there is no click. Returns how many it wrote:
    /// fewer than `out.len()` only when the duration ran out. The rest of `out` is untouched.
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let wanted = out.len() as u64;
        let count = match self.total {
            Some(total) => wanted.min(total.saturating_sub(self.position)),
            None => wanted,
        };
        let count = usize::try_from(count).unwrap_or(out.len());
        for (slot, t) in out.iter_mut().take(count).zip(self.position..) {
            let gain = self.envelope(t);
            let value = if gain > 0.0 {
                let time = t as f64;
                let sum: f64 = self.omegas.iter().map(|w| (w * time).sin()).sum();
                gain * self.amplitude * sum
            } else {
                0.0
            };
            *slot = value
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
        }
        self.position = self.position.saturating_add(count as u64);
        count
    }

    /// Whether a tone with a duration has produced all of it (never for one without).
    pub fn finished(&self) -> bool {
        self.total.is_some_and(|total| self.position >= total)
    }

    /// Samples produced so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The gain (0…1) at sample `t`: 0 in an off period, ramped at the edges of each on
    /// period and before the end of the duration.
    fn envelope(&self, t: u64) -> f64 {
        let (start, end) = match self.on_period(t) {
            Some(period) => period,
            None => return 0.0,
        };
        let end = match (end, self.total) {
            (Some(end), Some(total)) => Some(end.min(total)),
            (end, total) => end.or(total),
        };
        let from_start = t - start;
        let mut gain = ramp(from_start);
        if let Some(end) = end {
            gain = gain.min(ramp(end.saturating_sub(t).saturating_sub(1)));
        }
        gain
    }

    /// The on period (start, end if any) holding sample `t`, or `None` in an off period.
    fn on_period(&self, t: u64) -> Option<(u64, Option<u64>)> {
        if self.cadence.is_empty() || self.cycle == 0 {
            return Some((0, None));
        }
        let cycle_start = t - t % self.cycle;
        let mut offset = t % self.cycle;
        let mut start = cycle_start;
        for &(on, off) in &self.cadence {
            if offset < on {
                return Some((start, Some(start.saturating_add(on))));
            }
            if offset < on.saturating_add(off) {
                return None;
            }
            offset = offset.saturating_sub(on.saturating_add(off));
            start = start.saturating_add(on.saturating_add(off));
        }
        None
    }
}

/// Raised-cosine ramp gain `samples` into an edge.
fn ramp(samples: u64) -> f64 {
    if samples >= RAMP_SAMPLES {
        1.0
    } else {
        0.5 - 0.5 * (PI * (samples as f64 + 0.5) / RAMP_SAMPLES as f64).cos()
    }
}
