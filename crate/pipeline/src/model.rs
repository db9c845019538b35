//! A loaded model: the GPU, the configs, the tokenizer and chat template, and the weights on the
//! GPU. Built from a model folder given as bytes, so the same code loads from a directory (CLI),
//! from picked files or from a download cache (web).

use qoqmed_engine::chat::{ChatTemplate, Tokenizer};
use qoqmed_engine::config::{GenerationConfig, ModelConfig};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::model::memory::{RunShape, check_text_model};
use qoqmed_engine::model::{EcgEncoder, TextModel, VisionModel};
use qoqmed_engine::weights::{ModelFiles, ProgressFn, WeightStore};
use qoqmed_imaging::ProcessorConfig;
use web_time::Instant;

use crate::error::Result;

pub struct Model {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// preprocessor_config.json, or Qwen2.5-VL's values when the folder has none.
    pub processor: ProcessorConfig,
    pub text: TextModel,
    /// The vision tower; None for a checkpoint without one (no vision_config or no visual.*).
    pub vision: Option<VisionModel>,
    /// QoQ-Med-Omni's ECG branch, when the checkpoint has `time_series_embedding.*`.
    pub ecg: Option<EcgEncoder>,
    /// Seconds spent in [`Model::load`].
    pub load_s: f64,
}

/// How [`Model::load_with`] checks and reports a load.
#[derive(Default)]
pub struct LoadOptions {
    /// Check the GPU bytes the model needs at this many context positions before uploading
    /// anything (weights + KV cache + activations vs the adapter's limits and `memory_budget`).
    pub max_context: Option<usize>,
    /// Total GPU bytes the model may take.
    pub memory_budget: Option<u64>,
    /// Told the bytes uploaded so far after every piece.
    pub on_progress: Option<ProgressFn>,
}

impl Model {
    /// Parses the configs, tokenizer and template (cheap, so a bad folder fails before any
    /// upload), then uploads the weights.
    pub async fn load(gpu: Gpu, files: ModelFiles) -> Result<Model> {
        Self::load_with(gpu, files, LoadOptions::default()).await
    }

    /// [`load`](Self::load) with a size check before uploading and a progress callback.
    pub async fn load_with(gpu: Gpu, mut files: ModelFiles, opts: LoadOptions) -> Result<Model> {
        let t0 = Instant::now();
        let config = ModelConfig::from_json(&files.config)?;
        let generation = match &files.generation_config {
            Some(bytes) => GenerationConfig::from_json(bytes)?,
            None => GenerationConfig::default(),
        };
        let tokenizer = Tokenizer::from_bytes(&files.tokenizer)?;
        let template = ChatTemplate::from_files(
            files.chat_template.as_deref(),
            files.tokenizer_config.as_deref(),
        )?;
        let processor = match &files.preprocessor_config {
            Some(bytes) => ProcessorConfig::from_json(bytes)?,
            None => ProcessorConfig::default(),
        };
        let store = WeightStore::open(std::mem::take(&mut files.weights)).await?;
        if let Some(max_context) = opts.max_context {
            let run = RunShape {
                max_context,
                prefill_chunk: 512,
                kv_value_bytes: 4,
            };
            check_text_model(&gpu, &config.text, &store, run, opts.memory_budget)?;
        }
        if let Some(f) = opts.on_progress {
            store.set_progress(f);
        }
        let text = TextModel::load(&gpu, &store, &config.text).await?;
        let vision = match &config.vision {
            Some(cfg) if VisionModel::present(&store) => {
                Some(VisionModel::load(&gpu, &store, cfg).await?)
            }
            _ => None,
        };
        let ecg = if EcgEncoder::present(&store) {
            Some(EcgEncoder::load(&gpu, &store, &config.ecg, config.text.hidden_size).await?)
        } else {
            None
        };
        Ok(Model {
            gpu,
            config,
            generation,
            tokenizer,
            template,
            processor,
            text,
            vision,
            ecg,
            load_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// The ids generation stops at: generation_config.json's, else config.json's.
    pub fn eos_token_ids(&self) -> &[u32] {
        if self.generation.eos_token_ids.is_empty() {
            &self.config.eos_token_ids
        } else {
            &self.generation.eos_token_ids
        }
    }
}
