//! The page's request (JSON + the user's files) to the pipeline's [`Request`], and the warm-up that
//! builds every GPU pipeline while the model loads.

use qoqmed_engine::chat::Instruction;
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::model::rope;
use qoqmed_imaging::{PixelRange, Window};
use qoqmed_pipeline::{EcgInput, InputFile, Model, Request};
use serde::Deserialize;

/// What the page sends. Unknown fields are an error: a shared link's parameter that this build
/// cannot honour must say so rather than be ignored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebRequest {
    pub prompt: String,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub instruction: Option<String>,
    #[serde(default)]
    pub pixel_range: Option<String>,
    #[serde(default)]
    pub frames: Option<usize>,
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    #[serde(default)]
    pub max_context: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub ecg_rate_hz: Option<f64>,
    /// VOI window `[center, width]` for DICOM / NIfTI grey levels (`--window C,W`).
    #[serde(default)]
    pub window: Option<[f64; 2]>,
}

/// `pixel_range` as the page and links spell it.
pub fn pixel_range(v: Option<&str>) -> Result<PixelRange, String> {
    match v {
        None | Some("qoq") => Ok(PixelRange::Qoq),
        Some("model") => Ok(PixelRange::Model),
        Some(other) => Err(format!("pixel_range {other:?}: use qoq or model")),
    }
}

/// Prompt tokens per prefill submission in the browser: short GPU jobs keep the page responsive
/// and stay far from driver watchdogs on slow GPUs.
pub const WEB_PREFILL_CHUNK: usize = 128;

impl WebRequest {
    /// The pipeline request; `images` are files, `ecgs` records (one or two files each).
    pub fn into_request(
        self,
        images: Vec<InputFile>,
        ecgs: Vec<Vec<InputFile>>,
    ) -> Result<Request, String> {
        let instruction: Instruction = self
            .instruction
            .as_deref()
            .unwrap_or("qoq")
            .parse()
            .map_err(|e: qoqmed_engine::Error| e.to_string())?;
        let pixel_range = pixel_range(self.pixel_range.as_deref())?;
        let window = self
            .window
            .map(|[c, w]| Window::new(c, w))
            .transpose()
            .map_err(|e| e.to_string())?;
        if self.prompt.trim().is_empty() {
            return Err("the question is empty; type a question".into());
        }
        let d = Request::default();
        Ok(Request {
            prompt: self.prompt,
            system: self.system,
            instruction,
            images,
            pixel_range,
            frames: self.frames.unwrap_or(d.frames),
            window,
            ecgs: ecgs.into_iter().map(|files| EcgInput { files }).collect(),
            ecg_rate_hz: self.ecg_rate_hz,
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed.unwrap_or(d.seed),
            max_context: self.max_context.unwrap_or(d.max_context),
            prefill_chunk: WEB_PREFILL_CHUNK,
        })
    }
}

/// Builds the pipelines a request uses with throwaway generations, so the first question does not
/// stall on shader compilation (seconds per kernel on a CPU WebGPU): an 8-token prompt takes the
/// prefill kernels (CPU adapters switch to the tiled GEMM above 4 tokens) and two decode steps;
/// a checkpoint with a vision tower or an ECG branch also answers one request with a 56 x 56
/// image and / or a flat 10 s ECG through the request path, which builds the encoders' kernels.
pub async fn warm_up(model: &Model) -> Result<(), String> {
    let mut opts = GenerateOptions {
        max_new_tokens: 2,
        max_context: 16,
        ..GenerateOptions::default()
    };
    opts.sampling.temperature = 0.0;
    opts.sampling.repetition_penalty = 1.0;
    let prompt = [0u32; 8];
    let positions = rope::text_positions(0, prompt.len(), 0);
    generate(
        &model.gpu,
        &model.text,
        &prompt,
        &positions,
        0,
        &opts,
        &mut |_| true,
    )
    .await
    .map_err(|e| e.to_string())?;
    if model.vision.is_none() && model.ecg.is_none() {
        return Ok(());
    }
    let mut req = Request {
        prompt: "warm-up".into(),
        pixel_range: PixelRange::Model,
        max_new_tokens: 1,
        temperature: Some(0.0),
        max_context: 512,
        prefill_chunk: WEB_PREFILL_CHUNK,
        ..Request::default()
    };
    if model.vision.is_some() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(56, 56, image::Rgb([128, 128, 128]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        req.images.push(InputFile {
            name: "warm-up.png".into(),
            bytes: png,
        });
    }
    if model.ecg.is_some() {
        let mut csv = String::from("I,II,V1,V2,V3,V4,V5,V6\n");
        for i in 0..2500 {
            let v = (i as f64 * 0.05).sin() * 0.1;
            csv.push_str(&format!("{v},{v},{v},{v},{v},{v},{v},{v}\n"));
        }
        req.ecgs.push(EcgInput {
            files: vec![InputFile {
                name: "warm-up.csv".into(),
                bytes: csv.into_bytes(),
            }],
        });
        req.ecg_rate_hz = Some(250.0);
    }
    qoqmed_pipeline::run(model, &req, &mut |_| true)
        .await
        .map_err(|e| format!("warming up the image / ECG encoders: {e}"))?;
    Ok(())
}
