//! The model, mirroring the checkpoint: `model.*` + `lm_head` -> [`text`]; `visual.*` -> [`vision`];
//! `time_series_embedding.*` -> [`ecg`] (QoQ-Med-Omni's ECG encoder). [`inject`] puts their outputs
//! into the prompt.

pub mod ecg;
pub mod inject;
pub mod memory;
pub mod rope;
pub mod text;
pub mod vision;

pub use ecg::EcgEncoder;
pub use inject::Injection;
pub use text::{Logits, Session, TextModel};
pub use vision::{VisionLayout, VisionModel};
