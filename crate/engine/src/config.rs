//! config.json and generation_config.json of a Qwen2.5-VL / QoQ-Med model folder.
//!
//! config.json comes in three layouts and all parse to the same [`ModelConfig`]:
//! - flat (as published): text keys at the top level, `rope_scaling: {type: "mrope", mrope_section}`,
//!   vision keys `in_chans` / `spatial_patch_size`;
//! - nested (transformers 5): `text_config`, `vision_config`, `rope_parameters`;
//! - mixed: both; a key inside `text_config` wins over the same key at the top level.
//!
//! Keys that size the model (hidden size, layer and head counts, vocabulary, M-RoPE sections) are
//! required: a config without them is broken, and guessing would build a different model. Other
//! absent keys take the defaults of transformers' `Qwen2_5_VLConfig` (the reference implementation),
//! named in [`defaults`].

use serde::Deserialize;

use crate::error::{Error, Result};

mod ecg;
pub use ecg::{EcgConfig, defaults as ecg_defaults};

/// Values transformers' `Qwen2_5_VLConfig` / `Qwen2_5_VLTextConfig` / `Qwen2_5_VLVisionConfig` use
/// when a key is absent from config.json (transformers 5.x). Only used for absent keys.
pub mod defaults {
    /// `Qwen2_5_VLTextConfig.rms_norm_eps`.
    pub const RMS_NORM_EPS: f32 = 1e-5;
    /// `Qwen2_5_VLTextConfig.default_theta`.
    pub const ROPE_THETA: f64 = 1_000_000.0;
    /// `Qwen2_5_VLTextConfig.max_position_embeddings`.
    pub const MAX_POSITION_EMBEDDINGS: usize = 32768;
    /// `Qwen2_5_VLConfig.tie_word_embeddings`.
    pub const TIE_WORD_EMBEDDINGS: bool = false;
    /// `Qwen2_5_VLConfig.{image,video,vision_start,vision_end}_token_id`.
    pub const IMAGE_TOKEN_ID: u32 = 151655;
    pub const VIDEO_TOKEN_ID: u32 = 151656;
    pub const VISION_START_TOKEN_ID: u32 = 151652;
    pub const VISION_END_TOKEN_ID: u32 = 151653;
    /// `Qwen2_5_VLTextConfig.eos_token_id`.
    pub const EOS_TOKEN_ID: u32 = 151645;
    /// `Qwen2_5_VLVisionConfig` defaults.
    pub const VISION_IN_CHANNELS: usize = 3;
    pub const VISION_PATCH_SIZE: usize = 14;
    pub const VISION_SPATIAL_MERGE_SIZE: usize = 2;
    pub const VISION_TEMPORAL_PATCH_SIZE: usize = 2;
    pub const VISION_WINDOW_SIZE: usize = 112;
    pub const VISION_TOKENS_PER_SECOND: f32 = 4.0;
    pub const VISION_FULLATT_BLOCK_INDEXES: [usize; 4] = [7, 15, 23, 31];
    /// The vision tower's 2-D RoPE base (`rope_parameters.rope_theta` of the vision config).
    pub const VISION_ROPE_THETA: f64 = 10000.0;
    /// The vision tower's RMSNorm eps: transformers hard-codes 1e-6 (`Qwen2_5_VLRMSNorm(..., eps=1e-6)`
    /// in every vision block and the merger), config.json has no key for it.
    pub const VISION_RMS_NORM_EPS: f32 = 1e-6;
    /// `GenerationConfig._get_default_generation_params()`: repetition penalty off, and the
    /// sampling values transformers uses when `do_sample` is on but a key is absent.
    pub const REPETITION_PENALTY: f32 = 1.0;
    pub const TEMPERATURE: f32 = 1.0;
    pub const TOP_K: usize = 50;
    pub const TOP_P: f32 = 1.0;
}

/// The language model (Qwen2 decoder with M-RoPE).
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// `hidden_size / num_attention_heads` unless config.json gives `head_dim`.
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    /// Rotary frequencies per axis (temporal, height, width); sums to `head_dim / 2`.
    pub mrope_section: Vec<usize>,
    pub max_position_embeddings: usize,
    /// true: `lm_head` reuses `embed_tokens` (the checkpoint may then omit `lm_head.weight`).
    pub tie_word_embeddings: bool,
}

/// The vision tower (ViT with window attention + 2x2 patch merger).
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Window side in pixels (112 = 8x8 patches = 4x4 merged units).
    pub window_size: usize,
    pub out_hidden_size: usize,
    /// Blocks that attend over the whole image; the others attend within their window.
    pub fullatt_block_indexes: Vec<usize>,
    pub tokens_per_second: f32,
    /// Base of the 2-D rotary embedding over (row, col).
    pub rope_theta: f64,
    /// RMSNorm eps of the blocks and the merger (not a config.json key).
    pub rms_norm_eps: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub text: TextConfig,
    /// None for a text-only checkpoint config (no `vision_config`).
    pub vision: Option<VisionConfig>,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// `<|time_series_pad|>` of QoQ-Med-Omni; None when config.json does not name it.
    pub time_series_token_id: Option<u32>,
    /// The ECG encoder's sizes (`time_series_config`, ECG-JEPA's defaults for absent keys). Whether
    /// the branch exists is the checkpoint's business (`time_series_embedding.*` tensors).
    pub ecg: EcgConfig,
    pub eos_token_ids: Vec<u32>,
    pub architectures: Vec<String>,
}

/// `eos_token_id` is an int in config.json and often a list in generation_config.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }
    }
}

/// `rope_scaling` (flat) or `rope_parameters` (nested); `type: "mrope"` is the old spelling.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawRope {
    mrope_section: Option<Vec<usize>>,
    rope_theta: Option<f64>,
}

/// Text keys, read from `text_config` and from the top level.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawText {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    eos_token_id: Option<OneOrMany>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawVision {
    depth: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_heads: Option<usize>,
    in_channels: Option<usize>,
    /// The published configs' spelling; some files carry both.
    in_chans: Option<usize>,
    patch_size: Option<usize>,
    spatial_patch_size: Option<usize>,
    spatial_merge_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    window_size: Option<usize>,
    out_hidden_size: Option<usize>,
    fullatt_block_indexes: Option<Vec<usize>>,
    tokens_per_second: Option<f32>,
    rope_parameters: Option<RawRope>,
    hidden_act: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(flatten)]
    top: RawText,
    text_config: Option<RawText>,
    vision_config: Option<RawVision>,
    image_token_id: Option<u32>,
    video_token_id: Option<u32>,
    vision_start_token_id: Option<u32>,
    vision_end_token_id: Option<u32>,
    time_series_token_id: Option<u32>,
    time_series_config: Option<ecg::RawEcg>,
    architectures: Option<Vec<String>>,
}

fn required(value: Option<usize>, key: &str, place: &str) -> Result<usize> {
    match value {
        Some(0) => Err(Error::Config(format!(
            "`{key}` is 0 in {place}; it must be positive"
        ))),
        Some(v) => Ok(v),
        None => Err(Error::Config(format!(
            "`{key}` is missing (looked in {place}); config.json must give the model's size"
        ))),
    }
}

fn positive(value: usize, key: &str) -> Result<usize> {
    if value == 0 {
        return Err(Error::Config(format!("`{key}` is 0; it must be positive")));
    }
    Ok(value)
}

impl TextConfig {
    /// `nested` keys win over `top` keys (mixed layout).
    fn from_raw(nested: Option<&RawText>, top: &RawText) -> Result<Self> {
        let place = if nested.is_some() {
            "text_config and the top level"
        } else {
            "the top level"
        };
        macro_rules! pick {
            ($field:ident) => {
                nested
                    .and_then(|n| n.$field.clone())
                    .or_else(|| top.$field.clone())
            };
        }
        let hidden_size = required(pick!(hidden_size), "hidden_size", place)?;
        let num_attention_heads =
            required(pick!(num_attention_heads), "num_attention_heads", place)?;
        // transformers: a missing num_key_value_heads means plain multi-head attention.
        let num_key_value_heads = pick!(num_key_value_heads).unwrap_or(num_attention_heads);
        let num_key_value_heads = positive(num_key_value_heads, "num_key_value_heads")?;
        let head_dim = match pick!(head_dim) {
            Some(d) => positive(d, "head_dim")?,
            None => {
                if !hidden_size.is_multiple_of(num_attention_heads) {
                    return Err(Error::Config(format!(
                        "hidden_size {hidden_size} is not divisible by num_attention_heads \
                         {num_attention_heads}, and no head_dim is given"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };
        // Each rope key from the first dict that has it: text_config before the top level, and
        // rope_scaling before rope_parameters (transformers: `rope_scaling or rope_parameters`).
        let ropes: Vec<&RawRope> = [nested, Some(top)]
            .into_iter()
            .flatten()
            .flat_map(|t| [t.rope_scaling.as_ref(), t.rope_parameters.as_ref()])
            .flatten()
            .collect();
        let mrope_section = ropes.iter().find_map(|r| r.mrope_section.clone()).ok_or_else(|| {
            Error::Config(format!(
                "`mrope_section` is missing (looked for rope_parameters / rope_scaling in {place}); \
                 Qwen2.5-VL needs its M-RoPE sections, e.g. [16, 24, 24]"
            ))
        })?;
        let rope_theta = ropes
            .iter()
            .find_map(|r| r.rope_theta)
            .or(pick!(rope_theta))
            .unwrap_or(defaults::ROPE_THETA);
        let config = TextConfig {
            vocab_size: required(pick!(vocab_size), "vocab_size", place)?,
            hidden_size,
            intermediate_size: required(pick!(intermediate_size), "intermediate_size", place)?,
            num_hidden_layers: required(pick!(num_hidden_layers), "num_hidden_layers", place)?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: pick!(rms_norm_eps).unwrap_or(defaults::RMS_NORM_EPS),
            rope_theta,
            mrope_section,
            max_position_embeddings: pick!(max_position_embeddings)
                .unwrap_or(defaults::MAX_POSITION_EMBEDDINGS),
            // transformers 5 reads the top-level key; pre-v5 saves put it in text_config, and
            // transformers forwards a true there to the top level.
            tie_word_embeddings: top
                .tie_word_embeddings
                .unwrap_or(defaults::TIE_WORD_EMBEDDINGS)
                || nested.and_then(|n| n.tie_word_embeddings).unwrap_or(false),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::Config(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}; grouped-query \
                 attention needs whole groups",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "head_dim {} is odd; rotary embeddings rotate pairs of dimensions",
                self.head_dim
            )));
        }
        let sum: usize = self.mrope_section.iter().sum();
        if self.mrope_section.len() != 3 || sum != self.head_dim / 2 {
            return Err(Error::Config(format!(
                "mrope_section {:?} must have 3 entries (temporal, height, width) summing to \
                 head_dim/2 = {} (it sums to {sum})",
                self.mrope_section,
                self.head_dim / 2
            )));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(Error::Config(format!(
                "rms_norm_eps {} must be positive",
                self.rms_norm_eps
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::Config(format!(
                "rope_theta {} must be positive",
                self.rope_theta
            )));
        }
        Ok(())
    }
}

impl VisionConfig {
    fn from_raw(raw: &RawVision) -> Result<Self> {
        let place = "vision_config";
        let config = VisionConfig {
            depth: required(raw.depth, "depth", place)?,
            hidden_size: required(raw.hidden_size, "hidden_size", place)?,
            intermediate_size: required(raw.intermediate_size, "intermediate_size", place)?,
            num_heads: required(raw.num_heads, "num_heads", place)?,
            in_channels: positive(
                raw.in_channels
                    .or(raw.in_chans)
                    .unwrap_or(defaults::VISION_IN_CHANNELS),
                "vision_config.in_channels",
            )?,
            patch_size: positive(
                raw.patch_size
                    .or(raw.spatial_patch_size)
                    .unwrap_or(defaults::VISION_PATCH_SIZE),
                "vision_config.patch_size",
            )?,
            spatial_merge_size: positive(
                raw.spatial_merge_size
                    .unwrap_or(defaults::VISION_SPATIAL_MERGE_SIZE),
                "vision_config.spatial_merge_size",
            )?,
            temporal_patch_size: positive(
                raw.temporal_patch_size
                    .unwrap_or(defaults::VISION_TEMPORAL_PATCH_SIZE),
                "vision_config.temporal_patch_size",
            )?,
            window_size: raw.window_size.unwrap_or(defaults::VISION_WINDOW_SIZE),
            out_hidden_size: required(raw.out_hidden_size, "out_hidden_size", place)?,
            fullatt_block_indexes: raw
                .fullatt_block_indexes
                .clone()
                .unwrap_or_else(|| defaults::VISION_FULLATT_BLOCK_INDEXES.to_vec()),
            tokens_per_second: raw
                .tokens_per_second
                .unwrap_or(defaults::VISION_TOKENS_PER_SECOND),
            rope_theta: raw
                .rope_parameters
                .as_ref()
                .and_then(|r| r.rope_theta)
                .unwrap_or(defaults::VISION_ROPE_THETA),
            rms_norm_eps: defaults::VISION_RMS_NORM_EPS,
        };
        // Qwen2.5-VL's blocks use a SiLU-gated MLP; Qwen2-VL's (GELU, LayerNorm) is another tower.
        if let Some(act) = raw.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(Error::Config(format!(
                "vision_config.hidden_act is {act:?}; qoqmed runs Qwen2.5-VL's vision tower, whose MLP is \"silu\" \
                 (a Qwen2-VL checkpoint is not supported)"
            )));
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if !self.hidden_size.is_multiple_of(self.num_heads)
            || !(self.hidden_size / self.num_heads).is_multiple_of(2)
        {
            return Err(Error::Config(format!(
                "vision_config: hidden_size {} must split into num_heads {} heads of even size",
                self.hidden_size, self.num_heads
            )));
        }
        if let Some(&bad) = self
            .fullatt_block_indexes
            .iter()
            .find(|&&i| i >= self.depth)
        {
            return Err(Error::Config(format!(
                "vision_config: fullatt_block_indexes names block {bad}, but depth is {}",
                self.depth
            )));
        }
        if self.window_size < self.patch_size * self.spatial_merge_size {
            return Err(Error::Config(format!(
                "vision_config: window_size {} is smaller than one merged unit \
                 (patch_size {} x spatial_merge_size {})",
                self.window_size, self.patch_size, self.spatial_merge_size
            )));
        }
        Ok(())
    }

    /// Head size of the vision attention (80 for Qwen2.5-VL).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Values in one flattened patch: channels x temporal x patch x patch (1176 for Qwen2.5-VL).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

impl ModelConfig {
    /// Parses config.json in any of the three layouts and checks it is self-consistent.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::format("config.json", format!("not a valid model config: {e}")))?;
        let text = TextConfig::from_raw(raw.text_config.as_ref(), &raw.top)?;
        let vision = raw
            .vision_config
            .as_ref()
            .map(VisionConfig::from_raw)
            .transpose()?;
        let eos_token_ids = raw
            .text_config
            .as_ref()
            .and_then(|t| t.eos_token_id.clone())
            .or_else(|| raw.top.eos_token_id.clone())
            .map(OneOrMany::into_vec)
            .unwrap_or_else(|| vec![defaults::EOS_TOKEN_ID]);
        let config = ModelConfig {
            text,
            vision,
            image_token_id: raw.image_token_id.unwrap_or(defaults::IMAGE_TOKEN_ID),
            video_token_id: raw.video_token_id.unwrap_or(defaults::VIDEO_TOKEN_ID),
            vision_start_token_id: raw
                .vision_start_token_id
                .unwrap_or(defaults::VISION_START_TOKEN_ID),
            vision_end_token_id: raw
                .vision_end_token_id
                .unwrap_or(defaults::VISION_END_TOKEN_ID),
            time_series_token_id: raw.time_series_token_id,
            ecg: EcgConfig::from_raw(raw.time_series_config.as_ref())?,
            eos_token_ids,
            architectures: raw.architectures.unwrap_or_default(),
        };
        if let Some(vision) = &config.vision
            && vision.out_hidden_size != config.text.hidden_size
        {
            return Err(Error::Config(format!(
                "vision_config.out_hidden_size {} differs from the text hidden_size {}; the merger \
                 output must match the language model",
                vision.out_hidden_size, config.text.hidden_size
            )));
        }
        Ok(config)
    }
}

/// generation_config.json: the checkpoint's decoding defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub repetition_penalty: f32,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    /// false: greedy decoding, temperature/top-k/top-p are ignored (transformers semantics).
    pub do_sample: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            bos_token_id: None,
            repetition_penalty: defaults::REPETITION_PENALTY,
            temperature: None,
            top_p: None,
            top_k: None,
            do_sample: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawGeneration {
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    repetition_penalty: Option<f32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    do_sample: Option<bool>,
}

impl GenerationConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawGeneration = serde_json::from_slice(bytes).map_err(|e| {
            Error::format(
                "generation_config.json",
                format!("not a valid generation config: {e}"),
            )
        })?;
        let config = GenerationConfig {
            eos_token_ids: raw
                .eos_token_id
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
            pad_token_id: raw.pad_token_id,
            bos_token_id: raw.bos_token_id,
            repetition_penalty: raw
                .repetition_penalty
                .unwrap_or(defaults::REPETITION_PENALTY),
            temperature: raw.temperature,
            top_p: raw.top_p,
            top_k: raw.top_k,
            do_sample: raw.do_sample.unwrap_or(false),
        };
        if !(config.repetition_penalty.is_finite() && config.repetition_penalty > 0.0) {
            return Err(Error::format(
                "generation_config.json",
                format!(
                    "repetition_penalty {} must be positive",
                    config.repetition_penalty
                ),
            ));
        }
        if let Some(t) = config.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::format(
                "generation_config.json",
                format!("temperature {t} must be zero or positive"),
            ));
        }
        if let Some(p) = config.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::format(
                "generation_config.json",
                format!("top_p {p} must be in (0, 1]"),
            ));
        }
        Ok(config)
    }

    /// The sampler settings these defaults mean in transformers: without `do_sample` decoding is
    /// greedy (the repetition penalty still applies), otherwise temperature/top-k/top-p as given.
    pub fn sampling_params(&self, seed: u64) -> crate::sampler::SamplingParams {
        let (temperature, top_k, top_p) = if self.do_sample {
            (
                self.temperature.unwrap_or(defaults::TEMPERATURE),
                self.top_k.unwrap_or(defaults::TOP_K),
                self.top_p.unwrap_or(defaults::TOP_P),
            )
        } else {
            (0.0, 0, 1.0)
        };
        crate::sampler::SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: self.repetition_penalty,
            seed,
        }
    }
}
