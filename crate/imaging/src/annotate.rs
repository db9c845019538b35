//! Boxes with labels over an image, for `generate --annotate` and the web app. The model answers in
//! the frame it saw (the image after the QoQ pixel range); boxes are mapped back to the original
//! pixels. Labels use the public-domain 8x8 bitmap font of `font8x8`: no system fonts needed.

use font8x8::{BASIC_FONTS, UnicodeFonts};
use image::{Rgb, RgbImage};

const COLORS: [[u8; 3]; 6] = [
    [255, 64, 64],
    [64, 200, 255],
    [255, 210, 0],
    [80, 230, 120],
    [255, 120, 220],
    [255, 150, 40],
];

/// Draws each `(label, [x1, y1, x2, y2])` box, given in the `resized_size` (width, height) frame, over
/// a copy of `image` scaled to its own size. Boxes are clamped to the image; non-finite boxes are
/// skipped; swapped corners are reordered.
pub fn draw_boxes(
    image: &RgbImage,
    boxes: &[(String, [f64; 4])],
    resized_size: (u32, u32),
) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = out.dimensions();
    if w == 0 || h == 0 || resized_size.0 == 0 || resized_size.1 == 0 {
        return out;
    }
    let (sx, sy) = (
        f64::from(w) / f64::from(resized_size.0),
        f64::from(h) / f64::from(resized_size.1),
    );
    let thick = (w.min(h) / 300).max(2);
    let scale = (w.min(h) / 400).max(1);
    for (i, (label, b)) in boxes.iter().enumerate() {
        if b.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let color = Rgb(COLORS[i % COLORS.len()]);
        let clampx = |v: f64| (v * sx).round().clamp(0.0, f64::from(w - 1)) as u32;
        let clampy = |v: f64| (v * sy).round().clamp(0.0, f64::from(h - 1)) as u32;
        let (x1, x2) = (clampx(b[0].min(b[2])), clampx(b[0].max(b[2])));
        let (y1, y2) = (clampy(b[1].min(b[3])), clampy(b[1].max(b[3])));
        for t in 0..thick {
            let (l, r) = (x1.saturating_add(t).min(x2), x2.saturating_sub(t).max(x1));
            let (top, bot) = (y1.saturating_add(t).min(y2), y2.saturating_sub(t).max(y1));
            for x in x1..=x2 {
                out.put_pixel(x, top, color);
                out.put_pixel(x, bot, color);
            }
            for y in y1..=y2 {
                out.put_pixel(l, y, color);
                out.put_pixel(r, y, color);
            }
        }
        let text_h = 8 * scale + 2;
        let ty = if y1 >= text_h {
            y1 - text_h
        } else {
            (y1 + thick).min(h.saturating_sub(text_h))
        };
        draw_label(&mut out, label, x1, ty, scale, color);
    }
    out
}

/// Label text in black on a box of the box colour, clipped at the image edge.
fn draw_label(img: &mut RgbImage, text: &str, x0: u32, y0: u32, scale: u32, bg: Rgb<u8>) {
    let (w, h) = img.dimensions();
    let chars: Vec<char> = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    let tw = chars.len() as u32 * 8 * scale + 2;
    let th = 8 * scale + 2;
    for y in y0..(y0 + th).min(h) {
        for x in x0..(x0 + tw).min(w) {
            img.put_pixel(x, y, bg);
        }
    }
    for (k, c) in chars.iter().enumerate() {
        let glyph = BASIC_FONTS.get(*c).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits >> col & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + 1 + (k as u32 * 8 + col) * scale + dx;
                        let y = y0 + 1 + row as u32 * scale + dy;
                        if x < w && y < h {
                            img.put_pixel(x, y, Rgb([0, 0, 0]));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_map_back_to_original_pixels() {
        let img = RgbImage::from_pixel(200, 100, Rgb([255, 255, 255]));
        // The model saw a 100x50 image: the box (10, 10)-(50, 40) covers (20, 20)-(100, 80) here.
        let out = draw_boxes(
            &img,
            &[("nodule".into(), [10.0, 10.0, 50.0, 40.0])],
            (100, 50),
        );
        assert_eq!(out.get_pixel(20, 50).0, COLORS[0]);
        assert_eq!(out.get_pixel(100, 50).0, COLORS[0]);
        assert_eq!(out.get_pixel(60, 80).0, COLORS[0]);
        assert_eq!(out.get_pixel(60, 50).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(150, 90).0, [255, 255, 255]);
        // Out-of-range and NaN boxes neither panic nor draw outside.
        let _ = draw_boxes(
            &img,
            &[
                ("x".into(), [-5.0, 1e9, f64::NAN, 3.0]),
                ("y".into(), [90.0, 45.0, 1e6, 1e6]),
            ],
            (100, 50),
        );
    }
}
