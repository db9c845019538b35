//! Timings of the portable kernels in a browser (what the web app runs), printed, asserting
//! nothing but that they run. Not part of CI; run by hand (headless Chromium's SwiftShader WebGPU
//! without a GPU, a CPU renderer: its numbers compare kernels with each other, not with a GPU):
//!
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=$(command -v chromedriver) cargo test --release --target wasm32-unknown-unknown \
//!     --no-default-features -p qoqmed-engine --test web_bench -- --nocapture
#![cfg(target_arch = "wasm32")]

use qoqmed_engine::gpu::probe::random_weight;
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, WeightFormat, ops, read_buffer};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_browser);

fn filled(gpu: &Gpu, shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i + seed) * 7919 % 1013) as f32 / 506.0) - 1.0)
        .collect();
    Tensor::from_f32(gpu, &v, shape, "t").unwrap()
}

/// Best wall ms of `op` in one submit over `reps` runs after a warm-up (compiles the pipelines).
async fn time(gpu: &Gpu, reps: usize, sync: &Tensor, op: &dyn Fn(&mut Recorder)) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..reps + 1 {
        let t = Instant::now();
        let mut rec = Recorder::new(gpu);
        op(&mut rec);
        rec.submit().unwrap();
        read_buffer(gpu, &sync.buffer, 0, 4).await.unwrap();
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    best
}

#[wasm_bindgen_test]
async fn portable_kernel_timings() {
    let gpu = Gpu::new(None).await.unwrap();
    console_log!("adapter {} | tuning {:?}", gpu.adapter, gpu.tuning);
    // (what, n_q, n_k, heads, kv_heads, hd): causal over the end of the cache.
    for (what, n_q, n_k, heads, kvh, hd) in [
        ("attention decode 3B ctx 1024", 1, 1024, 16, 2, 128),
        ("attention decode 7B ctx 1024", 1, 1024, 28, 4, 128),
        ("attention prefill 3B 64 tokens", 64, 64, 16, 2, 128),
    ] {
        let q = filled(&gpu, &[n_q, heads, hd], 1);
        let k = filled(&gpu, &[n_k, kvh, hd], 2);
        let v = filled(&gpu, &[n_k, kvh, hd], 3);
        let out = Tensor::zeros(&gpu, &[n_q, heads, hd], "out").unwrap();
        let mask = ops::AttnMask::Causal { start: n_k - n_q };
        let ms = time(&gpu, 3, &out, &|r| {
            ops::attention(r, &q, &k, &v, mask, &out).unwrap()
        })
        .await;
        console_log!("{what}: {ms:.2} ms");
    }
    for (format, m, n, k) in [
        (WeightFormat::Q4, 1, 2048, 2048),
        (WeightFormat::F16, 1, 2048, 2048),
        (WeightFormat::Q4, 64, 1024, 1024),
        (WeightFormat::F16, 64, 1024, 1024),
    ] {
        let w = random_weight(&gpu, "w", format, n, k, 1).unwrap();
        let x = filled(&gpu, &[m, k], 4);
        let y = Tensor::zeros(&gpu, &[m, n], "y").unwrap();
        let ms = time(&gpu, 3, &y, &|r| ops::linear(r, &x, &w, None, &y).unwrap()).await;
        let gflops = 2.0 * (m * n * k) as f64 / (ms * 1e-3) / 1e9;
        console_log!("linear {format} m{m} n{n} k{k}: {ms:.2} ms, {gflops:.2} GFLOP/s");
    }
    // What one more dispatch costs in a step: 200 tiny adds in one submit vs 1.
    let a = filled(&gpu, &[64], 5);
    let b = filled(&gpu, &[64], 6);
    let one = time(&gpu, 5, &a, &|r| ops::add_inplace(r, &a, &b).unwrap()).await;
    let many = time(&gpu, 5, &a, &|r| {
        for _ in 0..200 {
            ops::add_inplace(r, &a, &b).unwrap();
        }
    })
    .await;
    console_log!(
        "dispatch overhead: 1 add {one:.2} ms, 200 adds {many:.2} ms -> {:.1} us per dispatch",
        (many - one) / 199.0 * 1e3
    );
}
