//! Next-token selection with Hugging Face transformers' semantics, in plain seeded Rust.
//!
//! Order as `GenerationMixin._get_logits_processor`: repetition penalty (over prompt + generated
//! ids) -> temperature -> top-k -> top-p -> categorical draw. Temperature 0 is greedy argmax
//! (first maximum on ties, as `torch.argmax`). The trainer reuses [`log_softmax`] and
//! [`Sampler::process`] to score tokens exactly as they were sampled.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Greedy decoding without penalty.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Rejects values transformers rejects too, with the flag to fix.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::Input(format!(
                "--temperature {} must be 0 (greedy) or positive",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!(
                "--top-p {} must be in (0, 1]",
                self.top_p
            )));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::Input(format!(
                "--repetition-penalty {} must be positive (1.0 = off)",
                self.repetition_penalty
            )));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        // NaN counts as greedy rather than poisoning every logit.
        self.temperature.is_nan() || self.temperature <= 0.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Which ids the penalty already touched this step (reused to avoid a per-step allocation).
    seen: Vec<bool>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Sampler {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            seen: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// false only for greedy decoding without penalty: then the GPU argmax gives the same token
    /// and the logits need not be read back.
    pub fn needs_logits(&self) -> bool {
        !(self.params.is_greedy() && self.params.repetition_penalty == 1.0)
    }

    /// Picks the next token. `logits` (one per vocabulary entry) is modified in place into the
    /// processed scores; `history` holds the prompt and the tokens generated so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.process(logits, history);
        if self.params.is_greedy() {
            return argmax(logits);
        }
        self.draw(logits)
    }

    /// Applies the logits processors in transformers' order, leaving the scores transformers
    /// would pass to softmax before its multinomial draw (removed tokens are -inf). Greedy
    /// decoding applies only the repetition penalty, as transformers does.
    pub fn process(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = self.params;
        if p.repetition_penalty != 1.0 {
            self.repetition_penalty(logits, history);
        }
        if p.is_greedy() {
            return;
        }
        if p.temperature != 1.0 {
            // Division, not multiplication by the reciprocal: bit-identical to `scores / t`.
            logits.iter_mut().for_each(|x| *x /= p.temperature);
        }
        if p.top_k > 0 {
            top_k(logits, p.top_k);
        }
        if p.top_p < 1.0 {
            top_p(logits, p.top_p);
        }
    }

    /// `RepetitionPenaltyLogitsProcessor`: each distinct id seen once, negative scores multiplied,
    /// positive ones divided. Ids outside the vocabulary are ignored.
    fn repetition_penalty(&mut self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.params.repetition_penalty;
        self.seen.clear();
        self.seen.resize(logits.len(), false);
        for &id in history {
            let i = id as usize;
            let (Some(seen), Some(score)) = (self.seen.get_mut(i), logits.get_mut(i)) else {
                continue;
            };
            if !*seen {
                *seen = true;
                *score = if *score < 0.0 {
                    *score * penalty
                } else {
                    *score / penalty
                };
            }
        }
    }

    /// The next uniform number in [0, 1) of this sampler's stream: what a draw consumes. The GPU
    /// sampler is handed these so both pick the same tokens for a seed.
    pub fn next_uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Categorical draw from softmax(scores) by inverse CDF on a seeded uniform in [0, 1).
    fn draw(&mut self, scores: &[f32]) -> u32 {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            // Nothing finite to sample from (all removed or NaN); fall back to the argmax.
            return argmax(scores);
        }
        let weights: Vec<f64> = scores.iter().map(|&s| f64::from(s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let u = self.next_uniform();
        let target = u * total;
        let mut acc = 0.0;
        let mut last_positive = 0;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                acc += w;
                last_positive = i;
                if acc > target {
                    return i as u32;
                }
            }
        }
        // Rounding left `acc` just below `target`: the last token with weight is the answer.
        last_positive as u32
    }
}

/// Index of the first maximum (as `torch.argmax` on finite values); 0 for an empty slice.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

/// `TopKLogitsWarper`: keeps every score >= the k-th largest (ties at the boundary survive).
fn top_k(scores: &mut [f32], k: usize) {
    if k >= scores.len() {
        return;
    }
    let mut sorted: Vec<f32> = scores.to_vec();
    let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    for s in scores.iter_mut() {
        if *s < threshold {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper`: sorts ascending, removes tokens whose cumulative probability is
/// <= 1 - top_p, always keeping the most likely token.
fn top_p(scores: &mut [f32], top_p: f32) {
    // Tokens already removed (-inf, e.g. by top-k) have probability 0 and stay removed; leaving
    // them out of the sort keeps this O(k log k) after top-k instead of O(vocab log vocab).
    let mut order: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i] > f32::NEG_INFINITY)
        .collect();
    if order.is_empty() {
        return;
    }
    // Stable, like transformers' `torch.sort(descending=False)` on a CPU tensor in practice.
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let probs = softmax(scores);
    // transformers compares against the Python float `1 - top_p`, cast to f32; the shortest
    // decimal form of our f32 recovers the value the user typed (0.9, not 0.899999976).
    let top_p64: f64 = top_p.to_string().parse().unwrap_or(f64::from(top_p));
    let cut = (1.0 - top_p64) as f32;
    // torch's CPU cumsum accumulates f32 in f64 and stores each partial sum as f32.
    let mut cumulative = 0.0f64;
    let last = order.len() - 1;
    for (rank, &i) in order.iter().enumerate() {
        cumulative += f64::from(probs[i]);
        if (cumulative as f32) <= cut && rank != last {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// Softmax in f32 with the max subtracted (all -inf gives all zeros).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// log(softmax(logits)), stable: x - max - ln(sum(exp(x - max))), summed in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![f32::NEG_INFINITY; logits.len()];
    }
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    logits.iter().map(|&x| x - max - log_sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties_at_the_boundary() {
        let mut s = [1.0, 3.0, 2.0, 3.0, 2.0];
        top_k(&mut s, 2);
        assert_eq!(
            s,
            [
                f32::NEG_INFINITY,
                3.0,
                f32::NEG_INFINITY,
                3.0,
                f32::NEG_INFINITY
            ]
        );
        let mut s = [1.0, 3.0, 2.0, 2.0];
        top_k(&mut s, 2);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, 2.0, 2.0]);
    }

    #[test]
    fn empty_logits_do_not_panic() {
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 1.0,
            ..Default::default()
        });
        assert_eq!(sampler.sample(&mut [], &[5]), 0);
    }
}
