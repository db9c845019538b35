//! ECGs through the request path on the tiny QoQ-Med-Omni checkpoint: the same ECG given as
//! DICOM, WFDB and CSV gives the PyTorch reference's greedy ids (goldens from
//! tools/fixtures/ecg_model_goldens.py, whose ECG input is the scipy reference of the same record);
//! bad inputs are clear errors.

use std::path::{Path, PathBuf};

use qoqmed_engine::chat::Instruction;
use qoqmed_engine::gpu::Gpu;
use qoqmed_imaging::PixelRange;
use qoqmed_pipeline::{Answer, EcgInput, InputFile, MAX_ECGS, Model, ModelFiles, Request, run};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn meta(case: &str) -> serde_json::Value {
    let path = fixtures().join(format!("goldens/tiny-omni/{case}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn files(model: &str) -> ModelFiles {
    ModelFiles::from_dir(&fixtures().join("models").join(model)).unwrap()
}

fn load(files: ModelFiles) -> qoqmed_pipeline::Result<Model> {
    let gpu = pollster::block_on(Gpu::new(None)).expect("a wgpu adapter (lavapipe without a GPU)");
    pollster::block_on(Model::load(gpu, files))
}

fn ecg(names: &[&str]) -> EcgInput {
    EcgInput {
        files: names
            .iter()
            .map(|n| InputFile {
                name: n.to_string(),
                bytes: std::fs::read(fixtures().join("ecg").join(n)).unwrap(),
            })
            .collect(),
    }
}

/// The golden case's question, greedy, as many new tokens as the golden has.
fn request(case: &str, ecgs: Vec<EcgInput>) -> Request {
    let m = meta(case);
    Request {
        prompt: m["prompt"].as_str().unwrap().to_string(),
        instruction: Instruction::None,
        ecgs,
        ecg_rate_hz: Some(1000.0),
        temperature: Some(0.0),
        repetition_penalty: Some(1.0),
        max_new_tokens: m["generation"]["greedy"]["generated_ids"]
            .as_array()
            .unwrap()
            .len(),
        ..Request::default()
    }
}

fn answer(model: &Model, req: &Request) -> qoqmed_pipeline::Result<Answer> {
    pollster::block_on(run(model, req, &mut |_| true))
}

fn check(model: &Model, case: &str, req: &Request, what: &str) {
    let m = meta(case);
    let a = answer(model, req).unwrap_or_else(|e| panic!("{what}: {e}"));
    let want: Vec<u32> =
        serde_json::from_value(m["generation"]["greedy"]["generated_ids"].clone()).unwrap();
    assert_eq!(a.token_ids, want, "{what}: greedy ids");
    assert_eq!(
        a.prompt_tokens,
        m["input_ids"].as_array().unwrap().len(),
        "{what}: prompt tokens"
    );
    if req.ecgs.is_empty() {
        assert_eq!(a.timings.ecg_s, 0.0);
    } else {
        assert!(a.timings.ecg_s > 0.0, "{what}: ecg_s");
    }
}

#[test]
fn one_ecg_from_dicom_wfdb_and_csv_gives_the_reference_ids() {
    let model = load(files("tiny-omni")).unwrap();
    assert!(model.ecg.is_some());
    for (what, names) in [
        ("DICOM", &["waveform_ecg.dcm"][..]),
        ("WFDB 16", &["waveform_ecg_16.hea", "waveform_ecg_16.dat"]),
        (
            "WFDB, .dat first",
            &["waveform_ecg_16.dat", "waveform_ecg_16.hea"],
        ),
        ("CSV", &["waveform_ecg.csv"]),
    ] {
        check(&model, "ecg", &request("ecg", vec![ecg(names)]), what);
    }
}

#[test]
fn text_only_and_two_ecg_prompts_give_the_reference_ids() {
    let model = load(files("tiny-omni")).unwrap();
    check(&model, "text", &request("text", Vec::new()), "text only");
    let two = vec![
        ecg(&["waveform_ecg.dcm"]),
        ecg(&["waveform_ecg_variant.dcm"]),
    ];
    check(&model, "two_ecgs", &request("two_ecgs", two), "two ECGs");
}

/// Images first, then the text, then the ECG token (QoQ-Med's order): the vision tower's features
/// and the ECG vector injected into one prompt. The golden fed transformers the plain processor's
/// pixels (the image's sides are multiples of 28, so no resize), hence `PixelRange::Model`.
#[test]
fn image_text_and_ecg_prompt_gives_the_reference_ids() {
    let model = load(files("tiny-omni")).unwrap();
    assert!(model.vision.is_some(), "tiny-omni carries a vision tower");
    let image = "levels_m28_336x252_qoq.png";
    let mut req = request("image_ecg", vec![ecg(&["waveform_ecg.dcm"])]);
    req.images = vec![InputFile {
        name: image.to_string(),
        bytes: std::fs::read(fixtures().join("images").join(image)).unwrap(),
    }];
    req.pixel_range = PixelRange::Model;
    check(&model, "image_ecg", &req, "image + text + ECG");
    let a = answer(&model, &req).unwrap();
    assert!(a.timings.vision_s > 0.0, "vision_s");
    assert_eq!(a.images.len(), 1, "one image frame reported");
}

#[test]
fn a_template_without_the_time_series_branch_gives_the_same_ids() {
    let mut f = files("tiny-omni");
    assert!(f.chat_template.is_some());
    // tokenizer_config.json holds Qwen2.5-VL's template: no {"type": "time-series"} branch.
    f.chat_template = None;
    let model = load(f).unwrap();
    let req = request("ecg", vec![ecg(&["waveform_ecg.dcm"])]);
    check(&model, "ecg", &req, "Qwen2.5-VL template");
}

fn error(model: &Model, req: &Request) -> String {
    match answer(model, req) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_ecg_requests_are_clear_errors() {
    // An ECG for a checkpoint without the branch.
    let plain = load(files("tiny-small-vocab")).unwrap();
    assert!(plain.ecg.is_none());
    let err = error(&plain, &request("ecg", vec![ecg(&["waveform_ecg.dcm"])]));
    assert!(err.contains("no ECG branch"), "{err}");

    let model = load(files("tiny-omni")).unwrap();
    // A record without lead V4.
    let csv = std::fs::read_to_string(fixtures().join("ecg/waveform_ecg.csv")).unwrap();
    let v4 = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c.starts_with("V4"))
        .unwrap();
    let no_v4: String = csv
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l
                .split(',')
                .enumerate()
                .filter(|(i, _)| *i != v4)
                .map(|(_, c)| c)
                .collect();
            cells.join(",") + "\n"
        })
        .collect();
    let req = request(
        "ecg",
        vec![EcgInput {
            files: vec![InputFile {
                name: "no_v4.csv".into(),
                bytes: no_v4.into_bytes(),
            }],
        }],
    );
    let err = error(&model, &req);
    assert!(
        err.contains("ECG 1 (no_v4.csv)") && err.contains("V4"),
        "{err}"
    );

    // CSV without a rate, half a WFDB record, an unknown format, too many ECGs.
    let mut req = request("ecg", vec![ecg(&["waveform_ecg.csv"])]);
    req.ecg_rate_hz = None;
    assert!(error(&model, &req).contains("--ecg-rate"));
    let req = request("ecg", vec![ecg(&["waveform_ecg_16.hea"])]);
    assert!(error(&model, &req).contains(".hea and its .dat"));
    let req = request(
        "ecg",
        vec![EcgInput {
            files: vec![InputFile {
                name: "notes.bin".into(),
                bytes: vec![1, 2, 3],
            }],
        }],
    );
    assert!(error(&model, &req).contains("unknown ECG format"));
    let req = request("ecg", vec![ecg(&["waveform_ecg.dcm"]); MAX_ECGS + 1]);
    assert!(error(&model, &req).contains("at most 4"));
    // The question may not carry the ECG token itself.
    let mut req = request("ecg", vec![ecg(&["waveform_ecg.dcm"])]);
    req.prompt.push_str(" <|time_series_pad|>");
    assert!(error(&model, &req).contains("<|time_series_pad|>"));
}

fn with_config(edit: impl Fn(&mut serde_json::Value)) -> ModelFiles {
    let mut f = files("tiny-omni");
    let mut config: serde_json::Value = serde_json::from_slice(&f.config).unwrap();
    edit(&mut config);
    f.config = serde_json::to_vec(&config).unwrap();
    f
}

#[test]
fn configs_that_disagree_with_the_checkpoint_are_clear_errors() {
    let err = load(with_config(|c| {
        c["time_series_config"]["encoder_num_heads"] = 16.into();
        c["time_series_config"]["encoder_embed_dim"] = 128.into();
    }))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("time_series_config disagrees") && err.contains("encoder.W_P.weight"),
        "{err}"
    );
    // time_series_config absent: ECG-JEPA's real sizes, which this tiny checkpoint is not.
    let err = load(with_config(|c| {
        c.as_object_mut().unwrap().remove("time_series_config");
    }))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("encoder_depth is 12"), "{err}");
    // A token id the tokenizer does not agree with.
    let model = load(with_config(|c| c["time_series_token_id"] = 2047.into())).unwrap();
    let err = error(&model, &request("ecg", vec![ecg(&["waveform_ecg.dcm"])]));
    assert!(err.contains("time_series_token_id is 2047"), "{err}");
}
