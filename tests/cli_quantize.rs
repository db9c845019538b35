//! `qoqmed quantize` end to end: a sharded q8 / q4 folder with a manifest the browser can check,
//! loadable by `generate`, whose greedy ids equal the unquantized model's where the accuracy
//! test (crate/engine/tests/accuracy.rs) says they agree; and the errors for bad requests.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

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

fn ok(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "qoqmed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

/// A fresh, absent output folder.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoqmed-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn quantize(model: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let src = root().join("tests/fixtures/models").join(model);
    let mut args = vec![
        "quantize",
        "--model",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    ok(&qoqmed(&args))
}

fn greedy_ids(model: &Path, prompt: &str, n: usize) -> Vec<u64> {
    let n = n.to_string();
    let out = ok(&qoqmed(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--repetition-penalty",
        "1.0",
        "--instruction",
        "none",
        "--max-new-tokens",
        &n,
        "--json",
    ]));
    serde_json::from_value(out["token_ids"].clone()).unwrap()
}

#[test]
fn quantized_folder_is_complete_and_verifiable() {
    let out = scratch("q8-sharded");
    let summary = quantize(
        "tiny-small-vocab",
        &out,
        &["--format", "q8", "--shard-mb", "0.1"],
    );
    let shards = summary["shards"].as_u64().unwrap();
    assert!(shards > 1, "0.1 MB shards of a 0.4 MB model: {summary}");
    assert!(summary["peak_rss_bytes"].as_u64().is_some());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["qoqmed_format_version"], "1");
    let files = manifest["files"].as_array().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "manifest.json")
        .collect();
    names.sort();
    let listed: Vec<String> = files
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, names, "the manifest lists every file of the folder");
    for f in files {
        let bytes = std::fs::read(out.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["size"].as_u64().unwrap(), bytes.len() as u64);
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"].as_str().unwrap(), sha, "{}", f["path"]);
    }
    for copied in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(names.contains(&copied.to_string()), "{copied} not copied");
    }
    // The index maps every stored tensor, scales included, to an existing shard.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert!(map.contains_key("model.layers.0.mlp.up_proj.weight_scale"));
    assert!(
        map.values()
            .all(|f| names.contains(&f.as_str().unwrap().to_string()))
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn quantized_models_generate_like_the_original() {
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/goldens/tiny-small-vocab/short.json")).unwrap(),
    )
    .unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    let want: Vec<u64> =
        serde_json::from_value(golden["generation"]["greedy"]["generated_ids"].clone()).unwrap();
    let original = greedy_ids(
        &root().join("tests/fixtures/models/tiny-small-vocab"),
        prompt,
        want.len(),
    );
    assert_eq!(original, want);
    // q8 and f16: every id equal (the accuracy test finds q8 agreeing at 94-100 % of
    // positions and f16 at 100 %). q4: the accuracy test finds about half the positions agree on
    // this random tiny model, so only the first id is expected to survive.
    for (format, head, expect_equal) in [("q8", "q8", 12), ("f16", "f16", 12), ("q4", "q8", 1)] {
        let out = scratch(&format!("gen-{format}"));
        quantize(
            "tiny-small-vocab",
            &out,
            &["--format", format, "--head-format", head],
        );
        let ids = greedy_ids(&out, prompt, want.len());
        let same = ids.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{format} (head {head}): first {same} of {} greedy ids equal",
            want.len()
        );
        assert_eq!(ids.len(), want.len(), "{format}: stopped early");
        assert_eq!(
            ids[..expect_equal],
            want[..expect_equal],
            "{format}: greedy ids differ"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn bad_requests_are_refused_clearly() {
    let src = root().join("tests/fixtures/models/tiny-small-vocab");
    let s = src.to_str().unwrap();
    let out = scratch("bad");
    let o = out.to_str().unwrap();
    let err = |args: &[&str]| {
        let r = qoqmed(args);
        assert!(!r.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    assert!(
        err(&["quantize", "--model", s, "--out", o, "--format", "q3"]).contains("q4, q8 or f16")
    );
    // An existing, non-empty output folder is never overwritten.
    assert!(err(&["quantize", "--model", s, "--out", s]).contains("not empty"));
    // A quantized folder cannot be quantized again.
    quantize("tiny-small-vocab", &out, &["--format", "q4"]);
    let again = scratch("again");
    let e = err(&["quantize", "--model", o, "--out", again.to_str().unwrap()]);
    assert!(e.contains("already quantized"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn size_accounting_refuses_before_loading() {
    let dir = root().join("tests/fixtures/models/tiny-small-vocab");
    let d = dir.to_str().unwrap();
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            d,
            "--prompt",
            "x",
            "--max-new-tokens",
            "1",
        ];
        args.extend_from_slice(extra);
        qoqmed(&args)
    };
    // Weights and activations fit 4 MB, the KV cache at 4096 positions does not: the error names
    // the largest context that fits.
    let r = generate(&["--memory-budget-gb", "0.004"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("memory budget is 4.0 MB") && err.contains("--max-context"),
        "{err}"
    );
    // 100 KB: not even the weights fit.
    let r = generate(&["--memory-budget-gb", "0.0001"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("a smaller model"), "{err}");
    // 20M positions of 2 kv heads x 16 x f32 = 2.6 GB per layer's K: beyond any binding.
    let r = generate(&["--max-context", "20000000"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("KV cache") && err.contains("or less"), "{err}");
    // Within the budget it runs.
    ok(&generate(&["--memory-budget-gb", "1", "--json"]));
}
