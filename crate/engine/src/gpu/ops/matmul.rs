use crate::error::{Error, Result};
use crate::gpu::recorder::grid;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight, WeightFormat};

use super::{expect, u32_of, with_format};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    y_stride: u32,
    col0: u32,
    _pad: [u32; 3],
}

const VEC_WG: u32 = 64;
/// Up to this many inputs a GEMV output is one thread's loop: splitting k across a workgroup only
/// pays for its reduction when k is long.
const NARROW_K: usize = 128;
const VEC_ROWS: u32 = 4;
const MAT_TILE: u32 = 64;

/// The define selecting a bias's loader (biases are never quantized).
fn bias_define(b: &Weight) -> Result<&'static str> {
    match b.format {
        WeightFormat::F32 => Ok("B_F32"),
        WeightFormat::F16 => Ok("B_F16"),
        WeightFormat::BF16 => Ok("B_BF16"),
        f => Err(Error::shape(
            "linear",
            format!("bias {} is {f}; biases stay f32/f16/bf16", b.name),
        )),
    }
}

/// y (m, n) = x (m, k) W^T + b, with W (n, k) as stored in the checkpoint, in any format and split
/// into any number of row parts (each part writes its own columns of y). One token uses the GEMV
/// kernels, more use the tiled GEMM.
pub fn linear(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Weight,
    bias: Option<&Weight>,
    y: &Tensor,
) -> Result<()> {
    let [n, k] = w.shape[..] else {
        return Err(Error::shape(
            "linear",
            format!(
                "weight {} has shape {:?}, expected (out, in)",
                w.name, w.shape
            ),
        ));
    };
    if k == 0 || x.shape.last() != Some(&k) {
        return Err(Error::shape(
            "linear",
            format!("x has shape {:?} but {} takes {k} inputs", x.shape, w.name),
        ));
    }
    let m = x.numel() / k;
    expect("linear", "y", &[y.numel()], &[m * n])?;
    let bias = match bias {
        Some(b) => {
            expect("linear", &b.name, &b.shape, &[n])?;
            Some((b.single_part("linear")?, bias_define(b)?))
        }
        None => None,
    };
    let max = rec.gpu.limits.max_compute_workgroups_per_dimension;
    for part in &w.parts {
        let rows = part.rows.len();
        let params = Params {
            m: u32_of("linear", m)?,
            n: u32_of("linear", rows)?,
            k: u32_of("linear", k)?,
            y_stride: u32_of("linear", n)?,
            col0: u32_of("linear", part.rows.start)?,
            _pad: [0; 3],
        };
        // GEMV for one token, tiled GEMM for more.
        let (key, groups) = if m == 1 && k <= NARROW_K {
            let key =
                PipelineKey::new(ShaderFamily::Matmul, "matmul_vec_narrow").flag("VEC_NARROW");
            (
                key.value("WG", VEC_WG),
                grid(params.n.div_ceil(VEC_WG), max),
            )
        } else if m == 1 {
            let key = PipelineKey::new(ShaderFamily::Matmul, "matmul_vec").flag("VEC");
            let key = key.value("WG", VEC_WG).value("ROWS", VEC_ROWS);
            (key, grid(params.n.div_ceil(VEC_ROWS), max))
        } else {
            let key = PipelineKey::new(ShaderFamily::Matmul, "matmul_mat").flag("MAT");
            let groups = [params.n.div_ceil(MAT_TILE), params.m.div_ceil(MAT_TILE), 1];
            (key.value("WG", 256), groups)
        };
        let mut key = with_format(key, w.format);
        let mut buffers = vec![(1, &x.buffer), (2, &part.values), (3, &y.buffer)];
        if let Some((b, define)) = bias {
            key = key.flag("BIAS").flag(define);
            buffers.push((4, &b.values));
        }
        if let Some(s) = &part.scales {
            buffers.push((5, s));
        }
        rec.dispatch(&key, &params, &buffers, groups)?;
    }
    Ok(())
}
