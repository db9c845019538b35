//! What a user asks: the question, the files they gave (as bytes), and the sampling settings.
//! The CLI fills it from flags, the web app from the page (or a shareable link).

use qoqmed_engine::chat::Instruction;
use qoqmed_engine::generate::GenerateOptions;
use qoqmed_imaging::{PixelRange, Window};

/// One file as the user gave it: its name (format detection, error messages) and its bytes.
#[derive(Clone, Debug, Default)]
pub struct InputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// One ECG record; WFDB is two files (`.hea` + `.dat`), every other format one.
#[derive(Clone, Debug, Default)]
pub struct EcgInput {
    pub files: Vec<InputFile>,
}

#[derive(Clone, Debug)]
pub struct Request {
    /// The question.
    pub prompt: String,
    /// System prompt; `None` keeps the chat template's.
    pub system: Option<String>,
    /// Append QoQ-Med's training instruction, or send the question alone.
    pub instruction: Instruction,
    /// Images, DICOM or NIfTI files, in the order they go into the prompt (before the text).
    pub images: Vec<InputFile>,
    /// Resize applied before the model's processor.
    pub pixel_range: PixelRange,
    /// Slices sampled from each volume or multi-frame file.
    pub frames: usize,
    /// VOI window for DICOM / NIfTI grey levels, overriding the file's own.
    pub window: Option<Window>,
    /// ECG records, in prompt order (after the text).
    pub ecgs: Vec<EcgInput>,
    /// Sampling rate for CSV ECGs (they carry none).
    pub ecg_rate_hz: Option<f64>,
    pub max_new_tokens: usize,
    /// `None` takes generation_config.json's value; temperature 0 is greedy.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// 0 = off.
    pub top_k: Option<usize>,
    /// 1 = off.
    pub repetition_penalty: Option<f32>,
    pub seed: u64,
    /// KV cache positions to preallocate (prompt + answer).
    pub max_context: usize,
    /// Prompt tokens per prefill submission (the web app keeps GPU jobs short with a small one).
    pub prefill_chunk: usize,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            prompt: String::new(),
            system: None,
            instruction: Instruction::Qoq,
            images: Vec::new(),
            pixel_range: PixelRange::Qoq,
            frames: 2,
            window: None,
            ecgs: Vec::new(),
            ecg_rate_hz: None,
            max_new_tokens: 1024,
            temperature: None,
            top_p: None,
            top_k: None,
            repetition_penalty: None,
            seed: 0,
            max_context: 4096,
            prefill_chunk: GenerateOptions::default().prefill_chunk,
        }
    }
}
