//! `qoqmed generate --ecg` end to end on the tiny QoQ-Med-Omni checkpoint: pydicom's real 12-lead
//! ECG given as DICOM, WFDB and CSV gives the PyTorch reference's greedy ids (goldens from
//! tools/fixtures/ecg_model_goldens.py); `--json` keeps its keys and reports `timings.ecg_s`;
//! bad inputs are clear errors, never panics.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path(rel: &str) -> String {
    root().join(rel).to_str().unwrap().to_string()
}

fn qoqmed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("run qoqmed")
}

fn golden(case: &str) -> serde_json::Value {
    let p = root().join(format!("tests/fixtures/goldens/tiny-omni/{case}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `generate --json` greedy on `model` for the golden case's question plus `extra` flags.
fn generate(model: &str, case: &str, extra: &[&str]) -> Output {
    let g = golden(case);
    let n = g["generation"]["greedy"]["generated_ids"]
        .as_array()
        .unwrap()
        .len()
        .to_string();
    let model = path(model);
    let mut args = vec![
        "generate",
        "--model",
        &model,
        "--prompt",
        g["prompt"].as_str().unwrap(),
        "--instruction",
        "none",
        "--temperature",
        "0",
        "--repetition-penalty",
        "1.0",
        "--max-new-tokens",
        &n,
        "--json",
    ];
    args.extend_from_slice(extra);
    qoqmed(&args)
}

fn json(out: &Output) -> serde_json::Value {
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

const OMNI: &str = "tests/fixtures/models/tiny-omni";

#[test]
fn the_same_ecg_as_dicom_wfdb_and_csv_gives_the_reference_ids() {
    let g = golden("ecg");
    let want = &g["generation"]["greedy"]["generated_ids"];
    let (dcm, hea, dat, csv) = (
        path("tests/fixtures/ecg/waveform_ecg.dcm"),
        path("tests/fixtures/ecg/waveform_ecg_16.hea"),
        path("tests/fixtures/ecg/waveform_ecg_16.dat"),
        path("tests/fixtures/ecg/waveform_ecg.csv"),
    );
    for (what, flags) in [
        ("DICOM", vec!["--ecg", dcm.as_str()]),
        ("WFDB .hea", vec!["--ecg", hea.as_str()]),
        ("WFDB .dat", vec!["--ecg", dat.as_str()]),
        ("CSV", vec!["--ecg", csv.as_str(), "--ecg-rate", "1000"]),
    ] {
        let out = json(&generate(OMNI, "ecg", &flags));
        assert_eq!(&out["token_ids"], want, "{what}");
        assert_eq!(
            out["prompt_tokens"].as_u64().unwrap() as usize,
            g["input_ids"].as_array().unwrap().len(),
            "{what}: prompt tokens"
        );
        for key in ["text", "think", "answer", "boxes", "stop_reason", "adapter"] {
            assert!(out.get(key).is_some(), "--json output lacks `{key}`");
        }
        assert!(out["timings"]["ecg_s"].as_f64().unwrap() > 0.0, "{what}");
        assert!(out["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn text_only_and_two_ecgs_give_the_reference_ids() {
    let out = json(&generate(OMNI, "text", &[]));
    assert_eq!(
        out["token_ids"],
        golden("text")["generation"]["greedy"]["generated_ids"]
    );
    assert_eq!(out["timings"]["ecg_s"].as_f64(), Some(0.0));
    let (a, b) = (
        path("tests/fixtures/ecg/waveform_ecg.dcm"),
        path("tests/fixtures/ecg/waveform_ecg_variant.dcm"),
    );
    let out = json(&generate(OMNI, "two_ecgs", &["--ecg", &a, "--ecg", &b]));
    assert_eq!(
        out["token_ids"],
        golden("two_ecgs")["generation"]["greedy"]["generated_ids"]
    );
}

fn fails_with(out: Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure");
    assert!(!err.contains("panicked"), "{err}");
    for w in words {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
}

#[test]
fn bad_ecg_inputs_are_clear_errors() {
    let dcm = path("tests/fixtures/ecg/waveform_ecg.dcm");
    // An ECG for a checkpoint without the ECG branch.
    fails_with(
        generate(
            "tests/fixtures/models/tiny-small-vocab",
            "ecg",
            &["--ecg", &dcm],
        ),
        &["no ECG branch"],
    );
    // CSV without its rate; a file that is no ECG; a file that does not exist.
    let csv = path("tests/fixtures/ecg/waveform_ecg.csv");
    fails_with(generate(OMNI, "ecg", &["--ecg", &csv]), &["--ecg-rate"]);
    let png = path("tests/fixtures/images/levels_qoq_up_40x30.png");
    fails_with(
        generate(OMNI, "ecg", &["--ecg", &png]),
        &["unknown ECG format"],
    );
    fails_with(
        generate(OMNI, "ecg", &["--ecg", "/nonexistent/ecg.dcm"]),
        &["/nonexistent/ecg.dcm"],
    );
    // A record that lacks leads the model needs: a limb-lead-only CSV written on the fly.
    let dir = std::env::temp_dir().join(format!("qoqmed-ecg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let limb = dir.join("limb_only.csv");
    let mut text = String::from("I,II,III,aVR,aVL,aVF\n");
    for i in 0..5000 {
        let v = (i as f32 * 0.01).sin();
        text.push_str(&format!("{v},{v},{v},{v},{v},{v}\n"));
    }
    std::fs::write(&limb, text).unwrap();
    fails_with(
        generate(
            OMNI,
            "ecg",
            &["--ecg", limb.to_str().unwrap(), "--ecg-rate", "500"],
        ),
        &["ECG 1 (limb_only.csv)", "V1", "V6"],
    );
    // Two ECGs where the chat template takes one.
    let model_dir = dir.join("one-ecg-template");
    std::fs::create_dir_all(&model_dir).unwrap();
    for f in std::fs::read_dir(root().join(OMNI)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, model_dir.join(f.file_name().unwrap())).unwrap();
    }
    let template = "{% set ts = namespace(n=0) %}{% for message in messages %}<|im_start|>{{ message['role'] }}\n\
                    {% for content in message['content'] %}{% if content['type'] == 'time-series' %}\
                    {% if ts.n == 0 %}<|time_series_pad|>{% endif %}{% set ts.n = ts.n + 1 %}\
                    {% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n\
                    {% endfor %}<|im_start|>assistant\n";
    std::fs::write(
        model_dir.join("chat_template.json"),
        serde_json::json!({ "chat_template": template }).to_string(),
    )
    .unwrap();
    let one = model_dir.to_str().unwrap().to_string();
    let g = golden("ecg");
    let out = qoqmed(&[
        "generate",
        "--model",
        &one,
        "--prompt",
        g["prompt"].as_str().unwrap(),
        "--ecg",
        &dcm,
        "--ecg",
        &dcm,
        "--max-new-tokens",
        "1",
    ]);
    fails_with(out, &["wrote 1 <|time_series_pad|> for 2 ECG"]);
    let out = qoqmed(&[
        "generate",
        "--model",
        &one,
        "--prompt",
        "x",
        "--ecg",
        &dcm,
        "--max-new-tokens",
        "1",
    ]);
    assert!(
        out.status.success(),
        "one ECG is fine with that template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
