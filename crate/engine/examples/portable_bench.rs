//! The portable kernel tier (what browsers and GPUs run) timed op by op on this adapter: attention
//! for decode (one query over a long cache), prefill, the vision tower and the ECG encoder, the
//! prefill GEMM and the decode GEMV. Forces `Tuning::portable()` (plus the flags given), prints
//! wall and CPU ms, asserts nothing.
//!
//! cargo run --release -p qoqmed-engine --example portable_bench -- [--only attn|gemm|gemv|qkv]
//!     [--m 64] [--reps 3] [--subgroup] [--f16]
//!
//! "cpu ms" is the CPU time of all this process's threads (Linux /proc): on a software adapter it
//! is the work done, independent of how busy the machine is; wall ms depends on the neighbours.

use qoqmed_engine::gpu::ops::AttnMask;
use qoqmed_engine::gpu::probe::random_weight;
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Tuning, WeightFormat, ops, read_buffer};
use web_time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// (wall ms, cpu ms) of `op` in one submit, best of `reps` after a warm-up.
fn time(gpu: &Gpu, reps: usize, sync: &Tensor, op: &dyn Fn(&mut Recorder)) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::INFINITY);
    for i in 0..reps + 1 {
        let (t, c) = (Instant::now(), cpu_ns());
        let mut rec = Recorder::new(gpu);
        op(&mut rec);
        rec.submit().unwrap();
        pollster::block_on(read_buffer(gpu, &sync.buffer, 0, 4)).unwrap();
        if i > 0 {
            best.0 = best.0.min(t.elapsed().as_secs_f64() * 1e3);
            best.1 = best.1.min((cpu_ns() - c) as f64 * 1e-6);
        }
    }
    best
}

fn filled(gpu: &Gpu, shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i + seed) * 7919 % 1013) as f32 / 506.0) - 1.0)
        .collect();
    Tensor::from_f32(gpu, &v, shape, "t").unwrap()
}

fn attention(gpu: &Gpu, reps: usize) {
    println!("\nattention                          n_q   n_k  heads  hd    wall ms   cpu ms");
    // (what, n_q, n_k, heads, kv_heads, hd, mask)
    let cases: [(&str, usize, usize, usize, usize, usize, u8); 9] = [
        ("decode 3B ctx 512", 1, 512, 16, 2, 128, 0),
        ("decode 3B ctx 2048", 1, 2048, 16, 2, 128, 0),
        ("decode 7B ctx 2048", 1, 2048, 28, 4, 128, 0),
        ("decode 7B ctx 8192", 1, 8192, 28, 4, 128, 0),
        ("prefill 3B 128", 128, 128, 16, 2, 128, 0),
        ("prefill 7B 512", 512, 512, 28, 4, 128, 0),
        ("vision window 64 x 16", 1024, 1024, 16, 16, 80, 1),
        ("vision full 1024", 1024, 1024, 16, 16, 80, 2),
        ("ecg 12 x 50", 600, 600, 16, 16, 48, 3),
    ];
    for (what, n_q, n_k, heads, kvh, hd, mask) in cases {
        let q = filled(gpu, &[n_q, heads, hd], 1);
        let k = filled(gpu, &[n_k, kvh, hd], 2);
        let v = filled(gpu, &[n_k, kvh, hd], 3);
        let out = Tensor::zeros(gpu, &[n_q, heads, hd], "out").unwrap();
        let bounds: Vec<u32> = (0..n_q)
            .flat_map(|i| match mask {
                1 => [(i / 64 * 64) as u32, (i / 64 * 64 + 64) as u32],
                _ => [0, n_k as u32],
            })
            .collect();
        let bounds = Tensor::from_f32(
            gpu,
            &bounds
                .iter()
                .map(|&b| f32::from_bits(b))
                .collect::<Vec<_>>(),
            &[n_q * 2],
            "bounds",
        )
        .unwrap();
        let m = match mask {
            0 => AttnMask::Causal { start: n_k - n_q },
            1 | 2 => AttnMask::Segments {
                bounds: &bounds.buffer,
            },
            _ => AttnMask::LeadOrTime {
                leads: 12,
                patches: 50,
            },
        };
        let (wall, cpu) = time(gpu, reps, &out, &|r| {
            ops::attention(r, &q, &k, &v, m, &out).unwrap()
        });
        println!(
            "{what:<32} {n_q:>5} {n_k:>5} {heads:>3}/{kvh:<2} {hd:>3} {wall:>10.2} {cpu:>8.2}"
        );
    }
}

fn linear(gpu: &Gpu, reps: usize, ms: &[usize]) {
    println!("\nlinear   format       n      k     m    wall ms   cpu ms  GFLOP/s(cpu/2)");
    for format in [
        WeightFormat::Q4,
        WeightFormat::Q8,
        WeightFormat::F16,
        WeightFormat::F32,
    ] {
        for (n, k) in [(2048, 2048), (2048, 11008)] {
            let w = random_weight(gpu, "w", format, n, k, 3).unwrap();
            for &m in ms {
                let x = filled(gpu, &[m, k], 4);
                let y = Tensor::zeros(gpu, &[m, n], "y").unwrap();
                let (wall, cpu) = time(gpu, reps, &y, &|r| {
                    ops::linear(r, &x, &w, None, &y).unwrap()
                });
                let gflops = 2.0 * (m * n * k) as f64 / (cpu / 2.0 * 1e-3) / 1e9;
                println!(
                    "linear   {:<6} {n:>8} {k:>6} {m:>5} {wall:>10.2} {cpu:>8.2} {gflops:>12.2}",
                    format.as_str()
                );
            }
        }
    }
}

/// Decode's q, k and v projections as three linears against one linear over their concatenated
/// rows (what a fused QKV weight would cost), with biases, 3B and 7B shapes.
fn qkv(gpu: &Gpu, reps: usize) {
    println!("\nqkv (m = 1)        format   3 linears wall/cpu ms   1 fused wall/cpu ms");
    for (what, hidden, q_out, kv_out) in [("3B", 2048, 2048, 256), ("7B", 3584, 3584, 512)] {
        for format in [WeightFormat::Q4, WeightFormat::F16] {
            let w = |n, seed| random_weight(gpu, "w", format, n, hidden, seed).unwrap();
            let b = |n, seed| random_weight(gpu, "b", WeightFormat::F32, 1, n, seed).unwrap();
            let (wq, wk, wv, wf) = (
                w(q_out, 1),
                w(kv_out, 2),
                w(kv_out, 3),
                w(q_out + 2 * kv_out, 4),
            );
            let view = |w: qoqmed_engine::gpu::Weight, n| qoqmed_engine::gpu::Weight {
                shape: vec![n],
                ..w
            };
            let (bq, bk, bv, bf) = (
                view(b(q_out, 5), q_out),
                view(b(kv_out, 6), kv_out),
                view(b(kv_out, 7), kv_out),
                view(b(q_out + 2 * kv_out, 8), q_out + 2 * kv_out),
            );
            let x = filled(gpu, &[1, hidden], 4);
            let t = |n| Tensor::zeros(gpu, &[1, n], "y").unwrap();
            let (yq, yk, yv, yf) = (t(q_out), t(kv_out), t(kv_out), t(q_out + 2 * kv_out));
            let three = time(gpu, reps, &yv, &|r| {
                ops::linear(r, &x, &wq, Some(&bq), &yq).unwrap();
                ops::linear(r, &x, &wk, Some(&bk), &yk).unwrap();
                ops::linear(r, &x, &wv, Some(&bv), &yv).unwrap();
            });
            let one = time(gpu, reps, &yf, &|r| {
                ops::linear(r, &x, &wf, Some(&bf), &yf).unwrap()
            });
            println!(
                "{what:<18} {:<6} {:>12.2} {:>8.2} {:>12.2} {:>8.2}",
                format.as_str(),
                three.0,
                three.1,
                one.0,
                one.1
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = arg(&args, "--reps", 3);
    let only = arg(&args, "--only", String::new());
    let mut gpu = pollster::block_on(Gpu::new(None)).unwrap();
    let native = gpu.tuning.clone();
    gpu.tuning = Tuning::portable();
    // Variants a GPU would get, forced on this adapter (which must offer the feature).
    if args.iter().any(|a| a == "--subgroup") {
        assert!(native.subgroup.is_some(), "this adapter has no subgroups");
        gpu.tuning.subgroup = native.subgroup;
        gpu.tuning.gemv_subgroup = true;
    }
    if args.iter().any(|a| a == "--f16") {
        assert!(
            gpu.features.contains(wgpu::Features::SHADER_F16),
            "no shader-f16"
        );
        gpu.tuning.gemm_f16 = true;
    }
    println!("adapter {} | tuning {:?}", gpu.adapter, gpu.tuning);
    if only.is_empty() || only == "attn" {
        attention(&gpu, reps);
    }
    if only.is_empty() || only == "gemm" {
        linear(&gpu, reps, &[arg(&args, "--m", 64)]);
    }
    if only.is_empty() || only == "gemv" {
        linear(&gpu, reps, &[1]);
    }
    if only == "qkv" {
        qkv(&gpu, reps);
        gpu.tuning = native;
        println!("adapter's own tuning: {:?}", gpu.tuning);
        qkv(&gpu, reps);
    }
}
