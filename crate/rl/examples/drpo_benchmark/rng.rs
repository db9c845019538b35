//! Seeded random numbers for the benchmark (ChaCha8, so every seed reproduces exactly).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Index drawn with the given (not necessarily normalised) probabilities.
    pub fn categorical(&mut self, p: &[f64]) -> usize {
        let total: f64 = p.iter().sum();
        let mut target = self.uniform() * total;
        for (i, &w) in p.iter().enumerate() {
            target -= w;
            if target < 0.0 {
                return i;
            }
        }
        p.len() - 1
    }
}
