//! The IoU term: boxes of the first parsable fenced block against a ground-truth box or mask.
//!
//! The released `calculate_bbox_iou` is reproduced with its Python semantics, because training
//! scored responses this way: coordinates are truncated with `int()` and clipped before they are
//! rasterised against a mask, but compared as raw numbers against a box; a box with fewer than 4
//! values scores 0 yet still counts in the mean; and a value whose type makes Python raise outside
//! the per-box `try` (a box that is a number, a non-numeric coordinate against a box) zeroes the
//! whole term.

use qoqmed_output::{Literal, boxes_of, load_first_json};
use serde::Serialize;

use crate::error::RewardError;

/// How the IoUs of several predicted boxes combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IouReduce {
    /// The released code: the mean over predicted boxes.
    Mean,
    /// The paper: the best box.
    Max,
}

/// A binary segmentation mask, row-major, `true` = foreground.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    width: u32,
    height: u32,
    pixels: Vec<bool>,
}

impl Mask {
    /// A mask from row-major foreground flags (`width * height` of them).
    pub fn new(width: u32, height: u32, pixels: Vec<bool>) -> Result<Self, RewardError> {
        if pixels.len() as u64 != u64::from(width) * u64::from(height) {
            return Err(RewardError::MaskSize {
                width,
                height,
                len: pixels.len(),
            });
        }
        Ok(Mask {
            width,
            height,
            pixels,
        })
    }

    /// Decode a PNG mask (any bit depth or colour type); a pixel is foreground when any colour
    /// channel is above 0 (the released code's `seg_mask > 0`), alpha is ignored.
    pub fn from_png(bytes: &[u8]) -> Result<Self, RewardError> {
        let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)?;
        // 16-bit keeps a value of 1 in an 8-bit mask distinct from 0.
        let rgba = image.to_rgba16();
        let (width, height) = rgba.dimensions();
        let pixels = rgba
            .pixels()
            .map(|p| p.0[..3].iter().any(|&c| c > 0))
            .collect();
        Mask::new(width, height, pixels)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    fn foreground(&self) -> usize {
        self.pixels.iter().filter(|&&p| p).count()
    }

    /// Foreground pixels inside the inclusive pixel rectangle.
    fn count_in(&self, x1: usize, y1: usize, x2: usize, y2: usize) -> usize {
        let w = self.width as usize;
        (y1..=y2)
            .map(|y| {
                self.pixels[y * w + x1..=y * w + x2]
                    .iter()
                    .filter(|&&p| p)
                    .count()
            })
            .sum()
    }
}

/// The ground truth a response's boxes are scored against. The mask wins when it has foreground;
/// an empty mask falls back to the box, as in the released code.
#[derive(Clone, Copy, Debug, Default)]
pub struct Region<'a> {
    pub mask: Option<&'a Mask>,
    /// `[x1, y1, x2, y2]` in the same pixel frame as the predicted boxes.
    pub bbox: Option<[f64; 4]>,
}

/// IoU of the response's boxes against the region, in [0, 1]; 0 without boxes or region.
pub fn iou_score(response: &str, region: Region<'_>, reduce: IouReduce) -> f64 {
    let Some(json) = load_first_json(response) else {
        return 0.0;
    };
    let mut entries: Vec<Literal> = boxes_of(&json)
        .into_iter()
        .filter_map(|item| item.get("bbox_2d").cloned())
        .collect();
    if entries.is_empty() {
        return 0.0;
    }
    // "If single layer bbox, wrap it in a list": a first entry that is not a list makes the whole
    // list one entry.
    if !matches!(entries[0], Literal::List(_)) {
        entries = vec![Literal::List(entries)];
    }
    let mask = region.mask.filter(|m| m.foreground() > 0);
    let per_box: Option<Vec<f64>> = match (mask, region.bbox) {
        (Some(mask), _) => entries.iter().map(|e| mask_iou(e, mask)).collect(),
        (None, Some(gt)) => entries.iter().map(|e| box_iou(e, gt)).collect(),
        (None, None) => return 0.0,
    };
    let Some(per_box) = per_box else {
        return 0.0;
    };
    match reduce {
        IouReduce::Mean => per_box.iter().sum::<f64>() / per_box.len() as f64,
        IouReduce::Max => per_box.iter().copied().fold(0.0, f64::max),
    }
}

/// Python's `len()`; `None` where it raises (numbers, booleans, None).
fn py_len(value: &Literal) -> Option<usize> {
    match value {
        Literal::List(v) | Literal::Tuple(v) | Literal::Set(v) => Some(v.len()),
        Literal::Dict(v) => Some(v.len()),
        Literal::Str(s) => Some(s.chars().count()),
        _ => None,
    }
}

/// Python's `int()` of one coordinate; `None` where it raises.
fn py_int(value: &Literal) -> Option<i64> {
    match value {
        Literal::Bool(b) => Some(i64::from(*b)),
        Literal::Int(i) => Some(*i),
        Literal::Float(f) if f.is_finite() => {
            Some(f.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64)
        }
        Literal::Str(s) => s.trim().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// The first four coordinates as `int()` sees them (a string's characters count as items).
fn int_coords(entry: &Literal) -> Option<[i64; 4]> {
    let items: Vec<Literal> = match entry {
        Literal::List(v) | Literal::Tuple(v) => v.iter().take(4).cloned().collect(),
        Literal::Str(s) => s
            .chars()
            .take(4)
            .map(|c| Literal::Str(c.to_string()))
            .collect(),
        _ => return None,
    };
    let mut out = [0i64; 4];
    for (slot, item) in out.iter_mut().zip(&items) {
        *slot = py_int(item)?;
    }
    Some(out)
}

/// One box against the mask; `None` propagates an exception that escapes the per-box `try`.
fn mask_iou(entry: &Literal, mask: &Mask) -> Option<f64> {
    let len = py_len(entry)?;
    if len < 4 {
        return Some(0.0);
    }
    // Errors inside `bbox_to_mask` are caught per box: that box scores 0.
    let Some([bx1, by1, bx2, by2]) = int_coords(entry) else {
        return Some(0.0);
    };
    let (w, h) = (i64::from(mask.width), i64::from(mask.height));
    let clip = |v: i64, size: i64| v.min(size - 1).max(0) as usize;
    let (mut x1, mut y1, mut x2, mut y2) = (clip(bx1, w), clip(by1, h), clip(bx2, w), clip(by2, h));
    if x1 > x2 {
        std::mem::swap(&mut x1, &mut x2);
    }
    if y1 > y2 {
        std::mem::swap(&mut y1, &mut y2);
    }
    let foreground = mask.foreground();
    // A box that collapses to a line after clipping is empty (the code's `x1 < x2 and y1 < y2`).
    let (inter, area) = if x1 < x2 && y1 < y2 {
        (mask.count_in(x1, y1, x2, y2), (x2 - x1 + 1) * (y2 - y1 + 1))
    } else {
        (0, 0)
    };
    let union = area + foreground - inter;
    Some(if union > 0 {
        inter as f64 / union as f64
    } else {
        0.0
    })
}

/// One box against the ground-truth box, on raw coordinates; `None` where Python would raise.
fn box_iou(entry: &Literal, gt: [f64; 4]) -> Option<f64> {
    let len = py_len(entry)?;
    if len < 4 {
        return Some(0.0);
    }
    let items = entry.items()?;
    let mut p = [0.0f64; 4];
    for (slot, item) in p.iter_mut().zip(items) {
        *slot = item.as_number()?;
    }
    let x1 = p[0].max(gt[0]);
    let y1 = p[1].max(gt[1]);
    let x2 = p[2].min(gt[2]);
    let y2 = p[3].min(gt[3]);
    if x1 >= x2 || y1 >= y2 {
        return Some(0.0);
    }
    let inter = (x2 - x1) * (y2 - y1);
    let union = (p[2] - p[0]) * (p[3] - p[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter;
    Some(if union > 0.0 { inter / union } else { 0.0 })
}
