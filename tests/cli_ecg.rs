//! `qoqmed ecg-plot` end to end: every ECG format the CLI reads becomes a PNG of the clinical
//! layout, and bad invocations fail with a message that says what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecg")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoqmed-cli-ecg-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn ecg_plot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .arg("ecg-plot")
        .args(args)
        .output()
        .expect("run qoqmed")
}

/// (width, height) from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn plots_every_format() {
    let dir = scratch("formats");
    let cases: [(&str, &[&str]); 6] = [
        ("waveform_ecg.dcm", &[]),
        ("waveform_ecg_16.hea", &[]),
        ("waveform_ecg_212.dat", &[]),
        ("waveform_ecg.csv", &["--ecg-rate", "1000"]),
        ("waveform_ecg_aecg.xml", &[]),
        ("syn_pad_257hz.csv", &["--ecg-rate", "257"]),
    ];
    for (file, extra) in cases {
        let out = dir.join(format!("{file}.png"));
        let input = fixtures().join(file);
        let mut args = vec![
            input.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
        ];
        args.extend_from_slice(extra);
        let result = ecg_plot(&args);
        assert!(
            result.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let png = std::fs::read(&out).expect("png written");
        // 270 x 175 mm of paper at the default 5 px/mm.
        assert_eq!(png_size(&png), (1350, 875), "{file}");
    }
    // The CLI draws what the library draws.
    let cli = std::fs::read(dir.join("waveform_ecg.dcm.png")).expect("png");
    let lib = qoqmed_ecg::plot_png(&read_dicom_fixture(), &Default::default()).expect("plot");
    assert!(cli == lib, "CLI and library PNGs differ");
    std::fs::remove_dir_all(&dir).ok();
}

fn read_dicom_fixture() -> qoqmed_ecg::Ecg {
    let bytes = std::fs::read(fixtures().join("waveform_ecg.dcm")).expect("fixture");
    qoqmed_ecg::read_dicom(&bytes).expect("DICOM ECG")
}

#[test]
fn resolution_flag_scales_the_picture() {
    let dir = scratch("scale");
    let out = dir.join("big.png");
    let input = fixtures().join("waveform_ecg.dcm");
    let result = ecg_plot(&[
        input.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
        "--px-per-mm",
        "8",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(png_size(&std::fs::read(&out).expect("png")), (2160, 1400));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn clear_errors() {
    let dir = scratch("errors");
    let out = dir.join("x.png");
    let out = out.to_str().expect("path");
    let stderr = |args: &[&str]| {
        let r = ecg_plot(args);
        assert!(!r.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&r.stderr).into_owned()
    };
    let csv = fixtures().join("waveform_ecg.csv");
    assert!(stderr(&[csv.to_str().expect("path"), "--out", out]).contains("--ecg-rate"));

    // A header whose .dat is not beside it.
    let hea = dir.join("lonely.hea");
    std::fs::copy(fixtures().join("waveform_ecg_16.hea"), &hea).expect("copy");
    let msg = stderr(&[hea.to_str().expect("path"), "--out", out]);
    assert!(msg.contains("waveform_ecg_16.dat"), "{msg}");

    let unknown = dir.join("ecg.bin");
    std::fs::write(&unknown, b"\x00\x01").expect("write");
    let msg = stderr(&[unknown.to_str().expect("path"), "--out", out]);
    assert!(msg.contains("unknown ECG format"), "{msg}");

    let truncated = dir.join("short.dcm");
    let dcm = std::fs::read(fixtures().join("waveform_ecg.dcm")).expect("fixture");
    std::fs::write(&truncated, &dcm[..dcm.len() / 3]).expect("write");
    let msg = stderr(&[truncated.to_str().expect("path"), "--out", out]);
    assert!(msg.contains("DICOM"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
