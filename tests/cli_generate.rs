//! `qoqmed generate` end to end: the binary, the model folder, the chat template, the tokenizer
//! and the GPU loop must give transformers' greedy ids (goldens from tools/fixtures/).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn qoqmed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("run qoqmed")
}

fn golden(model: &str, case: &str) -> serde_json::Value {
    let p = root()
        .join("tests/fixtures/goldens")
        .join(model)
        .join(format!("{case}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn generate_json(model: &Path, prompt: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = qoqmed(&args);
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

#[test]
fn greedy_ids_equal_transformers_through_the_cli() {
    for (model, case) in [
        ("tiny-small-vocab", "short"),
        ("tiny-small-vocab", "qoq"),
        ("tiny-qwen-vocab", "short"),
    ] {
        let g = golden(model, case);
        let dir = root().join("tests/fixtures/models").join(model);
        let prompt = g["prompt"].as_str().unwrap();
        // The qoq case's prompt already holds the instruction; the others are bare questions.
        for (variant, penalty) in [("greedy", Some("1.0")), ("greedy_rp", None)] {
            let want: Vec<u64> =
                serde_json::from_value(g["generation"][variant]["generated_ids"].clone()).unwrap();
            let n = want.len().to_string();
            let mut extra = vec!["--instruction", "none", "--max-new-tokens", &n];
            if let Some(p) = penalty {
                extra.extend_from_slice(&["--repetition-penalty", p]);
            }
            let out = generate_json(&dir, prompt, &extra);
            let ids: Vec<u64> = serde_json::from_value(out["token_ids"].clone()).unwrap();
            assert_eq!(ids, want, "{model}/{case} {variant}");
            let input_ids = g["input_ids"].as_array().unwrap().len();
            assert_eq!(
                out["prompt_tokens"].as_u64().unwrap() as usize,
                input_ids,
                "{model}/{case}: prompt tokens"
            );
            for key in ["text", "think", "answer", "boxes", "timings", "adapter"] {
                assert!(out.get(key).is_some(), "--json output lacks `{key}`");
            }
            assert!(out["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        }
    }
}

#[test]
fn qoq_instruction_is_appended_by_default() {
    let g = golden("tiny-small-vocab", "qoq");
    let full = g["prompt"].as_str().unwrap();
    let question = full.split(" You FIRST think").next().unwrap();
    assert_ne!(
        question, full,
        "the qoq case's prompt carries the instruction"
    );
    let dir = root().join("tests/fixtures/models/tiny-small-vocab");
    let out = generate_json(&dir, question, &["--max-new-tokens", "1"]);
    let input_ids = g["input_ids"].as_array().unwrap().len();
    assert_eq!(out["prompt_tokens"].as_u64().unwrap() as usize, input_ids);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = root().join("tests/fixtures/models/tiny-small-vocab");
    let d = dir.to_str().unwrap();
    let out = qoqmed(&["generate", "--model", "/nonexistent/model", "--prompt", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") || err.contains("/nonexistent/model"),
        "{err}"
    );

    let out = qoqmed(&[
        "generate",
        "--model",
        d,
        "--prompt",
        "x",
        "--image",
        "missing.png",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading image missing.png"), "{err}");

    let png = root().join("tests/fixtures/images/levels_qoq_up_40x30.png");
    let out = qoqmed(&[
        "generate",
        "--model",
        d,
        "--prompt",
        "x",
        "--image",
        png.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet"));

    let out = qoqmed(&[
        "generate",
        "--model",
        d,
        "--prompt",
        "x",
        "--max-context",
        "5",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-context"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = qoqmed(&["generate", "--model", d, "--prompt", "x", "--top-p", "0"]);
    assert!(!out.status.success());
}

#[test]
fn adapters_are_listed() {
    let out = qoqmed(&["adapters"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0: "));
}
