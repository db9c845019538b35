//! The result of one request. Its JSON form is the stable contract `qoqmed generate --json` prints
//! and the web app writes into `<pre id="qoqmed-result">`.

use qoqmed_engine::generate::StopReason;
use serde::Serialize;

use crate::images::ImageFrame;

#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub prompt_tokens: usize,
    /// New token ids, the eos included when generation stopped on one.
    pub token_ids: Vec<u32>,
    /// The answer's text without special tokens.
    pub text: String,
    /// The `<think>` reasoning, when the answer has one.
    pub think: Option<String>,
    /// The last `\boxed{}` answer.
    pub answer: Option<String>,
    /// The boxes of the answer's ```json block (`{"bbox_2d": [...], "label": ...}`); with images,
    /// each also has `"image"` (its index) and `"bbox_original"` (in that image's own pixels).
    pub boxes: Vec<serde_json::Value>,
    pub stop_reason: StopReason,
    pub timings: Timings,
    /// The GPU adapter that ran it.
    pub adapter: String,
    /// The request's images as the boxes refer to them (for drawing; not part of the JSON).
    #[serde(skip)]
    pub images: Vec<ImageFrame>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// Reading and uploading the model.
    pub load_s: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// From the start of the request to the first new token (encoders and prefill included).
    pub time_to_first_token_s: f64,
    /// The vision tower on the request's images (pixel upload and GPU time; 0 without images).
    pub vision_s: f64,
    /// Reading and preprocessing the ECG records (0 without ECGs). Their encoder runs on the GPU
    /// in the first prefill submission, so its time is part of `time_to_first_token_s`.
    pub ecg_s: f64,
}
