//! The model, mirroring the checkpoint: `model.*` + `lm_head` -> [`text`]; `visual.*` (vision
//! tower) and `time_series_embedding.*` (ECG encoder) arrive with their issues.

pub mod ecg;
pub mod inject;
pub mod rope;
pub mod text;

pub use ecg::EcgEncoder;
pub use inject::Injection;
pub use text::{Logits, Session, TextModel};
