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
    n_k: u32,
    leads: u32,
    patches: u32,
}

const WG: u32 = 64;

/// Which keys each query row sees. One attention kernel serves the decoder, the vision tower and
/// the ECG encoder; the mask is a shader define, not a copy of the kernel.
#[derive(Clone, Copy, Debug)]
pub enum AttnMask<'a> {
    /// Decoder over the KV cache: query i sits at cache row `start + i` and sees rows
    /// `0..=start + i`.
    Causal { start: usize },
    /// Non-causal within variable-length segments (vision windows, full-attention blocks):
    /// `bounds` is a u32 buffer (n_q, 2) holding each query row's key rows `[lo, hi)`.
    Segments { bounds: &'a wgpu::Buffer },
    /// ECG-JEPA: token `a = lead * patches + t` sees `b` iff they share the lead or the time patch.
    LeadOrTime { leads: usize, patches: usize },
}

/// Softmax attention, grouped-query: q (n_q, heads, head_dim) against k, v (n_k, kv_heads,
/// head_dim) (the KV cache for the decoder), scale 1/sqrt(head_dim); out has q's shape.
pub fn attention(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: AttnMask,
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
    let [n_k, kv_heads, kv_hd] = k.shape[..] else {
        return Err(Error::shape(
            "attention",
            format!(
                "k has shape {:?}, expected (keys, kv_heads, head_dim)",
                k.shape
            ),
        ));
    };
    expect("attention", "v", &v.shape, &k.shape)?;
    expect("attention", "out", &out.shape, &q.shape)?;
    if kv_hd != hd || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::shape(
            "attention",
            format!("q {:?} does not group over k {:?}", q.shape, k.shape),
        ));
    }
    let mut p = Params {
        n_q: u32_of("attention", n_q)?,
        start: 0,
        heads: u32_of("attention", heads)?,
        kv_heads: u32_of("attention", kv_heads)?,
        scale: 1.0 / (hd as f32).sqrt(),
        n_k: u32_of("attention", n_k)?,
        leads: 0,
        patches: 0,
    };
    // CPU adapters with subgroups: one subgroup per (query, KV head), vec4 loads, no barriers.
    let sg = rec.gpu.tuning.attention_sg && hd.is_multiple_of(4);
    let key = if sg {
        PipelineKey::new(ShaderFamily::Attention, "attention_sg")
            .flag("SG_LANES")
            .value("G", u32_of("attention", heads / kv_heads)?)
            .value("VPL", u32_of("attention", (hd / 4).div_ceil(8))?)
    } else {
        PipelineKey::new(ShaderFamily::Attention, "attention").value("WG", WG)
    }
    .value("HD", u32_of("attention", hd)?);
    // An f16 KV cache (Tensor::zeros_f16) is read as f16 pairs; q and out stay f32.
    let key = match (k.is_f16(), v.is_f16()) {
        (false, false) => key,
        (true, true) => key.flag("KV_F16"),
        _ => {
            return Err(Error::shape(
                "attention",
                "k and v must both be f32 or both f16".to_string(),
            ));
        }
    };
    let groups = if sg {
        [p.kv_heads, p.n_q, 1]
    } else {
        [p.heads, p.n_q, 1]
    };
    let mut buffers = vec![
        (1, &q.buffer),
        (2, &k.buffer),
        (3, &v.buffer),
        (4, &out.buffer),
    ];
    let key = match mask {
        AttnMask::Causal { start } => {
            if start + n_q > n_k {
                return Err(Error::shape(
                    "attention",
                    format!("positions up to {} exceed the cache's {n_k}", start + n_q),
                ));
            }
            p.start = u32_of("attention", start)?;
            key.flag("MASK_CAUSAL")
        }
        AttnMask::Segments { bounds } => {
            if bounds.size() < (n_q * 2 * 4) as u64 {
                return Err(Error::shape(
                    "attention",
                    format!(
                        "segment bounds hold {} bytes, {n_q} query rows need {}",
                        bounds.size(),
                        n_q * 8
                    ),
                ));
            }
            buffers.push((5, bounds));
            key.flag("MASK_SEGMENTS")
        }
        AttnMask::LeadOrTime { leads, patches } => {
            if leads == 0 || patches == 0 || leads * patches != n_q || n_q != n_k {
                return Err(Error::shape(
                    "attention",
                    format!(
                        "a lead/time mask of {leads} leads x {patches} patches needs {} queries and \
                         keys, got {n_q} and {n_k}",
                        leads * patches
                    ),
                ));
            }
            p.leads = u32_of("attention", leads)?;
            p.patches = u32_of("attention", patches)?;
            key.flag("MASK_LEAD_TIME")
        }
    };
    rec.dispatch(&key, &p, &buffers, groups)
}
