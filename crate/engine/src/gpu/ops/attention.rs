use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_q: u32,
    start: u32,
    heads: u32,
    kv_heads: u32,
    scale: f32,
    _pad: [u32; 3],
}

const WG: u32 = 64;

/// Causal GQA attention. q (n_q, heads, head_dim) at cache rows start..start+n_q (already written
/// into k_cache / v_cache (max_ctx, kv_heads, head_dim)); out has q's shape.
pub fn attention(
    rec: &mut Recorder,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    start: usize,
    out: &Tensor,
) -> Result<()> {
    let [n_q, heads, hd] = q.shape[..] else {
        return Err(Error::shape(
            "attention",
            format!(
                "q has shape {:?}, expected (tokens, heads, head_dim)",
                q.shape
            ),
        ));
    };
    let [max_ctx, kv_heads, kv_hd] = k_cache.shape[..] else {
        return Err(Error::shape(
            "attention",
            format!("k_cache has shape {:?}", k_cache.shape),
        ));
    };
    expect("attention", "v_cache", &v_cache.shape, &k_cache.shape)?;
    expect("attention", "out", &out.shape, &q.shape)?;
    if kv_hd != hd || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::shape(
            "attention",
            format!(
                "q {:?} does not group over cache {:?}",
                q.shape, k_cache.shape
            ),
        ));
    }
    if start + n_q > max_ctx {
        return Err(Error::shape(
            "attention",
            format!(
                "positions up to {} exceed the cache's {max_ctx}",
                start + n_q
            ),
        ));
    }
    let p = Params {
        n_q: u32_of("attention", n_q)?,
        start: u32_of("attention", start)?,
        heads: u32_of("attention", heads)?,
        kv_heads: u32_of("attention", kv_heads)?,
        scale: 1.0 / (hd as f32).sqrt(),
        _pad: [0; 3],
    };
    let key = PipelineKey::new(ShaderFamily::Attention, "attention")
        .value("WG", WG)
        .value("HD", u32_of("attention", hd)?);
    rec.dispatch(
        &key,
        &p,
        &[
            (1, &q.buffer),
            (2, &k_cache.buffer),
            (3, &v_cache.buffer),
            (4, &out.buffer),
        ],
        [p.heads, p.n_q, 1],
    )
}
