//! The record -> (8, 2500) model input transform of spec section 3: a 10 s window (zero-padded or
//! cut), FFT resampling with scipy.signal.resample semantics, rows I, II, V1..V6, and a per-lead
//! z-score with the unbiased std.

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;

use crate::{Ecg, EcgError, Lead};

/// The encoder's rows, in order.
pub const MODEL_LEADS: [Lead; 8] = Lead::MODEL;
/// Samples per row: 10 s at 250 Hz.
pub const MODEL_SAMPLES: usize = 2500;
/// The model sees exactly this much of a record.
pub const WINDOW_SECONDS: f64 = 10.0;
/// Records shorter than this are refused: under a second holds no full heartbeat, and padding it
/// to 10 s would feed the encoder mostly zeros.
pub const MIN_SECONDS: f64 = 1.0;

/// The (8, 2500) row-major model input: rows I, II, V1..V6.
///
/// Errors: missing leads (the error names them and lists what the file had), a record shorter
/// than [`MIN_SECONDS`], a non-finite sample inside the 10 s window (samples after it are ignored),
/// an unusable sampling rate.
pub fn model_input(ecg: &Ecg) -> Result<Vec<f32>, EcgError> {
    ecg.check()?;
    let missing: Vec<Lead> = MODEL_LEADS
        .iter()
        .copied()
        .filter(|l| ecg.lead(*l).is_none())
        .collect();
    if !missing.is_empty() {
        let mut found: Vec<String> = ecg
            .leads
            .iter()
            .map(|(l, _)| l.name().to_string())
            .collect();
        found.extend(ecg.other_channels.iter().cloned());
        return Err(EcgError::MissingLeads { missing, found });
    }
    let rate = ecg.sampling_rate_hz;
    let samples = ecg.len();
    let seconds = samples as f64 / rate;
    if seconds < MIN_SECONDS {
        return Err(EcgError::TooShort {
            seconds,
            samples,
            rate,
            min: MIN_SECONDS,
        });
    }
    // Nearest sample count, ties to even as Python's round() (the reference script) does.
    let window = (WINDOW_SECONDS * rate).round_ties_even() as usize;
    if window < 2 {
        return Err(EcgError::BadRate { rate });
    }
    let mut resampler = Resampler::new(window, MODEL_SAMPLES);
    let mut out = Vec::with_capacity(MODEL_LEADS.len() * MODEL_SAMPLES);
    let mut row = vec![0.0f64; window];
    for lead in MODEL_LEADS {
        let Some(x) = ecg.lead(lead) else {
            return Err(EcgError::MissingLeads {
                missing: vec![lead],
                found: Vec::new(),
            });
        };
        row.iter_mut().for_each(|v| *v = 0.0);
        for (i, (dst, &src)) in row.iter_mut().zip(x.iter()).enumerate() {
            if !src.is_finite() {
                return Err(EcgError::NonFinite {
                    lead,
                    index: i,
                    value: src,
                });
            }
            *dst = f64::from(src);
        }
        let mut y = resampler.run(&row);
        zscore(&mut y);
        out.extend(y.iter().map(|&v| v as f32));
    }
    Ok(out)
}

/// scipy.signal.resample(x, num) for real x (no window, no time axis), computed in f64.
pub fn resample(x: &[f64], num: usize) -> Vec<f64> {
    if x.is_empty() || num == 0 {
        return vec![0.0; num];
    }
    Resampler::new(x.len(), num).run(x)
}

/// Per-lead z-score: unbiased (n-1) std; a std of 0 becomes 1. "0" is read numerically as
/// std <= 1e-9 * max(1, |mean|): FFT round-off leaves a constant lead with a std of ~1e-16, and
/// dividing by that would turn round-off into unit-variance noise (the fixture script agrees).
pub fn zscore(x: &mut [f64]) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let std = var.sqrt();
    let std = if std <= 1e-9 * mean.abs().max(1.0) {
        1.0
    } else {
        std
    };
    x.iter_mut().for_each(|v| *v = (*v - mean) / std);
}

/// Plans both FFTs once so the eight rows of one record share them.
struct Resampler {
    n_in: usize,
    n_out: usize,
    forward: std::sync::Arc<dyn realfft::RealToComplex<f64>>,
    inverse: std::sync::Arc<dyn realfft::ComplexToReal<f64>>,
}

impl Resampler {
    fn new(n_in: usize, n_out: usize) -> Self {
        let mut planner = RealFftPlanner::<f64>::new();
        Resampler {
            n_in,
            n_out,
            forward: planner.plan_fft_forward(n_in),
            inverse: planner.plan_fft_inverse(n_out),
        }
    }

    fn run(&mut self, x: &[f64]) -> Vec<f64> {
        let (n_in, n_out) = (self.n_in, self.n_out);
        let mut input = x.to_vec();
        input.resize(n_in, 0.0);
        let mut spectrum = self.forward.make_output_vec();
        // The lengths match the plan by construction, so the FFT cannot fail.
        if self.forward.process(&mut input, &mut spectrum).is_err() {
            return vec![0.0; n_out];
        }
        let mut y = vec![Complex::new(0.0, 0.0); n_out / 2 + 1];
        let n = n_in.min(n_out);
        let nyq = n / 2 + 1;
        y[..nyq].copy_from_slice(&spectrum[..nyq]);
        // scipy splits or joins the Nyquist bin of the shorter length when it is even: doubled
        // when downsampling (its negative-frequency twin folds onto it), halved when upsampling
        // (the one bin becomes a +/- pair).
        if n % 2 == 0 {
            if n_out < n_in {
                y[n / 2] *= 2.0;
            } else if n_in < n_out {
                y[n / 2] *= 0.5;
            }
        }
        // irfft ignores the imaginary parts of the DC and (even length) Nyquist bins; realfft
        // insists they are zero.
        y[0].im = 0.0;
        if n_out % 2 == 0 {
            y[n_out / 2].im = 0.0;
        }
        let mut out = self.inverse.make_output_vec();
        if self.inverse.process(&mut y, &mut out).is_err() {
            return vec![0.0; n_out];
        }
        // realfft's inverse is unnormalised (x n_out); scipy then scales by n_out / n_in.
        let scale = 1.0 / n_in as f64;
        out.iter_mut().for_each(|v| *v *= scale);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_lengths_match() {
        let x: Vec<f64> = (0..10).map(|i| (i as f64 * 0.7).sin()).collect();
        let y = resample(&x, 10);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn pure_tone_survives_resampling() {
        // A tone below both Nyquist frequencies is represented exactly at either rate.
        let n_in = 1000;
        let n_out = 250;
        let x: Vec<f64> = (0..n_in)
            .map(|i| (2.0 * std::f64::consts::PI * 7.0 * i as f64 / n_in as f64).cos())
            .collect();
        let y = resample(&x, n_out);
        for (i, v) in y.iter().enumerate() {
            let want = (2.0 * std::f64::consts::PI * 7.0 * i as f64 / n_out as f64).cos();
            assert!((v - want).abs() < 1e-9, "{i}: {v} vs {want}");
        }
    }

    #[test]
    fn zscore_constant_is_centred_not_divided() {
        let mut x = vec![3.0; 5];
        zscore(&mut x);
        assert!(x.iter().all(|&v| v == 0.0));
        let mut y = vec![1.0, 2.0, 3.0];
        zscore(&mut y);
        assert_eq!(y, vec![-1.0, 0.0, 1.0]);
    }
}
