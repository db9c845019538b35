//! The ECGs of a request: records read from their bytes (WFDB, CSV, DICOM waveform, HL7 aECG),
//! preprocessed to the (8, 2500) model input, encoded by QoQ-Med-Omni's ECG branch in the first
//! prefill command buffer, one token vector per ECG at its `<|time_series_pad|>`.
//!
//! Several ECGs: QoQ-Med trained with one ECG per prompt; more are accepted (up to
//! [`MAX_ECGS`]) and become one token each, in the order given, filled in prompt order exactly as
//! the released model's `masked_scatter` fills them. A chat template that renders fewer
//! `<|time_series_pad|>` than ECGs given is an error, not a silent drop.

use qoqmed_ecg::{Ecg, EcgFormat, MODEL_LEADS, MODEL_SAMPLES};
use qoqmed_engine::chat::tokens::TIME_SERIES_PAD;
use qoqmed_engine::config::ecg_defaults;
use qoqmed_engine::gpu::{Recorder, Tensor};
use qoqmed_engine::model::Injection;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::request::{EcgInput, Request};

/// ECGs one prompt may carry; each costs one encoder pass.
pub const MAX_ECGS: usize = 4;

/// The request's ECGs as model inputs, (n, 8, 2500) row-major; None without ECGs. Fails before any
/// GPU work when the model has no ECG branch or a record cannot be used.
pub(crate) fn model_inputs(model: &Model, req: &Request) -> Result<Option<Vec<f32>>> {
    if req.ecgs.is_empty() {
        return Ok(None);
    }
    let Some(encoder) = &model.ecg else {
        return Err(Error::Request(
            "this model has no ECG branch (no time_series_embedding.* tensors): it is not a \
             QoQ-Med-Omni checkpoint and cannot read ECGs; ask without ECGs or load an Omni model"
                .into(),
        ));
    };
    if req.ecgs.len() > MAX_ECGS {
        return Err(Error::Request(format!(
            "{} ECGs given; at most {MAX_ECGS} per prompt (QoQ-Med was trained with one)",
            req.ecgs.len()
        )));
    }
    let cfg = &encoder.cfg;
    if cfg.c != MODEL_LEADS.len() || cfg.samples() != MODEL_SAMPLES {
        return Err(Error::Request(format!(
            "this checkpoint's ECG encoder takes {} leads x {} samples (time_series_config c, p, t), \
             but ECGs are prepared as QoQ-Med-Omni's {} x {MODEL_SAMPLES}",
            cfg.c,
            cfg.samples(),
            MODEL_LEADS.len()
        )));
    }
    let mut out = Vec::with_capacity(req.ecgs.len() * MODEL_LEADS.len() * MODEL_SAMPLES);
    for (k, input) in req.ecgs.iter().enumerate() {
        let ecg = read_ecg(input, req.ecg_rate_hz).map_err(|e| label(k, input, e))?;
        let x = qoqmed_ecg::model_input(&ecg).map_err(|e| label(k, input, e.into()))?;
        out.extend(x);
    }
    Ok(Some(out))
}

/// Prefixes an error with which ECG it is about.
fn label(k: usize, input: &EcgInput, e: Error) -> Error {
    let names: Vec<&str> = input.files.iter().map(|f| f.name.as_str()).collect();
    Error::Request(format!("ECG {} ({}): {e}", k + 1, names.join(" + ")))
}

/// One record from its file(s), the reader chosen from the name and contents: WFDB is a `.hea`
/// and a `.dat`, every other format one file; `rate_hz` is required for CSV. What the request
/// path reads, and what the web app's 12-lead preview reads.
pub fn read_ecg(input: &EcgInput, rate_hz: Option<f64>) -> Result<Ecg> {
    match &input.files[..] {
        [one] => match qoqmed_ecg::detect(&one.name, &one.bytes) {
            Some(EcgFormat::Dicom) => Ok(qoqmed_ecg::read_dicom(&one.bytes)?),
            Some(EcgFormat::Aecg) => Ok(qoqmed_ecg::read_aecg(&one.bytes)?),
            Some(EcgFormat::Csv) => {
                let rate = rate_hz.ok_or_else(|| {
                    Error::Request(
                        "CSV ECGs carry no sampling rate: give it (--ecg-rate HZ, e.g. 500)".into(),
                    )
                })?;
                Ok(qoqmed_ecg::read_csv(&one.bytes, rate)?)
            }
            Some(EcgFormat::Wfdb) => Err(Error::Request(
                "a WFDB record is two files: give its .hea and its .dat together".into(),
            )),
            None => Err(Error::Request(
                "unknown ECG format; use WFDB (.hea + .dat), .csv, DICOM waveform (.dcm) or HL7 \
                 aECG (.xml)"
                    .into(),
            )),
        },
        [a, b] => {
            let is_header = |n: &str| n.to_ascii_lowercase().ends_with(".hea");
            let (header, dat) = match (is_header(&a.name), is_header(&b.name)) {
                (true, false) => (a, b),
                (false, true) => (b, a),
                _ => {
                    return Err(Error::Request(
                        "two files make one ECG only as a WFDB record: one .hea and one .dat"
                            .into(),
                    ));
                }
            };
            Ok(qoqmed_ecg::read_wfdb(&header.bytes, &dat.bytes)?)
        }
        files => Err(Error::Request(format!(
            "an ECG is one file (or a WFDB .hea + .dat), not {}",
            files.len()
        ))),
    }
}

/// `<|time_series_pad|>`'s id: config.json's `time_series_token_id` (QoQ-Med's class default when
/// absent), which the tokenizer must agree with, or the ECG token would be split into text.
pub(crate) fn time_series_token(model: &Model) -> Result<u32> {
    let id = model
        .config
        .time_series_token_id
        .unwrap_or(ecg_defaults::TIME_SERIES_TOKEN_ID);
    match model.tokenizer.token_id(TIME_SERIES_PAD) {
        Some(t) if t == id => Ok(id),
        Some(t) => Err(Error::Request(format!(
            "the tokenizer has {TIME_SERIES_PAD} as id {t} but config.json's \
             time_series_token_id is {id}; the model folder's files do not belong together"
        ))),
        None => Err(Error::Request(format!(
            "the tokenizer has no {TIME_SERIES_PAD} token (QoQ-Med-Omni's tokenizer adds it, id \
             {id}); use the Omni checkpoint's tokenizer.json"
        ))),
    }
}

/// Records the ECG branch for `inputs` (from [`model_inputs`]) into `rec`, the recorder of the
/// first prefill chunk, and returns its tokens placed at the prompt's `<|time_series_pad|>`s.
/// Without ECGs, an ECG checkpoint's prompt must hold no such token (it would enter the model as
/// a bare placeholder).
pub(crate) fn record(
    model: &Model,
    rec: &mut Recorder,
    inputs: Option<&[f32]>,
    prompt: &[u32],
) -> Result<Option<Injection>> {
    let Some(encoder) = &model.ecg else {
        return Ok(None);
    };
    let Some(inputs) = inputs else {
        let id = model
            .config
            .time_series_token_id
            .unwrap_or(ecg_defaults::TIME_SERIES_TOKEN_ID);
        if prompt.contains(&id) {
            return Err(Error::Request(format!(
                "the question contains {TIME_SERIES_PAD}, the placeholder of an ECG, but no ECG \
                 was given; remove it from the text or add the ECG"
            )));
        }
        return Ok(None);
    };
    let per = MODEL_LEADS.len() * MODEL_SAMPLES;
    let x = Tensor::from_f32(
        &model.gpu,
        inputs,
        &[inputs.len() / per, MODEL_LEADS.len(), MODEL_SAMPLES],
        "ecg.input",
    )?;
    let id = time_series_token(model)?;
    let tokens = encoder.forward(rec, &x, None)?;
    Ok(Some(Injection::at_token(prompt, id, tokens)?))
}
