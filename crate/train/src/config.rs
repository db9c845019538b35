//! The run configuration: `qoqmed train --config FILE.toml`. Every key is listed in
//! docs/training.md; an unknown key is an error naming it (a typo must not silently train with a
//! default). Paths are relative to the TOML file.

use std::path::{Path, PathBuf};

use qoqmed_rl::{DrpoOptions, IouReduce, Method, Weights};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The projections LoRA adapts by default: every linear of every decoder layer.
pub const ALL_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Hugging Face model folder (the frozen base and the reference policy).
    pub model: PathBuf,
    /// Training data, jsonl in the CLIMB / QoQ-Med format.
    pub data: PathBuf,
    /// Run folder: metrics.csv, checkpoints/, config.toml.
    pub out: PathBuf,
    /// `drpo` or `grpo` (overrides `advantages.method`).
    #[serde(default = "default_method")]
    pub method: MethodName,
    pub steps: u64,
    #[serde(default = "default_prompts_per_step")]
    pub prompts_per_step: usize,
    /// Rollouts per prompt (G).
    #[serde(default = "default_group_size")]
    pub group_size: usize,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// 0 = full fine-tune of the language model.
    #[serde(default = "default_lora_rank")]
    pub lora_rank: usize,
    /// LoRA scale = alpha / rank.
    #[serde(default = "default_lora_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "default_targets")]
    pub lora_targets: Vec<String>,
    #[serde(default)]
    pub seed: u64,

    /// Rollout sampling (the released recipe: temperature 1.0, top-p 0.99).
    #[serde(default = "one")]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    #[serde(default)]
    pub top_k: usize,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Prompts longer than this (in tokens) are an error naming their line.
    #[serde(default = "default_max_prompt_tokens")]
    pub max_prompt_tokens: usize,
    /// `qoq` appends QoQ-Med's training instruction to each problem, `none` sends it alone.
    #[serde(default = "default_instruction")]
    pub instruction: String,
    /// System prompt; absent = the chat template's default.
    #[serde(default)]
    pub system: Option<String>,

    /// Optimizer updates per rollout step (the released recipe: 512 prompts / mini-batch 128 = 4).
    #[serde(default = "one_usize")]
    pub mini_batches: usize,
    /// Sequences per forward/backward; gradients are accumulated over a mini-batch, so memory
    /// does not grow with the batch.
    #[serde(default = "default_micro_batch")]
    pub micro_batch: usize,
    /// burn's gradient checkpointing (`Device::gradient_checkpointing`, strategy `Balanced`):
    /// memory-bound activations are recomputed in the backward instead of kept.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    #[serde(default = "one")]
    pub max_grad_norm: f32,
    #[serde(default = "default_clip_low")]
    pub clip_low: f64,
    #[serde(default = "default_clip_high")]
    pub clip_high: f64,
    /// Dual clip for negative advantages.
    #[serde(default = "default_clip_dual")]
    pub clip_dual: f64,
    /// Coefficient of the k3 KL-to-reference loss term.
    #[serde(default = "default_kl_coef")]
    pub kl_coef: f64,

    /// Reward weights: a preset (`code` = 0.5/0.3/0.1/0.1 mean IoU, `paper` = 0.6/0.2/0.2 max IoU)
    /// with optional per-term overrides.
    #[serde(default)]
    pub reward: RewardConfig,
    /// Every GRPO / DRPO option of `qoqmed advantages` (crate/rl `DrpoOptions`).
    #[serde(default)]
    pub advantages: DrpoOptions,

    /// Write a checkpoint every N steps (and after the last step).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Adapter index as `qoqmed adapters` lists it; absent = the default adapter.
    #[serde(default)]
    pub adapter: Option<usize>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MethodName {
    Drpo,
    Grpo,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    #[serde(default = "default_preset")]
    pub preset: String,
    pub accuracy: Option<f64>,
    pub iou: Option<f64>,
    pub format: Option<f64>,
    pub length: Option<f64>,
    /// `mean` (released code) or `max` (paper) over the predicted boxes.
    pub iou_reduce: Option<String>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            preset: default_preset(),
            accuracy: None,
            iou: None,
            format: None,
            length: None,
            iou_reduce: None,
        }
    }
}

fn default_method() -> MethodName {
    MethodName::Drpo
}
fn default_prompts_per_step() -> usize {
    8
}
fn default_group_size() -> usize {
    5
}
fn default_learning_rate() -> f64 {
    1e-6
}
fn default_lora_rank() -> usize {
    16
}
fn default_lora_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    ALL_TARGETS.iter().map(|s| s.to_string()).collect()
}
fn one() -> f32 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn default_top_p() -> f32 {
    0.99
}
fn default_max_new_tokens() -> usize {
    512
}
fn default_max_prompt_tokens() -> usize {
    2048
}
fn default_instruction() -> String {
    "qoq".into()
}
fn default_micro_batch() -> usize {
    4
}
fn default_weight_decay() -> f64 {
    1e-2
}
fn default_clip_low() -> f64 {
    0.2
}
fn default_clip_high() -> f64 {
    0.3
}
fn default_clip_dual() -> f64 {
    3.0
}
fn default_kl_coef() -> f64 {
    1e-4
}
fn default_preset() -> String {
    "code".into()
}
fn default_checkpoint_every() -> u64 {
    10
}

impl TrainConfig {
    /// Parses `path`; relative paths in it become relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::error::read(path)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Config {
            file: path.into(),
            message: "not UTF-8 text".into(),
        })?;
        let mut config = Self::parse(&text).map_err(|message| Error::Config {
            file: path.into(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.model, &mut config.data, &mut config.out] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parses TOML text and checks every value; the error names the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let positive = |key: &str, ok: bool, what: &str| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("`{key}` {what}"))
            }
        };
        positive("steps", self.steps > 0, "must be at least 1")?;
        positive(
            "prompts_per_step",
            self.prompts_per_step > 0,
            "must be at least 1",
        )?;
        positive(
            "group_size",
            self.group_size >= 2,
            "must be at least 2 (advantages compare rollouts of one prompt)",
        )?;
        positive(
            "learning_rate",
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "must be a positive number",
        )?;
        positive(
            "lora_alpha",
            self.lora_alpha.is_finite() && self.lora_alpha > 0.0,
            "must be positive",
        )?;
        positive(
            "lora_dropout",
            (0.0..1.0).contains(&self.lora_dropout),
            "must be in [0, 1)",
        )?;
        for t in &self.lora_targets {
            if !ALL_TARGETS.contains(&t.as_str()) {
                return Err(format!(
                    "`lora_targets` has unknown projection `{t}`; choose from {ALL_TARGETS:?}"
                ));
            }
        }
        if self.lora_rank > 0 && self.lora_targets.is_empty() {
            return Err(
                "`lora_targets` is empty; name at least one projection or set \
                        lora_rank = 0 for a full fine-tune"
                    .into(),
            );
        }
        positive(
            "temperature",
            self.temperature.is_finite() && self.temperature > 0.0,
            "must be positive (rollouts sample; greedy rollouts give no group variance)",
        )?;
        positive(
            "top_p",
            self.top_p > 0.0 && self.top_p <= 1.0,
            "must be in (0, 1]",
        )?;
        positive(
            "max_new_tokens",
            self.max_new_tokens > 0,
            "must be at least 1",
        )?;
        positive(
            "max_prompt_tokens",
            self.max_prompt_tokens > 0,
            "must be at least 1",
        )?;
        if !["qoq", "none"].contains(&self.instruction.as_str()) {
            return Err(format!(
                "`instruction` is `{}`; use `qoq` or `none`",
                self.instruction
            ));
        }
        positive("mini_batches", self.mini_batches > 0, "must be at least 1")?;
        positive(
            "mini_batches",
            self.mini_batches <= self.prompts_per_step * self.group_size,
            "exceeds the rollouts per step (prompts_per_step x group_size)",
        )?;
        positive("micro_batch", self.micro_batch > 0, "must be at least 1")?;
        positive(
            "weight_decay",
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "must be zero or positive",
        )?;
        positive(
            "max_grad_norm",
            self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
            "must be zero (off) or positive",
        )?;
        positive(
            "clip_low",
            (0.0..1.0).contains(&self.clip_low),
            "must be in [0, 1)",
        )?;
        positive(
            "clip_high",
            self.clip_high.is_finite() && self.clip_high >= 0.0,
            "must be zero or positive",
        )?;
        positive(
            "clip_dual",
            self.clip_dual.is_finite() && self.clip_dual > 1.0,
            "must be greater than 1",
        )?;
        positive(
            "kl_coef",
            self.kl_coef.is_finite() && self.kl_coef >= 0.0,
            "must be zero or positive",
        )?;
        positive(
            "checkpoint_every",
            self.checkpoint_every > 0,
            "must be at least 1",
        )?;
        self.reward_weights()?;
        Ok(())
    }

    /// The reward weights: the preset, then the per-term overrides.
    pub fn reward_weights(&self) -> Result<Weights, String> {
        let r = &self.reward;
        let mut w = Weights::preset(&r.preset).ok_or_else(|| {
            format!(
                "`reward.preset` is `{}`; use `code` (released code) or `paper`",
                r.preset
            )
        })?;
        for (key, value, slot) in [
            ("accuracy", r.accuracy, &mut w.accuracy),
            ("iou", r.iou, &mut w.iou),
            ("format", r.format, &mut w.format),
            ("length", r.length, &mut w.length),
        ] {
            if let Some(v) = value {
                if !v.is_finite() {
                    return Err(format!("`reward.{key}` must be a finite number"));
                }
                *slot = v;
            }
        }
        if let Some(reduce) = &r.iou_reduce {
            w.iou_reduce = match reduce.as_str() {
                "mean" => IouReduce::Mean,
                "max" => IouReduce::Max,
                other => {
                    return Err(format!(
                        "`reward.iou_reduce` is `{other}`; use `mean` or `max`"
                    ));
                }
            };
        }
        Ok(w)
    }

    /// The advantage options with `method` applied.
    pub fn advantage_options(&self) -> DrpoOptions {
        DrpoOptions {
            method: match self.method {
                MethodName::Drpo => Method::Drpo,
                MethodName::Grpo => Method::Grpo,
            },
            ..self.advantages
        }
    }

    pub fn is_lora(&self) -> bool {
        self.lora_rank > 0
    }

    /// The settings that must not change between a run and its resume (everything but `steps`,
    /// `out`, `checkpoint_every` and `adapter`), as canonical TOML.
    pub fn identity(&self) -> String {
        let mut c = self.clone();
        c.steps = 0;
        c.out = PathBuf::new();
        c.checkpoint_every = 0;
        c.adapter = None;
        toml::to_string(&c).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "model = \"m\"\ndata = \"d.jsonl\"\nout = \"o\"\nsteps = 3\n";

    #[test]
    fn defaults_are_the_released_recipe() {
        let c = TrainConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.group_size, 5);
        assert_eq!(c.temperature, 1.0);
        assert_eq!(c.top_p, 0.99);
        assert_eq!((c.clip_low, c.clip_high, c.clip_dual), (0.2, 0.3, 3.0));
        assert_eq!(c.kl_coef, 1e-4);
        assert_eq!(c.weight_decay, 1e-2);
        assert_eq!(c.max_grad_norm, 1.0);
        assert_eq!(c.learning_rate, 1e-6);
        assert!(!c.gradient_checkpointing);
        assert!(
            TrainConfig::parse(&format!("{MINIMAL}gradient_checkpointing = true\n"))
                .unwrap()
                .gradient_checkpointing
        );
        assert_eq!(c.reward_weights().unwrap(), Weights::code());
        assert_eq!(c.advantage_options(), DrpoOptions::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = TrainConfig::parse(&format!("{MINIMAL}lerning_rate = 1e-5\n")).unwrap_err();
        assert!(err.contains("lerning_rate"), "{err}");
        let err = TrainConfig::parse(&format!("{MINIMAL}[advantages]\nk_maks = 3\n")).unwrap_err();
        assert!(err.contains("k_maks"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (line, key) in [
            ("group_size = 1", "group_size"),
            ("lora_targets = [\"qkv\"]", "lora_targets"),
            ("top_p = 0.0", "top_p"),
            ("[reward]\npreset = \"mine\"", "reward.preset"),
        ] {
            let err = TrainConfig::parse(&format!("{MINIMAL}{line}\n")).unwrap_err();
            assert!(err.contains(key), "{line}: {err}");
        }
        let err = TrainConfig::parse("model = \"m\"\n").unwrap_err();
        assert!(err.contains("data"), "{err}");
    }

    #[test]
    fn overrides_and_method() {
        let c = TrainConfig::parse(&format!(
            "{MINIMAL}method = \"grpo\"\n[reward]\npreset = \"paper\"\nlength = 1.0\n"
        ))
        .unwrap();
        assert_eq!(c.advantage_options().method, Method::Grpo);
        let w = c.reward_weights().unwrap();
        assert_eq!((w.accuracy, w.length), (0.6, 1.0));
    }
}
