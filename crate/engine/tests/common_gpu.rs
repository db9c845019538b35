//! Shared by the GPU test files: the adapter, seeded data, and an all-close check that reports
//! count, max error and where.
#![allow(dead_code)]

use qoqmed_engine::gpu::{Gpu, Tensor, Tuning, Weight, WeightFormat, read_buffer};
use qoqmed_engine::quant::{self, Planes};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// GPU tests never skip: without an adapter they fail and say how to get one.
pub fn gpu() -> Gpu {
    pollster::block_on(Gpu::new(None)).unwrap_or_else(|e| {
        panic!("GPU tests need a wgpu adapter: {e}. Without a GPU install Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1")
    })
}

/// The adapter's own kernel choice, and the portable kernels if those differ (on lavapipe the
/// first is the CPU-tier variants, the second what every browser runs).
pub fn gpus() -> Vec<Gpu> {
    let native = gpu();
    let mut portable = gpu();
    portable.tuning = Tuning::portable();
    eprintln!("adapter tuning: {:?}", native.tuning);
    if native.tuning == portable.tuning {
        vec![native]
    } else {
        vec![native, portable]
    }
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

/// Encodes `values` (rows of `k`) in `format` with the engine's quantizer; returns the values the
/// GPU should see (decoded back on the CPU) and the planes.
pub fn encode(values: &[f32], format: WeightFormat, k: usize) -> (Vec<f32>, Planes) {
    let planes = quant::quantize(format, values, k).expect("quantize");
    let decoded =
        quant::dequantize(format, &planes.values, planes.scales.as_deref(), k).expect("dequantize");
    (decoded, planes)
}

/// A seeded random weight in `format` (rows of `shape[1..]`), uploaded; returns its decoded values.
pub fn weight(
    gpu: &Gpu,
    rng: &mut Rng,
    name: &str,
    shape: &[usize],
    format: WeightFormat,
    scale: f32,
) -> (Vec<f32>, Weight) {
    weight_split(gpu, rng, name, shape, format, scale, None)
}

/// [`weight`] with parts of at most `max_part_bytes` (None: the adapter's limit).
pub fn weight_split(
    gpu: &Gpu,
    rng: &mut Rng,
    name: &str,
    shape: &[usize],
    format: WeightFormat,
    scale: f32,
    max_part_bytes: Option<u64>,
) -> (Vec<f32>, Weight) {
    let n: usize = shape.iter().product();
    let k: usize = shape.iter().skip(1).product();
    let (values, planes) = encode(&rng.vec(n, scale), format, k);
    let w = match max_part_bytes {
        None => Weight::alloc(gpu, name, format, shape),
        Some(limit) => Weight::alloc_with_part_limit(gpu, name, format, shape, limit),
    }
    .expect("alloc");
    w.write_rows(gpu, 0, &planes.values, planes.scales.as_deref())
        .expect("write_rows");
    (values, w)
}

/// The 16/32-bit formats: any shape.
pub const DTYPES: [WeightFormat; 3] = [WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16];

/// Every format; Q8/Q4 need rows of a multiple of 32 values.
pub const FORMATS: [WeightFormat; 5] = WeightFormat::ALL;

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

pub const GUARD: f32 = 7.5;
pub const GUARDS: usize = 37;

/// An output tensor of `shape` filled with NaN (an unwritten value fails) and followed by guard
/// values that must stay untouched.
pub fn guarded(gpu: &Gpu, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut init = vec![f32::NAN; n];
    init.extend(std::iter::repeat_n(GUARD, GUARDS));
    let t = Tensor::from_f32(gpu, &init, &[n + GUARDS], "guarded").unwrap();
    Tensor {
        buffer: t.buffer,
        shape: shape.to_vec(),
    }
}

/// The outputs of a [`guarded`] tensor, after checking that the guards behind them are untouched.
pub fn read_guarded(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
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
