//! Every weight format (f32, f16, bf16, q8, q4) through every op that reads weights, against a CPU
//! reference on the same decoded values, with weights split into several row parts (a small part
//! limit forces the split that real vocabularies get from a 128 MiB binding limit). Outputs start
//! as NaN (an unwritten value fails) and sit between guard values that must stay untouched.

mod common_gpu;

use common_gpu::{DTYPES, FORMATS, Rng, assert_close, encode, gpu, gpus, weight, weight_split};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Weight, WeightFormat, ops, read_buffer};

const GUARD: f32 = 7.5;
const GUARDS: usize = 37;

/// An output tensor of `shape` filled with NaN and followed by guard values.
fn guarded(gpu: &Gpu, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut init = vec![f32::NAN; n];
    init.extend(std::iter::repeat_n(GUARD, GUARDS));
    let t = Tensor::from_f32(gpu, &init, &[n + GUARDS], "guarded").unwrap();
    Tensor {
        buffer: t.buffer,
        shape: shape.to_vec(),
    }
}

/// The outputs, after checking that the guards behind them are untouched.
fn read_guarded(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    let n = t.numel();
    let bytes = pollster::block_on(read_buffer(gpu, &t.buffer, 0, ((n + GUARDS) * 4) as u64));
    let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes.unwrap());
    assert!(
        all[n..].iter().all(|&g| g == GUARD),
        "guards overwritten: {:?}",
        &all[n..]
    );
    all[..n].to_vec()
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

/// (m, n, k): GEMV narrow (k <= 128), GEMV split-k, GEMM; rows not multiples of 4/16/64;
/// matmul_rows' token tiles (1, 2, 4, 8: partial ones too) and row tiles (R = 1, 2, 4).
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 33, 64),
    (1, 37, 96),
    (1, 131, 160),
    (1, 5, 320),
    (5, 33, 32),
    (70, 131, 96),
    (2, 7, 256),
    (3, 1100, 32),
    (1, 2100, 64),
    (9, 67, 64),
];

fn check_linear(
    gpu: &Gpu,
    rng: &mut Rng,
    format: WeightFormat,
    shape: (usize, usize, usize),
    limit: Option<u64>,
) {
    let (m, n, k) = shape;
    let bias_format = DTYPES[rng.below(3) as usize];
    let x = rng.vec(m * k, 1.0);
    let (wv, w) = weight_split(gpu, rng, "w", &[n, k], format, 0.5, limit);
    if limit.is_some() {
        assert!(w.parts.len() >= 3, "{} parts", w.parts.len());
    }
    let (bv, b) = weight(gpu, rng, "b", &[n], bias_format, 0.5);
    let xt = Tensor::from_f32(gpu, &x, &[m, k], "x").unwrap();
    for with_bias in [false, true] {
        let y = guarded(gpu, &[m, n]);
        let mut rec = Recorder::new(gpu);
        ops::linear(&mut rec, &xt, &w, with_bias.then_some(&b), &y).unwrap();
        rec.submit().unwrap();
        let want = cpu_linear(&x, &wv, with_bias.then_some(&bv[..]), m, n, k);
        assert_close(
            &format!(
                "linear {format} m{m} n{n} k{k} parts {} bias {} rows kernels {}",
                w.parts.len(),
                if with_bias {
                    bias_format.as_str()
                } else {
                    "none"
                },
                gpu.tuning.matmul_rows
            ),
            &read_guarded(gpu, &y),
            &want,
            2e-5,
            1e-5,
        );
    }
}

#[test]
fn linear_every_format_matches_cpu() {
    let mut rng = Rng::new(11);
    for gpu in gpus() {
        for format in FORMATS {
            for shape in SHAPES {
                check_linear(&gpu, &mut rng, format, shape, None);
            }
        }
    }
}

#[test]
fn linear_over_a_split_weight_matches_cpu() {
    let mut rng = Rng::new(12);
    for gpu in gpus() {
        for format in FORMATS {
            for (m, n, k) in [(1, 131, 64), (1, 53, 160), (70, 131, 96)] {
                // About a fifth of the weight per part, rounded to the format's row alignment.
                let limit = (n * format.row_bytes(k) / 5) as u64;
                check_linear(&gpu, &mut rng, format, (m, n, k), Some(limit));
            }
        }
        // A 16-bit row of odd length: parts must still start on whole words.
        for format in [WeightFormat::F16, WeightFormat::BF16] {
            check_linear(&gpu, &mut rng, format, (3, 45, 77), Some(45 * 154 / 4));
            check_linear(&gpu, &mut rng, format, (1, 45, 77), Some(45 * 154 / 4));
        }
    }
}

#[test]
fn embedding_gathers_every_format_across_parts() {
    let gpu = gpu();
    let mut rng = Rng::new(13);
    let (vocab, hidden) = (41, 64);
    for format in FORMATS {
        for limit in [None, Some((vocab * format.row_bytes(hidden) / 4) as u64)] {
            let (table, w) = weight_split(
                &gpu,
                &mut rng,
                "embed",
                &[vocab, hidden],
                format,
                1.0,
                limit,
            );
            // The first and last row of every part, and a few others.
            let mut ids: Vec<u32> = w
                .parts
                .iter()
                .flat_map(|p| [p.rows.start as u32, p.rows.end as u32 - 1])
                .collect();
            ids.extend((0..5).map(|_| rng.below(vocab as u32)));
            let n = ids.len();
            let ids_buf = Tensor::from_f32(
                &gpu,
                &ids.iter().map(|&i| f32::from_bits(i)).collect::<Vec<_>>(),
                &[n],
                "ids",
            )
            .unwrap();
            let out = guarded(&gpu, &[n, hidden]);
            let mut rec = Recorder::new(&gpu);
            ops::embedding(&mut rec, &ids_buf.buffer, n, &w, &out).unwrap();
            rec.submit().unwrap();
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| table[i as usize * hidden..][..hidden].to_vec())
                .collect();
            assert_close(
                &format!("embedding {format} parts {}", w.parts.len()),
                &read_guarded(&gpu, &out),
                &want,
                0.0,
                0.0,
            );
        }
    }
}

/// The bytes of plane `scales` (or values) of every part, concatenated in row order.
fn read_plane(gpu: &Gpu, w: &Weight, scales: bool) -> Vec<u8> {
    let k = w.row_len();
    let row = if scales {
        w.format.row_scale_bytes(k)
    } else {
        w.format.row_bytes(k)
    };
    let mut out = Vec::new();
    for p in &w.parts {
        let buf = if scales {
            p.scales.as_ref().unwrap()
        } else {
            &p.values
        };
        let bytes = pollster::block_on(read_buffer(gpu, buf, 0, (p.rows.len() * row) as u64));
        out.extend(bytes.unwrap());
    }
    out
}

#[test]
fn write_rows_streams_pieces_across_parts() {
    let gpu = gpu();
    let mut rng = Rng::new(14);
    for format in FORMATS {
        // k = 96: q4 scale rows are 6 bytes, so pieces must hold even row counts.
        for (rows, k) in [(67, 96), (29, 77)] {
            if format.is_quantized() && k % 32 != 0 {
                continue;
            }
            let (_, planes) = encode(&rng.vec(rows * k, 1.0), format, k);
            let limit = (rows * format.row_bytes(k) / 3) as u64;
            let w = Weight::alloc_with_part_limit(&gpu, "w", format, &[rows, k], limit).unwrap();
            assert!(
                w.parts.len() >= 3,
                "{format} {rows}x{k}: {} parts",
                w.parts.len()
            );
            for p in &w.parts {
                assert!(p.values.size() <= limit, "{format}: part over the limit");
            }
            let wa = w.write_align_rows();
            let (rb, sb) = (format.row_bytes(k), format.row_scale_bytes(k));
            // Pieces of varied sizes, written last to first, crossing part boundaries.
            let mut cuts = vec![0];
            while *cuts.last().unwrap() < rows {
                let step = wa * (1 + rng.below(4) as usize);
                cuts.push((cuts.last().unwrap() + step).min(rows));
            }
            for c in cuts.windows(2).rev() {
                let s = planes.scales.as_ref().map(|s| &s[c[0] * sb..c[1] * sb]);
                w.write_rows(&gpu, c[0], &planes.values[c[0] * rb..c[1] * rb], s)
                    .unwrap();
            }
            assert_eq!(
                read_plane(&gpu, &w, false),
                planes.values,
                "{format} values"
            );
            if let Some(s) = &planes.scales {
                assert_eq!(&read_plane(&gpu, &w, true), s, "{format} scales");
            }
            assert_eq!(
                w.gpu_bytes(),
                Weight::planned_gpu_bytes("w", format, &[rows, k], limit).unwrap()
            );
        }
    }
}

#[test]
fn real_vocabulary_plans_under_a_128_mib_binding() {
    let limit = 128 << 20;
    for format in FORMATS {
        for (vocab, hidden) in [(152064, 2048), (152064, 3584), (152064, 5120)] {
            let plan =
                Weight::plan_parts("lm_head.weight", format, &[vocab, hidden], limit).unwrap();
            let rb = format.row_bytes(hidden);
            assert_eq!(plan.first().unwrap().start, 0);
            assert_eq!(plan.last().unwrap().end, vocab);
            for (a, b) in plan.iter().zip(plan.iter().skip(1)) {
                assert_eq!(a.end, b.start);
            }
            for r in &plan {
                assert!((r.len() * rb) as u64 <= limit, "{format}: {r:?}");
                assert_eq!(r.start * rb % 16, 0);
            }
            let whole = (vocab * rb) as u64;
            assert_eq!(
                plan.len() as u64,
                whole.div_ceil(limit).max(1),
                "{format} {hidden}: balanced, no extra part"
            );
        }
    }
}

#[test]
fn bad_weights_are_clear_errors() {
    let gpu = gpu();
    let err = |r: Result<Weight, qoqmed_engine::Error>| r.unwrap_err().to_string();
    let e = err(Weight::alloc(&gpu, "w", WeightFormat::Q4, &[4, 48]));
    assert!(e.contains("multiple of 32") && e.contains("f16"), "{e}");
    let e = err(Weight::alloc(&gpu, "b", WeightFormat::Q8, &[64]));
    assert!(e.contains("q8"), "{e}");
    let e = err(Weight::alloc_with_part_limit(
        &gpu,
        "w",
        WeightFormat::F32,
        &[4, 64],
        100,
    ));
    assert!(e.contains("cannot be split"), "{e}");
    let e = err(Weight::alloc_with_part_limit(
        &gpu,
        "n",
        WeightFormat::F32,
        &[64],
        64,
    ));
    assert!(e.contains("cannot be split"), "{e}");
    let e = err(Weight::alloc(&gpu, "w", WeightFormat::F16, &[0, 8]));
    assert!(e.contains("no elements"), "{e}");

    let w = Weight::alloc(&gpu, "w", WeightFormat::Q4, &[4, 64]).unwrap();
    let e = w
        .write_rows(&gpu, 0, &[0; 64], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scales"), "{e}");
    let e = w
        .write_rows(&gpu, 0, &[0; 64], Some(&[0; 6]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("6 scale bytes"), "{e}");
    let e = w
        .write_rows(&gpu, 3, &[0; 64], Some(&[0; 8]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rows 3..5"), "{e}");
    let e = w
        .write_rows(&gpu, 0, &[0; 33], Some(&[0; 8]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("whole"), "{e}");
    let h = Weight::alloc(&gpu, "h", WeightFormat::F16, &[4, 3]).unwrap();
    assert_eq!(h.write_align_rows(), 2);
    let e = h
        .write_rows(&gpu, 1, &[0; 6], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiples of 2 rows"), "{e}");
    h.write_rows(&gpu, 2, &[0; 12], None).unwrap();
    let e = Weight::upload(&gpu, "u", WeightFormat::F16, &[4, 3], &[0; 22], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 24"), "{e}");

    // A quantized bias is refused by linear with the bias's name.
    let mut rng = Rng::new(15);
    let (_, qb) = weight(&gpu, &mut rng, "qbias", &[2, 32], WeightFormat::Q8, 1.0);
    let qb = Weight {
        shape: vec![64],
        ..qb
    };
    let (_, w) = weight(&gpu, &mut rng, "w", &[64, 32], WeightFormat::Q4, 1.0);
    let x = Tensor::zeros(&gpu, &[1, 32], "x").unwrap();
    let y = Tensor::zeros(&gpu, &[1, 64], "y").unwrap();
    let e = ops::linear(&mut Recorder::new(&gpu), &x, &w, Some(&qb), &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("qbias") && e.contains("q8"), "{e}");
}

#[test]
fn gate_up_silu_matches_cpu() {
    let mut rng = Rng::new(16);
    for gpu in gpus() {
        for format in FORMATS {
            for (m, n, k, split) in [(1, 37, 64, false), (1, 600, 96, true), (20, 67, 96, false)] {
                let limit = split.then_some((n * format.row_bytes(k) / 3) as u64);
                let x = rng.vec(m * k, 1.0);
                let (gv, g) = weight_split(&gpu, &mut rng, "gate", &[n, k], format, 0.5, limit);
                let (uv, u) = weight_split(&gpu, &mut rng, "up", &[n, k], format, 0.5, limit);
                let xt = Tensor::from_f32(&gpu, &x, &[m, k], "x").unwrap();
                let out = guarded(&gpu, &[m, n]);
                let tmp = |name| Tensor::zeros(&gpu, &[m, n], name).unwrap();
                let (gt, ut) = (tmp("gate_out"), tmp("up_out"));
                let mut rec = Recorder::new(&gpu);
                ops::gate_up_silu(&mut rec, &xt, &g, &u, &out, &gt, &ut).unwrap();
                rec.submit().unwrap();
                let gw = cpu_linear(&x, &gv, None, m, n, k);
                let uw = cpu_linear(&x, &uv, None, m, n, k);
                let want: Vec<f32> = gw
                    .iter()
                    .zip(&uw)
                    .map(|(g, u)| (*g as f64 / (1.0 + (-*g as f64).exp()) * *u as f64) as f32)
                    .collect();
                assert_close(
                    &format!(
                        "gate_up_silu {format} m{m} n{n} k{k} parts {} rows kernels {}",
                        g.parts.len(),
                        gpu.tuning.matmul_rows
                    ),
                    &read_guarded(&gpu, &out),
                    &want,
                    2e-5,
                    1e-5,
                );
            }
        }
    }
}
