use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight};

use super::{expect, u32_of, with_format};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    hidden: u32,
    row0: u32,
    row1: u32,
}

const WG: u32 = 64;

/// out (n, hidden) = table[ids], for a table in any format and any number of row parts. `ids` is
/// a GPU buffer of n u32 token ids, checked < vocab by the caller.
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
    let key = with_format(
        PipelineKey::new(ShaderFamily::Embedding, "gather").value("WG", WG),
        table.format,
    );
    for part in &table.parts {
        let params = Params {
            n_tokens: u32_of("embedding", n)?,
            hidden: u32_of("embedding", hidden)?,
            row0: u32_of("embedding", part.rows.start)?,
            row1: u32_of("embedding", part.rows.end)?,
        };
        let groups = [(hidden as u32).div_ceil(WG), params.n_tokens, 1];
        let mut buffers = vec![(1, ids), (2, &part.values), (3, &out.buffer)];
        if let Some(s) = &part.scales {
            buffers.push((5, s));
        }
        rec.dispatch(&key, &params, &buffers, groups)?;
    }
    Ok(())
}
