//! `qoqmed generate --image` end to end: files on disk, the readers, the processor, the vision
//! tower, the prompt and the decode loop must give transformers' greedy ids
//! (tests/fixtures/goldens/vision, from tools/fixtures/vision_goldens.py); `--annotate` writes the
//! pictures; bad image inputs are clear errors, never panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn qoqmed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("run qoqmed")
}

fn golden(model: &str, case: &str) -> serde_json::Value {
    let p = root()
        .join("tests/fixtures/goldens/vision")
        .join(model)
        .join(format!("{case}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn model_dir(model: &str) -> String {
    root()
        .join("tests/fixtures/models")
        .join(model)
        .to_str()
        .unwrap()
        .to_string()
}

/// A fresh empty directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoqmed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "qoqmed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs the golden's question on its images through the CLI, greedy, with and without the
/// repetition penalty; returns the last JSON answer.
fn check_case(model: &str, case: &str, extra: &[&str]) -> serde_json::Value {
    let g = golden(model, case);
    let dir = model_dir(model);
    let images: Vec<String> = g["source"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            root()
                .join(p.as_str().unwrap())
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut last = serde_json::Value::Null;
    for (variant, penalty) in [("greedy", "1.0"), ("greedy_rp", "1.05")] {
        let want: Vec<u64> =
            serde_json::from_value(g["generation"][variant]["generated_ids"].clone()).unwrap();
        let n = want.len().to_string();
        let mut args = vec![
            "generate",
            "--model",
            &dir,
            "--prompt",
            g["question"].as_str().unwrap(),
            "--instruction",
            "none",
            "--temperature",
            "0",
            "--repetition-penalty",
            penalty,
            "--max-new-tokens",
            &n,
            "--json",
        ];
        for img in &images {
            args.extend_from_slice(&["--image", img]);
        }
        args.extend_from_slice(extra);
        let out = json_of(&qoqmed(&args));
        let ids: Vec<u64> = serde_json::from_value(out["token_ids"].clone()).unwrap();
        assert_eq!(ids, want, "{model}/{case} {variant}");
        assert_eq!(
            out["prompt_tokens"].as_u64().unwrap() as usize,
            g["input_ids"].as_array().unwrap().len(),
            "{model}/{case}: prompt tokens"
        );
        last = out;
    }
    last
}

#[test]
fn synthetic_images_give_transformers_ids_through_the_cli() {
    // The goldens used Hugging Face's processor alone: --pixel-range model.
    for (model, case) in [
        ("tiny-small-vocab", "square_224"),
        ("tiny-small-vocab", "odd_250x190"),
        ("tiny-small-vocab", "two_images"),
        ("tiny-qwen-vocab", "small_56x84"),
    ] {
        let out = check_case(model, case, &["--pixel-range", "model"]);
        let t = &out["timings"];
        let (vision, ttft) = (
            t["vision_s"].as_f64().unwrap(),
            t["time_to_first_token_s"].as_f64().unwrap(),
        );
        assert!(vision > 0.0 && ttft >= vision, "timings {t}");
    }
}

#[test]
fn real_medical_files_give_transformers_ids_through_the_cli() {
    // QoQ-Med's pixel range (the default), as the goldens' `qoqmed preprocess` pixels.
    check_case("tiny-small-vocab", "ct_dicom", &[]);
    check_case("tiny-small-vocab", "cxr_monochrome1", &[]);
    check_case("tiny-small-vocab", "nifti_2_slices", &["--frames", "2"]);
}

#[test]
fn annotate_writes_each_original_image() {
    let dir = model_dir("tiny-small-vocab");
    let tmp = scratch("annotate");
    let ct = root().join("tests/fixtures/images/dicom/CT_small.dcm");
    let out_png = tmp.join("ct.png");
    let out = qoqmed(&[
        "generate",
        "--model",
        &dir,
        "--prompt",
        "Where is the lesion?",
        "--image",
        ct.to_str().unwrap(),
        "--max-new-tokens",
        "2",
        "--annotate",
        out_png.to_str().unwrap(),
        "--json",
    ]);
    let answer = json_of(&out);
    let picture = image_size(&out_png);
    // The original DICOM frame (128x128), not the model's 252x252 input.
    assert_eq!(picture, (128, 128));
    // Random weights give no boxes: the picture is the 8-bit frame itself.
    assert_eq!(answer["boxes"], serde_json::json!([]));
    let expected = root().join("tests/fixtures/images/dicom/expected_CT_small_f0.png");
    assert!(
        image_rgb(&out_png) == image_rgb(&expected),
        "annotated CT without boxes = the decoded frame"
    );

    // A volume of 2 slices gives one picture per slice.
    let nii = root().join("tests/fixtures/images/nifti/anatomical.nii");
    let base = tmp.join("mri.png");
    let out = qoqmed(&[
        "generate",
        "--model",
        &dir,
        "--prompt",
        "x",
        "--image",
        nii.to_str().unwrap(),
        "--max-new-tokens",
        "1",
        "--annotate",
        base.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.join("mri-0.png").exists() && tmp.join("mri-1.png").exists());
    assert!(!base.exists());
    let _ = std::fs::remove_dir_all(&tmp);
}

fn image_size(p: &Path) -> (u32, u32) {
    let img = image::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (img.width(), img.height())
}

/// The PNG as 8-bit RGB (grey expanded).
fn image_rgb(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_rgb8().into_raw()
}

/// Fails with a message that contains `want` and no panic.
fn expect_error(args: &[&str], want: &str) {
    let out = qoqmed(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn bad_image_inputs_give_clear_errors() {
    let dir = model_dir("tiny-small-vocab");
    let tmp = scratch("bad-images");
    let png = root().join("tests/fixtures/images/vision/pattern_56x112.png");
    let png = png.to_str().unwrap();

    // Unreadable: a PNG cut short.
    let broken = tmp.join("broken.png");
    let bytes = std::fs::read(png).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let broken = broken.to_str().unwrap();
    expect_error(
        &[
            "generate", "--model", &dir, "--prompt", "x", "--image", broken,
        ],
        "cannot decode the image",
    );

    // Five images: more than a prompt takes.
    let mut args = vec!["generate", "--model", &dir, "--prompt", "x"];
    for _ in 0..5 {
        args.extend_from_slice(&["--image", png]);
    }
    expect_error(&args, "5 images given but a prompt takes at most 4");
    // ... also when a volume's slices make the fifth.
    let nii = root().join("tests/fixtures/images/nifti/anatomical.nii");
    expect_error(
        &[
            "generate",
            "--model",
            &dir,
            "--prompt",
            "x",
            "--image",
            nii.to_str().unwrap(),
            "--frames",
            "4",
            "--image",
            png,
        ],
        "5 images given",
    );

    // A checkpoint without a vision tower: the same model with vision_config removed.
    let text_only = tmp.join("text-only");
    std::fs::create_dir_all(&text_only).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, text_only.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = text_only.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("vision_config");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    expect_error(
        &[
            "generate",
            "--model",
            text_only.to_str().unwrap(),
            "--prompt",
            "x",
            "--image",
            png,
        ],
        "no vision tower",
    );

    // An image bigger than the context: 224x224 is 64 tokens, the prompt ~90.
    let big = root().join("tests/fixtures/images/vision/pattern_224x224.png");
    expect_error(
        &[
            "generate",
            "--model",
            &dir,
            "--prompt",
            "x",
            "--image",
            big.to_str().unwrap(),
            "--pixel-range",
            "model",
            "--max-context",
            "64",
        ],
        "the images take 64 tokens",
    );

    // Flags out of range.
    expect_error(
        &[
            "generate", "--model", &dir, "--prompt", "x", "--image", png, "--frames", "0",
        ],
        "--frames must be between 1 and 4",
    );
    expect_error(
        &[
            "generate", "--model", &dir, "--prompt", "x", "--image", png, "--window", "40",
        ],
        "--window takes CENTER,WIDTH",
    );
    expect_error(
        &[
            "generate",
            "--model",
            &dir,
            "--prompt",
            "x",
            "--annotate",
            "/tmp/x.png",
        ],
        "--annotate needs an image",
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
