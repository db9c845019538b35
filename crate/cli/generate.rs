//! `qoqmed generate`: load a model folder, build the chat prompt, stream the answer, and with
//! `--json` print one machine-readable object at the end (a stable contract for other tools).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use qoqmed_engine::chat::{ChatTemplate, Instruction, Message, Tokenizer, user_message, user_text};
use qoqmed_engine::config::{GenerationConfig, ModelConfig};
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::{Gpu, list_adapters};
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use web_time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The question.
    #[arg(long)]
    prompt: String,
    /// Image, DICOM or NIfTI file (repeatable; placed before the text).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// ECG file (repeatable; placed after the text).
    #[arg(long)]
    ecg: Vec<PathBuf>,
    /// System prompt (default: the chat template's).
    #[arg(long)]
    system: Option<String>,
    /// Append QoQ-Med's training instruction (`qoq`) or send the question alone (`none`).
    #[arg(long, default_value = "qoq")]
    instruction: Instruction,
    #[arg(long, default_value_t = 1024)]
    max_new_tokens: usize,
    /// 0 = greedy. Default: generation_config.json.
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    /// 0 = off.
    #[arg(long)]
    top_k: Option<usize>,
    /// 1 = off. Default: generation_config.json (1.05 for Qwen2.5-VL).
    #[arg(long)]
    repetition_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// KV cache positions to preallocate (prompt + answer).
    #[arg(long, default_value_t = 4096)]
    max_context: usize,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Adapter index from `qoqmed adapters` (default: the high-performance one).
    #[arg(long)]
    adapter: Option<usize>,
}

pub fn list_adapters_cmd() -> anyhow::Result<()> {
    let adapters = pollster::block_on(list_adapters());
    if adapters.is_empty() {
        bail!(
            "no GPU adapter found; install a Vulkan/Metal/DX12 driver (without a GPU: apt-get install mesa-vulkan-drivers)"
        );
    }
    for a in adapters {
        println!("{}: {a}", a.index);
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.image.is_empty() {
        bail!(
            "--image is not supported yet: the vision tower runs on the GPU in a later release (`qoqmed preprocess` already prepares images)"
        );
    }
    if !args.ecg.is_empty() {
        bail!(
            "--ecg is not supported yet: the ECG encoder runs on the GPU in a later release (`qoqmed preprocess` already prepares ECGs)"
        );
    }
    let t_load = Instant::now();
    let mut files = ModelFiles::from_dir(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?;
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

    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(user_message(
        &[],
        &user_text(&args.prompt, args.instruction),
        0,
    ));
    let rendered = template.render(&messages, true)?;
    let prompt = tokenizer.encode(&rendered)?;
    let (positions, rope_delta) =
        rope::prompt_positions(&prompt, config.image_token_id, &[]).map_err(anyhow::Error::msg)?;

    let mut sampling = gen_config.sampling_params(args.seed);
    if let Some(t) = args.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = args.top_p {
        sampling.top_p = p;
    }
    if let Some(k) = args.top_k {
        sampling.top_k = k;
    }
    if let Some(r) = args.repetition_penalty {
        sampling.repetition_penalty = r;
    }
    let eos = if gen_config.eos_token_ids.is_empty() {
        config.eos_token_ids.clone()
    } else {
        gen_config.eos_token_ids.clone()
    };
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        eos_token_ids: eos.clone(),
        // QoQ-Med never lets a text answer emit an image placeholder.
        logit_bias: vec![(config.image_token_id, -100.0)],
        max_context: args.max_context,
        ..GenerateOptions::default()
    };

    let gpu = pollster::block_on(Gpu::new(args.adapter))?;
    let store = pollster::block_on(WeightStore::open(std::mem::take(&mut files.weights)))?;
    let model = pollster::block_on(TextModel::load(&gpu, &store, &config.text))?;
    let load_s = t_load.elapsed().as_secs_f64();

    let mut stream = tokenizer.stream(true);
    let mut stdout = std::io::stdout().lock();
    let json = args.json;
    let out = pollster::block_on(generate(
        &gpu,
        &model,
        &prompt,
        &positions,
        rope_delta,
        &opts,
        &mut |id| {
            if !json && let Some(piece) = stream.push(id) {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
            true
        },
    ))?;
    if !json {
        if let Some(rest) = stream.finish() {
            let _ = write!(stdout, "{rest}");
        }
        let _ = writeln!(stdout);
    }
    let answer_ids: Vec<u32> = out
        .token_ids
        .iter()
        .copied()
        .filter(|id| !eos.contains(id))
        .collect();
    let text = tokenizer.decode(&answer_ids, true)?;
    let parsed = qoqmed_output::parse(&text);
    if json {
        let obj = serde_json::json!({
            "prompt_tokens": out.prompt_tokens,
            "token_ids": out.token_ids,
            "text": text,
            "think": parsed.think,
            "answer": parsed.answer,
            "boxes": parsed.boxes,
            "stop_reason": out.stop,
            "timings": {
                "load_s": load_s,
                "prefill_tokens_per_s": out.prefill_tokens_per_s(),
                "decode_tokens_per_s": out.decode_tokens_per_s(),
            },
            "adapter": gpu.adapter.to_string(),
        });
        writeln!(stdout, "{obj}")?;
    } else {
        eprintln!(
            "[{} prompt tokens, {} new; prefill {:.1} tok/s, decode {:.1} tok/s on {}]",
            out.prompt_tokens,
            out.token_ids.len(),
            out.prefill_tokens_per_s(),
            out.decode_tokens_per_s(),
            gpu.adapter
        );
    }
    Ok(())
}
