//! Grey levels to 8 bits: the VOI LUT functions of DICOM PS3.3 C.11.2.1.2 (also used for NIfTI).

use crate::read::Window;

/// The VOI LUT Function (0028,1056).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// The window spanning the data's min..max (used when neither the file nor the caller gives one):
/// with LINEAR_EXACT it maps min to 0 and max to 255.
pub fn min_max_window(x: &[f64]) -> Window {
    let (lo, hi) = x
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return Window {
            center: 0.0,
            width: 1.0,
        };
    }
    Window {
        center: (lo + hi) / 2.0,
        width: (hi - lo).max(f64::MIN_POSITIVE),
    }
}

/// Applies the window with output range 0..=255, rounding to the nearest level.
pub fn window_to_u8(x: &[f64], win: Window, function: VoiFunction) -> Vec<u8> {
    let (c, w) = (win.center, win.width);
    let f = |v: f64| -> f64 {
        match function {
            VoiFunction::Linear if w <= 1.0 => {
                if v > c - 0.5 {
                    255.0
                } else {
                    0.0
                }
            }
            VoiFunction::Linear => {
                if v <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if v > c - 0.5 + (w - 1.0) / 2.0 {
                    255.0
                } else {
                    ((v - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
                }
            }
            VoiFunction::LinearExact => ((v - c) / w + 0.5) * 255.0,
            VoiFunction::Sigmoid => 255.0 / (1.0 + (-4.0 * (v - c) / w).exp()),
        }
    };
    x.iter()
        .map(|&v| {
            if v.is_nan() {
                0
            } else {
                f(v).round().clamp(0.0, 255.0) as u8
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        let win = Window {
            center: 40.0,
            width: 400.0,
        };
        let y = window_to_u8(
            &[-1000.0, -160.5, 39.5, 240.0, 3000.0],
            win,
            VoiFunction::Linear,
        );
        assert_eq!(y, vec![0, 0, 128, 255, 255]);
        let mm = min_max_window(&[10.0, 20.0, 15.0]);
        assert_eq!(
            window_to_u8(&[10.0, 15.0, 20.0], mm, VoiFunction::LinearExact),
            vec![0, 128, 255]
        );
    }
}
