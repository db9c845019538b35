//! The vision kernels (shaders/vision.wgsl) and the feature injection against naive CPU
//! references on seeded random shapes, with untouched guard rows; the window layout's invariants
//! on many grids.

mod common_gpu;

use common_gpu::{Rng, assert_close, gpu};
use qoqmed_engine::gpu::{Recorder, Tensor, ops};
use qoqmed_engine::model::{Injection, VisionLayout};

#[test]
fn qkv_rope_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(7);
    for (n, heads, hd) in [(37, 3, 10), (5, 16, 80), (1, 1, 2)] {
        let qkv = rng.vec(n * 3 * heads * hd, 1.0);
        let half = hd / 2;
        let angles: Vec<f32> = rng.vec(n * half, 3.0);
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let t = |d: &[f32], s: &[usize], name: &str| Tensor::from_f32(&gpu, d, s, name).unwrap();
        let qkv_t = t(&qkv, &[n, 3 * heads * hd], "qkv");
        let (cos_t, sin_t) = (t(&cos, &[n, half], "cos"), t(&sin, &[n, half], "sin"));
        let out: Vec<Tensor> = (0..3)
            .map(|_| Tensor::zeros(&gpu, &[n, heads, hd], "out").unwrap())
            .collect();
        let mut rec = Recorder::new(&gpu);
        ops::qkv_rope(&mut rec, &qkv_t, &cos_t, &sin_t, &out[0], &out[1], &out[2]).unwrap();
        rec.submit().unwrap();
        for (part, o) in out.iter().enumerate() {
            let got = pollster::block_on(o.to_vec(&gpu)).unwrap();
            let mut want = vec![0f32; n * heads * hd];
            for i in 0..n {
                for h in 0..heads {
                    let src = |d: usize| qkv[((i * 3 + part) * heads + h) * hd + d];
                    for d in 0..half {
                        let (x1, x2) = (src(d), src(d + half));
                        let (c, s) = (cos[i * half + d], sin[i * half + d]);
                        let base = (i * heads + h) * hd;
                        if part == 2 {
                            want[base + d] = x1;
                            want[base + d + half] = x2;
                        } else {
                            want[base + d] = x1 * c - x2 * s;
                            want[base + d + half] = x2 * c + x1 * s;
                        }
                    }
                }
            }
            assert_close(
                &format!("qkv_rope {n}x{heads}x{hd} part {part}"),
                &got,
                &want,
                1e-6,
                1e-6,
            );
        }
    }
}

#[test]
fn gather_rows_keeps_marked_rows_and_guards() {
    let gpu = gpu();
    let mut rng = Rng::new(3);
    let (src_rows, width, n) = (6, 13, 9);
    let src = rng.vec(src_rows * width, 1.0);
    // Two guard rows after the n written ones must stay as they are.
    let dst0 = rng.vec((n + 2) * width, 1.0);
    let index: Vec<u32> = (0..n)
        .map(|i| {
            if i % 3 == 1 {
                ops::KEEP_ROW
            } else {
                rng.below(src_rows as u32)
            }
        })
        .collect();
    let src_t = Tensor::from_f32(&gpu, &src, &[src_rows, width], "src").unwrap();
    let dst = Tensor::from_f32(&gpu, &dst0, &[n + 2, width], "dst").unwrap();
    let idx = ops::u32_buffer(&gpu, &index, "index");
    let mut rec = Recorder::new(&gpu);
    ops::gather_rows(&mut rec, &src_t, &idx, n, &dst).unwrap();
    rec.submit().unwrap();
    let got = pollster::block_on(dst.to_vec(&gpu)).unwrap();
    let mut want = dst0.clone();
    for (i, &r) in index.iter().enumerate() {
        if r != ops::KEEP_ROW {
            want[i * width..][..width].copy_from_slice(&src[r as usize * width..][..width]);
        }
    }
    assert_eq!(got, want);
}

#[test]
fn injection_writes_only_its_positions_in_each_chunk() {
    let gpu = gpu();
    let mut rng = Rng::new(11);
    let hidden = 8;
    let prompt = [1, 7, 7, 2, 7, 3, 7, 7];
    let feats = rng.vec(5 * hidden, 1.0);
    let features = Tensor::from_f32(&gpu, &feats, &[5, hidden], "features").unwrap();
    let inj = Injection::at_token(&prompt, 7, features.clone()).unwrap();
    assert_eq!(inj.positions, vec![1, 2, 4, 6, 7]);
    assert!(Injection::at_token(&prompt[..7], 7, features).is_err());
    // A chunk of 4 tokens at cache rows 3..7: positions 4 and 6 (feature rows 2 and 3).
    let x0 = rng.vec(4 * hidden, 1.0);
    let x = Tensor::from_f32(&gpu, &x0, &[4, hidden], "x").unwrap();
    let mut rec = Recorder::new(&gpu);
    inj.record(&mut rec, 3, 4, &x).unwrap();
    rec.submit().unwrap();
    let got = pollster::block_on(x.to_vec(&gpu)).unwrap();
    let mut want = x0.clone();
    want[hidden..2 * hidden].copy_from_slice(&feats[2 * hidden..3 * hidden]);
    want[3 * hidden..4 * hidden].copy_from_slice(&feats[3 * hidden..4 * hidden]);
    assert_close("injection chunk", &got, &want, 0.0, 0.0);
}

#[test]
fn window_layout_partitions_every_grid() {
    for h in (2..=30).step_by(2) {
        for w in (2..=26).step_by(4) {
            let grids = [[1, h, w], [1, w, h]];
            let l = VisionLayout::new(&grids, 2, 112, 14).unwrap();
            let tokens = (h * w / 2) as usize;
            assert_eq!(l.tokens(), tokens);
            assert_eq!(l.patches, tokens * 4);
            let mut seen = vec![false; tokens];
            for &u in &l.window_index {
                assert!(!seen[u as usize], "unit {u} twice");
                seen[u as usize] = true;
            }
            for (row, &u) in l.window_index.iter().enumerate() {
                assert_eq!(l.reverse_index[u as usize], row as u32);
            }
            // Windows: non-empty, at most 4x4 merged units, never across images.
            for p in l.cu_window_seqlens.windows(2) {
                assert!(p[1] > p[0] && p[1] - p[0] <= 64);
                assert!(l.cu_seqlens.iter().all(|&c| c <= p[0] || c >= p[1]));
            }
            assert_eq!(*l.cu_window_seqlens.last().unwrap() as usize, l.patches);
            assert_eq!(l.segment_bounds(false).len(), l.patches * 2);
            // One rope row (head_dim / 2 values) per patch.
            let (cos, _) = l.rope_tables(8, 10000.0);
            assert_eq!(cos.len(), l.patches * 4);
        }
    }
}
