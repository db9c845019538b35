//! Speed probes for `qoqmed bench` and the kernel lab: GFLOP/s of the engine's own linear
//! kernels on this adapter, measured the same way on native and web (async, one submit per run).

use web_time::Instant;

use crate::error::Result;
use crate::quant;

use super::{Gpu, Recorder, Tensor, Weight, WeightFormat, ops, read_buffer};

/// Deterministic values in [-1, 1) (xorshift): probes need data, not statistics.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// A (rows, k) weight of small random values in `format`.
pub fn random_weight(
    gpu: &Gpu,
    name: &str,
    format: WeightFormat,
    rows: usize,
    k: usize,
    seed: u32,
) -> Result<Weight> {
    let w = Weight::alloc(gpu, name, format, &[rows, k])?;
    // In slices of rows, so a large probe weight never exists whole in f32 on the CPU.
    let step = (4 << 20) / k.max(1) / w.write_align_rows() * w.write_align_rows();
    for r0 in (0..rows).step_by(step.max(w.write_align_rows())) {
        let r1 = (r0 + step.max(1)).min(rows);
        let v: Vec<f32> = values((r1 - r0) * k, seed ^ r0 as u32)
            .iter()
            .map(|v| v * 0.05)
            .collect();
        let planes = quant::quantize(format, &v, k)?;
        w.write_rows(gpu, r0, &planes.values, planes.scales.as_deref())?;
    }
    Ok(w)
}

/// Seconds of one `linear` of x (m, k) by `w`, best of `reps` runs after a warm-up (which also
/// compiles the pipeline); `rows_kernels` as in `ops::linear`'s variant choice.
async fn time_linear(
    gpu: &Gpu,
    m: usize,
    w: &Weight,
    reps: usize,
    rows_kernels: bool,
) -> Result<f64> {
    let k = w.row_len();
    let x = Tensor::from_f32(gpu, &values(m * k, 7), &[m, k], "probe.x")?;
    let y = Tensor::zeros(gpu, &[m, w.rows()], "probe.y")?;
    let mut best = f64::INFINITY;
    for i in 0..reps + 1 {
        let t = Instant::now();
        let mut rec = Recorder::new(gpu);
        ops::matmul::linear_variant(&mut rec, &x, w, None, &y, rows_kernels)?;
        rec.submit()?;
        read_buffer(gpu, &y.buffer, 0, 4).await?;
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}

/// GFLOP/s (2 m n k per run) of `ops::linear` with a random (n, k) weight in `format`, as the
/// model runs it on this adapter: the prefill GEMM for m > 1, the decode GEMV for m = 1.
pub async fn linear_gflops(
    gpu: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    format: WeightFormat,
    reps: usize,
) -> Result<f64> {
    let w = random_weight(gpu, "probe.w", format, n, k, 1)?;
    let s = time_linear(gpu, m, &w, reps, gpu.tuning.matmul_rows).await?;
    Ok(2.0 * (m * n * k) as f64 / s / 1e9)
}

/// The best GFLOP/s of a plain f32 matmul of this shape over every matmul variant this adapter
/// runs, with the winner's name: the bound a quantized GEMM is compared with.
pub async fn matmul_peak_gflops(
    gpu: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    reps: usize,
) -> Result<(f64, &'static str)> {
    let w = random_weight(gpu, "probe.w", WeightFormat::F32, n, k, 2)?;
    let mut best = (0.0, "portable");
    let variants: &[(bool, &str)] = if gpu.tuning.matmul_rows {
        &[(false, "portable"), (true, "matmul_rows")]
    } else {
        &[(false, "portable")]
    };
    for &(rows, name) in variants {
        let s = time_linear(gpu, m, &w, reps, rows).await?;
        let g = 2.0 * (m * n * k) as f64 / s / 1e9;
        if g > best.0 {
            best = (g, name);
        }
    }
    Ok(best)
}
