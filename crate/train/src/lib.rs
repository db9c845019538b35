//! `qoqmed train`: DRPO / GRPO fine-tuning of QoQ-Med (Qwen2.5-VL) natively with burn on any GPU
//! wgpu reaches, with rollouts from the qoqmed inference engine.
//!
//! The pieces, in the order a step runs them:
//! - [`data`]: the CLIMB / QoQ jsonl, checked line by line, and the seeded data order;
//! - [`rollout`]: prompts, the policy's merged weights uploaded to the engine, G sampled
//!   completions per prompt with their rollout log-probs;
//! - rewards and advantages: `qoqmed-rl` (the released reward and GRPO / DRPO);
//! - [`policy`]: the language model in burn with LoRA adapters (or full fine-tune);
//! - [`loss`] and [`step`]: the clipped objective with the k3 KL term, micro-batches with
//!   gradient accumulation, global gradient-norm clip, AdamW;
//! - [`trainer`]: the loop, metrics, checkpoints and bit-for-bit resume; [`export`]: merged
//!   Hugging Face checkpoints `qoqmed generate` and the browser load.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod loss;
pub mod metrics;
pub mod policy;
pub mod rollout;
pub mod step;
pub mod tensors;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Error, Result};
