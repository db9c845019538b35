//! Every kernel against a plain CPU reference on seeded random shapes, odd sizes included
//! (not multiples of 4/16/64), the 16/32-bit weight formats (Q8/Q4 and split weights:
//! weight_formats.rs). Runs on any adapter; in CI on Mesa lavapipe.

mod common_gpu;

use common_gpu::{DTYPES, Rng, assert_close, gpu, gpus, weight};
use qoqmed_engine::gpu::{Recorder, Tensor, WeightFormat, ops, read_buffer};

fn run(gpu: &qoqmed_engine::gpu::Gpu, rec: Recorder) {
    rec.submit().expect("submit");
    let _ = gpu;
}

fn read(gpu: &qoqmed_engine::gpu::Gpu, t: &Tensor) -> Vec<f32> {
    pollster::block_on(t.to_vec(gpu)).expect("readback")
}

#[test]
fn embedding_gathers_rows() {
    let gpu = gpu();
    let mut rng = Rng::new(1);
    for dtype in DTYPES {
        let (vocab, hidden, n) = (37, 19, 5);
        let (table, w) = weight(&gpu, &mut rng, "embed", &[vocab, hidden], dtype, 1.0);
        let ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u32)).collect();
        let ids_buf = Tensor::from_f32(
            &gpu,
            &ids.iter().map(|&i| f32::from_bits(i)).collect::<Vec<_>>(),
            &[n],
            "ids",
        )
        .unwrap();
        let out = Tensor::zeros(&gpu, &[n, hidden], "out").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::embedding(&mut rec, &ids_buf.buffer, n, &w, &out).unwrap();
        run(&gpu, rec);
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| table[i as usize * hidden..][..hidden].to_vec())
            .collect();
        assert_close(
            &format!("embedding {dtype:?}"),
            &read(&gpu, &out),
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn rms_norm_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(2);
    for dtype in DTYPES {
        for (rows, n) in [(1, 67), (3, 300)] {
            let x = rng.vec(rows * n, 3.0);
            let (wv, w) = weight(&gpu, &mut rng, "norm", &[n], dtype, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[rows, n], "x").unwrap();
            let out = Tensor::zeros(&gpu, &[rows, n], "out").unwrap();
            let mut rec = Recorder::new(&gpu);
            ops::rms_norm(&mut rec, &xt, &w, 1e-6, &out).unwrap();
            run(&gpu, rec);
            let mut want = vec![0.0; rows * n];
            for r in 0..rows {
                let row = &x[r * n..][..n];
                let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
                let s = 1.0 / (ms + 1e-6).sqrt();
                for i in 0..n {
                    want[r * n + i] = (row[i] as f64 * s * wv[i] as f64) as f32;
                }
            }
            assert_close(
                &format!("rms_norm {dtype:?} {rows}x{n}"),
                &read(&gpu, &out),
                &want,
                1e-5,
                1e-5,
            );
        }
    }
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

#[test]
fn linear_gemv_and_gemm_match_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(3);
    for dtype in DTYPES {
        for (m, n, k) in [
            (1, 33, 19),
            (1, 131, 77),
            (1, 5, 300),
            (5, 33, 19),
            (70, 131, 77),
            (2, 7, 3),
        ] {
            for with_bias in [false, true] {
                let x = rng.vec(m * k, 1.0);
                let (wv, w) = weight(&gpu, &mut rng, "w", &[n, k], dtype, 0.5);
                let (bv, b) = weight(&gpu, &mut rng, "b", &[n], dtype, 0.5);
                let xt = Tensor::from_f32(&gpu, &x, &[m, k], "x").unwrap();
                let y = Tensor::zeros(&gpu, &[m, n], "y").unwrap();
                let mut rec = Recorder::new(&gpu);
                ops::linear(&mut rec, &xt, &w, with_bias.then_some(&b), &y).unwrap();
                run(&gpu, rec);
                let want = cpu_linear(&x, &wv, with_bias.then_some(&bv[..]), m, n, k);
                assert_close(
                    &format!("linear {dtype:?} m{m} n{n} k{k} bias {with_bias}"),
                    &read(&gpu, &y),
                    &want,
                    1e-5,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn linear_rejects_mismatched_shapes() {
    let gpu = gpu();
    let mut rng = Rng::new(4);
    let (_, w) = weight(&gpu, &mut rng, "w", &[8, 6], WeightFormat::F32, 1.0);
    let x = Tensor::zeros(&gpu, &[2, 5], "x").unwrap();
    let y = Tensor::zeros(&gpu, &[2, 8], "y").unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = ops::linear(&mut rec, &x, &w, None, &y)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 5]") && err.contains("6 inputs"), "{err}");
}

fn cpu_rope(x: &[f32], cos: &[f32], sin: &[f32], n: usize, heads: usize, hd: usize) -> Vec<f32> {
    let half = hd / 2;
    let mut out = x.to_vec();
    for t in 0..n {
        for h in 0..heads {
            let base = (t * heads + h) * hd;
            for i in 0..half {
                let (c, s) = (cos[t * half + i], sin[t * half + i]);
                let (x1, x2) = (x[base + i], x[base + i + half]);
                out[base + i] = x1 * c - x2 * s;
                out[base + i + half] = x2 * c + x1 * s;
            }
        }
    }
    out
}

#[test]
fn rope_rotates_in_place_and_into_cache() {
    let gpu = gpu();
    let mut rng = Rng::new(5);
    let (n, heads, hd, max_ctx, start) = (3, 3, 10, 9, 4);
    let x = rng.vec(n * heads * hd, 1.0);
    let angles = rng.vec(n * hd / 2, 3.0);
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let want = cpu_rope(&x, &cos, &sin, n, heads, hd);
    let xt = Tensor::from_f32(&gpu, &x, &[n, heads, hd], "x").unwrap();
    let ct = Tensor::from_f32(&gpu, &cos, &[n, hd / 2], "cos").unwrap();
    let st = Tensor::from_f32(&gpu, &sin, &[n, hd / 2], "sin").unwrap();
    let guard = vec![7.5f32; max_ctx * heads * hd];
    let cache = Tensor::from_f32(&gpu, &guard, &[max_ctx, heads, hd], "cache").unwrap();
    let mut rec = Recorder::new(&gpu);
    ops::rope_to_cache(&mut rec, &xt, &ct, &st, &cache, start).unwrap();
    ops::rope_inplace(&mut rec, &xt, &ct, &st).unwrap();
    run(&gpu, rec);
    assert_close("rope in place", &read(&gpu, &xt), &want, 1e-6, 1e-6);
    let mut want_cache = guard.clone();
    want_cache[start * heads * hd..][..want.len()].copy_from_slice(&want);
    assert_close(
        "rope to cache (guards untouched)",
        &read(&gpu, &cache),
        &want_cache,
        1e-6,
        1e-6,
    );
}

/// The adapter's attention, the portable one, and the portable one with its keys split over
/// workgroups (flash-decoding with a merge pass) from 16 keys on, so small caches split too.
fn attention_gpus() -> Vec<qoqmed_engine::gpu::Gpu> {
    let mut all = gpus();
    let mut split = gpu();
    split.tuning = qoqmed_engine::gpu::Tuning::portable();
    split.tuning.attention_split_keys = 16;
    all.push(split);
    all
}

fn variant(gpu: &qoqmed_engine::gpu::Gpu, hd: usize) -> String {
    if gpu.tuning.attention_sg && hd.is_multiple_of(4) {
        "subgroup kernel".into()
    } else {
        format!("tiled, split from {} keys", gpu.tuning.attention_split_keys)
    }
}

/// (n_q, n_k, heads, kv_heads, head_dim)
type AttnShape = (usize, usize, usize, usize, usize);

/// Softmax attention in f64 where query i sees the keys `keys(i)` lists.
fn cpu_attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    (n_q, _n_k, heads, kvh, hd): AttnShape,
    keys: &dyn Fn(usize) -> Vec<usize>,
) -> Vec<f32> {
    let mut out = vec![0.0; n_q * heads * hd];
    let group = heads / kvh;
    for i in 0..n_q {
        let visible = keys(i);
        for h in 0..heads {
            let g = h / group;
            let qv = &q[(i * heads + h) * hd..][..hd];
            let scores: Vec<f64> = visible
                .iter()
                .map(|&t| {
                    let kv = &kc[(t * kvh + g) * hd..][..hd];
                    qv.iter()
                        .zip(kv)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let v: f64 = visible
                    .iter()
                    .zip(&e)
                    .map(|(&t, e)| e * vc[(t * kvh + g) * hd + d] as f64)
                    .sum();
                out[(i * heads + h) * hd + d] = if visible.is_empty() {
                    0.0
                } else {
                    (v / sum) as f32
                };
            }
        }
    }
    out
}

/// Runs `ops::attention` with `mask` on seeded q, k, v and compares with the CPU reference.
fn check_attention(
    gpu: &qoqmed_engine::gpu::Gpu,
    rng: &mut Rng,
    shape: AttnShape,
    mask: ops::AttnMask,
    keys: &dyn Fn(usize) -> Vec<usize>,
    what: &str,
) {
    let (n_q, n_k, heads, kvh, hd) = shape;
    let q = rng.vec(n_q * heads * hd, 2.0);
    let kc = rng.vec(n_k * kvh * hd, 2.0);
    let vc = rng.vec(n_k * kvh * hd, 1.0);
    let qt = Tensor::from_f32(gpu, &q, &[n_q, heads, hd], "q").unwrap();
    let kt = Tensor::from_f32(gpu, &kc, &[n_k, kvh, hd], "k").unwrap();
    let vt = Tensor::from_f32(gpu, &vc, &[n_k, kvh, hd], "v").unwrap();
    // Poisoned, so a row the kernel fails to write shows.
    let out = Tensor::from_f32(
        gpu,
        &vec![f32::NAN; n_q * heads * hd],
        &[n_q, heads, hd],
        "out",
    )
    .unwrap();
    let mut rec = Recorder::new(gpu);
    ops::attention(&mut rec, &qt, &kt, &vt, mask, &out).unwrap();
    run(gpu, rec);
    let want = cpu_attention(&q, &kc, &vc, shape, keys);
    assert_close(
        &format!(
            "attention {what} nq{n_q} nk{n_k} h{heads}/{kvh} hd{hd} {}",
            variant(gpu, hd)
        ),
        &read(gpu, &out),
        &want,
        2e-6,
        1e-5,
    );
}

#[test]
fn attention_causal_gqa_matches_cpu() {
    let mut rng = Rng::new(6);
    // (n_q, start, heads, kv_heads, head_dim, max_ctx): prefill, decode, >1 key tile, head_dim > WG,
    // Qwen2.5-3B's and -7B's head grouping (8 and 7 query heads per KV head, head_dim 128), blocks
    // of query rows (n_q * group > 16 pairs) with partial last blocks, odd head_dim (6: value by
    // value loads), decode over a cache long enough to split at the default 128 keys per split.
    for gpu in attention_gpus() {
        for (n_q, start, heads, kvh, hd, max_ctx) in [
            (5, 0, 6, 2, 12, 8),
            (1, 4, 6, 3, 12, 8),
            (3, 70, 4, 1, 16, 80),
            (2, 1, 2, 2, 80, 5),
            (7, 0, 3, 3, 6, 7),
            (2, 37, 16, 2, 128, 40),
            (1, 20, 14, 2, 128, 21),
            (11, 3, 7, 1, 8, 17),
            (1, 300, 14, 2, 128, 333),
            (1, 290, 2, 2, 6, 291),
        ] {
            check_attention(
                &gpu,
                &mut rng,
                (n_q, max_ctx, heads, kvh, hd),
                ops::AttnMask::Causal { start },
                &|i| (0..=start + i).collect(),
                &format!("causal start{start}"),
            );
        }
    }
}

#[test]
fn attention_segments_match_cpu() {
    let mut rng = Rng::new(61);
    for gpu in attention_gpus() {
        // Ragged segments as the vision tower's windows give them, one longer than a key tile (64),
        // and an empty one; plus a single segment over everything (full-attention blocks), and a
        // long one next to short ones (keys split at the default 128).
        let cases: [(&[usize], usize, usize, usize); 3] = [
            (&[0, 5, 5, 21, 91, 97], 4, 2, 80),
            (&[0, 13], 2, 2, 16),
            (&[0, 3, 290, 300], 2, 1, 12),
        ];
        for (cu, heads, kvh, hd) in cases {
            let n = *cu.last().unwrap();
            let mut bounds = Vec::new();
            let mut seg_of = Vec::new();
            for w in cu.windows(2) {
                for _ in w[0]..w[1] {
                    bounds.extend([w[0] as u32, w[1] as u32]);
                    seg_of.push((w[0], w[1]));
                }
            }
            let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bounds"),
                size: (bounds.len() * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            gpu.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(&bounds));
            check_attention(
                &gpu,
                &mut rng,
                (n, n, heads, kvh, hd),
                ops::AttnMask::Segments { bounds: &buffer },
                &|i| (seg_of[i].0..seg_of[i].1).collect(),
                &format!("segments {cu:?}"),
            );
        }
    }
}

#[test]
fn attention_lead_or_time_matches_cpu() {
    let mut rng = Rng::new(62);
    for gpu in attention_gpus() {
        // ECG-JEPA's mask on small grids; 2 x 70 gives each query 71 visible keys, more than one
        // key tile (64).
        for (leads, patches, heads, hd) in
            [(3, 5, 2, 8), (8, 9, 4, 12), (2, 70, 2, 8), (12, 11, 2, 48)]
        {
            let n = leads * patches;
            check_attention(
                &gpu,
                &mut rng,
                (n, n, heads, heads, hd),
                ops::AttnMask::LeadOrTime { leads, patches },
                &|a| {
                    (0..n)
                        .filter(|b| a / patches == b / patches || a % patches == b % patches)
                        .collect()
                },
                &format!("lead/time {leads}x{patches}"),
            );
        }
    }
}

#[test]
fn attention_rejects_bad_masks() {
    let gpu = gpu();
    let t = |shape: &[usize]| Tensor::zeros(&gpu, shape, "t").unwrap();
    let (q, k) = (t(&[6, 2, 8]), t(&[6, 2, 8]));
    let mut rec = Recorder::new(&gpu);
    let lead_time = ops::AttnMask::LeadOrTime {
        leads: 4,
        patches: 2,
    };
    let err = ops::attention(&mut rec, &q, &k, &k, lead_time, &q).unwrap_err();
    assert!(err.to_string().contains("4 leads x 2 patches"), "{err}");
    let causal = ops::AttnMask::Causal { start: 1 };
    let err = ops::attention(&mut rec, &q, &k, &k, causal, &q).unwrap_err();
    assert!(err.to_string().contains("exceed"), "{err}");
}

/// erf by its Maclaurin series in f64: exact to ~1e-10 for |x| <= 3, the range the test uses.
fn erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..80 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn elementwise_ops_match_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(7);
    let n = 1001;
    let a = rng.vec(n, 4.0);
    let b = rng.vec(n, 4.0);
    let at = Tensor::from_f32(&gpu, &a, &[n], "a").unwrap();
    let bt = Tensor::from_f32(&gpu, &b, &[n], "b").unwrap();
    let out = Tensor::zeros(&gpu, &[n], "out").unwrap();
    let dst = Tensor::from_f32(&gpu, &[-1.0; 20], &[20], "dst").unwrap();
    let gelu_out = Tensor::zeros(&gpu, &[n], "gelu").unwrap();
    let mut rec = Recorder::new(&gpu);
    ops::gelu(&mut rec, &at, &gelu_out).unwrap();
    ops::silu_mul(&mut rec, &at, &bt, &out).unwrap();
    ops::copy(&mut rec, &bt, 990, &dst, 3, 11).unwrap();
    ops::add_inplace(&mut rec, &at, &bt).unwrap();
    run(&gpu, rec);
    let silu: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    assert_close("silu_mul", &read(&gpu, &out), &silu, 1e-6, 1e-6);
    let gelu: Vec<f32> = a
        .iter()
        .map(|&x| (0.5 * x as f64 * (1.0 + erf(x as f64 / 2f64.sqrt()))) as f32)
        .collect();
    assert_close("gelu (erf)", &read(&gpu, &gelu_out), &gelu, 1e-6, 1e-6);
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_close("add", &read(&gpu, &at), &sum, 0.0, 0.0);
    let mut want = vec![-1.0; 20];
    want[3..14].copy_from_slice(&b[990..1001]);
    assert_close(
        "copy (guards untouched)",
        &read(&gpu, &dst),
        &want,
        0.0,
        0.0,
    );
}

#[test]
fn argmax_picks_first_maximum() {
    let gpu = gpu();
    let mut rng = Rng::new(8);
    let (rows, n) = (3, 1237);
    let mut logits = rng.vec(rows * n, 5.0);
    logits[n + 700] = 9.0; // row 1: a tie, the lower index must win
    logits[n + 1100] = 9.0;
    let t = Tensor::from_f32(&gpu, &logits, &[rows, n], "logits").unwrap();
    for row in 0..rows {
        let out = Tensor::zeros(&gpu, &[1], "out").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::argmax(&mut rec, &t, row, &out.buffer).unwrap();
        run(&gpu, rec);
        let got = u32::from_le_bytes(
            pollster::block_on(read_buffer(&gpu, &out.buffer, 0, 4)).unwrap()[..4]
                .try_into()
                .unwrap(),
        );
        let r = &logits[row * n..][..n];
        let want = (0..n).fold(0, |best, i| if r[i] > r[best] { i } else { best });
        assert_eq!(got as usize, want, "row {row}");
    }
}

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

fn read_f16(gpu: &qoqmed_engine::gpu::Gpu, t: &Tensor) -> Vec<f32> {
    let bytes = pollster::block_on(read_buffer(gpu, &t.buffer, 0, (t.numel() * 2) as u64));
    bytes
        .unwrap()
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[test]
fn f16_cache_writes_and_attention_match_cpu() {
    let mut rng = Rng::new(9);
    for gpu in attention_gpus() {
        // rope_to_cache and copy into f16 caches, around untouched (zero) rows.
        let (n, heads, hd, max_ctx, start) = (3, 2, 16, 7, 2);
        let x = rng.vec(n * heads * hd, 1.0);
        let angles = rng.vec(n * hd / 2, 3.0);
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let xt = Tensor::from_f32(&gpu, &x, &[n, heads, hd], "x").unwrap();
        let ct = Tensor::from_f32(&gpu, &cos, &[n, hd / 2], "cos").unwrap();
        let st = Tensor::from_f32(&gpu, &sin, &[n, hd / 2], "sin").unwrap();
        let kc = Tensor::zeros_f16(&gpu, &[max_ctx, heads, hd], "k").unwrap();
        let vc = Tensor::zeros_f16(&gpu, &[max_ctx, heads, hd], "v").unwrap();
        assert!(kc.is_f16() && !xt.is_f16());
        let mut rec = Recorder::new(&gpu);
        ops::rope_to_cache(&mut rec, &xt, &ct, &st, &kc, start).unwrap();
        ops::copy(&mut rec, &xt, 0, &vc, start * heads * hd, n * heads * hd).unwrap();
        run(&gpu, rec);
        let row = heads * hd;
        let mut want_k = vec![0.0; max_ctx * row];
        want_k[start * row..][..n * row]
            .copy_from_slice(&f16_round(&cpu_rope(&x, &cos, &sin, n, heads, hd)));
        let mut want_v = vec![0.0; max_ctx * row];
        want_v[start * row..][..n * row].copy_from_slice(&f16_round(&x));
        // The rotation is computed in f32 then rounded once: at most one f16 step apart.
        assert_close(
            "rope into f16 cache",
            &read_f16(&gpu, &kc),
            &want_k,
            1e-3,
            1e-3,
        );
        assert_close(
            "copy into f16 cache",
            &read_f16(&gpu, &vc),
            &want_v,
            0.0,
            0.0,
        );

        // Attention over f16 K/V equals the f64 reference on the same rounded values.
        for (n_q, start, heads, kvh, hd, max_ctx) in [
            (3, 5, 6, 2, 16, 9),
            (1, 30, 16, 2, 128, 31),
            (2, 40, 3, 3, 6, 45),
        ] {
            let q = rng.vec(n_q * heads * hd, 2.0);
            let k = f16_round(&rng.vec(max_ctx * kvh * hd, 2.0));
            let v = f16_round(&rng.vec(max_ctx * kvh * hd, 1.0));
            let to_f16 = |vals: &[f32], name| {
                let t = Tensor::zeros_f16(&gpu, &[max_ctx, kvh, hd], name).unwrap();
                let bytes: Vec<u8> = vals
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect();
                gpu.queue.write_buffer(&t.buffer, 0, &bytes);
                t
            };
            let (kt, vt) = (to_f16(&k, "k"), to_f16(&v, "v"));
            let qt = Tensor::from_f32(&gpu, &q, &[n_q, heads, hd], "q").unwrap();
            let out =
                Tensor::from_f32(&gpu, &vec![f32::NAN; q.len()], &[n_q, heads, hd], "o").unwrap();
            let mut rec = Recorder::new(&gpu);
            ops::attention(
                &mut rec,
                &qt,
                &kt,
                &vt,
                ops::AttnMask::Causal { start },
                &out,
            )
            .unwrap();
            run(&gpu, rec);
            let want = cpu_attention(&q, &k, &v, (n_q, max_ctx, heads, kvh, hd), &|i| {
                (0..=start + i).collect()
            });
            assert_close(
                &format!(
                    "attention f16 kv nq{n_q} h{heads}/{kvh} hd{hd} {}",
                    variant(&gpu, hd)
                ),
                &read(&gpu, &out),
                &want,
                2e-6,
                1e-5,
            );
        }
    }
}
