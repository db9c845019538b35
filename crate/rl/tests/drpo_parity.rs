//! GRPO / DRPO against the numpy reference (tools/fixtures/drpo_reference.py), every committed case.
//! Tolerance: |rust - numpy| <= 1e-5 * max(1, |numpy|) per advantage; cluster counts exact.

use std::path::PathBuf;

use qoqmed_rl::{DrpoOptions, DrpoState, StepRecord, advantages};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/drpo")
}

fn read(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compare one step; returns (mismatches, max error, where).
fn compare(
    case: &str,
    step: usize,
    got: &qoqmed_rl::Advantages,
    want: &Value,
) -> (usize, f64, String) {
    let rows = want["advantages"].as_array().expect("advantages");
    let mut bad = 0;
    let mut worst = (0.0f64, String::new());
    assert_eq!(
        got.values.len() / got.group_size,
        rows.len(),
        "{case} step {step}: group count"
    );
    for (i, (row, want_row)) in got.rows().zip(rows).enumerate() {
        for (j, (a, b)) in row
            .iter()
            .zip(want_row.as_array().expect("row"))
            .enumerate()
        {
            let b = b.as_f64().expect("number");
            let err = (a - b).abs();
            if err > TOL * b.abs().max(1.0) {
                bad += 1;
            }
            if err > worst.0 {
                worst = (err, format!("group {i} rollout {j}: {a} vs {b}"));
            }
        }
    }
    let clusters: serde_json::Map<String, Value> = got
        .clusters()
        .into_iter()
        .map(|(d, k)| (d, Value::from(k)))
        .collect();
    assert_eq!(
        Value::Object(clusters),
        want["clusters"],
        "{case} step {step}: clusters"
    );
    (bad, worst.0, worst.1)
}

#[test]
fn every_committed_case_matches_the_numpy_reference() {
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
    let mut failures = Vec::new();
    for expected_path in &cases {
        let name = expected_path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .replace(".expected.json", "");
        let expected = read(expected_path);
        let input = read(&fixtures().join(format!("{name}.input.json")));
        let options: DrpoOptions =
            serde_json::from_value(expected["options"].clone()).expect("options");
        let (steps, outputs): (Vec<Value>, Vec<Value>) = match input.get("steps") {
            Some(steps) => (
                steps.as_array().expect("steps").clone(),
                expected["output"]["steps"]
                    .as_array()
                    .expect("output steps")
                    .clone(),
            ),
            None => (vec![input.clone()], vec![expected["output"].clone()]),
        };
        let mut state = DrpoState::new();
        for (s, (step, want)) in steps.iter().zip(&outputs).enumerate() {
            let record: StepRecord =
                serde_json::from_value(step.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let groups = record.groups();
            let got =
                advantages(&mut state, &groups, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (bad, max_err, at) = compare(&name, s, &got, want);
            assert!(
                got.values.iter().all(|v| v.is_finite()),
                "{name}: non-finite advantage"
            );
            eprintln!("{name} step {s}: max |error| {max_err:.2e}");
            if bad > 0 {
                failures.push(format!(
                    "{name} step {s}: {bad} values off, max error {max_err:.3e} at {at}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
