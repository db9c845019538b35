use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    heads: u32,
    head_dim: u32,
    dst_offset: u32,
}

const WG: u32 = 64;

fn check(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(usize, usize, usize)> {
    let [n, heads, head_dim] = x.shape[..] else {
        return Err(Error::shape(
            "rope",
            format!(
                "x has shape {:?}, expected (tokens, heads, head_dim)",
                x.shape
            ),
        ));
    };
    if head_dim % 2 != 0 {
        return Err(Error::shape("rope", format!("head_dim {head_dim} is odd")));
    }
    expect("rope", "cos", &cos.shape, &[n, head_dim / 2])?;
    expect("rope", "sin", &sin.shape, &[n, head_dim / 2])?;
    Ok((n, heads, head_dim))
}

fn params(n: usize, heads: usize, head_dim: usize, dst_offset: usize) -> Result<Params> {
    Ok(Params {
        n_tokens: u32_of("rope", n)?,
        heads: u32_of("rope", heads)?,
        head_dim: u32_of("rope", head_dim)?,
        dst_offset: u32_of("rope", dst_offset)?,
    })
}

/// Rotates x (tokens, heads, head_dim) in place with per-token tables cos/sin (tokens, head_dim/2).
pub fn rope_inplace(rec: &mut Recorder, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<()> {
    let (n, heads, hd) = check(x, cos, sin)?;
    let p = params(n, heads, hd, 0)?;
    let key = PipelineKey::new(ShaderFamily::Rope, "rope")
        .flag("IN_PLACE")
        .value("WG", WG);
    let groups = [(hd as u32 / 2).div_ceil(WG), p.heads, p.n_tokens];
    rec.dispatch(
        &key,
        &p,
        &[(1, &cos.buffer), (2, &sin.buffer), (3, &x.buffer)],
        groups,
    )
}

/// Rotates k (tokens, kv_heads, head_dim) and writes it into `cache` (max_ctx, kv_heads, head_dim)
/// at row `start`.
pub fn rope_to_cache(
    rec: &mut Recorder,
    k: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    cache: &Tensor,
    start: usize,
) -> Result<()> {
    let (n, heads, hd) = check(k, cos, sin)?;
    let [max_ctx, c_heads, c_hd] = cache.shape[..] else {
        return Err(Error::shape(
            "rope_to_cache",
            format!("cache has shape {:?}", cache.shape),
        ));
    };
    if c_heads != heads || c_hd != hd || start + n > max_ctx {
        return Err(Error::shape(
            "rope_to_cache",
            format!(
                "{n} rows at {start} of k {:?} do not fit cache {:?}",
                k.shape, cache.shape
            ),
        ));
    }
    let p = params(n, heads, hd, start * heads * hd)?;
    // An f16 cache (Tensor::zeros_f16) gets whole words: one invocation per two rotation pairs.
    let (key, per) = if cache.is_f16() {
        if hd % 4 != 0 {
            return Err(Error::shape(
                "rope_to_cache",
                format!("an f16 cache needs head_dim % 4 == 0, got {hd}"),
            ));
        }
        let key = PipelineKey::new(ShaderFamily::Rope, "rope_f16").flag("DST_F16");
        (key, 4)
    } else {
        (PipelineKey::new(ShaderFamily::Rope, "rope"), 2)
    };
    let key = key.value("WG", WG);
    let groups = [(hd as u32 / per).div_ceil(WG), p.heads, p.n_tokens];
    rec.dispatch(
        &key,
        &p,
        &[
            (1, &cos.buffer),
            (2, &sin.buffer),
            (3, &k.buffer),
            (4, &cache.buffer),
        ],
        groups,
    )
}
