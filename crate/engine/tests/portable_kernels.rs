//! The portable kernel tier (browsers, GPUs) forced on whatever adapter runs the tests (lavapipe in
//! CI), with the variants a GPU gets from its properties forced too: the tiled prefill GEMM
//! (every format, dequantised on load, split weights, odd shapes), the decode GEMV reduced through
//! subgroups, the GEMM with f16 tiles and products (checked against a rounding bound); and
//! matmul_rows without subgroups (CPU adapters in browsers). Outputs start as NaN and sit before
//! guard values. Attention's tiled and split variants: kernels.rs.

mod common_gpu;

use common_gpu::{
    DTYPES, FORMATS, Rng, assert_close, gpu, guarded, read_guarded, weight, weight_split,
};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Tuning, WeightFormat, ops};

/// The portable kernels; the portable kernels with the subgroup-reduced GEMV a GPU with subgroups
/// gets (this adapter must offer subgroups: lavapipe does); and the CPU tier without subgroups
/// (what SwiftShader gets in a browser: matmul_rows with x read by every lane).
fn variants() -> Vec<(Gpu, &'static str)> {
    let mut plain = gpu();
    plain.tuning = Tuning::portable();
    let mut sg = gpu();
    assert!(
        sg.features.contains(wgpu::Features::SUBGROUP),
        "the subgroup GEMV test needs an adapter with subgroups ({})",
        sg.adapter
    );
    let native = sg.tuning.subgroup;
    sg.tuning = Tuning::portable();
    sg.tuning.subgroup = native;
    sg.tuning.gemv_subgroup = true;
    let mut rows = gpu();
    rows.tuning = Tuning::portable();
    rows.tuning.cpu = true;
    rows.tuning.matmul_rows = true;
    vec![
        (plain, "portable"),
        (sg, "portable + subgroup GEMV"),
        (rows, "matmul_rows without subgroups"),
    ]
}

fn cpu_linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for t in 0..k {
                acc += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            y[i * n + j] = (acc + b.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    y
}

/// (m, n, k) for 16/32-bit weights: GEMM with k % 4 == 0 (tiled: k tails short of 16, more than
/// one 64 x 64 output tile each way, partial tiles) and k % 4 != 0 (the value-by-value GEMM).
const SHAPES_16: [(usize, usize, usize); 7] = [
    (2, 7, 4),
    (5, 33, 36),
    (70, 131, 100),
    (65, 17, 20),
    (130, 64, 64),
    (3, 9, 18),
    (1, 77, 288),
];
/// (m, n, k) for Q8/Q4 (k % 32 == 0): GEMM tiles as above; decode GEMVs (split-K) with one and
/// several groups per invocation.
const SHAPES_Q: [(usize, usize, usize); 8] = [
    (2, 7, 32),
    (70, 131, 96),
    (65, 67, 160),
    (3, 1100, 32),
    (129, 40, 64),
    (1, 131, 160),
    (1, 5, 320),
    (1, 70, 4096),
];

fn shapes(format: WeightFormat) -> &'static [(usize, usize, usize)] {
    if format.is_quantized() {
        &SHAPES_Q
    } else {
        &SHAPES_16
    }
}

#[test]
fn tiled_gemm_subgroup_gemv_and_rows_without_subgroups_match_cpu() {
    let mut rng = Rng::new(21);
    for (gpu, variant) in variants() {
        for format in FORMATS {
            for (s, &(m, n, k)) in shapes(format).iter().enumerate() {
                // matmul_rows' unrolled tiles compile slowly on lavapipe: its token tiles of 1, 2,
                // 4 and 16 (m = 1, 2, 3, 70) are enough.
                if variant.starts_with("matmul_rows") && !matches!(m, 1..=3 | 70) {
                    continue;
                }
                // Every third shape over a weight split into parts (as real vocabularies are).
                let limit = (s % 3 == 2 && n > 16).then_some((n * format.row_bytes(k) / 3) as u64);
                let x = rng.vec(m * k, 1.0);
                let (wv, w) = weight_split(&gpu, &mut rng, "w", &[n, k], format, 0.5, limit);
                let bias_format = DTYPES[rng.below(3) as usize];
                let (bv, b) = weight(&gpu, &mut rng, "b", &[n], bias_format, 0.5);
                let xt = Tensor::from_f32(&gpu, &x, &[m, k], "x").unwrap();
                for with_bias in [false, true] {
                    let y = guarded(&gpu, &[m, n]);
                    let mut rec = Recorder::new(&gpu);
                    ops::linear(&mut rec, &xt, &w, with_bias.then_some(&b), &y).unwrap();
                    rec.submit().unwrap();
                    let want = cpu_linear(&x, &wv, with_bias.then_some(&bv[..]), m, n, k);
                    assert_close(
                        &format!(
                            "{variant}: linear {format} m{m} n{n} k{k} parts {} bias {}",
                            w.parts.len(),
                            if with_bias {
                                bias_format.as_str()
                            } else {
                                "none"
                            },
                        ),
                        &read_guarded(&gpu, &y),
                        &want,
                        2e-5,
                        1e-5,
                    );
                }
            }
        }
    }
}

/// The fused gate/up + SiLU pass of matmul_rows with x read by every lane (no subgroups).
#[test]
fn gate_up_silu_without_subgroups_matches_cpu() {
    let mut gpu = gpu();
    gpu.tuning = Tuning::portable();
    gpu.tuning.cpu = true;
    gpu.tuning.matmul_rows = true;
    let mut rng = Rng::new(23);
    for format in FORMATS {
        for (m, n, k) in [(1, 37, 64), (20, 67, 96)] {
            let x = rng.vec(m * k, 1.0);
            let (gv, g) = weight(&gpu, &mut rng, "gate", &[n, k], format, 0.5);
            let (uv, u) = weight(&gpu, &mut rng, "up", &[n, k], format, 0.5);
            let xt = Tensor::from_f32(&gpu, &x, &[m, k], "x").unwrap();
            let out = guarded(&gpu, &[m, n]);
            let tmp = |name| Tensor::zeros(&gpu, &[m, n], name).unwrap();
            let (gt, ut) = (tmp("gate_out"), tmp("up_out"));
            let mut rec = Recorder::new(&gpu);
            ops::gate_up_silu(&mut rec, &xt, &g, &u, &out, &gt, &ut).unwrap();
            rec.submit().unwrap();
            let (gw, uw) = (
                cpu_linear(&x, &gv, None, m, n, k),
                cpu_linear(&x, &uv, None, m, n, k),
            );
            let want: Vec<f32> = gw
                .iter()
                .zip(&uw)
                .map(|(g, u)| (*g as f64 / (1.0 + (-*g as f64).exp()) * *u as f64) as f32)
                .collect();
            assert_close(
                &format!("gate_up_silu without subgroups {format} m{m} n{n} k{k}"),
                &read_guarded(&gpu, &out),
                &want,
                2e-5,
                1e-5,
            );
        }
    }
}

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// The f16-math GEMM rounds x and W to f16 and sums each 4-term product in f16 (then in f32). With
/// u = 2^-11 (f16's unit roundoff), the products and the three f16 additions of one 4-term dot
/// are off by at most ~4u of that dot's sum of |products|, so every output is checked against the
/// f64 product of the rounded values within 4u * sum_t |x_t w_t| (+1e-6 for the f32 sums).
#[test]
fn f16_math_gemm_within_its_rounding_bound() {
    let mut gpu = gpu();
    assert!(
        gpu.features.contains(wgpu::Features::SHADER_F16),
        "the f16 GEMM test needs an adapter with shader-f16 ({})",
        gpu.adapter
    );
    gpu.tuning = Tuning::portable();
    gpu.tuning.gemm_f16 = true;
    let u = 2f64.powi(-11);
    let mut rng = Rng::new(22);
    for format in FORMATS {
        for &(m, n, k) in shapes(format).iter().filter(|s| s.0 > 1 && s.2 % 4 == 0) {
            let x = rng.vec(m * k, 2.0);
            let (wv, w) = weight(&gpu, &mut rng, "w", &[n, k], format, 0.5);
            let (bv, b) = weight(&gpu, &mut rng, "b", &[n], WeightFormat::F32, 0.5);
            let xt = Tensor::from_f32(&gpu, &x, &[m, k], "x").unwrap();
            let y = guarded(&gpu, &[m, n]);
            let mut rec = Recorder::new(&gpu);
            ops::linear(&mut rec, &xt, &w, Some(&b), &y).unwrap();
            rec.submit().unwrap();
            let got = read_guarded(&gpu, &y);
            let (xh, wh) = (f16_round(&x), f16_round(&wv));
            let want = cpu_linear(&xh, &wh, Some(&bv), m, n, k);
            let mut worst = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let mag: f64 = (0..k)
                        .map(|t| (xh[i * k + t] as f64 * wh[j * k + t] as f64).abs())
                        .sum();
                    let (g, e) = (got[i * n + j] as f64, want[i * n + j] as f64);
                    let bound = 4.0 * u * mag + 1e-6;
                    assert!(
                        g.is_finite() && (g - e).abs() <= bound,
                        "f16 GEMM {format} m{m} n{n} k{k}: y[{i},{j}] = {g}, want {e} within {bound:.3e}"
                    );
                    worst = worst.max((g - e).abs() / bound);
                }
            }
            eprintln!("f16 GEMM {format} m{m} n{n} k{k}: worst error {worst:.2} of the bound");
        }
    }
}

mod tiny_model {
    //! The tiny fixture model end to end on the portable tier, against the transformers goldens
    //! (tools/fixtures/make_text_models.py) that parity.rs checks the adapter's own tier with.

    use std::path::{Path, PathBuf};

    use super::common_gpu::{assert_close, gpu};
    use qoqmed_engine::config::ModelConfig;
    use qoqmed_engine::generate::{GenerateOptions, generate};
    use qoqmed_engine::gpu::{Gpu, Recorder, Tuning};
    use qoqmed_engine::model::{Logits, Session, TextModel, rope};
    use qoqmed_engine::sampler::SamplingParams;
    use qoqmed_engine::weights::{ModelFiles, WeightStore};
    use safetensors::SafeTensors;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    fn golden(case: &str) -> Vec<u8> {
        let path = fixtures().join(format!("goldens/tiny-small-vocab/{case}.safetensors"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn tensor<T: bytemuck::Pod>(bytes: &[u8], name: &str) -> Vec<T> {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        bytemuck::pod_collect_to_vec(t.data())
    }

    fn ids(bytes: &[u8], name: &str) -> Vec<u32> {
        tensor::<i64>(bytes, name)
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    /// Prompt logits (every golden row) and greedy ids of the text-only cases, within `atol` +
    /// `rtol` * |ref|, top-1 of every row equal; returns the largest logit error seen.
    fn check(gpu: &Gpu, what: &str, atol: f32, rtol: f32) -> f32 {
        let files = ModelFiles::from_dir(&fixtures().join("models/tiny-small-vocab")).unwrap();
        let cfg = ModelConfig::from_json(&files.config).unwrap();
        let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
        let model = pollster::block_on(TextModel::load(gpu, &store, &cfg.text)).unwrap();
        let vocab = model.cfg.vocab_size;
        let mut worst = 0f32;
        for case in ["short", "medium", "qoq"] {
            let g = golden(case);
            let prompt = ids(&g, "input_ids");
            let positions = rope::text_positions(0, prompt.len(), 0);
            let mut session = Session::new(gpu, &model.cfg, prompt.len() + 1).unwrap();
            let mut rec = Recorder::new(gpu);
            let logits = model
                .forward(
                    &mut rec,
                    &mut session,
                    &prompt,
                    &positions,
                    Logits::All,
                    None,
                )
                .unwrap();
            rec.submit().unwrap();
            let all = pollster::block_on(logits.to_vec(gpu)).unwrap();
            let rows: Vec<i64> = tensor(&g, "logits_row_index");
            let want: Vec<f32> = tensor(&g, "logits_rows");
            let got: Vec<f32> = rows
                .iter()
                .flat_map(|&r| all[r as usize * vocab..][..vocab].to_vec())
                .collect();
            assert_close(&format!("{what} {case} logits"), &got, &want, atol, rtol);
            worst = got
                .iter()
                .zip(&want)
                .fold(worst, |w, (a, b)| w.max((a - b).abs()));
            let top = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            for (r, (a, b)) in got.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
                assert_eq!(top(a), top(b), "{what} {case}: top-1 of logits row {r}");
            }
            let want_ids = ids(&g, "greedy.generated_ids");
            let opts = GenerateOptions {
                max_new_tokens: want_ids.len(),
                sampling: SamplingParams {
                    temperature: 0.0,
                    repetition_penalty: 1.0,
                    ..SamplingParams::default()
                },
                eos_token_ids: Vec::new(),
                max_context: prompt.len() + want_ids.len() + 1,
                prefill_chunk: 7,
                ..GenerateOptions::default()
            };
            let out = pollster::block_on(generate(
                gpu,
                &model,
                &prompt,
                &positions,
                0,
                &opts,
                &mut |_| true,
            ))
            .unwrap();
            assert_eq!(out.token_ids, want_ids, "{what} {case}: greedy ids");
        }
        eprintln!("{what}: max logit error {worst:.3e}");
        worst
    }

    /// f32 math everywhere: the same tolerance as parity.rs (1e-4).
    #[test]
    fn tiny_model_on_the_portable_tier_matches_transformers() {
        let mut gpu = gpu();
        gpu.tuning = Tuning::portable();
        check(&gpu, "portable", 1e-4, 1e-4);
        // Every attention call split (flash-decoding) from 16 keys on.
        gpu.tuning.attention_split_keys = 16;
        check(&gpu, "portable, split attention", 1e-4, 1e-4);
    }

    /// The f16-math prefill GEMM rounds activations and weights to f16 (11 significant bits), the
    /// prompt's lm_head included (Logits::All). Measured on lavapipe: max logit error 2.4e-2 on
    /// logits up to ~5 in magnitude; tolerance 3e-2 abs + 1e-2 rel, the top-1 of every row and the
    /// greedy ids equal.
    #[test]
    fn tiny_model_with_f16_gemm_stays_close_to_transformers() {
        let mut gpu = gpu();
        assert!(gpu.features.contains(wgpu::Features::SHADER_F16));
        gpu.tuning = Tuning::portable();
        gpu.tuning.gemm_f16 = true;
        check(&gpu, "portable, f16 GEMM", 3e-2, 1e-2);
    }
}
