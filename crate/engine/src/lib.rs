//! The QoQ-Med inference engine.
//!
//! One implementation for native (Vulkan/Metal/DX12) and the browser (WebGPU): all GPU work is
//! async, readers take bytes, weights arrive through [`weights::ByteSource`], and the platform edge
//! (CLI or wasm bindings) picks the executor and the byte source.

pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod gpu;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod sampler;
pub mod weights;

pub use error::{Error, Result};
