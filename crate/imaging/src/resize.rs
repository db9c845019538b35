//! Pillow's two resize filters, reproduced bit for bit: NEAREST (what QoQ-Med's data loader uses for
//! its pixel range) and BICUBIC (what the Hugging Face Qwen2-VL processor uses through PIL).
//! Following Pillow's C code (`Geometry.c` ImagingScaleAffine, `Resample.c`) rather than a textbook
//! formula is what makes the outputs equal PIL's, not just close.

use image::{GenericImageView, Pixel, RgbImage};

/// Source index for every output position of one axis, as Pillow's ImagingScaleAffine tabulates it:
/// the sample point starts at half a step and is accumulated in f64 (not multiplied), so the
/// rounding of `x * scale` matches PIL exactly.
pub fn nearest_table(in_size: u32, out_size: u32) -> Vec<u32> {
    let step = f64::from(in_size) / f64::from(out_size);
    let mut pos = step * 0.5;
    let last = in_size.saturating_sub(1);
    (0..out_size)
        .map(|_| {
            // Pillow's COORD(): truncation toward zero, -1 for negative positions.
            let idx = if pos < 0.0 {
                0
            } else {
                (pos as u64).min(u64::from(last)) as u32
            };
            pos += step;
            idx
        })
        .collect()
}

/// PIL `Image.resize(size, NEAREST)` of any image (any bit depth/colour type), producing 8-bit RGB.
/// Reads only the sampled pixels, so a huge source is never converted or copied as a whole.
pub fn nearest_rgb<I>(src: &I, xs: &[u32], ys: &[u32]) -> RgbImage
where
    I: GenericImageView,
    I::Pixel: Pixel,
    <I::Pixel as Pixel>::Subpixel: Into<f64>,
{
    let mut out = RgbImage::new(xs.len() as u32, ys.len() as u32);
    for (oy, &sy) in ys.iter().enumerate() {
        for (ox, &sx) in xs.iter().enumerate() {
            let px = src.get_pixel(sx, sy).to_rgb();
            out.put_pixel(
                ox as u32,
                oy as u32,
                image::Rgb(px.0.map(to_u8::<<I::Pixel as Pixel>::Subpixel>)),
            );
        }
    }
    out
}

/// Converts one sample of any depth to 8 bits: u8 as is, u16 by its high byte, floats in 0..1 scaled.
fn to_u8<S: Into<f64> + image::Primitive>(v: S) -> u8 {
    let max: f64 = S::DEFAULT_MAX_VALUE.into();
    let x: f64 = v.into();
    if max == 255.0 {
        x as u8
    } else if max == 65535.0 {
        (x as u32 >> 8) as u8
    } else {
        (x.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output position the first source
/// index and fixed-point weights (22 fractional bits).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn coeffs(in_size: u32, out_size: u32) -> Coeffs {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..xx * ksize + n];
        for (dst, &w) in row.iter_mut().zip(&k) {
            let w = if ww != 0.0 { w / ww } else { w };
            let f = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// PIL `Image.resize((w, h), BICUBIC)` of an 8-bit RGB image: horizontal pass then vertical pass,
/// each rounded to 8 bits, exactly as Pillow's Resample.c. A pass whose size does not change is
/// skipped, as Pillow does.
pub fn bicubic_rgb(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = src.dimensions();
    if (sw, sh) == (width, height) {
        return src.clone();
    }
    let horiz = if sw != width {
        let c = coeffs(sw, width);
        let mut out = RgbImage::new(width, sh);
        let srow_len = sw as usize * 3;
        for (y, orow) in out.chunks_exact_mut(width as usize * 3).enumerate() {
            let srow = &src.as_raw()[y * srow_len..(y + 1) * srow_len];
            for (x, &(xmin, n)) in c.bounds.iter().enumerate() {
                let w = &c.weights[x * c.ksize..x * c.ksize + n];
                for ch in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &wi) in w.iter().enumerate() {
                        acc += i64::from(srow[(xmin + i) * 3 + ch]) * i64::from(wi);
                    }
                    orow[x * 3 + ch] = clip8(acc);
                }
            }
        }
        Some(out)
    } else {
        None
    };
    let mid = horiz.as_ref().unwrap_or(src);
    if sh == height {
        return horiz.unwrap_or_else(|| src.clone());
    }
    let c = coeffs(sh, height);
    let mut out = RgbImage::new(width, height);
    let row_len = width as usize * 3;
    let mid = mid.as_raw();
    for (y, orow) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, n) = c.bounds[y];
        let w = &c.weights[y * c.ksize..y * c.ksize + n];
        for (i, o) in orow.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (j, &wj) in w.iter().enumerate() {
                acc += i64::from(mid[(ymin + j) * row_len + i]) * i64::from(wj);
            }
            *o = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_table_matches_pil_small_cases() {
        // PIL: Image.new('L', (5, 1)) with values 0..4, resized to 2 -> [1, 3]; to 8 -> 0 0 1 2 2 3 4 4
        assert_eq!(nearest_table(5, 2), vec![1, 3]);
        assert_eq!(nearest_table(5, 8), vec![0, 0, 1, 2, 2, 3, 4, 4]);
        assert_eq!(nearest_table(4, 4), vec![0, 1, 2, 3]);
    }

    #[test]
    fn bicubic_of_a_constant_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 13, 255]));
        let out = bicubic_rgb(&img, 56, 28);
        assert!(out.pixels().all(|p| p.0 == [200, 13, 255]));
    }
}
