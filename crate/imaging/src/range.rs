//! QoQ-Med's pixel range: before the model's own processor, the released data loader
//! (DDVD233/QoQ_Med `verl/utils/dataset.py`, `ImageProcessMixin.process_image`) resizes every image
//! with PIL NEAREST so that W*H <= 524,288, then up so that W*H >= 65,536, and converts it to RGB.

use image::{DynamicImage, RgbImage};

use crate::resize::{nearest_rgb, nearest_table};

/// QoQ-Med's `max_pixels` (the released training configs).
pub const QOQ_MAX_PIXELS: u64 = 524_288;
/// QoQ-Med's `min_pixels`.
pub const QOQ_MIN_PIXELS: u64 = 65_536;

/// Which resize runs before the model's processor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelRange {
    /// QoQ-Med's nearest-neighbour range (the default, as the model was trained).
    #[default]
    Qoq,
    /// Only the model's processor (smart_resize); what a stock Qwen2.5-VL does.
    Model,
}

/// The size QoQ-Med's loader gives a `width` x `height` image: the same f64 arithmetic and `int()`
/// truncation as the Python code, first the downscale test, then the upscale test on its result.
pub fn qoq_size(width: u32, height: u32) -> (u32, u32) {
    let (mut w, mut h) = (width, height);
    let area = |w: u32, h: u32| u64::from(w) * u64::from(h);
    if area(w, h) > QOQ_MAX_PIXELS {
        let f = (QOQ_MAX_PIXELS as f64 / area(w, h) as f64).sqrt();
        (w, h) = ((f64::from(w) * f) as u32, (f64::from(h) * f) as u32);
    }
    if area(w, h) < QOQ_MIN_PIXELS && area(w, h) > 0 {
        let f = (QOQ_MIN_PIXELS as f64 / area(w, h) as f64).sqrt();
        (w, h) = ((f64::from(w) * f) as u32, (f64::from(h) * f) as u32);
    }
    (w, h)
}

/// Applies the pixel range and converts to 8-bit RGB. With [`PixelRange::Qoq`] both nearest steps
/// are composed into one index table per axis (nearest of nearest is a pure re-indexing, so this is
/// exact) and only the sampled pixels are read: a 20000x20000 input is never copied as a whole.
pub fn apply_pixel_range(img: &DynamicImage, range: PixelRange) -> RgbImage {
    let (w0, h0) = (img.width(), img.height());
    let (mut xs, mut ys): (Vec<u32>, Vec<u32>) = ((0..w0).collect(), (0..h0).collect());
    if range == PixelRange::Qoq {
        let area = |w: u32, h: u32| u64::from(w) * u64::from(h);
        let mut step = |w: u32, h: u32, limit: u64| {
            let f = (limit as f64 / area(w, h) as f64).sqrt();
            let (nw, nh) = ((f64::from(w) * f) as u32, (f64::from(h) * f) as u32);
            if (nw, nh) != (w, h) {
                xs = nearest_table(w, nw)
                    .into_iter()
                    .map(|i| xs[i as usize])
                    .collect();
                ys = nearest_table(h, nh)
                    .into_iter()
                    .map(|i| ys[i as usize])
                    .collect();
            }
            (nw, nh)
        };
        let (mut w, mut h) = (w0, h0);
        if area(w, h) > QOQ_MAX_PIXELS {
            (w, h) = step(w, h, QOQ_MAX_PIXELS);
        }
        if area(w, h) < QOQ_MIN_PIXELS && area(w, h) > 0 {
            step(w, h, QOQ_MIN_PIXELS);
        }
    }
    if xs.len() as u32 == w0 && ys.len() as u32 == h0 {
        // No resize: a plain conversion is faster than per-pixel sampling.
        return match img {
            DynamicImage::ImageRgb8(rgb) => rgb.clone(),
            other => other.to_rgb8(),
        };
    }
    match img {
        DynamicImage::ImageLuma8(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageLumaA8(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgb8(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgba8(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageLuma16(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageLumaA16(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgb16(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgba16(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgb32F(i) => nearest_rgb(i, &xs, &ys),
        DynamicImage::ImageRgba32F(i) => nearest_rgb(i, &xs, &ys),
        other => nearest_rgb(&other.to_rgb8(), &xs, &ys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qoq_sizes_follow_the_python_arithmetic() {
        // int(2000*sqrt(524288/(2000*1500))) = 836, int(1500*...) = 627
        assert_eq!(qoq_size(2000, 1500), (836, 627));
        assert_eq!(qoq_size(100, 80), (286, 228));
        assert_eq!(qoq_size(512, 512), (512, 512));
        assert_eq!(qoq_size(724, 724), (724, 724));
    }
}
