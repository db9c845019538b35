use crate::error::{Error, Result};
use crate::gpu::recorder::grid;
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
    splits: u32,
    _pad: [u32; 3],
}

/// attention_tiled: invocations per workgroup (its BQ pairs x 64 / BQ invocations per pair).
const TILED_WG: u64 = 64;
/// Split a block's keys over more workgroups while fewer than this many would run: enough to keep
/// a GPU's cores busy when one query row (decode) meets a long cache.
const SPLIT_TARGET_WGS: usize = 128;

/// (query pairs per workgroup, keys per tile) of attention_tiled for `pairs` (query row, head)
/// pairs per KV head: the largest key tile whose workgroup memory fits the adapter.
fn tile_shape(pairs: usize, hd: usize, max_bytes: u64, lead_time: bool) -> Option<(u32, u32)> {
    let bq: u32 = match pairs {
        0..=4 => 4,
        5..=8 => 8,
        // Lead/time: a block of q rows of one lead shares that lead's keys but sees a different
        // key per other lead each; small blocks scan fewer keys that no query of theirs sees.
        _ if lead_time => 4,
        _ => 16,
    };
    let hd4 = hd.div_ceil(4) as u64;
    [16u32, 8, 4].into_iter().find_map(|bk| {
        let bk64 = bk as u64;
        // kv tile + partial dots + scores + key rows + query rows (and segment bounds)
        let bytes = bk64 * hd4 * 16
            + TILED_WG * bk64 * 4
            + bq as u64 * bk64 * 4
            + 2 * bk64 * 4
            + 3 * bq as u64 * 4;
        (bytes <= max_bytes).then_some((bq, bk))
    })
}

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
        splits: 1,
        _pad: [0; 3],
    };
    // CPU adapters with subgroups: one subgroup per (query, KV head), vec4 loads, no barriers.
    // Everything else: the tiled kernel, its keys split over workgroups where it would run on
    // too few of them (decode), then a merge pass.
    let sg = rec.gpu.tuning.attention_sg && hd.is_multiple_of(4);
    let group = heads / kv_heads;
    let mut tiled = None;
    let key = if sg {
        PipelineKey::new(ShaderFamily::Attention, "attention_sg")
            .flag("SG_LANES")
            .value("G", u32_of("attention", group)?)
            .value("VPL", u32_of("attention", (hd / 4).div_ceil(8))?)
    } else {
        let max_bytes = rec.gpu.limits.max_compute_workgroup_storage_size as u64;
        let (bq, bk) = tile_shape(
            n_q * group,
            hd,
            max_bytes,
            matches!(mask, AttnMask::LeadOrTime { .. }),
        )
        .ok_or_else(|| {
            Error::GpuLimit(format!(
                "attention with head_dim {hd} needs more than the adapter's {max_bytes} bytes of \
                 workgroup memory"
            ))
        })?;
        let blocks = (n_q * group).div_ceil(bq as usize);
        let keys = match mask {
            AttnMask::Causal { start } => start + n_q,
            _ => n_k,
        };
        let wgs = kv_heads * blocks;
        let splits = if wgs >= SPLIT_TARGET_WGS {
            1
        } else {
            // At least `attention_split_keys` keys per split, so the merge pass stays cheap.
            let min_keys = rec.gpu.tuning.attention_split_keys.max(1) as usize;
            (SPLIT_TARGET_WGS / wgs).min(keys.div_ceil(min_keys)).max(1)
        };
        p.splits = u32_of("attention", splits)?;
        tiled = Some((blocks, splits));
        let key = PipelineKey::new(ShaderFamily::Attention, "attention_tiled")
            .flag("TILED")
            .value("G", u32_of("attention", group)?)
            .value("BQ", bq)
            .value("BK", bk);
        let key = if hd.is_multiple_of(4) {
            key.flag("VEC4")
        } else {
            key
        };
        if splits > 1 { key.flag("SPLIT") } else { key }
    }
    .value("HD", u32_of("attention", hd)?);
    // An f16 KV cache (Tensor::zeros_f16) is read as f16 pairs; q and out stay f32.
    let kv_f16 = match (k.is_f16(), v.is_f16()) {
        (false, false) => false,
        (true, true) => true,
        _ => {
            return Err(Error::shape(
                "attention",
                "k and v must both be f32 or both f16".to_string(),
            ));
        }
    };
    let key = if kv_f16 { key.flag("KV_F16") } else { key };
    let mut buffers = vec![(1, &q.buffer), (2, &k.buffer), (3, &v.buffer)];
    let mask_flag = match mask {
        AttnMask::Causal { start } => {
            if start + n_q > n_k {
                return Err(Error::shape(
                    "attention",
                    format!("positions up to {} exceed the cache's {n_k}", start + n_q),
                ));
            }
            p.start = u32_of("attention", start)?;
            "MASK_CAUSAL"
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
            "MASK_SEGMENTS"
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
            "MASK_LEAD_TIME"
        }
    };
    let key = key.flag(mask_flag);
    let Some((blocks, splits)) = tiled else {
        buffers.push((4, &out.buffer));
        return rec.dispatch(&key, &p, &buffers, [p.kv_heads, p.n_q, 1]);
    };
    let groups = [p.kv_heads, u32_of("attention", blocks)?, p.splits];
    if splits == 1 {
        buffers.push((4, &out.buffer));
        return rec.dispatch(&key, &p, &buffers, groups);
    }
    // (splits, n_q, heads, hd) partial outputs + (splits, n_q, heads, 2) max and sum.
    let part_bytes = (splits * n_q * heads * (hd + 2) * 4) as u64;
    let part = rec.gpu.scratch(part_bytes)?;
    buffers.push((6, &part));
    rec.dispatch(&key, &p, &buffers, groups)?;
    let merge = PipelineKey::new(ShaderFamily::Attention, "attention_merge")
        .flag("MERGE")
        .value("HD", u32_of("attention", hd)?);
    let max = rec.gpu.limits.max_compute_workgroups_per_dimension;
    let total = u32_of("attention", n_q * heads * hd)?;
    rec.dispatch(
        &merge,
        &p,
        &[(4, &out.buffer), (6, &part)],
        grid(total.div_ceil(64), max),
    )
}
