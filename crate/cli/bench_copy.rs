//! The bounds `qoqmed bench` states its speeds against, measured on the same adapter in the same
//! run: the best of several copy kernels (shaders/copy.wgsl) and the prefill GEMM's rate.

use qoqmed_engine::config::TextConfig;
use qoqmed_engine::gpu::{
    Gpu, PipelineKey, Recorder, ShaderFamily, Tensor, grid, ops, probe, read_buffer,
};
use qoqmed_engine::weights::{WeightStore, text_tensor_names};
use web_time::Instant;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

const WG: u32 = 256;

/// Wall time of `reps` dispatches recorded by `record` in one submit, per dispatch; the best of
/// three after a warm-up. `reps` grows until one submit takes ~0.2 s, so submission overhead is
/// amortised on fast adapters.
fn time_per_rep(
    gpu: &Gpu,
    probe: &wgpu::Buffer,
    record: &dyn Fn(&mut Recorder) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let run = |reps: usize| -> anyhow::Result<f64> {
        let t = Instant::now();
        let mut rec = Recorder::new(gpu);
        for _ in 0..reps {
            record(&mut rec)?;
        }
        rec.submit()?;
        pollster::block_on(read_buffer(gpu, probe, 0, 4))?;
        Ok(t.elapsed().as_secs_f64())
    };
    // The first run compiles the pipeline and warms the driver.
    let one = run(1)?;
    if one > 0.5 {
        // Slow adapters (software Vulkan at real shapes): one more run is the measurement.
        return Ok(run(1)?.min(one));
    }
    let reps = ((0.2 / one.max(1e-6)).ceil() as usize).clamp(1, 64);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(run(reps)? / reps as f64);
    }
    Ok(best)
}

/// GB/s (bytes read + bytes written) of each copy kernel over the largest buffer pair the
/// adapter binds (at most 256 MiB each).
pub fn copy_bandwidth(gpu: &Gpu) -> anyhow::Result<Vec<(String, f64)>> {
    let bytes = gpu
        .max_binding()
        .min(gpu.limits.max_buffer_size)
        .min(256 << 20)
        / 64
        * 64;
    let make = |label| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (src, dst) = (make("copy.src"), make("copy.dst"));
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    let mut out = Vec::new();
    for (name, per) in [("scalar", 0u32), ("vec4", 1), ("vec4x4", 4), ("vec4x8", 8)] {
        let (key, n, groups) = if per == 0 {
            let n = (bytes / 4) as u32;
            let key = PipelineKey::new(ShaderFamily::Copy, "copy_scalar").flag("SCALAR");
            (key, n, grid(n.div_ceil(WG), max))
        } else {
            let n = (bytes / 16) as u32;
            let key = PipelineKey::new(ShaderFamily::Copy, "copy_vec4")
                .flag("VEC4")
                .value("PER", per);
            (key, n, grid(n.div_ceil(WG * per), max))
        };
        let key = key.value("WG", WG);
        let params = Params { n, _pad: [0; 3] };
        let t = time_per_rep(gpu, &dst, &|rec| {
            rec.dispatch(&key, &params, &[(1, &src), (2, &dst)], groups)?;
            Ok(())
        })?;
        out.push((name.to_string(), 2.0 * bytes as f64 / t / 1e9));
    }
    Ok(out)
}

/// GFLOP/s of the prefill GEMM: `m` prompt rows through layer 0's gate_proj (the model's largest
/// linear) in its stored format. Returns the rate and the shape measured.
pub fn gemm_gflops(gpu: &Gpu, store: &WeightStore, m: usize) -> anyhow::Result<(f64, String)> {
    let info = store.find_any(&text_tensor_names("layers.0.mlp.gate_proj.weight"))?;
    let (n, k) = (info.shape[0], info.shape[1]);
    let w = pollster::block_on(qoqmed_engine::weights::upload(gpu, store, info))?;
    let x = Tensor::from_f32(gpu, &vec![0.01; m * k], &[m, k], "gemm.x")?;
    let y = Tensor::zeros(gpu, &[m, n], "gemm.y")?;
    let t = time_per_rep(gpu, &y.buffer, &|rec| {
        ops::linear(rec, &x, &w, None, &y)?;
        Ok(())
    })?;
    Ok((
        2.0 * (m * n * k) as f64 / t / 1e9,
        format!("{m}x{k} . ({n}x{k})^T {}", info.format),
    ))
}

/// The best GFLOP/s of a plain f32 matmul at the prefill GEMM's shape over every matmul variant
/// this adapter runs (core-kernels' probe): the bound the prefill GEMM is compared with.
pub fn matmul_peak_gflops(gpu: &Gpu, cfg: &TextConfig, m: usize) -> anyhow::Result<(f64, String)> {
    let (n, k) = (cfg.intermediate_size, cfg.hidden_size);
    let (g, variant) = pollster::block_on(probe::matmul_peak_gflops(gpu, m, n, k, 1))?;
    Ok((g, format!("{m}x{k} . ({n}x{k})^T f32, {variant}")))
}
