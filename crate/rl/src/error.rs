//! Typed errors: each says what was wrong and what to do about it.

use thiserror::Error;

/// Bad input to [`crate::advantages`].
#[derive(Debug, Error, PartialEq)]
pub enum AdvantageError {
    #[error("no groups given: pass at least one group of rollout rewards")]
    NoGroups,
    #[error(
        "group {id:?} has {len} rollouts; GRPO and DRPO need at least 2 per question (rollout.n > 1)"
    )]
    TooFewRollouts { id: String, len: usize },
    #[error(
        "group {id:?} has {len} rollouts but earlier groups have {expected}; every question needs the same number of rollouts (the K-means vectors must share one length)"
    )]
    RaggedGroups {
        id: String,
        len: usize,
        expected: usize,
    },
    #[error("group {id:?} has a non-finite reward ({value}); rewards must be finite numbers")]
    NonFiniteReward { id: String, value: f64 },
    #[error(
        "KL damping is on but group {id:?} has {got} KL values for {expected} rollouts; give one summed KL per rollout or turn damping off"
    )]
    MissingKl {
        id: String,
        got: usize,
        expected: usize,
    },
    #[error("group {id:?} has a non-finite KL value ({value})")]
    NonFiniteKl { id: String, value: f64 },
    #[error("bad option: {0}")]
    BadOption(String),
    #[error(
        "advantages are not finite: a cluster or domain temperature is 0 (mean reward 0) and its eps floor is off; turn the floor on (the released code divides by 0 here)"
    )]
    NonFinite,
}

/// Bad input to the rewards (the ground truth the caller supplies, never the model's response:
/// a malformed response simply scores low).
#[derive(Debug, Error)]
pub enum RewardError {
    #[error("segmentation mask is not a readable PNG: {0}")]
    MaskDecode(#[from] image::ImageError),
    #[error("segmentation mask is {width}x{height} but has {len} pixels; give width*height values")]
    MaskSize { width: u32, height: u32, len: usize },
    #[error("weights must be finite: {0:?}")]
    BadWeights([f64; 4]),
}
