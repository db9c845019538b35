//! The GPU runtime: device and limits, shader variants and their pipeline cache, the recorder that
//! turns a forward pass into one command buffer, and the ops (one file per shader family).

mod context;
mod format;
pub mod ops;
pub mod probe;
mod recorder;
mod shader;
mod tensor;
mod tuning;

pub use context::{AdapterSummary, Gpu, list_adapters};
pub use format::{GROUP, WeightFormat};
pub use recorder::grid;
pub use recorder::{BindCache, Recorder};
pub use shader::{PipelineKey, ShaderFamily};
pub use tensor::{
    Tensor, Weight, WeightPart, map_read, map_read_with, read_buffer, staging_buffer,
};
pub use tuning::Tuning;
