//! One request, as the page sends it, to the answer object `qoqmed generate --json` prints.
//!
//! Until `crate/pipeline` lands (shared contract 4) this mirrors crate/cli/generate.rs step for
//! step on the same engine calls (one loader, one generation loop); it will be replaced by
//! `qoqmed_pipeline::run`, not grow.

use qoqmed_engine::chat::{ChatTemplate, Instruction, Message, Tokenizer, user_message, user_text};
use qoqmed_engine::config::{GenerationConfig, ModelConfig};
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use qoqmed_engine::{Error, Result};
use serde::Deserialize;

/// What the page asks for. Unknown fields are an error: a shared link whose parameter this build
/// cannot honour must say so rather than be ignored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub prompt: String,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub instruction: Option<String>,
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
    /// Image / ECG file names; their bytes arrive separately.
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub ecgs: Vec<String>,
}

/// A loaded model and everything a request needs besides the GPU.
pub struct Loaded {
    pub config: ModelConfig,
    pub gen_config: GenerationConfig,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub model: TextModel,
    pub load_s: f64,
}

pub async fn load(gpu: &Gpu, mut files: ModelFiles) -> Result<Loaded> {
    let t = web_time::Instant::now();
    let config = ModelConfig::from_json(&files.config)?;
    let gen_config = match &files.generation_config {
        Some(bytes) => GenerationConfig::from_json(bytes)?,
        None => GenerationConfig::default(),
    };
    let tokenizer = Tokenizer::from_bytes(&files.tokenizer)?;
    let template = ChatTemplate::from_files(
        files.chat_template.as_deref(),
        files.tokenizer_config.as_deref(),
    )?;
    let store = WeightStore::open(std::mem::take(&mut files.weights)).await?;
    let model = TextModel::load(gpu, &store, &config.text).await?;
    Ok(Loaded {
        config,
        gen_config,
        tokenizer,
        template,
        model,
        load_s: t.elapsed().as_secs_f64(),
    })
}

/// Builds every pipeline a request will use (prefill and decode shapes) with a throwaway
/// two-token generation, so the first real request does not stall on shader compilation.
pub async fn warm_up(gpu: &Gpu, loaded: &Loaded) -> Result<()> {
    let opts = GenerateOptions {
        max_new_tokens: 2,
        max_context: 4,
        ..GenerateOptions::default()
    };
    let mut greedy = opts;
    greedy.sampling.temperature = 0.0;
    greedy.sampling.repetition_penalty = 1.0;
    let positions = rope::text_positions(0, 2, 0);
    generate(
        gpu,
        &loaded.model,
        &[0, 0],
        &positions,
        0,
        &greedy,
        &mut |_| true,
    )
    .await?;
    Ok(())
}

/// Runs `req`; `on_piece(id, text)` sees each new token with the text it completes and returns
/// false to stop. Returns the `--json` object of the CLI.
pub async fn run(
    gpu: &Gpu,
    loaded: &Loaded,
    req: &Request,
    on_piece: &mut dyn FnMut(u32, &str) -> bool,
) -> Result<serde_json::Value> {
    if !req.images.is_empty() {
        return Err(Error::Input(
            "images are not supported by this build yet: the vision tower runs on the GPU in a later release; remove the image to ask about text".into(),
        ));
    }
    if !req.ecgs.is_empty() {
        return Err(Error::Input(
            "ECGs are not supported by this build yet: the ECG encoder runs on the GPU in a later release; remove the ECG to ask about text".into(),
        ));
    }
    if req.prompt.trim().is_empty() {
        return Err(Error::Input(
            "the question is empty; type a question".into(),
        ));
    }
    let instruction: Instruction = req.instruction.as_deref().unwrap_or("qoq").parse()?;
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(user_message(&[], &user_text(&req.prompt, instruction), 0));
    let rendered = loaded.template.render(&messages, true)?;
    let prompt = loaded.tokenizer.encode(&rendered)?;
    let (positions, rope_delta) =
        rope::prompt_positions(&prompt, loaded.config.image_token_id, &[]).map_err(Error::Input)?;

    let mut sampling = loaded.gen_config.sampling_params(req.seed.unwrap_or(0));
    if let Some(t) = req.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = req.top_p {
        sampling.top_p = p;
    }
    if let Some(k) = req.top_k {
        sampling.top_k = k;
    }
    if let Some(r) = req.repetition_penalty {
        sampling.repetition_penalty = r;
    }
    let eos = if loaded.gen_config.eos_token_ids.is_empty() {
        loaded.config.eos_token_ids.clone()
    } else {
        loaded.gen_config.eos_token_ids.clone()
    };
    let opts = GenerateOptions {
        max_new_tokens: req.max_new_tokens.unwrap_or(1024),
        sampling,
        eos_token_ids: eos.clone(),
        logit_bias: vec![(loaded.config.image_token_id, -100.0)],
        max_context: req.max_context.unwrap_or(4096),
        // Small prefill submissions keep each GPU job short enough not to freeze the page.
        prefill_chunk: 128,
        ..GenerateOptions::default()
    };
    let mut stream = loaded.tokenizer.stream(true);
    let out = generate(
        gpu,
        &loaded.model,
        &prompt,
        &positions,
        rope_delta,
        &opts,
        &mut |id| {
            let piece = stream.push(id).unwrap_or_default();
            on_piece(id, &piece)
        },
    )
    .await?;
    let answer_ids: Vec<u32> = out
        .token_ids
        .iter()
        .copied()
        .filter(|id| !eos.contains(id))
        .collect();
    let text = loaded.tokenizer.decode(&answer_ids, true)?;
    let parsed = qoqmed_output::parse(&text);
    Ok(serde_json::json!({
        "prompt_tokens": out.prompt_tokens,
        "token_ids": out.token_ids,
        "text": text,
        "think": parsed.think,
        "answer": parsed.answer,
        "boxes": parsed.boxes,
        "stop_reason": out.stop,
        "timings": {
            "load_s": loaded.load_s,
            "prefill_tokens_per_s": out.prefill_tokens_per_s(),
            "decode_tokens_per_s": out.decode_tokens_per_s(),
        },
        "adapter": gpu.adapter.to_string(),
    }))
}
