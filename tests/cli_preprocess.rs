//! `qoqmed preprocess` end to end: the safetensors it writes equal the Hugging Face processor's
//! goldens (tests/fixtures/images, written by tools/fixtures/make_image_goldens.py) and the ECG
//! references (tests/fixtures/ecg); bad invocations fail with a message that says what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoqmed-cli-pre-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn preprocess(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .arg("preprocess")
        .args(args)
        .output()
        .expect("run qoqmed")
}

/// `pattern(w, h)` of the fixture script, written as a PNG.
fn pattern_png(w: u32, h: u32, path: &Path) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        image::Rgb(std::array::from_fn(|c| {
            let c = c as i64;
            ((x * (c + 3) * 5 + y * (7 - c) * 3 + ((x ^ y) & 31) * 4 + (x / 9) * (y / 13) * 11)
                % 256) as u8
        }))
    });
    img.save(path).expect("write png");
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("missing tensor {name}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name} dtype");
    (
        t.shape().to_vec(),
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn i64s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<i64>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::I64, "{name} dtype");
    (
        t.shape().to_vec(),
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}

#[test]
fn two_images_equal_the_hf_processor() {
    let dir = scratch("two");
    let (a, b, out) = (
        dir.join("a.png"),
        dir.join("b.png"),
        dir.join("out.safetensors"),
    );
    pattern_png(84, 56, &a);
    pattern_png(56, 112, &b);
    let model = fixtures().join("images");
    let o = preprocess(&[
        "--model",
        model.to_str().unwrap(),
        "--image",
        a.to_str().unwrap(),
        "--image",
        b.to_str().unwrap(),
        "--pixel-range",
        "model",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let got = SafeTensors::deserialize(&bytes).unwrap();
    let golden_bytes =
        std::fs::read(fixtures().join("images/hf_two_84x56_56x112.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&golden_bytes).unwrap();
    let (gs, gv) = f32s(&got, "pixel_values");
    let (ws, wv) = f32s(&golden, "pixel_values");
    assert_eq!(gs, ws);
    let max = gv
        .iter()
        .zip(&wv)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(max, 0.0, "pixel_values differ from HF by up to {max}");
    assert_eq!(
        i64s(&got, "image_grid_thw"),
        i64s(&golden, "image_grid_thw")
    );
    let (es, ev) = f32s(&got, "ecg");
    assert_eq!((es, ev.len()), (vec![0, 8, 2500], 0));
}

#[test]
fn volume_dicom_and_ecg_together() {
    let dir = scratch("mixed");
    let out = dir.join("out.safetensors");
    let f = fixtures();
    let o = preprocess(&[
        "--model",
        f.join("images").to_str().unwrap(),
        "--image",
        f.join("images/nifti/example4d.nii.gz").to_str().unwrap(),
        "--image",
        f.join("images/dicom/CT_small.dcm").to_str().unwrap(),
        "--window",
        "-40,400",
        "--ecg",
        f.join("ecg/syn_pad_257hz.csv").to_str().unwrap(),
        "--ecg-rate",
        "257",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (gshape, grid) = i64s(&st, "image_grid_thw");
    // Two NIfTI slices and one CT image; each grid is (1, h, w) with even h and w.
    assert_eq!(gshape, vec![3, 3]);
    let patches: i64 = grid.chunks(3).map(|g| g[0] * g[1] * g[2]).sum();
    assert!(
        grid.chunks(3)
            .all(|g| g[0] == 1 && g[1] % 2 == 0 && g[2] % 2 == 0)
    );
    let (pshape, pv) = f32s(&st, "pixel_values");
    assert_eq!(pshape, vec![patches as usize, 1176]);
    assert!(pv.iter().all(|v| v.is_finite()));
    let (eshape, ecg) = f32s(&st, "ecg");
    assert_eq!(eshape, vec![1, 8, 2500]);
    let want: Vec<f32> = std::fs::read(f.join("ecg/syn_pad_257hz.model_input.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let max = ecg
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-3, "ECG differs from the scipy reference by {max}");
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert!(
        meta["image_labels"].contains("example4d.nii.gz slice 1 of 24"),
        "{meta:?}"
    );
}

#[test]
fn bad_invocations_say_what_to_do() {
    let dir = scratch("bad");
    let out = dir.join("o.safetensors");
    let model = fixtures().join("images");
    let png = dir.join("p.png");
    pattern_png(40, 30, &png);
    let (m, p, o) = (
        model.to_str().unwrap(),
        png.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--model", m, "--out", o], "--image"),
        (
            vec![
                "--model", m, "--image", p, "--image", p, "--image", p, "--image", p, "--image", p,
                "--out", o,
            ],
            "at most 4",
        ),
        (
            vec!["--model", m, "--image", p, "--frames", "5", "--out", o],
            "--frames",
        ),
        (
            vec!["--model", m, "--image", p, "--window", "40", "--out", o],
            "CENTER,WIDTH",
        ),
        (
            vec!["--model", "/nonexistent/model", "--image", p, "--out", o],
            "not a folder",
        ),
    ];
    for (args, needle) in cases {
        let r = preprocess(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} should fail");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
}
