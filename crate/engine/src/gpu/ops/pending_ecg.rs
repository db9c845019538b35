//! TEMPORARY (branch ecg only): stand-ins for the lead's `ops::gelu` and `AttnMask::LeadOrTime`
//! (contract 3) so the encoder runs before they land on main; removed at that merge.

use crate::error::Result;
use crate::gpu::recorder::grid;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    heads: u32,
    leads: u32,
    patches: u32,
    scale: f32,
    _pad: [u32; 3],
}

#[derive(Clone, Copy, Debug)]
pub enum AttnMask {
    LeadOrTime { leads: usize, patches: usize },
}

pub fn attention(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: AttnMask,
    out: &Tensor,
) -> Result<()> {
    let AttnMask::LeadOrTime { leads, patches } = mask;
    expect("attention", "k", &k.shape, &q.shape)?;
    expect("attention", "v", &v.shape, &q.shape)?;
    expect("attention", "out", &out.shape, &q.shape)?;
    let (n, heads, hd) = (q.shape[0], q.shape[1], q.shape[2]);
    expect("attention", "tokens", &[n], &[leads * patches])?;
    let p = Params {
        n: u32_of("attention", n)?,
        heads: u32_of("attention", heads)?,
        leads: u32_of("attention", leads)?,
        patches: u32_of("attention", patches)?,
        scale: 1.0 / (hd as f32).sqrt(),
        _pad: [0; 3],
    };
    let key = PipelineKey::new(ShaderFamily::PendingEcg, "attention_lead_or_time")
        .flag("ATTN")
        .value("HD", u32_of("attention", hd)?);
    rec.dispatch(
        &key,
        &p,
        &[
            (1, &q.buffer),
            (2, &k.buffer),
            (3, &v.buffer),
            (4, &out.buffer),
        ],
        [(p.n * p.heads).div_ceil(64), 1, 1],
    )
}

pub fn gelu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    expect("gelu", "out", &out.shape, &x.shape)?;
    let n = u32_of("gelu", x.numel())?;
    let p = Params {
        n,
        heads: 0,
        leads: 0,
        patches: 0,
        scale: 0.0,
        _pad: [0; 3],
    };
    let key = PipelineKey::new(ShaderFamily::PendingEcg, "gelu").flag("GELU");
    let groups = grid(
        n.div_ceil(64),
        rec.gpu.limits.max_compute_workgroups_per_dimension,
    );
    rec.dispatch(&key, &p, &[(1, &x.buffer), (2, &out.buffer)], groups)
}
