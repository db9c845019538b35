//! Shared helpers for the imaging tests: fixture paths, the synthetic pattern the fixture script
//! also computes, and comparisons that report count, max error and where.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbImage;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images")
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "missing fixture {}: {e}; run tools/fixtures/make_image_goldens.py",
            p.display()
        )
    })
}

pub fn manifest() -> serde_json::Value {
    serde_json::from_slice(&read("goldens.json")).expect("goldens.json")
}

/// `pattern(w, h, block)` of tools/fixtures/make_image_goldens.py, in the same integer arithmetic.
pub fn pattern(w: u32, h: u32, block: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (i64::from(x / block), i64::from(y / block));
        image::Rgb(std::array::from_fn(|c| {
            let c = c as i64;
            ((x * (c + 3) * 5 + y * (7 - c) * 3 + ((x ^ y) & 31) * 4 + (x / 9) * (y / 13) * 11)
                % 256) as u8
        }))
    })
}

/// Max absolute difference, number of elements above `tol`, and the first such index.
pub fn compare(got: &[f32], want: &[f32], tol: f32) -> (f32, usize, Option<usize>) {
    assert_eq!(
        got.len(),
        want.len(),
        "length differs: got {} want {}",
        got.len(),
        want.len()
    );
    let mut max = 0f32;
    let mut over = 0;
    let mut first = None;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let d = (a - b).abs();
        if d.is_nan() || d > tol {
            over += 1;
            first.get_or_insert(i);
        }
        if d > max || d.is_nan() {
            max = d;
        }
    }
    (max, over, first)
}

/// Per-pixel 8-bit comparison: (max difference, pixels differing at all, first differing index).
pub fn compare_u8(got: &[u8], want: &[u8]) -> (u8, usize, Option<usize>) {
    assert_eq!(
        got.len(),
        want.len(),
        "size differs: got {} want {}",
        got.len(),
        want.len()
    );
    let mut max = 0u8;
    let mut n = 0;
    let mut first = None;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let d = a.abs_diff(*b);
        if d > 0 {
            n += 1;
            first.get_or_insert(i);
        }
        max = max.max(d);
    }
    (max, n, first)
}
