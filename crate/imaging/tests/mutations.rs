//! A deterministic mini-fuzz: random byte flips and truncations of real files for every reader
//! (300 per file). `MUTATION_TIMING=1` prints every input that takes over 100 ms: dicom-rs once
//! spent seconds and gigabytes on corrupt lengths, which the length pre-check now refuses.
//! A panic hook counts every panic, including ones the library catches around third-party
//! decoders natively (on wasm32 a panic aborts, so none may happen at all).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{pattern, read};
use image::{DynamicImage, ImageFormat};
use qoqmed_imaging::{ReadOptions, read_image};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// xorshift64*: a fixed seed keeps failures reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn encoded(format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pattern(64, 48, 1))
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

#[test]
fn mutated_files_never_panic() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {info}");
    }));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("p.png", encoded(ImageFormat::Png)),
        ("p.jpg", encoded(ImageFormat::Jpeg)),
        ("p.bmp", encoded(ImageFormat::Bmp)),
        ("p.tif", encoded(ImageFormat::Tiff)),
        ("p.webp", encoded(ImageFormat::WebP)),
        ("CT_small.dcm", read("dicom/CT_small.dcm")),
        ("MR_small_RLE.dcm", read("dicom/MR_small_RLE.dcm")),
        (
            "MR_small_jp2klossless.dcm",
            read("dicom/MR_small_jp2klossless.dcm"),
        ),
        ("SC_rgb_jpeg_dcmtk.dcm", read("dicom/SC_rgb_jpeg_dcmtk.dcm")),
        ("SC_rgb_rle_2frame.dcm", read("dicom/SC_rgb_rle_2frame.dcm")),
        (
            "SC_ybr_full_422_uncompressed.dcm",
            read("dicom/SC_ybr_full_422_uncompressed.dcm"),
        ),
        ("MR_small_implicit.dcm", read("dicom/MR_small_implicit.dcm")),
        (
            "MR_small_bigendian.dcm",
            read("dicom/MR_small_bigendian.dcm"),
        ),
        ("image_dfl.dcm", read("dicom/image_dfl.dcm")),
        ("JPEG-LL.dcm", read("dicom/JPEG-LL.dcm")),
        ("emri_small_RLE.dcm", read("dicom/emri_small_RLE.dcm")),
        ("anatomical.nii", read("nifti/anatomical.nii")),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut err) = (0, 0);
    for (name, bytes) in &files {
        let t0 = std::time::Instant::now();
        for round in 0..300 {
            let mut b = bytes.clone();
            if round % 5 == 0 {
                b.truncate(rng.below(b.len()));
            } else {
                // Flip bytes in the header region more often: that is where parsers branch.
                for _ in 0..1 + rng.below(8) {
                    let limit = if rng.below(2) == 0 {
                        b.len().min(1024)
                    } else {
                        b.len()
                    };
                    let i = rng.below(limit);
                    b[i] ^= 1 << rng.below(8);
                }
            }
            let t1 = std::time::Instant::now();
            let r = std::panic::catch_unwind(|| read_image(&b, name, &ReadOptions::default()));
            if std::env::var("MUTATION_TIMING").is_ok() && t1.elapsed().as_millis() > 100 {
                let diff: Vec<usize> = (0..b.len().min(bytes.len()))
                    .filter(|&i| b[i] != bytes[i])
                    .collect();
                eprintln!(
                    "{name} round {round}: {:?} len {} diffs at {diff:?} -> {:?}",
                    t1.elapsed(),
                    b.len(),
                    r.as_ref()
                        .map(|x| x.as_ref().map(|v| v.len()).map_err(|e| e.to_string()))
                );
            }
            match r {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(_)) => err += 1,
                Err(_) => panic!("{name}: round {round} panicked"),
            }
        }
        eprintln!("{name}: {:?}", t0.elapsed());
    }
    let _ = std::panic::take_hook();
    eprintln!("{ok} mutated files decoded, {err} gave errors");
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "panics inside the readers (see stderr)"
    );
    assert!(err > 0);
}
