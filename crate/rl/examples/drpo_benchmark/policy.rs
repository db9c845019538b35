//! The policy: a one-hidden-layer MLP shared by all domains, a softmax over the question's domain
//! labels, hand-written gradients, Adam with global grad-norm clipping.

use crate::rng::Rng;
use crate::task::{FEATURES, LABELS_PER_DOMAIN};

pub const HIDDEN: usize = 32;
pub const OUTPUTS: usize = 6 * LABELS_PER_DOMAIN;

/// All parameters in one flat buffer: U (HIDDEN, FEATURES), c (HIDDEN), W (OUTPUTS, HIDDEN), b (OUTPUTS).
#[derive(Clone)]
pub struct Policy {
    pub params: Vec<f64>,
}

const U: usize = 0;
const C: usize = U + HIDDEN * FEATURES;
const W: usize = C + HIDDEN;
const B: usize = W + OUTPUTS * HIDDEN;
pub const PARAMS: usize = B + OUTPUTS;

/// Activations kept for the backward pass.
pub struct Forward {
    pub hidden: [f64; HIDDEN],
    /// Log-probabilities over the domain's labels.
    pub logp: [f64; LABELS_PER_DOMAIN],
}

impl Policy {
    pub fn new(rng: &mut Rng) -> Self {
        let mut params = vec![0.0; PARAMS];
        let su = 1.0 / (FEATURES as f64).sqrt();
        let sw = 1.0 / (HIDDEN as f64).sqrt();
        for p in &mut params[U..C] {
            *p = rng.normal() * su;
        }
        for p in &mut params[W..B] {
            *p = rng.normal() * sw * 0.1;
        }
        Policy { params }
    }

    pub fn forward(&self, x: &[f64; FEATURES], domain: usize) -> Forward {
        let p = &self.params;
        let mut hidden = [0.0; HIDDEN];
        for (j, h) in hidden.iter_mut().enumerate() {
            let row = &p[U + j * FEATURES..U + (j + 1) * FEATURES];
            *h = (row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + p[C + j]).tanh();
        }
        let mut logits = [0.0; LABELS_PER_DOMAIN];
        for (l, z) in logits.iter_mut().enumerate() {
            let o = domain * LABELS_PER_DOMAIN + l;
            let row = &p[W + o * HIDDEN..W + (o + 1) * HIDDEN];
            *z = row.iter().zip(&hidden).map(|(a, b)| a * b).sum::<f64>() + p[B + o];
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
        let mut logp = [0.0; LABELS_PER_DOMAIN];
        for (lp, z) in logp.iter_mut().zip(&logits) {
            *lp = z - lse;
        }
        Forward { hidden, logp }
    }

    /// Add `coef * d log pi(action) / d params` to `grad`.
    pub fn accumulate_logp_grad(
        &self,
        x: &[f64; FEATURES],
        domain: usize,
        fwd: &Forward,
        action: usize,
        coef: f64,
        grad: &mut [f64],
    ) {
        let p = &self.params;
        let mut dhidden = [0.0; HIDDEN];
        for l in 0..LABELS_PER_DOMAIN {
            let dz = coef * (f64::from(u8::from(l == action)) - fwd.logp[l].exp());
            let o = domain * LABELS_PER_DOMAIN + l;
            grad[B + o] += dz;
            for j in 0..HIDDEN {
                grad[W + o * HIDDEN + j] += dz * fwd.hidden[j];
                dhidden[j] += dz * p[W + o * HIDDEN + j];
            }
        }
        for j in 0..HIDDEN {
            let dpre = dhidden[j] * (1.0 - fwd.hidden[j] * fwd.hidden[j]);
            grad[C + j] += dpre;
            for (g, xi) in grad[U + j * FEATURES..U + (j + 1) * FEATURES]
                .iter_mut()
                .zip(x)
            {
                *g += dpre * xi;
            }
        }
    }
}

/// Adam (no weight decay) with global gradient-norm clipping, as the spec's optimiser minus decay.
pub struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    pub lr: f64,
    pub clip: f64,
}

impl Adam {
    pub fn new(lr: f64, clip: f64) -> Self {
        Adam {
            m: vec![0.0; PARAMS],
            v: vec![0.0; PARAMS],
            t: 0,
            lr,
            clip,
        }
    }

    /// One descent step on `grad` (the gradient of the loss).
    pub fn step(&mut self, params: &mut [f64], grad: &mut [f64]) {
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        if norm > self.clip {
            for g in grad.iter_mut() {
                *g *= self.clip / norm;
            }
        }
        self.t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..params.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * grad[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * grad[i] * grad[i];
            params[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}
