use crate::error::{Error, Result};
use crate::gpu::recorder::grid;
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight, dtype_define};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

const VEC_WG: u32 = 64;
/// Up to this many inputs a GEMV output is one thread's loop: splitting k across a workgroup only
/// pays for its reduction when k is long.
const NARROW_K: usize = 128;
const VEC_ROWS: u32 = 4;
const MAT_TILE: u32 = 64;

/// y (m, n) = x (m, k) W^T + b, with W (n, k) as stored in the checkpoint. One token uses the
/// GEMV kernel, more use the tiled GEMM.
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
    if let Some(b) = bias {
        expect("linear", &b.name, &b.shape, &[n])?;
        if b.dtype != w.dtype {
            return Err(Error::shape(
                "linear",
                format!(
                    "bias {} is {:?} but weight is {:?}",
                    b.name, b.dtype, w.dtype
                ),
            ));
        }
    }
    let params = Params {
        m: u32_of("linear", m)?,
        n: u32_of("linear", n)?,
        k: u32_of("linear", k)?,
        _pad: 0,
    };
    // GEMV for one token (z = 0 is its row), tiled GEMM for more.
    let max = rec.gpu.limits.max_compute_workgroups_per_dimension;
    let (key, groups) = if m == 1 && k <= NARROW_K {
        let key = PipelineKey::new(ShaderFamily::Matmul, "matmul_vec_narrow").flag("VEC_NARROW");
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
    let key = key.flag(dtype_define(w.dtype));
    match bias {
        Some(b) => {
            let key = key.flag("BIAS");
            rec.dispatch(
                &key,
                &params,
                &[
                    (1, &x.buffer),
                    (2, &w.buffer),
                    (3, &y.buffer),
                    (4, &b.buffer),
                ],
                groups,
            )
        }
        None => rec.dispatch(
            &key,
            &params,
            &[(1, &x.buffer), (2, &w.buffer), (3, &y.buffer)],
            groups,
        ),
    }
}
