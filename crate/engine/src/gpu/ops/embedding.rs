use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight, dtype_define};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    hidden: u32,
    _pad: [u32; 2],
}

const WG: u32 = 64;

/// out (n, hidden) = table[ids]. `ids` is a GPU buffer of n u32 token ids, checked < vocab by the caller.
pub fn embedding(
    rec: &mut Recorder,
    ids: &wgpu::Buffer,
    n: usize,
    table: &Weight,
    out: &Tensor,
) -> Result<()> {
    let [_vocab, hidden] = table.shape[..] else {
        return Err(Error::shape(
            "embedding",
            format!(
                "table {} has shape {:?}, expected 2-D",
                table.name, table.shape
            ),
        ));
    };
    expect("embedding", "out", &out.shape, &[n, hidden])?;
    let key = PipelineKey::new(ShaderFamily::Embedding, "gather")
        .flag(dtype_define(table.dtype))
        .value("WG", WG);
    let params = Params {
        n_tokens: u32_of("embedding", n)?,
        hidden: u32_of("embedding", hidden)?,
        _pad: [0; 2],
    };
    let groups = [(hidden as u32).div_ceil(WG), params.n_tokens, 1];
    rec.dispatch(
        &key,
        &params,
        &[(1, ids), (2, &table.buffer), (3, &out.buffer)],
        groups,
    )
}
