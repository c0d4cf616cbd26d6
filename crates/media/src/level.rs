//! Signal levels in dBm0 on the 16-bit sample scale.
//!
//! ITU-T G.711 §2 ("theoretical maximum load capacity") puts the full-scale µ-law sine at
//! +3.17 dBm0: a sine whose peak is the largest µ-law decision value, 8159 in 14-bit units,
//! 32 636 on the 16-bit scale (×4). A sine at 0 dBm0 therefore has the peak
//! 32 636 × 10^(−3.17/20) = [`DBM0_PEAK`] ≈ 22 656.7.
//!
//! The same reference is used for A-law (G.711 gives +3.14 dBm0 for the A-law full-scale
//! sine of peak 4096 × 8 = 32 768, i.e. 0 dBm0 at ≈ 22 827: A-law levels computed here read
//! 0.065 dB higher than against A-law's own reference). The µ-law digital milliwatt of
//! G.711 Table 5 measures 0.00 dBm0 on this scale.

/// The sample rate of every block in this crate: 8000 Hz mono, 16-bit (G.711's rate).
pub const SAMPLE_RATE: u32 = 8000;

/// Peak amplitude (16-bit scale) of a sine at 0 dBm0: 8159 × 4 × 10^(−3.17/20).
pub const DBM0_PEAK: f64 = 22_656.714_101_541_99;

/// Peak amplitude (16-bit scale) of a sine at `dbm0`: [`DBM0_PEAK`] × 10^(dbm0/20).
pub fn dbm0_to_amplitude(dbm0: f64) -> f64 {
    DBM0_PEAK * 10f64.powf(dbm0 / 20.0)
}

/// The level in dBm0 of a sine whose peak amplitude (16-bit scale) is `peak`;
/// −∞ for a zero peak.
pub fn amplitude_to_dbm0(peak: f64) -> f64 {
    20.0 * (peak.abs() / DBM0_PEAK).log10()
}
