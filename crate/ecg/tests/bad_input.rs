//! Bad files give typed errors that say what is wrong, never a panic.

use std::path::PathBuf;

use qoqmed_ecg::{
    EcgError, EcgFormat, Lead, detect, model_input, read_aecg, read_csv, read_dicom, read_wfdb,
};

fn bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ecg")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn hea16() -> String {
    String::from_utf8(bytes("waveform_ecg_16.hea")).expect("text header")
}

/// A CSV of `leads` with `n` rows of a small ramp, at the given rate.
fn csv(leads: &[&str], n: usize) -> String {
    let mut s = leads.join(",");
    for k in 0..n {
        s.push('\n');
        let row: Vec<String> = (0..leads.len())
            .map(|j| format!("{}", (k * (j + 1)) as f32 * 1e-3))
            .collect();
        s.push_str(&row.join(","));
    }
    s
}

const EIGHT: [&str; 8] = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"];

#[test]
fn truncated_dat() {
    let dat = bytes("waveform_ecg_16.dat");
    let err = read_wfdb(hea16().as_bytes(), &dat[..dat.len() - 1000]).expect_err("truncated");
    assert!(
        matches!(
            err,
            EcgError::TruncatedDat {
                expected: 240_000,
                got: 239_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    let dat212 = bytes("waveform_ecg_212.dat");
    let hea212 = bytes("waveform_ecg_212.hea");
    assert!(matches!(
        read_wfdb(&hea212, &dat212[..100]),
        Err(EcgError::TruncatedDat { .. })
    ));
}

#[test]
fn mismatched_hea_and_dat() {
    // A .dat of the right size from "another record": checksums catch it.
    let mut other: Vec<u8> = bytes("waveform_ecg_16.dat");
    other.chunks_exact_mut(2).for_each(|b| {
        let v = i16::from_le_bytes([b[0], b[1]]).wrapping_add(3);
        b.copy_from_slice(&v.to_le_bytes());
    });
    let err = read_wfdb(hea16().as_bytes(), &other).expect_err("checksum");
    assert!(matches!(err, EcgError::Mismatch(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    // The 12-bit file under the 16-bit header: sizes disagree.
    let err = read_wfdb(hea16().as_bytes(), &bytes("waveform_ecg_212.dat")).expect_err("size");
    assert!(matches!(err, EcgError::TruncatedDat { .. }), "{err}");
    // A .dat longer than the header says.
    let mut long = bytes("waveform_ecg_16.dat");
    long.extend_from_slice(&[0; 2400]);
    let err = read_wfdb(hea16().as_bytes(), &long).expect_err("too long");
    assert!(matches!(err, EcgError::Mismatch(_)), "{err}");
    // .hea and .dat passed the wrong way round.
    let err = read_wfdb(&bytes("waveform_ecg_16.dat"), hea16().as_bytes()).expect_err("swapped");
    assert!(matches!(err, EcgError::WfdbHeader { .. }), "{err}");
}

#[test]
fn unknown_format_code() {
    let hea = hea16().replace(".dat 16 ", ".dat 310 ");
    let err = read_wfdb(hea.as_bytes(), &bytes("waveform_ecg_16.dat")).expect_err("format 310");
    assert!(
        matches!(&err, EcgError::UnsupportedWfdbFormat { code } if code == "310"),
        "{err}"
    );
    assert!(err.to_string().contains("16, 212, 80"), "{err}");
}

#[test]
fn wfdb_format_80_and_invalid_samples() {
    // Two signals, three frames, format 80 (offset binary), gain 100 adu/mV with baseline 10.
    // Checksums are the 16-bit sums of the digital values: 10 + 0 - 128 and 110 + 60 - 90.
    let hea =
        "r80 2 250 3\nr80.dat 80 100(10)/mV 8 0 0 -118 0 I\nr80.dat 80 100(10)/mV 8 0 0 80 0 II\n";
    let dat = [128 + 10, 128 + 110, 128, 128 + 60, 0, 128 - 90];
    let ecg = read_wfdb(hea.as_bytes(), &dat).expect("format 80");
    assert_eq!(ecg.sampling_rate_hz, 250.0);
    assert_eq!(
        ecg.lead(Lead::I).map(|v| v[..2].to_vec()),
        Some(vec![0.0, -0.1])
    );
    assert_eq!(
        ecg.lead(Lead::II).map(|v| v[..3].to_vec()),
        Some(vec![1.0, 0.5, -1.0])
    );
    // Byte 0 is format 80's "no sample" code: NaN, which preprocessing reports.
    assert!(ecg.lead(Lead::I).is_some_and(|v| v[2].is_nan()));
}

#[test]
fn missing_leads_are_named() {
    let text = csv(&["I", "II", "III", "V1", "V2", "MLII"], 600);
    let ecg = read_csv(text.as_bytes(), 500.0).expect("csv");
    let err = model_input(&ecg).expect_err("missing V3-V6");
    let msg = err.to_string();
    assert!(
        matches!(&err, EcgError::MissingLeads { missing, .. } if missing == &[Lead::V3, Lead::V4, Lead::V5, Lead::V6]),
        "{msg}"
    );
    assert!(
        msg.contains("V3, V4, V5, V6") && msg.contains("MLII"),
        "{msg}"
    );
}

#[test]
fn nan_samples() {
    let mut text = csv(&EIGHT, 1000);
    text = text.replacen("\n0,0,0,0", "\n0,0,0,NaN", 1);
    let ecg = read_csv(text.as_bytes(), 500.0).expect("csv");
    let err = model_input(&ecg).expect_err("NaN");
    assert!(
        matches!(
            err,
            EcgError::NonFinite {
                lead: Lead::V2,
                index: 0,
                ..
            }
        ),
        "{err}"
    );
    // A non-number is a parse error with its line.
    let bad = csv(&EIGHT, 10).replacen("\n0,0", "\nabc,0", 1);
    let err = read_csv(bad.as_bytes(), 500.0).expect_err("abc");
    assert!(matches!(err, EcgError::Csv { line: 2, .. }), "{err}");
}

#[test]
fn shorter_than_one_second() {
    let ecg = read_csv(csv(&EIGHT, 499).as_bytes(), 500.0).expect("csv");
    let err = model_input(&ecg).expect_err("0.998 s");
    assert!(
        matches!(err, EcgError::TooShort { samples: 499, .. }),
        "{err}"
    );
    let ecg = read_csv(csv(&EIGHT, 500).as_bytes(), 500.0).expect("csv");
    assert_eq!(
        model_input(&ecg).expect("exactly 1 s is enough").len(),
        8 * 2500
    );
}

#[test]
fn csv_problems() {
    assert!(matches!(read_csv(b"", 500.0), Err(EcgError::Csv { .. })));
    assert!(matches!(
        read_csv(b"1,2,3\n4,5,6", 500.0),
        Err(EcgError::Csv { line: 1, .. })
    ));
    assert!(matches!(
        read_csv(b"I,II\n1,2\n3", 500.0),
        Err(EcgError::Csv { line: 3, .. })
    ));
    assert!(matches!(
        read_csv(b"I,II\n1,2", 0.0),
        Err(EcgError::BadRate { .. })
    ));
    assert!(matches!(
        read_csv(b"I,II\n1,2", f64::NAN),
        Err(EcgError::BadRate { .. })
    ));
    assert!(matches!(
        read_csv(b"I,Lead I\n1,2", 500.0),
        Err(EcgError::DuplicateLead { lead: Lead::I, .. })
    ));
    assert!(matches!(
        read_csv(b"I (furlong)\n1", 500.0),
        Err(EcgError::Csv { .. })
    ));
    // Semicolons, quotes and units.
    let ecg = read_csv(b"\"I (uV)\";\"II\"\n1000;2\n", 500.0).expect("semicolon csv");
    assert_eq!(ecg.lead(Lead::I), Some(&[1.0f32][..]));
    assert_eq!(ecg.lead(Lead::II), Some(&[2.0f32][..]));
}

#[test]
fn corrupt_dicom() {
    let dcm = bytes("waveform_ecg.dcm");
    for cut in [0, 100, 132, 400, 2000, dcm.len() / 2, dcm.len() - 7] {
        let err = read_dicom(&dcm[..cut]).expect_err("truncated DICOM");
        assert!(matches!(err, EcgError::Dicom(_)), "cut {cut}: {err}");
    }
    let err = read_dicom(b"this is not DICOM at all").expect_err("garbage");
    assert!(err.to_string().contains("DICM"), "{err}");
    let mut junk = vec![0u8; 128];
    junk.extend_from_slice(b"DICM");
    junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert!(matches!(read_dicom(&junk), Err(EcgError::Dicom(_))));
}

#[test]
fn bad_aecg() {
    assert!(matches!(
        read_aecg(b"<AnnotatedECG><unclosed>"),
        Err(EcgError::Aecg(_))
    ));
    let err = read_aecg(b"<html/>").expect_err("not aECG");
    assert!(err.to_string().contains("AnnotatedECG"), "{err}");
    let no_time = br#"<AnnotatedECG xmlns="urn:hl7-org:v3"><component><series><component><sequenceSet>
        <component><sequence><code code="MDC_ECG_LEAD_I"/><value><digits>1 2 3</digits></value></sequence></component>
        </sequenceSet></component></series></component></AnnotatedECG>"#;
    let err = read_aecg(no_time).expect_err("no rate");
    assert!(err.to_string().contains("sampling rate"), "{err}");
}

#[test]
fn detect_by_name_and_contents() {
    assert_eq!(detect("x.hea", b""), Some(EcgFormat::Wfdb));
    assert_eq!(detect("x.DAT", b""), Some(EcgFormat::Wfdb));
    assert_eq!(detect("x.csv", b"I,II"), Some(EcgFormat::Csv));
    assert_eq!(
        detect("noext", &bytes("waveform_ecg.dcm")),
        Some(EcgFormat::Dicom)
    );
    assert_eq!(
        detect("ecg.txt", &bytes("waveform_ecg_aecg.xml")),
        Some(EcgFormat::Aecg)
    );
    assert_eq!(detect("photo.jpg", b"\xff\xd8"), None);
}

/// Deterministic corruption of every real fixture: truncations and flipped bytes must come back
/// as Ok or Err, never as a panic or an abort.
#[test]
fn mangled_files_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let hea = bytes("waveform_ecg_212.hea");
    let dat = bytes("waveform_ecg_212.dat");
    let files = [
        bytes("waveform_ecg.dcm"),
        bytes("waveform_ecg_aecg.xml"),
        bytes("waveform_ecg.csv"),
    ];
    for round in 0..60 {
        for (k, original) in files.iter().enumerate() {
            let mut data = original.clone();
            for _ in 0..1 + round % 8 {
                let at = (next() as usize) % data.len();
                data[at] = next() as u8;
            }
            data.truncate(data.len() - (next() as usize) % (data.len() / 2 + 1));
            let _ = match k {
                0 => read_dicom(&data).map(|e| model_input(&e)),
                1 => read_aecg(&data).map(|e| model_input(&e)),
                _ => read_csv(&data, 1000.0).map(|e| model_input(&e)),
            };
        }
        let mut h = hea.clone();
        let at = (next() as usize) % h.len();
        h[at] = b"0123456789 ()/x+:-\n"[(next() as usize) % 19];
        let _ = read_wfdb(&h, &dat[..dat.len() - (next() as usize) % 300]).map(|e| model_input(&e));
    }
}

#[test]
fn absurd_headers_and_values() {
    // A header announcing a billion signals or samples must not allocate for them.
    let err = read_wfdb(
        b"r 1000000000 500 5000\nr.dat 16 200 16 0 0 0 0 I\n",
        &[0; 8],
    )
    .expect_err("nsig");
    assert!(matches!(err, EcgError::WfdbHeader { .. }), "{err}");
    let err = read_wfdb(
        b"r 1 500 18446744073709551615\nr.dat 16 200 16 0 0 0 0 I\n",
        &[0; 8],
    )
    .expect_err("nsamp");
    assert!(
        matches!(
            err,
            EcgError::WfdbHeader { .. } | EcgError::TruncatedDat { .. }
        ),
        "{err}"
    );
    let err = read_wfdb(b"r 0 500 10\n", &[]).expect_err("no signals");
    assert!(matches!(err, EcgError::WfdbHeader { .. }), "{err}");
    assert!(matches!(
        read_csv(b"I\n1", 1e9),
        Err(EcgError::BadRate { .. })
    ));
    // Huge but finite samples still plot (clipped), quickly.
    let mut text = csv(&EIGHT, 600);
    text = text.replacen("\n0,0,0,0", "\n3e38,-3e38,0,0", 1);
    let ecg = read_csv(text.as_bytes(), 60.0).expect("csv");
    let img = qoqmed_ecg::plot_rgb(&ecg, &Default::default()).expect("plot");
    assert_eq!((img.width(), img.height()), (1350, 875));
}

/// A waveform whose length field claims ~2 GiB must be refused before anything allocates it,
/// in explicit and implicit VR (where the pre-scan finds sequences through the dictionary).
#[test]
fn dicom_lying_length_is_refused_early() {
    for (name, header) in [
        ("waveform_ecg_variant.dcm", 12usize),
        ("waveform_ecg_variant_implicit.dcm", 8),
    ] {
        let mut dcm = bytes(name);
        // (5400,1010) Waveform Data, little endian tag bytes.
        let at = dcm
            .windows(4)
            .position(|w| w == [0x00, 0x54, 0x10, 0x10])
            .expect("waveform data tag");
        dcm[at + header - 4..at + header].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let err = read_dicom(&dcm).expect_err("lying length");
        assert!(
            err.to_string().contains("claims 2147483632 bytes"),
            "{name}: {err}"
        );
    }
}

/// Found by the dicom fuzz target: an invalid VR makes dicom-rs read a 4-byte length from the VR
/// bytes (here ~3.6 GB) and allocate it. The pre-scan refuses the element instead.
#[test]
fn dicom_invalid_vr_is_refused_early() {
    let mut dcm = bytes("waveform_ecg_variant.dcm");
    let at = dcm
        .windows(4)
        .position(|w| w == [0x00, 0x54, 0x10, 0x10])
        .expect("waveform data tag");
    dcm[at + 4..at + 8].copy_from_slice(&[0x00, 0x7B, 0xB3, 0xD9]);
    let err = read_dicom(&dcm).expect_err("invalid VR");
    assert!(err.to_string().contains("invalid VR"), "{err}");
}

/// Found by the dicom fuzz target (the file is its output): a stray item delimiter at the top
/// level, then an element claiming ~3.6 GB. The pre-scan must look past the delimiter.
#[test]
fn dicom_fuzz_regression_stray_delimiter() {
    let err = read_dicom(&bytes("fuzz_dicom_stray_delimiter.dcm")).expect_err("lying length");
    assert!(err.to_string().contains("claims 3652418304 bytes"), "{err}");
    // Second find: an item whose length ends mid-element; dicom-rs reads on past it, so the
    // pre-scan walks linearly as it does and finds the ~1.9 GB value length behind it.
    let err = read_dicom(&bytes("fuzz_dicom_item_length.dcm")).expect_err("lying length");
    assert!(err.to_string().contains("claims"), "{err}");
}

/// Every prefix of a real file's first 400 bytes (the file meta group and the first elements)
/// is refused cleanly.
#[test]
fn dicom_every_short_prefix() {
    let dcm = bytes("waveform_ecg_variant_implicit.dcm");
    for cut in 0..400 {
        assert!(
            matches!(read_dicom(&dcm[..cut]), Err(EcgError::Dicom(_))),
            "cut at {cut}"
        );
    }
}
