//! DRPO, the training signal of QoQ-Med, in plain Rust: rule-based rewards for a response and
//! GRPO / DRPO advantages for a batch of rollout groups.
//!
//! Both halves follow `docs/qoqmed-spec.md` section 6 and the released QoQ-Med code; every place
//! where the paper and the code disagree is an option (see [`DrpoOptions`] and [`Weights`]), and
//! `docs/drpo.md` lists the defaults and the deviations.
//!
//! A trainer calls [`advantages`] once per step with borrowed [`Group`]s and keeps a [`DrpoState`]
//! across steps; nothing is copied out of its buffers except the reward vectors the accumulated
//! statistics must remember.

mod advantages;
mod error;
mod rewards;

pub use advantages::kmeans::{KMeansFit, distinct_rows, elbow_k, kmeans};
pub use advantages::{
    Advantages, ClusterMode, DomainMean, DomainReport, DrpoOptions, DrpoState, Group, GroupRecord,
    KlDamping, Method, Statistics, StepRecord, advantages, grpo_scores,
};
pub use error::{AdvantageError, RewardError};
pub use rewards::{
    IouReduce, Mask, Region, RewardBreakdown, Weights, format_score, iou_score, label_f1,
    length_score, score,
};
