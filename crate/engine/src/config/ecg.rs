//! `time_series_config` of a QoQ-Med-Omni config.json: the ECG-JEPA encoder's sizes under the
//! names of ECG-JEPA's own constructor. Every key is optional and takes ECG-JEPA's value (the
//! encoder QoQ-Med-Omni ships) when absent; unknown keys (e.g. the predictor's) are ignored.

use serde::Deserialize;

use crate::error::{Error, Result};

/// ECG-JEPA's constructor defaults as QoQ-Med-Omni instantiates its encoder (qoqmed-spec.md
/// section 3), and the ECG token id its model class falls back to.
pub mod defaults {
    pub const ENCODER_EMBED_DIM: usize = 768;
    pub const ENCODER_DEPTH: usize = 12;
    pub const ENCODER_NUM_HEADS: usize = 16;
    pub const MLP_RATIO: f64 = 4.0;
    /// `nn.LayerNorm`'s default eps.
    pub const LAYER_NORM_EPS: f32 = 1e-5;
    /// Leads (rows of the input).
    pub const C: usize = 8;
    /// Time patches per lead.
    pub const P: usize = 50;
    /// Samples per patch.
    pub const T: usize = 50;
    /// `TimeSeriesQwen2_5_VLForConditionalGeneration`: `<|time_series_pad|>` when config.json
    /// does not name `time_series_token_id`.
    pub const TIME_SERIES_TOKEN_ID: u32 = 151665;
}

/// The ECG encoder (ECG-JEPA's `MaskTransformer`, used through `representation`).
#[derive(Debug, Clone, PartialEq)]
pub struct EcgConfig {
    pub encoder_embed_dim: usize,
    pub encoder_depth: usize,
    pub encoder_num_heads: usize,
    /// The MLP is `int(encoder_embed_dim * mlp_ratio)` wide (Python truncation).
    pub mlp_ratio: f64,
    pub layer_norm_eps: f32,
    /// Leads.
    pub c: usize,
    /// Time patches per lead.
    pub p: usize,
    /// Samples per patch.
    pub t: usize,
}

impl Default for EcgConfig {
    fn default() -> Self {
        EcgConfig {
            encoder_embed_dim: defaults::ENCODER_EMBED_DIM,
            encoder_depth: defaults::ENCODER_DEPTH,
            encoder_num_heads: defaults::ENCODER_NUM_HEADS,
            mlp_ratio: defaults::MLP_RATIO,
            layer_norm_eps: defaults::LAYER_NORM_EPS,
            c: defaults::C,
            p: defaults::P,
            t: defaults::T,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct RawEcg {
    encoder_embed_dim: Option<usize>,
    encoder_depth: Option<usize>,
    encoder_num_heads: Option<usize>,
    mlp_ratio: Option<f64>,
    layer_norm_eps: Option<f32>,
    c: Option<usize>,
    p: Option<usize>,
    t: Option<usize>,
}

impl EcgConfig {
    pub(super) fn from_raw(raw: Option<&RawEcg>) -> Result<Self> {
        let d = EcgConfig::default();
        let Some(raw) = raw else {
            return Ok(d);
        };
        let config = EcgConfig {
            encoder_embed_dim: raw.encoder_embed_dim.unwrap_or(d.encoder_embed_dim),
            encoder_depth: raw.encoder_depth.unwrap_or(d.encoder_depth),
            encoder_num_heads: raw.encoder_num_heads.unwrap_or(d.encoder_num_heads),
            mlp_ratio: raw.mlp_ratio.unwrap_or(d.mlp_ratio),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(d.layer_norm_eps),
            c: raw.c.unwrap_or(d.c),
            p: raw.p.unwrap_or(d.p),
            t: raw.t.unwrap_or(d.t),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("time_series_config: {m}")));
        for (key, v) in [
            ("encoder_embed_dim", self.encoder_embed_dim),
            ("encoder_depth", self.encoder_depth),
            ("encoder_num_heads", self.encoder_num_heads),
            ("c", self.c),
            ("p", self.p),
            ("t", self.t),
        ] {
            if v == 0 {
                return bad(format!("`{key}` is 0; it must be positive"));
            }
        }
        if !self
            .encoder_embed_dim
            .is_multiple_of(self.encoder_num_heads)
        {
            return bad(format!(
                "encoder_embed_dim {} does not split into encoder_num_heads {} heads",
                self.encoder_embed_dim, self.encoder_num_heads
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_hidden() == 0 {
            return bad(format!(
                "mlp_ratio {} must be positive (the MLP would be {} wide)",
                self.mlp_ratio,
                self.mlp_hidden()
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.encoder_embed_dim / self.encoder_num_heads
    }

    /// Width of each block's MLP: `int(dim * mlp_ratio)` as ECG-JEPA computes it.
    pub fn mlp_hidden(&self) -> usize {
        (self.encoder_embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Encoder tokens per ECG: one per (lead, time patch).
    pub fn tokens(&self) -> usize {
        self.c * self.p
    }

    /// Samples per lead the encoder takes (2500 = 10 s at 250 Hz for QoQ-Med-Omni).
    pub fn samples(&self) -> usize {
        self.p * self.t
    }
}
