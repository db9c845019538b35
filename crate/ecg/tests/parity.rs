//! Model input vs the scipy references written by tools/fixtures/make_ecg_goldens.py, and the
//! real ECG read from DICOM, WFDB 16, WFDB 212, CSV and aECG agreeing with each other.

use std::path::PathBuf;

use qoqmed_ecg::{
    Ecg, Lead, MODEL_SAMPLES, model_input, read_aecg, read_csv, read_dicom, read_wfdb,
};

/// Reference tolerance: |rust - scipy| <= REF_TOL * max(1, |scipy|) on the z-scored values. Both
/// sides compute in f64 from the same f32 samples; the f32 output rounding (6e-8) dominates.
const REF_TOL: f32 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ecg")
}

fn bytes(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn reference(name: &str) -> Vec<f32> {
    bytes(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read_case(files: &[String], rate: Option<f64>) -> Ecg {
    let first = files[0].as_str();
    if first.ends_with(".dcm") {
        read_dicom(&bytes(first)).expect("DICOM")
    } else if first.ends_with(".xml") {
        read_aecg(&bytes(first)).expect("aECG")
    } else if first.ends_with(".hea") {
        read_wfdb(&bytes(first), &bytes(&files[1])).expect("WFDB")
    } else {
        read_csv(&bytes(first), rate.expect("CSV rate")).expect("CSV")
    }
}

/// (max abs difference, index of it)
fn max_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    let mut worst = (0.0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        if d > worst.0 || d.is_nan() {
            worst = (d, i);
        }
    }
    worst
}

#[test]
fn every_fixture_matches_scipy() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&bytes("manifest.json")).expect("manifest.json");
    let cases = manifest.as_array().expect("a list of cases");
    assert!(
        cases.len() >= 10,
        "expected the 6 real + 4 synthetic cases, got {}",
        cases.len()
    );
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let files: Vec<String> = case["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f.as_str().unwrap_or_default().to_string())
            .collect();
        let ecg = read_case(&files, case["rate_hz"].as_f64());
        let got = model_input(&ecg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = reference(case["reference"].as_str().expect("reference"));
        assert_eq!(got.len(), 8 * MODEL_SAMPLES, "{name}");
        let mut worst = (0.0f32, 0usize);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (g - w).abs() / w.abs().max(1.0);
            if err > worst.0 || err.is_nan() {
                worst = (err, i);
            }
        }
        let (err, at) = worst;
        println!(
            "{name}: max scaled error {err:.2e} at row {} col {}",
            at / MODEL_SAMPLES,
            at % MODEL_SAMPLES
        );
        assert!(
            err <= REF_TOL,
            "{name}: error {err} at row {} col {} (rust {}, scipy {})",
            at / MODEL_SAMPLES,
            at % MODEL_SAMPLES,
            got[at],
            want[at]
        );
    }
}

fn real(name: &str) -> Ecg {
    match name {
        "dicom" => read_dicom(&bytes("waveform_ecg.dcm")).expect("DICOM"),
        "wfdb16" => read_wfdb(&bytes("waveform_ecg_16.hea"), &bytes("waveform_ecg_16.dat"))
            .expect("WFDB 16"),
        "wfdb212" => read_wfdb(
            &bytes("waveform_ecg_212.hea"),
            &bytes("waveform_ecg_212.dat"),
        )
        .expect("WFDB 212"),
        "csv" => read_csv(&bytes("waveform_ecg.csv"), 1000.0).expect("CSV"),
        "aecg" => read_aecg(&bytes("waveform_ecg_aecg.xml")).expect("aECG"),
        other => panic!("no reading {other}"),
    }
}

#[test]
fn real_ecg_reads_the_same_in_every_format() {
    let dicom = real("dicom");
    assert_eq!(dicom.sampling_rate_hz, 1000.0);
    assert_eq!(
        dicom.len(),
        10_000,
        "the rhythm group, not the 1.2 s median beats"
    );
    let names: Vec<Lead> = dicom.leads.iter().map(|(l, _)| *l).collect();
    assert_eq!(names, Lead::ALL.to_vec());
    // First CSV row of lead I is 100.00 uV: raw 80 x 1.25 uV.
    assert_eq!(dicom.lead(Lead::I).map(|v| v[0]), Some(0.1));
    let reference = model_input(&dicom).expect("model input");
    // Same integers and the same scale in all these containers: only f32 rounding differs.
    for (fmt, tol) in [
        ("wfdb16", 1e-5f32),
        ("csv", 1e-5),
        ("aecg", 1e-5),
        ("wfdb212", 5e-3),
    ] {
        let ecg = real(fmt);
        assert_eq!(ecg.sampling_rate_hz, 1000.0, "{fmt}");
        assert_eq!(ecg.len(), 10_000, "{fmt}");
        for lead in Lead::ALL {
            let (a, b) = (
                dicom.lead(lead).expect("dicom lead"),
                ecg.lead(lead).expect("lead"),
            );
            let (d, at) = max_diff(a, b);
            // 212 re-quantised at 1/gain mV (gain >= ~3000 adu/mV here), the others are exact.
            let sample_tol = if fmt == "wfdb212" { 1e-3 } else { 1e-6 };
            assert!(
                d <= sample_tol,
                "{fmt} {lead}: sample {at} differs by {d} mV"
            );
        }
        let input = model_input(&ecg).expect("model input");
        let (d, at) = max_diff(&reference, &input);
        println!("{fmt} vs DICOM: max |model input difference| {d:.2e}");
        assert!(
            d <= tol,
            "{fmt}: model input differs from DICOM's by {d} at {at}"
        );
    }
}

/// The variant DICOM takes the reader's other paths (mV units, correction factor, baseline,
/// leads named only by SCPECG / MDC codes) and must give the original's samples back.
#[test]
fn dicom_variant_gives_the_same_samples() {
    let original = real("dicom");
    let variant = read_dicom(&bytes("waveform_ecg_variant.dcm")).expect("variant DICOM");
    assert_eq!(variant.len(), 3000);
    assert!(
        variant.other_channels.is_empty(),
        "{:?}",
        variant.other_channels
    );
    for lead in Lead::ALL {
        let a = &original.lead(lead).expect("original lead")[..3000];
        let b = variant
            .lead(lead)
            .unwrap_or_else(|| panic!("variant lacks {lead}"));
        // Lead II carries a 40 uV channel baseline on top of the same samples.
        let offset = if lead == Lead::II { 0.04 } else { 0.0 };
        let shifted: Vec<f32> = a.iter().map(|v| v + offset).collect();
        let (d, at) = max_diff(&shifted, b);
        assert!(d <= 1e-6, "{lead}: sample {at} differs by {d} mV");
    }
}
