//! The model's own image processor (Hugging Face `Qwen2VLImageProcessor`, PIL backend), read from
//! the checkpoint's `preprocessor_config.json`: smart_resize to multiples of patch*merge (bicubic),
//! rescale, normalise, duplicate to the temporal patch, flatten patches in 2x2 merge-group order.

use image::RgbImage;
use serde::Deserialize;

use crate::DecodedImage;
use crate::error::{ImagingError, Result};
use crate::range::{PixelRange, apply_pixel_range};
use crate::resize::bicubic_rgb;

/// The processor settings; absent keys take Qwen2.5-VL's published values.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessorConfig {
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: u32,
    pub temporal_patch_size: u32,
    pub merge_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
}

impl Default for ProcessorConfig {
    // OpenAI CLIP's mean/std as HF writes them, digit for digit (they parse to the same f32).
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        Self {
            min_pixels: 3136,
            max_pixels: 12_845_056,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
            rescale_factor: 1.0 / 255.0,
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
        }
    }
}

#[derive(Deserialize)]
struct SizeJson {
    shortest_edge: Option<u64>,
    longest_edge: Option<u64>,
}

#[derive(Deserialize)]
struct ConfigJson {
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
    size: Option<SizeJson>,
    patch_size: Option<u32>,
    temporal_patch_size: Option<u32>,
    merge_size: Option<u32>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
    rescale_factor: Option<f64>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
}

impl ProcessorConfig {
    /// Parses `preprocessor_config.json`. `min_pixels`/`max_pixels` win over `size` as in HF's
    /// constructor; unknown keys are ignored.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let j: ConfigJson = serde_json::from_slice(bytes)
            .map_err(|e| ImagingError::Config(format!("not valid JSON: {e}")))?;
        let d = Self::default();
        let three = |v: Option<Vec<f32>>, what: &str, default: [f32; 3]| -> Result<[f32; 3]> {
            match v {
                None => Ok(default),
                Some(v) => <[f32; 3]>::try_from(v.as_slice()).map_err(|_| {
                    ImagingError::Config(format!("{what} must have 3 values, got {}", v.len()))
                }),
            }
        };
        let cfg = Self {
            min_pixels: j
                .min_pixels
                .or(j.size.as_ref().and_then(|s| s.shortest_edge))
                .unwrap_or(d.min_pixels),
            max_pixels: j
                .max_pixels
                .or(j.size.as_ref().and_then(|s| s.longest_edge))
                .unwrap_or(d.max_pixels),
            patch_size: j.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: j.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: j.merge_size.unwrap_or(d.merge_size),
            image_mean: three(j.image_mean, "image_mean", d.image_mean)?,
            image_std: three(j.image_std, "image_std", d.image_std)?,
            rescale_factor: j.rescale_factor.unwrap_or(d.rescale_factor),
            do_resize: j.do_resize.unwrap_or(true),
            do_rescale: j.do_rescale.unwrap_or(true),
            do_normalize: j.do_normalize.unwrap_or(true),
        };
        if cfg.patch_size == 0 || cfg.merge_size == 0 || cfg.temporal_patch_size == 0 {
            return Err(ImagingError::Config(
                "patch_size, merge_size and temporal_patch_size must be positive".into(),
            ));
        }
        if cfg.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(ImagingError::Config(
                "image_std values must be finite and non-zero".into(),
            ));
        }
        Ok(cfg)
    }

    /// Values per flattened patch row: channels * temporal_patch * patch^2 (1176 for Qwen2.5-VL).
    pub fn patch_dim(&self) -> usize {
        3 * self.temporal_patch_size as usize * (self.patch_size as usize).pow(2)
    }

    /// HF `smart_resize`: (height, width) rounded to multiples of patch*merge inside
    /// [min_pixels, max_pixels], with Python's round-half-to-even and the same f64 operation order.
    pub fn smart_resize(&self, height: u32, width: u32) -> Result<(u32, u32)> {
        let geo = |detail: String| ImagingError::Geometry {
            width,
            height,
            detail,
        };
        if height == 0 || width == 0 {
            return Err(geo("an empty image has no size".into()));
        }
        let factor = f64::from(self.patch_size * self.merge_size);
        let (h, w) = (f64::from(height), f64::from(width));
        if h.max(w) / h.min(w) > 200.0 {
            return Err(geo("absolute aspect ratio must be smaller than 200".into()));
        }
        let mut h_bar = (h / factor).round_ties_even() * factor;
        let mut w_bar = (w / factor).round_ties_even() * factor;
        let (min_p, max_p) = (self.min_pixels as f64, self.max_pixels as f64);
        if h_bar * w_bar > max_p {
            let beta = ((h * w) / max_p).sqrt();
            h_bar = factor.max((h / beta / factor).floor() * factor);
            w_bar = factor.max((w / beta / factor).floor() * factor);
        } else if h_bar * w_bar < min_p {
            let beta = (min_p / (h * w)).sqrt();
            h_bar = (h * beta / factor).ceil() * factor;
            w_bar = (w * beta / factor).ceil() * factor;
        }
        if h_bar < factor
            || w_bar < factor
            || h_bar > f64::from(u16::MAX)
            || w_bar > f64::from(u16::MAX)
        {
            return Err(geo(format!(
                "smart_resize gave {w_bar}x{h_bar}; check min_pixels/max_pixels"
            )));
        }
        Ok((h_bar as u32, w_bar as u32))
    }
}

/// The processor's output for a batch of images, ready for the vision tower.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PixelValues {
    /// Row-major (rows, cols): one row per 14x14 patch, images one after another, each image's
    /// patches in 2x2 merge-group order; a row is (channel, temporal, patch_y, patch_x).
    pub data: Vec<f32>,
    /// Number of patches (sum of t*h*w over images).
    pub rows: usize,
    /// Values per patch (1176 for Qwen2.5-VL).
    pub cols: usize,
    /// Per image (t, h, w) in patches, as HF's `image_grid_thw`.
    pub grid_thw: Vec<[u32; 3]>,
    /// Per image the (width, height) after the pixel range, before smart_resize: the frame
    /// the model's boxes refer to (see [`crate::draw_boxes`]).
    pub range_sizes: Vec<(u32, u32)>,
}

/// Pixel range, then the model processor, for every image; the outputs are concatenated.
pub fn preprocess(
    images: &[DecodedImage],
    cfg: &ProcessorConfig,
    range: PixelRange,
) -> Result<PixelValues> {
    let mut out = PixelValues {
        cols: cfg.patch_dim(),
        ..Default::default()
    };
    for img in images {
        let ranged = apply_pixel_range(&img.image, range);
        out.range_sizes.push(ranged.dimensions());
        let thw = process_one(ranged, cfg, &mut out.data)?;
        out.rows += (thw[0] * thw[1] * thw[2]) as usize;
        out.grid_thw.push(thw);
    }
    Ok(out)
}

/// The model processor on one already-ranged RGB image; appends its patch rows to `data`.
pub fn process_one(img: RgbImage, cfg: &ProcessorConfig, data: &mut Vec<f32>) -> Result<[u32; 3]> {
    let (w, h) = img.dimensions();
    let (rh, rw) = if cfg.do_resize {
        cfg.smart_resize(h, w)?
    } else {
        (h, w)
    };
    let unit = cfg.patch_size * cfg.merge_size;
    if rh % unit != 0 || rw % unit != 0 || rh == 0 || rw == 0 {
        return Err(ImagingError::Geometry {
            width: w,
            height: h,
            detail: format!("sides must be multiples of {unit}"),
        });
    }
    let img = if (rw, rh) != (w, h) {
        bicubic_rgb(&img, rw, rh)
    } else {
        img
    };
    // HF: float64 multiply, cast to float32, then (x - mean) / std in float32. One table per
    // channel and 8-bit level gives the same numbers without touching each pixel twice.
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, slot) in table.iter_mut().enumerate() {
            let mut x = if cfg.do_rescale {
                (v as f64 * cfg.rescale_factor) as f32
            } else {
                v as f32
            };
            if cfg.do_normalize {
                x = (x - cfg.image_mean[c]) / cfg.image_std[c];
            }
            *slot = x;
        }
    }
    let (p, m, t) = (
        cfg.patch_size as usize,
        cfg.merge_size as usize,
        cfg.temporal_patch_size as usize,
    );
    let (gh, gw) = (rh as usize / p, rw as usize / p);
    let raw = img.as_raw();
    let stride = rw as usize * 3;
    data.reserve(gh * gw * cfg.patch_dim());
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                    for (c, table) in lut.iter().enumerate() {
                        for _ in 0..t {
                            for py in 0..p {
                                let row = &raw[(y0 + py) * stride..];
                                data.extend(
                                    (0..p).map(|px| table[row[(x0 + px) * 3 + c] as usize]),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    Ok([1, gh as u32, gw as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_hf_examples() {
        let cfg = ProcessorConfig::default();
        assert_eq!(cfg.smart_resize(190, 250).unwrap(), (196, 252));
        assert_eq!(cfg.smart_resize(224, 224).unwrap(), (224, 224));
        // round(42/28) = round(1.5) = 2 (half to even), round(70/28) = round(2.5) = 2
        assert_eq!(cfg.smart_resize(42, 70).unwrap(), (56, 56));
        assert!(cfg.smart_resize(10, 2500).is_err());
    }

    #[test]
    fn config_reads_size_and_rejects_bad_values() {
        let c = ProcessorConfig::from_json(
            br#"{"size": {"shortest_edge": 100, "longest_edge": 2000}}"#,
        )
        .unwrap();
        assert_eq!((c.min_pixels, c.max_pixels), (100, 2000));
        assert!(ProcessorConfig::from_json(br#"{"image_mean": [0.5]}"#).is_err());
        assert!(ProcessorConfig::from_json(b"{").is_err());
    }
}
