//! Ops of `shaders/vision.wgsl`: the vision tower's qkv split + 2-D rope, and the row gather
//! (un-permute of the merger's window order, feature injection into the prompt).

use crate::error::{Error, Result};
use crate::gpu::recorder::grid;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: u32,
    b: u32,
    c: u32,
    _pad: u32,
}

const WG: u32 = 64;
/// Row index that leaves the destination row untouched in [`gather_rows`].
pub const KEEP_ROW: u32 = u32::MAX;

fn flat_groups(rec: &Recorder, threads: u32) -> [u32; 3] {
    grid(
        threads.div_ceil(WG),
        rec.gpu.limits.max_compute_workgroups_per_dimension,
    )
}

/// Splits `qkv` (n, 3 * heads * hd) into q, k, v (n, heads, hd), rotating q and k with the
/// per-row tables cos / sin (n, hd / 2) (rotate-half convention).
pub fn qkv_rope(
    rec: &mut Recorder,
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> Result<()> {
    let [n, heads, hd] = q.shape[..] else {
        return Err(Error::shape(
            "qkv_rope",
            format!(
                "q has shape {:?}, expected (rows, heads, head_dim)",
                q.shape
            ),
        ));
    };
    if hd % 2 != 0 {
        return Err(Error::shape("qkv_rope", format!("head_dim {hd} is odd")));
    }
    expect("qkv_rope", "qkv", &qkv.shape, &[n, 3 * heads * hd])?;
    expect("qkv_rope", "k", &k.shape, &q.shape)?;
    expect("qkv_rope", "v", &v.shape, &q.shape)?;
    expect("qkv_rope", "cos", &cos.shape, &[n, hd / 2])?;
    expect("qkv_rope", "sin", &sin.shape, &[n, hd / 2])?;
    let p = Params {
        a: u32_of("qkv_rope", n)?,
        b: u32_of("qkv_rope", heads)?,
        c: u32_of("qkv_rope", hd)?,
        _pad: 0,
    };
    let threads = u32_of("qkv_rope", n * heads * hd / 2)?;
    let key = PipelineKey::new(ShaderFamily::Vision, "qkv_rope")
        .flag("QKV_ROPE")
        .value("WG", WG);
    rec.dispatch(
        &key,
        &p,
        &[
            (1, &qkv.buffer),
            (2, &cos.buffer),
            (3, &sin.buffer),
            (4, &q.buffer),
            (5, &k.buffer),
            (6, &v.buffer),
        ],
        flat_groups(rec, threads),
    )
}

/// dst row i = src row `index[i]` for the first `n` rows of dst; [`KEEP_ROW`] leaves row i as it
/// is. `index` is a u32 buffer of at least n entries. src is (src_rows, width), dst (>= n, width).
pub fn gather_rows(
    rec: &mut Recorder,
    src: &Tensor,
    index: &wgpu::Buffer,
    n: usize,
    dst: &Tensor,
) -> Result<()> {
    let width = *src.shape.last().unwrap_or(&0);
    if width == 0 || dst.shape.last() != Some(&width) || dst.numel() < n * width {
        return Err(Error::shape(
            "gather_rows",
            format!(
                "{n} rows of {:?} into {:?}: row widths differ or dst is short",
                src.shape, dst.shape
            ),
        ));
    }
    if index.size() < (n * 4) as u64 {
        return Err(Error::shape(
            "gather_rows",
            format!("index holds {} bytes for {n} rows", index.size()),
        ));
    }
    let p = Params {
        a: u32_of("gather_rows", n)?,
        b: u32_of("gather_rows", width)?,
        c: u32_of("gather_rows", src.numel() / width)?,
        _pad: 0,
    };
    let key = PipelineKey::new(ShaderFamily::Vision, "gather_rows")
        .flag("GATHER_ROWS")
        .value("WG", WG);
    let threads = u32_of("gather_rows", n * width)?;
    rec.dispatch(
        &key,
        &p,
        &[(1, &src.buffer), (2, index), (3, &dst.buffer)],
        flat_groups(rec, threads),
    )
}

/// A storage buffer holding `data` (index tables, segment bounds); at least one word long.
pub fn u32_buffer(gpu: &crate::gpu::Gpu, data: &[u32], label: &str) -> wgpu::Buffer {
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (data.len().max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    if !data.is_empty() {
        gpu.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
    }
    buffer
}
