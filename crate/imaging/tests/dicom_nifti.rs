//! Real DICOM and NIfTI files (pydicom, pydicom-data, nibabel wheels; see
//! tests/fixtures/images/SOURCES.md) against the 8-bit references of
//! tools/fixtures/make_image_goldens.py (pydicom decoding + modality LUT + the first window of the
//! file, or min..max as LINEAR_EXACT; MONOCHROME1 inverted; nibabel for NIfTI).
//! Tolerances: grey levels and lossless colour at most 1 level (float rounding at .5 steps);
//! YBR colour conversion at most 2 levels; lossy JPEG 3 levels (different IDCTs; measured 1).

mod common;

use common::{compare_u8, manifest, read};
use qoqmed_imaging::{ImagingError, ReadOptions, Window, read_image, sample_indices};

fn expected(dir: &str, png: &str) -> image::DynamicImage {
    image::load_from_memory(&read(&format!("{dir}/{png}"))).unwrap()
}

/// Reads `file` with `frames` and compares each output to the expected PNG of its sampled frame.
fn check(dir: &str, file: &str, frames: usize, expected_pngs: &[String], tol: u8) -> u8 {
    let imgs = read_image(
        &read(&format!("{dir}/{file}")),
        file,
        &ReadOptions {
            frames,
            window: None,
        },
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    let picks = sample_indices(expected_pngs.len(), frames);
    assert_eq!(imgs.len(), picks.len(), "{file}: number of frames");
    let mut worst = 0;
    for (img, &f) in imgs.iter().zip(&picks) {
        let want = expected(dir, &expected_pngs[f]);
        let color = want.color().has_color();
        let (got, want) = if color {
            (img.image.to_rgb8().into_raw(), want.to_rgb8().into_raw())
        } else {
            (img.image.to_luma8().into_raw(), want.to_luma8().into_raw())
        };
        assert_eq!(
            (img.image.width(), img.image.height()),
            (
                expected(dir, &expected_pngs[f]).width(),
                expected(dir, &expected_pngs[f]).height()
            )
        );
        let (max, n, first) = compare_u8(&got, &want);
        eprintln!("{file} frame {f}: max diff {max}, {n} samples differ (first {first:?})");
        assert!(
            max <= tol,
            "{file} frame {f}: max diff {max} > {tol} ({n} samples differ, first at {first:?})"
        );
        worst = worst.max(max);
    }
    worst
}

fn entry(file: &str) -> Vec<String> {
    let m = manifest();
    let e = m["dicom"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in manifest"));
    e["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn ct_signed_with_rescale() {
    check("dicom", "CT_small.dcm", 2, &entry("CT_small.dcm"), 1);
}

#[test]
fn mr_in_five_transfer_syntaxes_gives_one_image() {
    let want = entry("MR_small.dcm");
    for f in [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        check("dicom", f, 2, &want, 1);
    }
}

#[test]
fn deflated_and_jpeg_lossless_syntaxes() {
    check("dicom", "image_dfl.dcm", 2, &entry("image_dfl.dcm"), 1);
    check("dicom", "JPEG-LL.dcm", 2, &entry("JPEG-LL.dcm"), 1);
}

/// pydicom-data's copy of the 10-frame MR whose JPEG 2000 pixel data is a few bytes short: openjp2
/// decodes it without an error (documented behaviour), no panic, and the frames equal the complete
/// file's (measured: exact).
#[test]
fn truncated_jpeg2000_decodes_what_is_there() {
    let bytes = read("dicom/emri_small_jpeg_2k_lossless_too_short.dcm");
    let r = std::panic::catch_unwind(|| {
        read_image(
            &bytes,
            "short.dcm",
            &ReadOptions {
                frames: 4,
                window: None,
            },
        )
    });
    let imgs = r.expect("no panic").expect("decodes");
    let want = entry("emri_small.dcm");
    for (img, f) in imgs.iter().zip(sample_indices(10, 4)) {
        let (max, n, _) = compare_u8(
            img.image.to_luma8().as_raw(),
            expected("dicom", &want[f]).to_luma8().as_raw(),
        );
        eprintln!("too_short frame {f}: max diff {max}, {n} differ");
        assert!(max <= 1, "frame {f}: max diff {max}");
    }
}

#[test]
fn cr_chest_monochrome1_is_inverted() {
    check(
        "dicom",
        "CR_RG1_every4th.dcm",
        2,
        &entry("CR_RG1_every4th.dcm"),
        1,
    );
}

#[test]
fn rgb_palette_and_ybr() {
    check(
        "dicom",
        "SC_rgb_small_odd.dcm",
        2,
        &entry("SC_rgb_small_odd.dcm"),
        0,
    );
    check(
        "dicom",
        "examples_palette.dcm",
        2,
        &entry("examples_palette.dcm"),
        0,
    );
    check(
        "dicom",
        "SC_ybr_full_422_uncompressed.dcm",
        2,
        &entry("SC_ybr_full_422_uncompressed.dcm"),
        2,
    );
    check("dicom", "US1_J2KR.dcm", 2, &entry("US1_J2KR.dcm"), 0);
    check(
        "dicom",
        "SC_rgb_jpeg_dcmtk.dcm",
        2,
        &entry("SC_rgb_jpeg_dcmtk.dcm"),
        3,
    );
}

#[test]
fn multi_frame_sampling() {
    let rle = entry("SC_rgb_rle_2frame.dcm");
    check("dicom", "SC_rgb_rle_2frame.dcm", 2, &rle, 0);
    let emri = entry("emri_small.dcm");
    for frames in [1, 2, 3, 4] {
        check("dicom", "emri_small.dcm", frames, &emri, 1);
        check("dicom", "emri_small_RLE.dcm", frames, &emri, 1);
    }
}

/// jpeg-decoder (the pure-Rust JPEG codec dicom-rs uses) has no 12-bit JPEG: a documented
/// limitation that must surface as a clear error naming the cause, not a panic.
#[test]
fn jpeg_extended_12_bit_is_a_clear_error() {
    let err = read_image(
        &read("dicom/JPEG-lossy.dcm"),
        "JPEG-lossy.dcm",
        &ReadOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ImagingError::Dicom { .. }) && msg.contains("SamplePrecision(12)"),
        "{msg}"
    );
}

#[test]
fn caller_window_overrides_the_file() {
    let bytes = read("dicom/CT_small.dcm");
    let narrow = read_image(
        &bytes,
        "ct.dcm",
        &ReadOptions {
            frames: 1,
            window: Some(Window::new(40.0, 80.0).unwrap()),
        },
    )
    .unwrap();
    let wide = read_image(
        &bytes,
        "ct.dcm",
        &ReadOptions {
            frames: 1,
            window: Some(Window::new(40.0, 4000.0).unwrap()),
        },
    )
    .unwrap();
    let (n, w) = (narrow[0].image.to_luma8(), wide[0].image.to_luma8());
    assert_ne!(n, w);
    // A narrow soft-tissue window saturates more pixels than a wide one.
    let sat = |g: &image::GrayImage| g.iter().filter(|&&v| v == 0 || v == 255).count();
    assert!(sat(&n) > sat(&w));
    assert!(Window::new(40.0, 0.0).is_err());
}

#[test]
fn jpeg_ls_is_a_clear_unsupported_syntax_error() {
    let err = read_image(
        &read("dicom/MR_small_jpeg_ls_lossless.dcm"),
        "ls.dcm",
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ImagingError::UnsupportedTransferSyntax { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1.2.840.10008.1.2.4.80") && msg.contains("JPEG-LS"),
        "{msg}"
    );
}

#[test]
fn nifti_volumes_sample_slices_like_nibabel() {
    let m = manifest();
    for e in m["nifti"].as_array().unwrap() {
        let file = e["file"].as_str().unwrap();
        let frames = e["frames"].as_u64().unwrap() as usize;
        let imgs = read_image(
            &read(&format!("nifti/{file}")),
            file,
            &ReadOptions {
                frames,
                window: None,
            },
        )
        .unwrap();
        let pngs: Vec<&str> = e["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(imgs.len(), pngs.len(), "{file}");
        for (img, png) in imgs.iter().zip(pngs) {
            let want = expected("nifti", png).to_luma8();
            let got = img.image.to_luma8();
            assert_eq!(got.dimensions(), want.dimensions(), "{file} {png}");
            let (max, n, first) = compare_u8(got.as_raw(), want.as_raw());
            eprintln!("{file} {png}: max diff {max}, {n} differ (first {first:?})");
            assert!(max <= 1, "{file} {png}: max diff {max}");
        }
    }
}
