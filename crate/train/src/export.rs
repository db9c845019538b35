//! `qoqmed export`: a run's checkpoint merged into a plain Hugging Face model folder that
//! `qoqmed generate`, the quantizer and the browser app load like any published checkpoint.
//!
//! The base checkpoint's own tensor names, order and dtypes are kept; only the language-model
//! tensors are replaced by the trained ones (adapters merged in f32 by the same code that built
//! the engine's rollout copy, then rounded to the base dtype, round-to-nearest-even as torch).
//! Vision / ECG tensors are copied byte for byte (they are frozen in training).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::weights::{DType, ModelFiles, WeightStore};
use safetensors::Dtype;

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::policy::{LoraSpec, Policy};
use crate::tensors::{HostTensor, serialize};

/// Element type of the exported language-model tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    /// Each tensor in the dtype the base checkpoint stores it in.
    Base,
    F32,
    F16,
    BF16,
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "base" => Ok(ExportDtype::Base),
            "f32" => Ok(ExportDtype::F32),
            "f16" => Ok(ExportDtype::F16),
            "bf16" => Ok(ExportDtype::BF16),
            other => Err(format!("--dtype {other:?}: use base, f32, f16 or bf16")),
        }
    }
}

pub struct ExportOptions {
    pub dtype: ExportDtype,
    /// Largest shard in bytes (a bigger model is split with model.safetensors.index.json).
    pub shard_bytes: u64,
    /// A checkpoint folder of the run; None = the newest.
    pub checkpoint: Option<PathBuf>,
}

pub struct ExportReport {
    pub step: u64,
    pub checkpoint: PathBuf,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

/// The small files of a model folder copied next to the weights.
const SIDE_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
];

/// A language-model tensor name in the policy's spelling (`model.X`, `lm_head.weight`), whatever
/// spelling the checkpoint uses (`model.language_model.X`, `model.lm_head.weight`).
fn policy_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else if name == "model.lm_head.weight" {
        "lm_head.weight".into()
    } else {
        name.to_string()
    }
}

fn target_dtype(opt: ExportDtype, base: DType) -> Dtype {
    match (opt, base) {
        (ExportDtype::F32, _) | (ExportDtype::Base, DType::F32) => Dtype::F32,
        (ExportDtype::F16, _) | (ExportDtype::Base, DType::F16) => Dtype::F16,
        (ExportDtype::BF16, _) | (ExportDtype::Base, DType::BF16) => Dtype::BF16,
    }
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn raw_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
    }
}

pub fn export(run: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let config_path = run.join("config.toml");
    if !config_path.is_file() {
        return Err(Error::Run(format!(
            "{} is not a training run folder (no config.toml); pass the `out` of `qoqmed train`",
            run.display()
        )));
    }
    let text = String::from_utf8(crate::error::read(&config_path)?)
        .map_err(|_| Error::Run(format!("{} is not text", config_path.display())))?;
    let cfg: TrainConfig =
        toml::from_str(&text).map_err(|e| Error::Run(format!("{}: {e}", config_path.display())))?;
    let dir = match &opts.checkpoint {
        Some(d) => d.clone(),
        None => checkpoint::latest(run)?.ok_or_else(|| {
            Error::Run(format!(
                "{} has no checkpoint yet; train at least `checkpoint_every` steps",
                run.display()
            ))
        })?,
    };
    let state = checkpoint::load_state(&dir)?;
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::Run(format!(
            "{} exists and is not empty; export into a new folder",
            out.display()
        )));
    }

    let mut files = ModelFiles::from_dir(&cfg.model)?;
    let model_config = ModelConfig::from_json(&files.config)?;
    let store = pollster::block_on(WeightStore::open(std::mem::take(&mut files.weights)))?;
    let device = Device::default();
    let mut policy = Policy::load(
        &store,
        &model_config.text,
        LoraSpec::from_config(&cfg),
        &device,
    )?;
    policy.load_trainable(checkpoint::load_tensors(&dir)?)?;
    let policy = policy.detached();

    // Plan: every base tensor in name order, its output dtype and size, then shards.
    let names: Vec<String> = store.names().map(str::to_string).collect();
    let lm: std::collections::HashSet<String> = policy.tensor_names().into_iter().collect();
    let mut used = std::collections::HashSet::new();
    let mut plan = Vec::with_capacity(names.len());
    for name in &names {
        let info = store.get(name).expect("listed by the store");
        let pname = policy_name(name);
        let replaced = lm.contains(&pname);
        if replaced {
            used.insert(pname.clone());
        }
        let dtype = if replaced {
            target_dtype(opts.dtype, info.dtype)
        } else {
            raw_dtype(info.dtype)
        };
        let bytes = (info.numel() * dtype.bitsize() / 8) as u64;
        plan.push((name.clone(), replaced.then_some(pname), dtype, bytes));
    }
    if let Some(missing) = lm.iter().find(|n| !used.contains(*n)) {
        return Err(Error::Run(format!(
            "the base checkpoint has no `{missing}`; cannot place the trained tensor"
        )));
    }
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, (_, _, _, bytes)) in plan.iter().enumerate() {
        if size > 0 && size + bytes > opts.shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += bytes;
    }

    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut written = Vec::new();
    let mut total = 0u64;
    for (k, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let mut tensors = Vec::with_capacity(shard.len());
        for &i in shard {
            let (name, pname, dtype, _) = &plan[i];
            let info = store.get(name).expect("listed by the store");
            let tensor = match pname {
                Some(p) => {
                    let (shape, values) = policy
                        .merged_tensor(p)?
                        .ok_or_else(|| Error::Run(format!("no trained tensor `{p}`")))?;
                    HostTensor {
                        shape,
                        bytes: encode(&values, *dtype),
                        dtype: *dtype,
                    }
                }
                None => HostTensor {
                    shape: info.shape.clone(),
                    bytes: pollster::block_on(store.read(info))?,
                    dtype: *dtype,
                },
            };
            total += tensor.bytes.len() as u64;
            weight_map.insert(name.clone(), file.clone());
            tensors.push((name.clone(), tensor));
        }
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let bytes = serialize(&tensors, Some(meta))?;
        let path = out.join(&file);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    if n > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let path = out.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).unwrap_or_default())
            .map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    for side in SIDE_FILES {
        let src = cfg.model.join(side);
        if src.is_file() {
            let dst = out.join(side);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
            written.push(dst);
        }
    }
    let info = serde_json::json!({
        "base_model": cfg.model,
        "run": run,
        "checkpoint": dir,
        "step": state.step,
        "method": cfg.method,
        "lora_rank": cfg.lora_rank,
    });
    let path = out.join("qoqmed_training.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&info).unwrap_or_default())
        .map_err(|e| Error::io(&path, e))?;
    written.push(path);
    Ok(ExportReport {
        step: state.step,
        checkpoint: dir,
        files: written,
        bytes: total,
    })
}
