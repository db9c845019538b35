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
/// matmul_tiled: tokens and weight rows per invocation (the workgroup is 16 x 16; 4 or 8 each).
const TILED_TM: u32 = 4;
const TILED_TN: u32 = 8;
/// matmul_rows: invocations per workgroup; each holds R weight rows for TM tokens.
const ROWS_WG: u32 = 64;

/// Whether matmul_rows runs `m` tokens on this adapter. Without the subgroup broadcast every lane
/// loads x itself, which pays off in decode (SwiftShader in Chromium, q4 2048 x 2048 GEMV: 14 ms
/// vs 83 ms split-K) but not in prefill, where its big unrolled tiles also take SwiftShader
/// seconds to compile: prefill runs the tiled GEMM there (measured: docs/performance-notes.md).
fn rows_for(tuning: &crate::gpu::Tuning, m: usize) -> bool {
    tuning.matmul_rows && (tuning.rows_broadcast || m <= 4)
}

/// (R, TM) of the matmul_rows variant for `m` tokens over `n` rows: enough workgroups to keep
/// every core busy in decode, a register tile that pays for its loads in prefill.
fn rows_tile(m: usize, n: usize) -> (u32, u32) {
    match m {
        1 => (
            match n {
                n if n >= 64 * 4 * 8 => 4,
                n if n >= 64 * 2 * 8 => 2,
                _ => 1,
            },
            1,
        ),
        2 => (2, 2),
        3 | 4 => (2, 4),
        5..=8 => (4, 8),
        _ => (4, 16),
    }
}

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
    let m = x.numel() / x.shape.last().copied().unwrap_or(1).max(1);
    let rows_kernels = rows_for(&rec.gpu.tuning, m);
    linear_variant(rec, x, w, bias, y, rows_kernels)
}

/// [`linear`] with the variant family given: `rows_kernels` picks matmul_rows where the shape
/// allows (the adapter must support it), otherwise the portable GEMV / GEMM.
pub(crate) fn linear_variant(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Weight,
    bias: Option<&Weight>,
    y: &Tensor,
    rows_kernels: bool,
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
        // CPU adapters: matmul_rows; elsewhere GEMV for one token, tiled GEMM for more.
        let (key, groups) = if rows_kernels && k.is_multiple_of(32) {
            let (r, tm) = rows_tile(m, rows);
            let key = PipelineKey::new(ShaderFamily::MatmulRows, "matmul_rows")
                .value("WG", ROWS_WG)
                .value("R", r)
                .value("TM", tm)
                .value("NW", 1);
            let key = if rec.gpu.tuning.rows_broadcast {
                key
            } else {
                key.flag("NO_SG")
            };
            (
                key,
                [params.n.div_ceil(ROWS_WG * r), params.m.div_ceil(tm), 1],
            )
        } else if m == 1 && k > NARROW_K && k.is_multiple_of(32) {
            let key = PipelineKey::new(ShaderFamily::MatmulRows, "matmul_splitk")
                .flag("SPLITK")
                .value("WG", VEC_WG)
                .value("R", VEC_ROWS)
                .value("NW", 1);
            let sg =
                rec.gpu.tuning.gemv_subgroup && rec.gpu.features.contains(wgpu::Features::SUBGROUP);
            let key = if sg { key.flag("SG_REDUCE") } else { key };
            (key, grid(params.n.div_ceil(VEC_ROWS), max))
        } else if m == 1 && k <= NARROW_K {
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
        } else if k.is_multiple_of(4) {
            let key = PipelineKey::new(ShaderFamily::Matmul, "matmul_tiled")
                .flag("TILED")
                .value("TM", TILED_TM)
                .value("TN", TILED_TN)
                .value("XV", TILED_TM / 4)
                .value("WV", TILED_TN / 4);
            let f16 =
                rec.gpu.tuning.gemm_f16 && rec.gpu.features.contains(wgpu::Features::SHADER_F16);
            let key = if f16 { key.flag("F16_MATH") } else { key };
            let groups = [
                params.n.div_ceil(16 * TILED_TN),
                params.m.div_ceil(16 * TILED_TM),
                1,
            ];
            (key, groups)
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

/// out (m, n) = silu(x gate^T) * (x up^T): the first half of a SiLU-gated MLP, gate and up (n, k)
/// of one format. Where matmul_rows runs it is one fused pass over x (GATE_UP: each lane holds
/// gate and up rows, x is spread once for both); elsewhere two linears into `gate_out` / `up_out`
/// (m, n) and silu_mul.
pub fn gate_up_silu(
    rec: &mut Recorder,
    x: &Tensor,
    gate: &Weight,
    up: &Weight,
    out: &Tensor,
    gate_out: &Tensor,
    up_out: &Tensor,
) -> Result<()> {
    let same = gate.shape == up.shape
        && gate.format == up.format
        && gate
            .parts
            .iter()
            .map(|p| &p.rows)
            .eq(up.parts.iter().map(|p| &p.rows));
    let [n, k] = gate.shape[..] else {
        return Err(Error::shape(
            "gate_up_silu",
            format!(
                "{} has shape {:?}, expected (out, in)",
                gate.name, gate.shape
            ),
        ));
    };
    let m = x.numel() / k.max(1);
    if !same || !rows_for(&rec.gpu.tuning, m) || !k.is_multiple_of(32) {
        linear(rec, x, gate, None, gate_out)?;
        linear(rec, x, up, None, up_out)?;
        return super::silu_mul(rec, gate_out, up_out, out);
    }
    if x.shape.last() != Some(&k) {
        return Err(Error::shape(
            "gate_up_silu",
            format!(
                "x has shape {:?} but {} takes {k} inputs",
                x.shape, gate.name
            ),
        ));
    }
    expect("gate_up_silu", "out", &[out.numel()], &[m * n])?;
    for (pg, pu) in gate.parts.iter().zip(&up.parts) {
        let rows = pg.rows.len();
        // Two rows (gate and up) per pair: half matmul_rows' pair count for the same registers.
        let (r, tm) = rows_tile(m, rows);
        let r = (r / 2).max(1);
        let params = Params {
            m: u32_of("gate_up_silu", m)?,
            n: u32_of("gate_up_silu", rows)?,
            k: u32_of("gate_up_silu", k)?,
            y_stride: u32_of("gate_up_silu", n)?,
            col0: u32_of("gate_up_silu", pg.rows.start)?,
            _pad: [0; 3],
        };
        let key = PipelineKey::new(ShaderFamily::MatmulRows, "matmul_rows")
            .value("WG", ROWS_WG)
            .value("R", r)
            .value("TM", tm)
            .value("NW", 2)
            .flag("GATE_UP");
        let key = if rec.gpu.tuning.rows_broadcast {
            key
        } else {
            key.flag("NO_SG")
        };
        let key = with_format(key, gate.format);
        let mut buffers = vec![
            (1, &x.buffer),
            (2, &pg.values),
            (3, &out.buffer),
            (6, &pu.values),
        ];
        if let (Some(sg), Some(su)) = (&pg.scales, &pu.scales) {
            buffers.push((5, sg));
            buffers.push((7, su));
        }
        let groups = [params.n.div_ceil(ROWS_WG * r), params.m.div_ceil(tm), 1];
        rec.dispatch(&key, &params, &buffers, groups)?;
    }
    Ok(())
}
