use crate::error::{Error, Result};
use crate::gpu::recorder::grid;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    src_offset: u32,
    dst_offset: u32,
    _pad: u32,
}

const WG: u32 = 256;

fn groups(rec: &Recorder, n: u32) -> [u32; 3] {
    grid(
        n.div_ceil(WG),
        rec.gpu.limits.max_compute_workgroups_per_dimension,
    )
}

/// a += b (residual add).
pub fn add_inplace(rec: &mut Recorder, a: &Tensor, b: &Tensor) -> Result<()> {
    expect("add", "b", &b.shape, &a.shape)?;
    let n = u32_of("add", a.numel())?;
    let key = PipelineKey::new(ShaderFamily::Elementwise, "add_inplace")
        .flag("ADD")
        .value("WG", WG);
    let p = Params {
        n,
        src_offset: 0,
        dst_offset: 0,
        _pad: 0,
    };
    rec.dispatch(&key, &p, &[(1, &a.buffer), (2, &b.buffer)], groups(rec, n))
}

/// out = silu(gate) * up, the gated MLP's activation.
pub fn silu_mul(rec: &mut Recorder, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<()> {
    expect("silu_mul", "up", &up.shape, &gate.shape)?;
    expect("silu_mul", "out", &out.shape, &gate.shape)?;
    let n = u32_of("silu_mul", gate.numel())?;
    let key = PipelineKey::new(ShaderFamily::Elementwise, "silu_mul")
        .flag("SILU_MUL")
        .value("WG", WG);
    let p = Params {
        n,
        src_offset: 0,
        dst_offset: 0,
        _pad: 0,
    };
    rec.dispatch(
        &key,
        &p,
        &[(1, &gate.buffer), (2, &up.buffer), (3, &out.buffer)],
        groups(rec, n),
    )
}

/// out = GELU(x) with the exact erf form (PyTorch's default `nn.GELU()`).
pub fn gelu(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    expect("gelu", "out", &out.shape, &x.shape)?;
    let n = u32_of("gelu", x.numel())?;
    let key = PipelineKey::new(ShaderFamily::Elementwise, "gelu")
        .flag("GELU")
        .value("WG", WG);
    let p = Params {
        n,
        src_offset: 0,
        dst_offset: 0,
        _pad: 0,
    };
    rec.dispatch(
        &key,
        &p,
        &[(1, &x.buffer), (2, &out.buffer)],
        groups(rec, n),
    )
}

/// dst[dst_offset..][..n] = src[src_offset..][..n], in elements; a dispatch, so it stays inside the
/// step's compute pass. An f16 `dst` (Tensor::zeros_f16, the f16 KV cache) is written rounded to
/// f16, with `dst_offset` and `n` even.
pub fn copy(
    rec: &mut Recorder,
    src: &Tensor,
    src_offset: usize,
    dst: &Tensor,
    dst_offset: usize,
    n: usize,
) -> Result<()> {
    if src_offset + n > src.numel() || dst_offset + n > dst.numel() {
        return Err(Error::shape(
            "copy",
            format!(
                "{n} values from {src_offset} of {:?} to {dst_offset} of {:?}",
                src.shape, dst.shape
            ),
        ));
    }
    let f16 = dst.is_f16();
    if f16 && (!dst_offset.is_multiple_of(2) || !n.is_multiple_of(2)) {
        return Err(Error::shape(
            "copy",
            format!("into an f16 tensor the offset ({dst_offset}) and count ({n}) must be even"),
        ));
    }
    let key = if f16 {
        PipelineKey::new(ShaderFamily::Elementwise, "copy_f16").flag("COPY_F16")
    } else {
        PipelineKey::new(ShaderFamily::Elementwise, "copy").flag("COPY")
    }
    .value("WG", WG);
    let p = Params {
        n: u32_of("copy", n)?,
        src_offset: u32_of("copy", src_offset)?,
        dst_offset: u32_of("copy", dst_offset)?,
        _pad: 0,
    };
    let threads = if f16 { p.n / 2 } else { p.n };
    rec.dispatch(
        &key,
        &p,
        &[(1, &src.buffer), (2, &dst.buffer)],
        groups(rec, threads),
    )
}

/// out[0] = argmax of logits row `row` (logits (rows, n)); `out` is a u32 storage buffer.
pub fn argmax(rec: &mut Recorder, logits: &Tensor, row: usize, out: &wgpu::Buffer) -> Result<()> {
    let n = *logits.shape.last().unwrap_or(&0);
    if n == 0 || (row + 1) * n > logits.numel() {
        return Err(Error::shape(
            "argmax",
            format!("row {row} of logits {:?}", logits.shape),
        ));
    }
    let key = PipelineKey::new(ShaderFamily::Argmax, "argmax").value("WG", 256);
    let p = Params {
        n: u32_of("argmax", n)?,
        src_offset: u32_of("argmax", row * n)?,
        dst_offset: 0,
        _pad: 0,
    };
    rec.dispatch(&key, &p, &[(1, &logits.buffer), (2, out)], [1, 1, 1])
}
