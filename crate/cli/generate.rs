//! `qoqmed generate`: flags to a [`Request`], the shared request path (`qoqmed-pipeline`), the
//! answer streamed to stdout, and with `--json` one machine-readable object at the end (a stable
//! contract for other tools; the web app writes the same object).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qoqmed_engine::chat::Instruction;
use qoqmed_engine::gpu::{Gpu, list_adapters};
use qoqmed_pipeline::{EcgInput, Event, InputFile, Model, ModelFiles, Request, run};

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
    /// 12-lead ECG (repeatable; placed after the text, one token each): WFDB (.hea or .dat, the
    /// other file beside it), .csv (needs --ecg-rate), DICOM waveform (.dcm) or HL7 aECG (.xml).
    /// Needs a QoQ-Med-Omni checkpoint.
    #[arg(long)]
    ecg: Vec<PathBuf>,
    /// Sampling rate in Hz of CSV ECGs (they carry none).
    #[arg(long = "ecg-rate")]
    ecg_rate: Option<f64>,
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

fn input_file(path: &Path, what: &str) -> anyhow::Result<InputFile> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(InputFile { name, bytes })
}

/// An ECG as the files that make it: a WFDB record given by either file is its `.hea` plus the
/// `.dat` the header names (same folder); any other format is the one file.
fn ecg_input(path: &Path) -> anyhow::Result<EcgInput> {
    let file = input_file(path, "ECG file")?;
    if qoqmed_ecg::detect(&file.name, &file.bytes) != Some(qoqmed_ecg::EcgFormat::Wfdb) {
        return Ok(EcgInput { files: vec![file] });
    }
    let is_header = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hea"));
    let header = if is_header {
        file
    } else {
        input_file(&path.with_extension("hea"), "WFDB header")?
    };
    let dat_name = crate::ecg_plot::dat_file_name(&header.bytes)
        .with_context(|| format!("{}: no signal line names a .dat file", header.name))?;
    if dat_name.contains(['/', '\\']) || dat_name == ".." {
        bail!(
            "{}: the .dat name {dat_name:?} points outside the record's folder",
            header.name
        );
    }
    let dat = input_file(
        &path.parent().unwrap_or(Path::new(".")).join(&dat_name),
        "WFDB signal file",
    )?;
    Ok(EcgInput {
        files: vec![header, dat],
    })
}

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let images = args
        .image
        .iter()
        .map(|p| input_file(p, "image"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ecgs = args
        .ecg
        .iter()
        .map(|p| ecg_input(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = Request {
        images,
        ecgs,
        ecg_rate_hz: args.ecg_rate,
        prompt: args.prompt,
        system: args.system,
        instruction: args.instruction,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        max_context: args.max_context,
        ..Request::default()
    };
    let files = ModelFiles::from_dir(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let gpu = pollster::block_on(Gpu::new(args.adapter))?;
    let model = pollster::block_on(Model::load(gpu, files))?;

    let mut stdout = std::io::stdout().lock();
    let json = args.json;
    let answer = pollster::block_on(run(&model, &request, &mut |event| {
        if !json {
            let piece = match event {
                Event::Token { text, .. } => text,
                Event::Text(text) => Some(text),
                Event::Phase(_) => None,
            };
            if let Some(piece) = piece {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
        }
        true
    }))?;
    if json {
        writeln!(stdout, "{}", serde_json::to_string(&answer)?)?;
    } else {
        writeln!(stdout)?;
        let t = &answer.timings;
        eprintln!(
            "[{} prompt tokens, {} new; prefill {:.1} tok/s, decode {:.1} tok/s on {}]",
            answer.prompt_tokens,
            answer.token_ids.len(),
            t.prefill_tokens_per_s,
            t.decode_tokens_per_s,
            answer.adapter
        );
    }
    Ok(())
}
