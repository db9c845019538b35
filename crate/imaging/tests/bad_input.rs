//! Bad files give a typed error that says what is wrong; none may panic.

mod common;

use common::{pattern, read};
use image::{DynamicImage, ImageFormat};
use qoqmed_imaging::{
    DecodedImage, ImagingError, PixelRange, ProcessorConfig, ReadOptions, preprocess, read_image,
    read_images,
};

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pattern(w, h, 1))
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn opts() -> ReadOptions {
    ReadOptions::default()
}

/// Every prefix length in `cuts` and a few byte flips: errors are fine, panics are not; and the
/// full-length input must still decode (so the test really exercises the reader).
fn must_not_panic(name: &str, bytes: &[u8], cuts: &[usize]) -> usize {
    assert!(
        read_image(bytes, name, &opts()).is_ok(),
        "{name}: the intact file must decode"
    );
    let mut errors = 0;
    for &cut in cuts {
        let r =
            std::panic::catch_unwind(|| read_image(&bytes[..cut.min(bytes.len())], name, &opts()));
        let r = r.unwrap_or_else(|_| panic!("{name}: panicked on the first {cut} bytes"));
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
            errors += 1;
        }
    }
    for step in [7usize, 101, 997] {
        let mut bad = bytes.to_vec();
        for i in (bytes.len() / 3..bytes.len()).step_by(step) {
            bad[i] ^= 0x5a;
        }
        std::panic::catch_unwind(|| {
            let _ = read_image(&bad, name, &opts());
        })
        .unwrap_or_else(|_| panic!("{name}: panicked on corrupted bytes (step {step})"));
    }
    errors
}

#[test]
fn truncated_png_and_jpeg() {
    let png = png_bytes(64, 48);
    let n = must_not_panic(
        "t.png",
        &png,
        &[0, 8, 33, 60, png.len() / 2, png.len() - 13],
    );
    assert!(n >= 5, "truncated PNGs must be errors, got {n}");
    let err = read_image(&png[..png.len() / 2], "t.png", &opts()).unwrap_err();
    assert!(matches!(err, ImagingError::Decode { .. }), "{err}");
    let jpg = read("raster/retina.jpg");
    must_not_panic("retina.jpg", &jpg, &[0, 2, 100, 1000, jpg.len() / 2]);
}

#[test]
fn truncated_dicom() {
    let ct = read("dicom/CT_small.dcm");
    let n = must_not_panic(
        "CT_small.dcm",
        &ct,
        &[0, 100, 132, 400, 1500, ct.len() / 2, ct.len() - 10],
    );
    assert!(n >= 6, "truncated DICOMs must be errors, got {n}");
    let rle = read("dicom/MR_small_RLE.dcm");
    must_not_panic("MR_small_RLE.dcm", &rle, &[rle.len() / 2, rle.len() - 100]);
    let j2k = read("dicom/MR_small_jp2klossless.dcm");
    must_not_panic(
        "MR_small_jp2klossless.dcm",
        &j2k,
        &[j2k.len() / 2, j2k.len() - 100],
    );
}

#[test]
fn truncated_nifti() {
    let nii = read("nifti/anatomical.nii");
    let n = must_not_panic(
        "anatomical.nii",
        &nii,
        &[0, 100, 348, 352, 1000, nii.len() / 2, nii.len() - 1],
    );
    assert!(n >= 6, "truncated NIfTIs must be errors, got {n}");
    let gz = read("nifti/example4d.nii.gz");
    let n = must_not_panic("example4d.nii.gz", &gz, &[10, 200, gz.len() / 2]);
    assert_eq!(n, 3);
}

#[test]
fn zero_sized_image() {
    // A PNG whose IHDR says width 0 (CRC fixed so only the size is wrong).
    let mut png = png_bytes(1, 1);
    png[16..20].copy_from_slice(&0u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let err = read_image(&png, "zero.png", &opts()).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::Decode { .. } | ImagingError::Empty { .. }
        ),
        "{err}"
    );
    // An empty decoded image handed to the processor directly.
    let empty = DecodedImage {
        image: DynamicImage::new_rgb8(0, 0),
        label: "empty".into(),
    };
    let err = preprocess(&[empty], &ProcessorConfig::default(), PixelRange::Model).unwrap_err();
    assert!(matches!(err, ImagingError::Geometry { .. }), "{err}");
}

#[test]
fn more_than_four_images() {
    let png = png_bytes(32, 32);
    let files: Vec<(&str, &[u8])> = (0..5).map(|_| ("a.png", png.as_slice())).collect();
    let err = read_images(files.clone(), &opts()).unwrap_err();
    assert!(
        matches!(err, ImagingError::TooManyImages { count: 5, max: 4 }),
        "{err}"
    );
    assert!(read_images(files[..4].to_vec(), &opts()).is_ok());
    // Two volumes at 4 frames each are 8 images.
    let emri = read("dicom/emri_small.dcm");
    let err = read_images(
        [("a.dcm", emri.as_slice()), ("b.dcm", emri.as_slice())],
        &ReadOptions {
            frames: 4,
            window: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, ImagingError::TooManyImages { count: 8, .. }),
        "{err}"
    );
    let err = read_image(
        &emri,
        "a.dcm",
        &ReadOptions {
            frames: 5,
            window: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, ImagingError::BadFrameCount { got: 5, .. }),
        "{err}"
    );
}

#[test]
fn unknown_format_and_non_image_dicom() {
    let err = read_image(b"hello, this is not an image", "notes.txt", &opts()).unwrap_err();
    assert!(matches!(err, ImagingError::UnknownFormat { .. }), "{err}");
    let err = read_image(&[], "empty.png", &opts()).unwrap_err();
    assert!(!err.to_string().is_empty());
    // pydicom's 12-lead ECG: a DICOM without Pixel Data.
    let ecg =
        std::fs::read(common::fixtures().join("../ecg/waveform_ecg.dcm")).expect("ECG fixture");
    let err = read_image(&ecg, "waveform_ecg.dcm", &opts()).unwrap_err();
    assert!(
        matches!(err, ImagingError::Dicom { .. }) && err.to_string().contains("no Pixel Data"),
        "{err}"
    );
}
