use crate::error::Result;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight};

use super::{expect, u32_of, with_format};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    eps: f32,
    _pad: u32,
}

const WG: u32 = 128;

/// out = RMSNorm(x) * weight over the last axis; x and out are (rows, n).
pub fn rms_norm(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Weight,
    eps: f32,
    out: &Tensor,
) -> Result<()> {
    let n = *x.shape.last().unwrap_or(&0);
    let rows = x.numel() / n.max(1);
    expect("rms_norm", "weight", &weight.shape, &[n])?;
    expect("rms_norm", "out", &out.shape, &x.shape)?;
    let part = weight.single_part("rms_norm")?;
    let key = with_format(
        PipelineKey::new(ShaderFamily::Norm, "rms_norm").value("WG", WG),
        weight.format,
    );
    let params = Params {
        rows: u32_of("rms_norm", rows)?,
        n: u32_of("rms_norm", n)?,
        eps,
        _pad: 0,
    };
    rec.dispatch(
        &key,
        &params,
        &[(1, &x.buffer), (2, &part.values), (3, &out.buffer)],
        [params.rows, 1, 1],
    )
}
