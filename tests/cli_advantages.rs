//! `qoqmed advantages` on the committed DRPO cases (tests/fixtures/drpo, made by
//! tools/fixtures/drpo_reference.py) must print the numpy reference's output: advantages within
//! 1e-5 x max(1, |reference|), cluster counts exact; bad input must fail with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drpo")
}

fn qoqmed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(args)
        .output()
        .expect("qoqmed runs")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every number in `got` within tolerance of `want`, same shape and keys; returns max error.
fn assert_close(case: &str, at: &str, got: &Value, want: &Value) -> f64 {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().expect("f64"), b.as_f64().expect("f64"));
            let err = (a - b).abs();
            assert!(
                err <= TOL * b.abs().max(1.0),
                "{case} {at}: {a} vs reference {b}"
            );
            err
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{case} {at}: length");
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(i, (x, y))| assert_close(case, &format!("{at}[{i}]"), x, y))
                .fold(0.0, f64::max)
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "{case} {at}: keys");
            a.iter()
                .map(|(k, x)| assert_close(case, &format!("{at}.{k}"), x, &b[k]))
                .fold(0.0, f64::max)
        }
        _ => panic!("{case} {at}: {got} vs reference {want}"),
    }
}

#[test]
fn advantages_match_the_numpy_reference_on_every_case() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/drpo exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 17,
        "expected the 17 committed cases, found {}",
        cases.len()
    );
    for expected_path in cases {
        let name = expected_path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .replace(".expected.json", "");
        let expected = read_json(&expected_path);
        let input = fixtures().join(format!("{name}.input.json"));
        let mut args = vec![
            "advantages".to_owned(),
            "--input".to_owned(),
            input.display().to_string(),
        ];
        args.extend(
            expected["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("str").to_owned()),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = qoqmed(&refs);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: stdout is not JSON: {e}"));
        let max_err = assert_close(&name, "output", &got, &expected["output"]);
        eprintln!("{name}: max |error| {max_err:.2e}");
    }
}

#[test]
fn defaults_are_the_released_code_choices() {
    // drpo_default was generated with every option at its default, so no flags are needed.
    let input = fixtures().join("drpo_default.input.json");
    let out = qoqmed(&["advantages", "--input", &input.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let expected = read_json(&fixtures().join("drpo_default.expected.json"));
    assert_close("drpo_default", "output", &got, &expected["output"]);
}

fn failure(input: &str, extra: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("qoqmed-adv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("case-{}.json", input.len()));
    std::fs::write(&path, input).expect("write");
    let mut args = vec!["advantages", "--input", path.to_str().expect("utf8")];
    args.extend_from_slice(extra);
    let out = qoqmed(&args);
    assert!(!out.status.success(), "{input} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let missing = qoqmed(&["advantages", "--input", "/nonexistent/file.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read --input"));
    assert!(failure("{not json", &[]).contains("not valid JSON"));
    assert!(failure(r#"{"groups": [{"id": "a", "rewards": [1, 0]}]}"#, &[]).contains("expected"));
    let ragged = r#"{"groups": [{"id": "a", "domain": "d", "rewards": [1, 0]}, {"id": "b", "domain": "d", "rewards": [1, 0, 1]}]}"#;
    assert!(failure(ragged, &[]).contains("same number of rollouts"));
    let one = r#"{"groups": [{"id": "a", "domain": "d", "rewards": [1]}]}"#;
    assert!(failure(one, &[]).contains("at least 2"));
    let no_kl = r#"{"groups": [{"id": "a", "domain": "d", "rewards": [1, 0]}]}"#;
    assert!(failure(no_kl, &["--kl-damping", "paper"]).contains("KL"));
    let zero = r#"{"groups": [{"id": "a", "domain": "d", "rewards": [0, 0]}, {"id": "b", "domain": "d", "rewards": [1, 0]}]}"#;
    assert!(failure(zero, &["--no-cluster-floor"]).contains("floor"));
}
