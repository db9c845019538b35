//! Rollouts from the inference engine: the current policy's weights (adapters merged into a
//! working copy) are uploaded to the engine, which samples G completions per prompt with its own
//! generation loop and sampler. Each sampled token's log-probability under the rollout policy
//! comes from the same step's raw logits, so the importance ratio compares burn's recomputation
//! with exactly what sampled the token.
//!
//! Why a merged working copy and not a LoRA kernel: the engine's kernels stay untouched (one
//! model implementation), decode speed is the base model's, and re-uploading costs one pass
//! over the weights per optimizer step (measured in docs/training.md).

use std::path::Path;

use qoqmed_engine::chat::{ChatTemplate, Instruction, Message, Tokenizer, user_message, user_text};
use qoqmed_engine::config::{GenerationConfig, ModelConfig};
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::model::TextModel;
use qoqmed_engine::model::rope::{self, Position};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{MemorySource, ModelFiles, WeightStore};

use crate::data::Example;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::tensors::HostTensor;

/// A prompt ready for the engine and for burn.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub positions: Vec<Position>,
    pub rope_delta: i64,
}

/// One sampled completion.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// New tokens, the eos included when generation stopped on one.
    pub tokens: Vec<u32>,
    /// log p(token) under the rollout policy at the rollout temperature, one per token.
    pub log_probs: Vec<f32>,
    /// The decoded answer (special tokens dropped), what the reward scores.
    pub text: String,
}

#[derive(Clone, Copy, Debug)]
pub struct RolloutParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub max_new_tokens: usize,
}

/// The engine side of training: the GPU, the text pipeline, and the current rollout model.
pub struct Engine {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    template: ChatTemplate,
    pub eos: Vec<u32>,
    model: Option<TextModel>,
}

impl Engine {
    /// Opens the adapter and reads the model folder's text files (weights come from the policy).
    pub fn new(model_dir: &Path, adapter: Option<usize>) -> Result<(Self, ModelFiles)> {
        let files = ModelFiles::from_dir(model_dir)?;
        let config = ModelConfig::from_json(&files.config)?;
        let generation = match &files.generation_config {
            Some(b) => GenerationConfig::from_json(b)?,
            None => GenerationConfig::default(),
        };
        let tokenizer = Tokenizer::from_bytes(&files.tokenizer)?;
        let template = ChatTemplate::from_files(
            files.chat_template.as_deref(),
            files.tokenizer_config.as_deref(),
        )?;
        let eos = if generation.eos_token_ids.is_empty() {
            config.eos_token_ids.clone()
        } else {
            generation.eos_token_ids.clone()
        };
        let gpu = pollster::block_on(Gpu::new(adapter))?;
        Ok((
            Engine {
                gpu,
                config,
                tokenizer,
                template,
                eos,
                model: None,
            },
            files,
        ))
    }

    /// The chat prompt of one example, as `qoqmed generate` builds it. Images and ECGs need the
    /// engine's vision tower / ECG encoder, which this build does not have yet: such rows are an
    /// error naming the line rather than being trained without their pixels.
    pub fn prompt(
        &self,
        example: &Example,
        system: Option<&str>,
        instruction: Instruction,
    ) -> Result<Prompt> {
        if !example.images.is_empty()
            || !example.videos.is_empty()
            || !example.time_series.is_empty()
        {
            return Err(Error::Run(format!(
                "line {}: images, videos and ECGs need the engine's vision tower / ECG encoder, \
                 which this build does not include yet; train on text-only rows for now",
                example.line
            )));
        }
        // CLIMB problems mark image places with <image>/<video>; with no images they are just text.
        let question = example
            .problem
            .replace("<image>", "")
            .replace("<video>", "");
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(Message::system(s.to_string()));
        }
        messages.push(user_message(
            &[],
            &user_text(question.trim(), instruction),
            0,
        ));
        let text = self.template.render(&messages, true)?;
        let ids = self.tokenizer.encode(&text)?;
        let (positions, rope_delta) = rope::prompt_positions(&ids, self.config.image_token_id, &[])
            .map_err(|e| Error::Run(format!("line {}: {e}", example.line)))?;
        Ok(Prompt {
            ids,
            positions,
            rope_delta,
        })
    }

    /// Replaces the rollout model with the policy's current weights (adapters merged, f32).
    pub fn upload(&mut self, policy: &Policy) -> Result<()> {
        let bytes = merged_safetensors(policy)?;
        let store = pollster::block_on(WeightStore::open(vec![Box::new(MemorySource::new(
            "policy (merged working copy)",
            bytes,
        ))]))?;
        // Drop the old copy first so two never sit on the GPU at once.
        self.model = None;
        self.model = Some(pollster::block_on(TextModel::load(
            &self.gpu,
            &store,
            &self.config.text,
        ))?);
        Ok(())
    }

    /// Frees the rollout copy (until the next [`Self::upload`]).
    pub fn release(&mut self) {
        self.model = None;
    }

    /// `params` completion of `prompt`, sampled with `seed`.
    pub fn rollout(&self, prompt: &Prompt, params: &RolloutParams, seed: u64) -> Result<Rollout> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| Error::Run("no policy uploaded to the engine".into()))?;
        let opts = GenerateOptions {
            max_new_tokens: params.max_new_tokens,
            sampling: SamplingParams {
                temperature: params.temperature,
                top_k: params.top_k,
                top_p: params.top_p,
                repetition_penalty: 1.0,
                seed,
            },
            eos_token_ids: self.eos.clone(),
            // As generation: a text answer never emits an image placeholder.
            logit_bias: vec![(self.config.image_token_id, -100.0)],
            max_context: prompt.ids.len() + params.max_new_tokens,
            prefill_chunk: 512,
            // The old log-probs of the ratio come from the logits that sampled each token.
            keep_logits: true,
            ..GenerateOptions::default()
        };
        let out = pollster::block_on(generate(
            &self.gpu,
            model,
            &prompt.ids,
            &prompt.positions,
            prompt.rope_delta,
            &opts,
            &mut |_| true,
        ))?;
        let log_probs = out
            .token_ids
            .iter()
            .zip(&out.step_logits)
            .map(|(&t, logits)| token_log_prob(logits, t, params.temperature))
            .collect();
        let answer: Vec<u32> = out
            .token_ids
            .iter()
            .copied()
            .filter(|t| !self.eos.contains(t))
            .collect();
        let text = self.tokenizer.decode(&answer, true)?;
        Ok(Rollout {
            tokens: out.token_ids,
            log_probs,
            text,
        })
    }
}

/// log softmax(logits / temperature)[token], in f64 (the raw logits, before the sampler's top-p
/// and the generation-time bias: those shape sampling, not the policy).
pub fn token_log_prob(logits: &[f32], token: u32, temperature: f32) -> f32 {
    let t = temperature as f64;
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64 / t));
    let sum: f64 = logits.iter().map(|&l| (l as f64 / t - max).exp()).sum();
    (logits[token as usize] as f64 / t - max - sum.ln()) as f32
}

/// The policy's language model as one f32 safetensors file in memory.
fn merged_safetensors(policy: &Policy) -> Result<Vec<u8>> {
    let tensors: Vec<(String, HostTensor)> = policy
        .merged_tensors()?
        .into_iter()
        .map(|(name, shape, values)| (name, HostTensor::f32(shape, &values)))
        .collect();
    crate::tensors::serialize(&tensors, None)
}
