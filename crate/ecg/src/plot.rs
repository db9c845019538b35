//! The clinical 12-lead picture: four rows on red millimetre paper at 25 mm/s and 10 mm/mV.
//! Rows 1-3 hold I/aVR/V1/V4, II/aVL/V2/V5 and III/aVF/V3/V6, each column the matching 2.5 s of
//! the record (as electrocardiographs print them); row 4 is a 10 s lead II rhythm strip. Each row
//! starts with a 1 mV calibration pulse.
//!
//! Leads III, aVR, aVL and aVF missing from the file are derived from I and II (Einthoven:
//! III = II - I; Goldberger: aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2), and the footer says
//! so. Each lead is drawn around its own median so its baseline sits on the row line.

use image::{Rgb, RgbImage};

use crate::font;
use crate::{Ecg, EcgError, Lead};

const MM_PER_S: f64 = 25.0;
const MM_PER_MV: f64 = 10.0;
/// Where the traces start: left margin plus room for the calibration pulse; a multiple of 5 mm so
/// the major grid lines fall on 0.2 s marks.
const TRACE_X_MM: f64 = 15.0;
const PAGE_W_MM: f64 = TRACE_X_MM + 10.0 * MM_PER_S + 5.0;
const HEADER_MM: f64 = 10.0;
const ROW_MM: f64 = 40.0;
/// The baseline sits a little below the row's middle: R waves go up further than S waves go down.
const BASELINE_IN_ROW_MM: f64 = 23.0;
const PAGE_H_MM: f64 = HEADER_MM + 4.0 * ROW_MM + 5.0;

const PAPER: [u8; 3] = [255, 255, 255];
const MINOR: [u8; 3] = [250, 200, 200];
const MAJOR: [u8; 3] = [232, 120, 120];
const INK: [u8; 3] = [0, 0, 0];

/// Layout: which lead is drawn where, column by column, for the three 2.5 s rows.
const GRID: [[Lead; 4]; 3] = [
    [Lead::I, Lead::AVR, Lead::V1, Lead::V4],
    [Lead::II, Lead::AVL, Lead::V2, Lead::V5],
    [Lead::III, Lead::AVF, Lead::V3, Lead::V6],
];

#[derive(Clone, Debug)]
pub struct PlotOptions {
    /// Pixels per millimetre of paper; 5 gives a 1350 x 875 picture (about 127 dpi).
    pub px_per_mm: f64,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions { px_per_mm: 5.0 }
    }
}

/// The plot as a PNG file's bytes.
pub fn plot_png(ecg: &Ecg, opts: &PlotOptions) -> Result<Vec<u8>, EcgError> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let img = plot_rgb(ecg, opts)?;
    let mut out = Vec::new();
    // Best compression: the grid repeats, so this roughly halves a file that goes into docs/.
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| EcgError::Plot(e.to_string()))?;
    Ok(out)
}

/// The plot as an RGB image.
pub fn plot_rgb(ecg: &Ecg, opts: &PlotOptions) -> Result<RgbImage, EcgError> {
    ecg.check()?;
    let s = opts.px_per_mm;
    if !(s.is_finite() && (1.0..=40.0).contains(&s)) {
        return Err(EcgError::Plot(format!(
            "px_per_mm must be between 1 and 40, got {s}"
        )));
    }
    let mut canvas = Canvas::new(
        (PAGE_W_MM * s).round() as u32,
        (PAGE_H_MM * s).round() as u32,
        s,
    );
    canvas.grid();

    let (leads, derived) = complete_leads(ecg);
    let rate = ecg.sampling_rate_hz;
    let get = |lead: Lead| {
        leads
            .iter()
            .find(|(l, _)| *l == lead)
            .map(|(_, v)| v.as_slice())
    };
    for (row, cols) in GRID.iter().enumerate() {
        let base_mm = HEADER_MM + ROW_MM * row as f64 + BASELINE_IN_ROW_MM;
        canvas.calibration(base_mm);
        for (col, &lead) in cols.iter().enumerate() {
            let t0 = 2.5 * col as f64;
            let x_mm = TRACE_X_MM + t0 * MM_PER_S;
            if let Some(samples) = get(lead) {
                canvas.trace(samples, rate, t0, t0 + 2.5, x_mm, base_mm);
            }
            canvas.text(lead.name(), x_mm + 1.0, base_mm - 19.0, 0.6);
            if col > 0 {
                // Short bar marking where one lead's 2.5 s ends and the next begins.
                canvas.line_mm(x_mm, base_mm - 3.0, x_mm, base_mm + 3.0, 0.25);
            }
        }
    }
    let base_mm = HEADER_MM + ROW_MM * 3.0 + BASELINE_IN_ROW_MM;
    canvas.calibration(base_mm);
    if let Some(samples) = get(Lead::II) {
        canvas.trace(samples, rate, 0.0, 10.0, TRACE_X_MM, base_mm);
    }
    canvas.text("II", TRACE_X_MM + 1.0, base_mm - 19.0, 0.6);

    let mut header = format!(
        "25 mm/s  10 mm/mV  {} Hz  {:.1} s",
        trim_float(rate),
        ecg.duration_s()
    );
    if !derived.is_empty() {
        let names: Vec<&str> = derived.iter().map(|l| l.name()).collect();
        header.push_str(&format!("   {} derived from I and II", names.join(", ")));
    }
    canvas.text(&header, TRACE_X_MM, 3.0, 0.5);
    Ok(canvas.img)
}

fn trim_float(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

type Leads = Vec<(Lead, Vec<f32>)>;
/// How a limb lead follows from (I, II).
type Formula = fn(f32, f32) -> f32;

/// The record's leads plus any limb lead that I and II can give, and which were derived.
fn complete_leads(ecg: &Ecg) -> (Leads, Vec<Lead>) {
    let mut leads = ecg.leads.clone();
    let mut derived = Vec::new();
    if let (Some(i), Some(ii)) = (ecg.lead(Lead::I), ecg.lead(Lead::II)) {
        let formulas: [(Lead, Formula); 4] = [
            (Lead::III, |i, ii| ii - i),
            (Lead::AVR, |i, ii| -(i + ii) / 2.0),
            (Lead::AVL, |i, ii| i - ii / 2.0),
            (Lead::AVF, |i, ii| ii - i / 2.0),
        ];
        for (lead, f) in formulas {
            if ecg.lead(lead).is_none() {
                leads.push((lead, i.iter().zip(ii).map(|(&a, &b)| f(a, b)).collect()));
                derived.push(lead);
            }
        }
    }
    (leads, derived)
}

struct Canvas {
    img: RgbImage,
    /// Pixels per millimetre.
    s: f64,
}

impl Canvas {
    fn new(w: u32, h: u32, s: f64) -> Self {
        Canvas {
            img: RgbImage::from_pixel(w, h, Rgb(PAPER)),
            s,
        }
    }

    fn grid(&mut self) {
        let (w, h) = (self.img.width(), self.img.height());
        let major_w = (self.s / 5.0).round().max(1.0) as u32;
        // Minor lines first so major ones win where they cross; lines are counted from the trace
        // origin so every fifth one is major.
        for pass in [false, true] {
            let color = if pass { MAJOR } else { MINOR };
            let width = if pass { major_w } else { 1 };
            let mut k = 0i64;
            loop {
                let x_mm = (TRACE_X_MM % 5.0) + k as f64;
                let x = (x_mm * self.s).round() as u32;
                if x >= w {
                    break;
                }
                let major = (x_mm - TRACE_X_MM).rem_euclid(5.0).abs() < 1e-9;
                if major == pass {
                    for dx in 0..width {
                        for y in 0..h {
                            self.put(x + dx, y, color);
                        }
                    }
                }
                k += 1;
            }
            let mut k = 0i64;
            loop {
                let y_mm = k as f64;
                let y = (y_mm * self.s).round() as u32;
                if y >= h {
                    break;
                }
                if (k % 5 == 0) == pass {
                    for dy in 0..width {
                        for x in 0..w {
                            self.put(x, y + dy, color);
                        }
                    }
                }
                k += 1;
            }
        }
    }

    fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.img.width() && y < self.img.height() {
            self.img.put_pixel(x, y, Rgb(c));
        }
    }

    /// Darkens a pixel towards ink by `alpha` (0..1); max-blending keeps overlapping segments of
    /// one trace from piling up into blobs.
    fn ink(&mut self, x: i64, y: i64, alpha: f64) {
        if x < 0 || y < 0 || x >= i64::from(self.img.width()) || y >= i64::from(self.img.height()) {
            return;
        }
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        for (ch, &ink) in p.0.iter_mut().zip(&INK) {
            let blended = f64::from(ink) * alpha + f64::from(*ch) * (1.0 - alpha);
            *ch = (*ch).min(blended.round() as u8);
        }
    }

    /// An anti-aliased segment `width_mm` thick, in paper millimetres.
    fn line_mm(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width_mm: f64) {
        let s = self.s;
        self.segment(x0 * s, y0 * s, x1 * s, y1 * s, (width_mm * s).max(1.0));
    }

    fn segment(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64) {
        let r = width / 2.0;
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        // Clipped to the picture: a wild sample must not turn into a billion-pixel loop.
        let (w, h) = (i64::from(self.img.width()), i64::from(self.img.height()));
        let xmin = ((x0.min(x1) - r - 1.0).floor() as i64).max(0);
        let xmax = ((x0.max(x1) + r + 1.0).ceil() as i64).min(w - 1);
        let ymin = ((y0.min(y1) - r - 1.0).floor() as i64).max(0);
        let ymax = ((y0.max(y1) + r + 1.0).ceil() as i64).min(h - 1);
        for py in ymin..=ymax {
            for px in xmin..=xmax {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (x0 + t * dx - cx, y0 + t * dy - cy);
                let d = (qx * qx + qy * qy).sqrt();
                let alpha = (r + 0.5 - d).clamp(0.0, 1.0);
                if alpha > 0.0 {
                    self.ink(px, py, alpha);
                }
            }
        }
    }

    /// Samples from `t0` to `t1` seconds, drawn from `x_mm` with the baseline at `base_mm`.
    /// Non-finite samples leave a gap.
    fn trace(&mut self, samples: &[f32], rate: f64, t0: f64, t1: f64, x_mm: f64, base_mm: f64) {
        let centre = median(samples);
        let first = (t0 * rate).round().max(0.0) as usize;
        let last = ((t1 * rate).round() as usize).min(samples.len().saturating_sub(1));
        let s = self.s;
        let width = (0.3 * s).max(1.2);
        let point = |k: usize, v: f32| {
            let x = (x_mm + (k as f64 / rate - t0) * MM_PER_S) * s;
            let y = (base_mm - (f64::from(v) - centre) * MM_PER_MV) * s;
            (x, y)
        };
        let mut prev: Option<(f64, f64)> = None;
        for k in first..=last {
            let Some(&v) = samples.get(k) else { break };
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = point(k, v);
            match prev {
                Some(q) => self.segment(q.0, q.1, p.0, p.1, width),
                None => self.segment(p.0, p.1, p.0, p.1, width),
            }
            prev = Some(p);
        }
    }

    /// The 1 mV x 0.2 s calibration pulse before the row's trace.
    fn calibration(&mut self, base_mm: f64) {
        let top = base_mm - MM_PER_MV;
        let (a, b, c, d) = (
            TRACE_X_MM - 11.0,
            TRACE_X_MM - 9.0,
            TRACE_X_MM - 4.0,
            TRACE_X_MM - 2.0,
        );
        let w = 0.3;
        self.line_mm(a, base_mm, b, base_mm, w);
        self.line_mm(b, base_mm, b, top, w);
        self.line_mm(b, top, c, top, w);
        self.line_mm(c, top, c, base_mm, w);
        self.line_mm(c, base_mm, d, base_mm, w);
    }

    /// Text with its top-left at (`x_mm`, `y_mm`), each font pixel `px_mm` millimetres wide.
    fn text(&mut self, text: &str, x_mm: f64, y_mm: f64, px_mm: f64) {
        let scale = (px_mm * self.s).round().max(1.0) as u32;
        let (x0, y0) = (
            (x_mm * self.s).round() as u32,
            (y_mm * self.s).round() as u32,
        );
        let mut cells = Vec::new();
        font::render(text, |x, y| cells.push((x as u32, y as u32)));
        for (fx, fy) in cells {
            for dy in 0..scale {
                for dx in 0..scale {
                    self.put(x0 + fx * scale + dx, y0 + fy * scale + dy, INK);
                }
            }
        }
    }
}

fn median(samples: &[f32]) -> f64 {
    let mut v: Vec<f32> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    f64::from(*m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_ink(img: &RgbImage, x_mm: f64, y_mm: f64, s: f64) -> bool {
        let p = img.get_pixel((x_mm * s).round() as u32, (y_mm * s).round() as u32);
        p.0.iter().all(|&c| c < 80)
    }

    /// 25 mm/s and 10 mm/mV: a 1 mV pulse from 1.0 to 1.5 s in lead I lands 10 mm above the first
    /// row's baseline between 40 and 52.5 mm from the trace origin; grid and calibration in place.
    #[test]
    fn paper_speed_and_gain() {
        let rate = 500.0;
        let pulse: Vec<f32> = (0..5000)
            .map(|k| if (500..750).contains(&k) { 1.0 } else { 0.0 })
            .collect();
        let zeros = vec![0.0f32; 5000];
        let mut channels = vec![("I".to_string(), pulse)];
        for name in ["II", "V1", "V2", "V3", "V4", "V5", "V6"] {
            channels.push((name.to_string(), zeros.clone()));
        }
        let ecg = Ecg::from_channels(rate, channels).expect("ecg");
        let s = 8.0;
        let img = plot_rgb(&ecg, &PlotOptions { px_per_mm: s }).expect("plot");
        assert_eq!((img.width(), img.height()), (2160, 1400));
        let base = HEADER_MM + BASELINE_IN_ROW_MM;
        let t_mm = |t: f64| TRACE_X_MM + t * MM_PER_S;
        assert!(
            is_ink(&img, t_mm(1.2), base - 10.0, s),
            "pulse top at 10 mm"
        );
        assert!(
            !is_ink(&img, t_mm(1.2), base, s),
            "no baseline under the pulse"
        );
        assert!(
            is_ink(&img, t_mm(0.5), base, s),
            "baseline before the pulse"
        );
        assert!(is_ink(&img, t_mm(1.8), base, s), "baseline after the pulse");
        // Calibration pulse: 10 mm tall, before the trace.
        assert!(is_ink(&img, TRACE_X_MM - 6.5, base - 10.0, s));
        // Paper: a major line at the trace origin, a minor one 1 mm later, blank paper between.
        let px = |x_mm: f64, y_mm: f64| {
            img.get_pixel((x_mm * s).round() as u32, (y_mm * s).round() as u32)
                .0
        };
        assert_eq!(px(TRACE_X_MM, 2.5), MAJOR);
        assert_eq!(px(TRACE_X_MM + 1.0, 2.5), MINOR);
        assert_eq!(px(TRACE_X_MM + 0.5, 2.5), PAPER);
    }

    #[test]
    fn derives_missing_limb_leads() {
        let ecg = Ecg::from_channels(
            100.0,
            vec![("I".into(), vec![1.0; 4]), ("II".into(), vec![3.0; 4])],
        )
        .expect("ecg");
        let (leads, derived) = complete_leads(&ecg);
        assert_eq!(derived, vec![Lead::III, Lead::AVR, Lead::AVL, Lead::AVF]);
        let get = |l: Lead| leads.iter().find(|(x, _)| *x == l).map(|(_, v)| v[0]);
        assert_eq!(get(Lead::III), Some(2.0));
        assert_eq!(get(Lead::AVR), Some(-2.0));
        assert_eq!(get(Lead::AVL), Some(-0.5));
        assert_eq!(get(Lead::AVF), Some(2.5));
    }
}
