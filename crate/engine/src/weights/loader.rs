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
pub async fn upload(gpu: &Gpu, store: &WeightStore, info: &TensorInfo) -> Result<Weight> {
    let weight = Weight::alloc(gpu, &info.name, info.format, &info.shape)?;
    write_into(gpu, store, info, &weight, 0).await?;
    Ok(weight)
}

/// Streams `info`'s rows into `dst` starting at row `row0` (a fused weight can take several
/// tensors one after another). Formats must match; pieces keep `dst`'s write alignment.
pub async fn write_into(
    gpu: &Gpu,
    store: &WeightStore,
    info: &TensorInfo,
    dst: &Weight,
    row0: usize,
) -> Result<()> {
    if dst.format != info.format {
        return Err(crate::error::Error::format(
            &info.name,
            format!(
                "stored as {} but written into a {} weight",
                info.format, dst.format
            ),
        ));
    }
    let (n, k) = info.rows();
    let align = dst.write_align_rows();
    let step = (rows_per_piece(info.format.row_bytes(k)) / align).max(1) * align;
    let mut row = 0;
    while row < n {
        let end = (row + step).min(n);
        let piece = store.read_rows(info, row..end).await?;
        dst.write_rows(gpu, row0 + row, &piece.values, piece.scales.as_deref())?;
        let scale_bytes = piece.scales.as_ref().map_or(0, |s| s.len() as u64);
        store.report(piece.values.len() as u64 + scale_bytes);
        row = end;
    }
    Ok(())
}
