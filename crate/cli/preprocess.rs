//! `qoqmed preprocess`: images and ECGs to the tensors the model takes, written as safetensors.
//! Other tools call this command; its flags and output tensors are a stable contract:
//! `pixel_values` f32 (patches, 1176), `image_grid_thw` i64 (images, 3), `ecg` f32 (ecgs, 8, 2500),
//! always all three (zero rows when there is no such input). The metadata carries per image its
//! label and the (width, height) after the pixel range (the frame the model's boxes refer to).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use qoqmed_imaging::{MAX_IMAGES, PixelRange, ProcessorConfig, ReadOptions, Window};
use safetensors::{Dtype, tensor::TensorView};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RangeArg {
    /// QoQ-Med's nearest-neighbour range (W*H in [65,536, 524,288]) before the model processor.
    Qoq,
    /// Only the model's own processor (smart_resize).
    Model,
}

#[derive(clap::Args)]
pub struct Args {
    /// Model folder; its preprocessor_config.json sets the processor (Qwen2.5-VL's values if absent).
    #[arg(long)]
    pub model: PathBuf,
    /// Image: PNG, JPEG, WebP, BMP, TIFF, DICOM (.dcm) or NIfTI (.nii, .nii.gz). Repeatable; at most
    /// 4 images in all, counting every sampled slice of a volume.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// 12-lead ECG: WFDB (.hea/.dat), CSV (needs --ecg-rate), DICOM waveform or HL7 aECG. Repeatable.
    #[arg(long = "ecg")]
    pub ecgs: Vec<PathBuf>,
    /// Resize applied before the model processor.
    #[arg(long = "pixel-range", value_enum, default_value = "qoq")]
    pub pixel_range: RangeArg,
    /// Slices sampled from each volume or multi-frame file (1 to 4).
    #[arg(long, default_value_t = 2)]
    pub frames: usize,
    /// VOI window CENTER,WIDTH for DICOM and NIfTI grey levels (overrides the file's own).
    #[arg(long, value_name = "C,W", allow_hyphen_values = true)]
    pub window: Option<String>,
    /// Sampling rate in Hz for CSV ECGs.
    #[arg(long = "ecg-rate")]
    pub ecg_rate: Option<f64>,
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
}

pub(crate) fn parse_window(s: &str) -> anyhow::Result<Window> {
    let (c, w) = s
        .split_once(',')
        .context("--window takes CENTER,WIDTH, e.g. --window 40,400")?;
    let parse = |v: &str| {
        v.trim()
            .parse::<f64>()
            .with_context(|| format!("--window: {v:?} is not a number"))
    };
    Ok(Window::new(parse(c)?, parse(w)?)?)
}

fn processor_config(model: &std::path::Path) -> anyhow::Result<ProcessorConfig> {
    if !model.is_dir() {
        bail!("--model {}: not a folder", model.display());
    }
    let path = model.join("preprocessor_config.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(ProcessorConfig::from_json(&bytes).with_context(|| path.display().to_string())?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: {} not found; using Qwen2.5-VL's processor settings",
                path.display()
            );
            Ok(ProcessorConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn le_bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.images.is_empty() && args.ecgs.is_empty() {
        bail!("nothing to preprocess: pass --image FILE and/or --ecg FILE");
    }
    let cfg = processor_config(&args.model)?;
    let window = args.window.as_deref().map(parse_window).transpose()?;
    let opts = ReadOptions {
        frames: args.frames,
        window,
    };
    let range = match args.pixel_range {
        RangeArg::Qoq => PixelRange::Qoq,
        RangeArg::Model => PixelRange::Model,
    };

    let mut files = Vec::with_capacity(args.images.len());
    for p in &args.images {
        let bytes = std::fs::read(p).with_context(|| format!("reading image {}", p.display()))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, bytes));
    }
    let images =
        qoqmed_imaging::read_images(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())), &opts)?;
    debug_assert!(images.len() <= MAX_IMAGES);
    let pv = qoqmed_imaging::preprocess(&images, &cfg, range)?;

    let mut ecg = Vec::with_capacity(args.ecgs.len() * 8 * 2500);
    for p in &args.ecgs {
        let record = crate::ecg_plot::read_ecg_file(p, args.ecg_rate)?;
        let input =
            qoqmed_ecg::model_input(&record).with_context(|| format!("ECG {}", p.display()))?;
        ecg.extend(input);
    }

    let grid: Vec<u8> = pv
        .grid_thw
        .iter()
        .flatten()
        .flat_map(|&v| i64::from(v).to_le_bytes())
        .collect();
    let (pv_bytes, ecg_bytes) = (le_bytes_f32(&pv.data), le_bytes_f32(&ecg));
    let tensors = [
        (
            "pixel_values",
            TensorView::new(Dtype::F32, vec![pv.rows, pv.cols], &pv_bytes)?,
        ),
        (
            "image_grid_thw",
            TensorView::new(Dtype::I64, vec![pv.grid_thw.len(), 3], &grid)?,
        ),
        (
            "ecg",
            TensorView::new(Dtype::F32, vec![args.ecgs.len(), 8, 2500], &ecg_bytes)?,
        ),
    ];
    let labels: Vec<&str> = images.iter().map(|i| i.label.as_str()).collect();
    let meta = HashMap::from([
        ("image_labels".to_string(), serde_json::to_string(&labels)?),
        (
            "range_sizes".to_string(),
            serde_json::to_string(&pv.range_sizes)?,
        ),
    ]);
    let bytes = safetensors::serialize(tensors, Some(meta))?;
    std::fs::write(&args.out, bytes).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}
