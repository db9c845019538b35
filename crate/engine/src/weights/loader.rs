//! Streaming upload: a checkpoint tensor goes to the GPU in row pieces of at most [`PIECE`] bytes
//! (natively straight from the memory map, on the web from file slices), never whole in host
//! memory, in the format it is stored in (f32 / f16 / bf16, or q8 / q4 planes from qoqmed's
//! files: a straight copy). Every byte uploaded is reported to the store's progress callback.

use crate::error::Result;
use crate::gpu::{Gpu, Weight};

use super::{TensorInfo, WeightStore};

/// Bytes of the values plane per piece: small enough for a browser's staging, large enough that
/// per-call overhead does not matter.
pub const PIECE: usize = 16 << 20;

/// Progress of a load: bytes uploaded so far of all the store's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadProgress {
    pub done: u64,
    pub total: u64,
}

/// Rows per piece for rows of `row_bytes` (at least one row).
pub fn rows_per_piece(row_bytes: usize) -> usize {
    (PIECE / row_bytes.max(1)).max(1)
}

/// Allocates `info` on the GPU in its stored format and streams its rows in.
// TEMPORARY until core-kernels' `Weight::alloc` / `write_rows` land: whole-tensor upload of float
// formats.
pub async fn upload(gpu: &Gpu, store: &WeightStore, info: &TensorInfo) -> Result<Weight> {
    if info.format.is_quantized() {
        return Err(crate::error::Error::Input(format!(
            "{}: {} weights need the quantized kernels",
            info.name, info.format
        )));
    }
    let (n, _) = info.rows();
    let piece = store.read_rows(info, 0..n).await?;
    let w = Weight::upload(gpu, &info.name, info.dtype, &info.shape, &piece.values)?;
    store.report(piece.values.len() as u64);
    Ok(w)
}
