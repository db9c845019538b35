//! `qoqmed generate`: flags to a [`Request`], the shared request path (`qoqmed-pipeline`), the
//! answer streamed to stdout, and with `--json` one machine-readable object at the end (a stable
//! contract for other tools; the web app writes the same object).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qoqmed_engine::chat::Instruction;
use qoqmed_engine::gpu::{Gpu, list_adapters};
use qoqmed_imaging::PixelRange;
use qoqmed_pipeline::{
    Answer, EcgInput, Event, InputFile, LoadOptions, Model, ModelFiles, Request, run,
};

use crate::preprocess::{RangeArg, parse_window};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The question.
    #[arg(long)]
    prompt: String,
    /// Image: PNG, JPEG, WebP, BMP, TIFF, DICOM (.dcm) or NIfTI (.nii, .nii.gz). Repeatable;
    /// placed before the text; at most 4 images in all, counting every sampled slice of a volume.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Resize applied before the model processor: QoQ-Med's pixel range (`qoq`) or only the model's
    /// own processor (`model`).
    #[arg(long = "pixel-range", value_enum, default_value = "qoq")]
    pixel_range: RangeArg,
    /// Slices sampled from each volume or multi-frame file (1 to 4).
    #[arg(long, default_value_t = 2)]
    frames: usize,
    /// VOI window CENTER,WIDTH for DICOM and NIfTI grey levels (overrides the file's own).
    #[arg(long, value_name = "C,W", allow_hyphen_values = true)]
    window: Option<String>,
    /// Write the image with the answer's boxes and labels drawn to this PNG (several images:
    /// OUT-0.png, OUT-1.png, ...).
    #[arg(long, value_name = "OUT.png")]
    annotate: Option<PathBuf>,
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
    /// Refuse to load a model that needs more GPU memory than this many GB (1e9 bytes).
    #[arg(long)]
    memory_budget_gb: Option<f64>,
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
pub(crate) fn ecg_input(path: &Path) -> anyhow::Result<EcgInput> {
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
    if args.annotate.is_some() && args.image.is_empty() {
        bail!("--annotate needs an image: pass --image FILE");
    }
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
        pixel_range: match args.pixel_range {
            RangeArg::Qoq => PixelRange::Qoq,
            RangeArg::Model => PixelRange::Model,
        },
        frames: args.frames,
        window: args.window.as_deref().map(parse_window).transpose()?,
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
    let bar = crate::load_bar(args.json);
    let opts = LoadOptions {
        max_context: Some(args.max_context),
        memory_budget: args.memory_budget_gb.map(|g| (g * 1e9) as u64),
        on_progress: bar.clone().map(crate::progress_fn),
    };
    let model = pollster::block_on(Model::load_with(gpu, files, opts))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

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
    if let Some(out) = &args.annotate {
        write_annotations(out, &answer)?;
    }
    if json {
        writeln!(stdout, "{}", serde_json::to_string(&answer)?)?;
    } else {
        writeln!(stdout)?;
        let t = &answer.timings;
        let vision = if answer.images.is_empty() {
            String::new()
        } else {
            format!(
                "{} image(s), vision {:.2} s, first token {:.2} s; ",
                answer.images.len(),
                t.vision_s,
                t.time_to_first_token_s
            )
        };
        eprintln!(
            "[{} prompt tokens, {} new; {vision}prefill {:.1} tok/s, decode {:.1} tok/s on {}]",
            answer.prompt_tokens,
            answer.token_ids.len(),
            t.prefill_tokens_per_s,
            t.decode_tokens_per_s,
            answer.adapter
        );
    }
    Ok(())
}

/// `--annotate OUT.png`: the image with its boxes; several images go to OUT-0.png, OUT-1.png, ...
fn write_annotations(out: &Path, answer: &Answer) -> anyhow::Result<()> {
    let pictures = qoqmed_pipeline::annotate(&answer.boxes, &answer.images);
    if pictures.is_empty() {
        bail!("--annotate needs an image: pass --image FILE");
    }
    let many = pictures.len() > 1;
    for (i, picture) in pictures.iter().enumerate() {
        let path = if many {
            let stem = out.file_stem().unwrap_or_default().to_string_lossy();
            let ext = out
                .extension()
                .map_or("png".into(), |e| e.to_string_lossy());
            out.with_file_name(format!("{stem}-{i}.{ext}"))
        } else {
            out.to_path_buf()
        };
        picture
            .save_with_format(&path, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
