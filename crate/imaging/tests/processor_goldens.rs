//! The preprocessing against the Hugging Face Qwen2VLImageProcessor (PIL backend) goldens written by
//! tools/fixtures/make_image_goldens.py. Tolerances: sides that are multiples of 28 (no resize)
//! must match exactly; after a bicubic resize the pixel values may differ by at most one 8-bit level
//! (1/255/std after normalisation), and the count of such differences is reported.

mod common;

use common::{compare, fixtures, manifest, pattern, read};
use image::{DynamicImage, RgbImage};
use qoqmed_imaging::{
    DecodedImage, PixelRange, ProcessorConfig, ReadOptions, preprocess, read_image,
};
use safetensors::SafeTensors;

fn config() -> ProcessorConfig {
    ProcessorConfig::from_json(&read("preprocessor_config.json")).expect("config")
}

fn decoded(img: RgbImage) -> DecodedImage {
    DecodedImage {
        image: DynamicImage::ImageRgb8(img),
        label: "pattern".into(),
    }
}

/// One 8-bit level after normalisation, for the channel with the smallest std.
fn one_level(cfg: &ProcessorConfig) -> f32 {
    let min_std = cfg.image_std.iter().copied().fold(f32::INFINITY, f32::min);
    1.0 / 255.0 / min_std + 1e-6
}

fn hf_golden(name: &str) -> (Vec<f32>, Vec<usize>, Vec<[u32; 3]>) {
    let bytes = read(&format!("{name}.safetensors"));
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let pv = st.tensor("pixel_values").unwrap();
    let data: Vec<f32> = pv
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let g = st.tensor("image_grid_thw").unwrap();
    let grid: Vec<i64> = g
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let grid = grid
        .chunks_exact(3)
        .map(|t| [t[0] as u32, t[1] as u32, t[2] as u32])
        .collect();
    (data, pv.shape().to_vec(), grid)
}

fn check_hf(name: &str, images: Vec<RgbImage>, tol: f32) -> (f32, usize) {
    let cfg = config();
    let (want, shape, grid) = hf_golden(name);
    let got = preprocess(
        &images.into_iter().map(decoded).collect::<Vec<_>>(),
        &cfg,
        PixelRange::Model,
    )
    .unwrap();
    assert_eq!(got.grid_thw, grid, "{name}: grid_thw");
    assert_eq!([got.rows, got.cols], [shape[0], shape[1]], "{name}: shape");
    let (max, over, first) = compare(&got.data, &want, tol);
    assert_eq!(
        over, 0,
        "{name}: {over} values differ by more than {tol} (max {max}, first at {first:?})"
    );
    let diffs = got.data.iter().zip(&want).filter(|(a, b)| a != b).count();
    eprintln!(
        "{name}: max |diff| {max:e}, {diffs} of {} values not bit-equal",
        want.len()
    );
    (max, diffs)
}

#[test]
fn sides_multiple_of_28_match_hf_exactly() {
    let (max, diffs) = check_hf("hf_exact_84x56", vec![pattern(84, 56, 1)], 0.0);
    assert_eq!((max, diffs), (0.0, 0));
}

#[test]
fn odd_size_bicubic_within_one_level_of_hf() {
    let tol = one_level(&config());
    check_hf("hf_bicubic_50x38", vec![pattern(50, 38, 1)], tol);
}

#[test]
fn two_images_concatenate_like_hf() {
    let (max, _) = check_hf(
        "hf_two_84x56_56x112",
        vec![pattern(84, 56, 1), pattern(56, 112, 1)],
        0.0,
    );
    assert_eq!(max, 0.0);
}

/// HF's patch order written out from its reshape/transpose, independently of the crate's loops:
/// row (bh, bw, mh, mw), column (c, t, py, px) <- pixel (y = (bh*2+mh)*14+py, x = (bw*2+mw)*14+px).
fn hf_order_from_levels(levels: &RgbImage, cfg: &ProcessorConfig) -> Vec<f32> {
    let (w, h) = levels.dimensions();
    let (gh, gw) = (h as usize / 14, w as usize / 14);
    let mut out = vec![0f32; gh * gw * 1176];
    for row in 0..gh * gw {
        let (blk, sub) = (row / 4, row % 4);
        let (bh, bw, mh, mw) = (blk / (gw / 2), blk % (gw / 2), sub / 2, sub % 2);
        for col in 0..1176 {
            let (c, rest) = (col / 392, col % 392);
            let (py, px) = ((rest % 196) / 14, rest % 14);
            let (y, x) = ((bh * 2 + mh) * 14 + py, (bw * 2 + mw) * 14 + px);
            let v = levels.get_pixel(x as u32, y as u32).0[c];
            let r = (f64::from(v) * (1.0 / 255.0)) as f32;
            out[row * 1176 + col] = (r - cfg.image_mean[c]) / cfg.image_std[c];
        }
    }
    out
}

fn check_levels_case(case: &serde_json::Value) -> (f32, usize) {
    let cfg = config();
    let name = case["name"].as_str().unwrap();
    let range = if case["range"] == "qoq" {
        PixelRange::Qoq
    } else {
        PixelRange::Model
    };
    let input = if let Some(p) = case["pattern"].as_array() {
        let block = case["block"].as_u64().unwrap_or(1) as u32;
        decoded(pattern(
            p[0].as_u64().unwrap() as u32,
            p[1].as_u64().unwrap() as u32,
            block,
        ))
    } else {
        let file = case["file"].as_str().unwrap();
        read_image(&read(file), file, &ReadOptions::default())
            .unwrap()
            .remove(0)
    };
    let got = preprocess(&[input], &cfg, range).unwrap();
    let grid: Vec<u32> = case["grid_thw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(got.grid_thw[0].to_vec(), grid, "{name}: grid_thw");
    let rs = case["range_size"].as_array().unwrap();
    assert_eq!(
        got.range_sizes[0],
        (
            rs[0].as_u64().unwrap() as u32,
            rs[1].as_u64().unwrap() as u32
        ),
        "{name}: size after the pixel range"
    );
    let levels = image::load_from_memory(&read(case["levels_png"].as_str().unwrap()))
        .unwrap()
        .to_rgb8();
    let want = hf_order_from_levels(&levels, &cfg);
    let (max, over, first) = compare(&got.data, &want, f32::INFINITY);
    let level = one_level(&cfg);
    eprintln!(
        "{name}: max |diff| {max:e} ({:.2} levels), {} values not bit-equal, first {first:?}",
        max / level,
        got.data.iter().zip(&want).filter(|(a, b)| a != b).count()
    );
    let _ = over;
    (
        max,
        got.data
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() > level)
            .count(),
    )
}

fn case(name: &str) -> serde_json::Value {
    manifest()["processor"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .expect(name)
}

#[test]
fn qoq_range_no_op_on_in_range_multiple_of_28() {
    let (max, _) = check_levels_case(&case("m28_336x252_qoq"));
    assert_eq!(max, 0.0);
}

#[test]
fn odd_size_model_range_within_one_level() {
    let (_, beyond) = check_levels_case(&case("odd_401x299_model"));
    assert_eq!(beyond, 0);
}

#[test]
fn qoq_range_scales_small_image_up_like_pil_nearest() {
    let (_, beyond) = check_levels_case(&case("qoq_up_40x30"));
    assert_eq!(beyond, 0);
}

#[test]
fn qoq_range_scales_big_image_down_like_pil_nearest() {
    let (_, beyond) = check_levels_case(&case("qoq_down_1500x1100"));
    assert_eq!(beyond, 0);
}

/// retina.jpg goes through our JPEG decoder (zune-jpeg via `image`) where the golden used PIL's
/// libjpeg-turbo; the decoders' IDCT/upsampling differ slightly, so this case gets a looser,
/// measured tolerance: max 6 levels and under 5% of values beyond one level.
#[test]
fn retina_jpeg_close_to_hf() {
    let c = case("retina_qoq");
    let cfg = config();
    let (max, beyond) = check_levels_case(&c);
    let total =
        (c["grid_thw"][1].as_u64().unwrap() * c["grid_thw"][2].as_u64().unwrap() * 1176) as usize;
    let levels = max / one_level(&cfg);
    eprintln!("retina: {levels:.2} levels max, {beyond} of {total} values beyond one level");
    assert!(levels <= 6.0 && (beyond as f64) < 0.05 * total as f64);
    assert!(fixtures().join("raster/retina.jpg").exists());
}
