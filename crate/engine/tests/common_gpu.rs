//! Shared by the GPU test files: the adapter, seeded data, and an all-close check that reports
//! count, max error and where.
#![allow(dead_code)]

use qoqmed_engine::gpu::{Gpu, Weight};
use qoqmed_engine::weights::DType;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// GPU tests never skip: without an adapter they fail and say how to get one.
pub fn gpu() -> Gpu {
    pollster::block_on(Gpu::new(None)).unwrap_or_else(|e| {
        panic!("GPU tests need a wgpu adapter: {e}. Without a GPU install Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1")
    })
}

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        self.0.next_u32() % n
    }
}

/// Rounds `values` to `dtype`, returns (the rounded f32 values the CPU reference uses, the bytes).
pub fn quantize(values: &[f32], dtype: DType) -> (Vec<f32>, Vec<u8>) {
    match dtype {
        DType::F32 => (values.to_vec(), bytemuck::cast_slice(values).to_vec()),
        DType::F16 => {
            let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            (
                h.iter().map(|v| v.to_f32()).collect(),
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        }
        DType::BF16 => {
            let h: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
            (
                h.iter().map(|v| v.to_f32()).collect(),
                h.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        }
    }
}

pub fn weight(
    gpu: &Gpu,
    rng: &mut Rng,
    name: &str,
    shape: &[usize],
    dtype: DType,
    scale: f32,
) -> (Vec<f32>, Weight) {
    let n: usize = shape.iter().product();
    let (values, bytes) = quantize(&rng.vec(n, scale), dtype);
    let w = Weight::upload(gpu, name, dtype, shape, &bytes).expect("upload");
    (values, w)
}

pub const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// |got - want| <= atol + rtol * |want| everywhere, no NaN; on failure names count, max and where.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad = 0;
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if !g.is_finite() || err > atol + rtol * w.abs() {
            bad += 1;
        }
        if !g.is_finite() || err > worst.1 {
            worst = (i, if g.is_finite() { err } else { f32::INFINITY });
        }
    }
    eprintln!(
        "{what}: max abs err {:.3e} over {} values",
        worst.1,
        got.len()
    );
    assert!(
        bad == 0,
        "{what}: {bad} of {} values off (atol {atol}, rtol {rtol}); worst at {}: got {} want {} (err {})",
        got.len(),
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1
    );
}
