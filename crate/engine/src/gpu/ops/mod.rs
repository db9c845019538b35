//! Ops are values checked on the CPU, then recorded: every function here validates shapes (a
//! mismatch is an [`Error::Shape`] naming both shapes) before it queues its dispatch. One file per
//! shader family in `shaders/`.

mod attention;
mod elementwise;
mod embedding;
pub(crate) mod matmul;
mod norm;
mod pool;
mod rope;
pub mod sample;
mod vision;

pub use attention::{AttnMask, attention};
pub use elementwise::{add_inplace, argmax, copy, gelu, silu_mul};
pub use embedding::embedding;
pub use matmul::{gate_up_silu, linear};
pub use norm::{layer_norm, rms_norm};
pub use pool::mean_rows;
pub use rope::{rope_inplace, rope_to_cache};
pub use vision::{KEEP_ROW, gather_rows, qkv_rope, u32_buffer};

use crate::error::{Error, Result};
use crate::gpu::WeightFormat;
use crate::gpu::shader::PipelineKey;

/// Adds the defines that select `format`'s weight loader (shaders/weights.wgsl).
fn with_format(key: PipelineKey, format: WeightFormat) -> PipelineKey {
    let key = key.flag(format.define());
    match format {
        WeightFormat::Q8 | WeightFormat::Q4 => key.flag("W_QUANT"),
        WeightFormat::F16 | WeightFormat::BF16 => key.flag("W_16"),
        WeightFormat::F32 => key,
    }
}

fn expect(op: &'static str, what: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual != expected {
        return Err(Error::shape(
            op,
            format!("{what} has shape {actual:?}, expected {expected:?}"),
        ));
    }
    Ok(())
}

fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::shape(
            op,
            format!("size {v} does not fit the kernels' u32 indexing"),
        )
    })
}
