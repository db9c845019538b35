//! The objective of one micro-batch, as the released code (EasyR1 `compute_policy_loss` and the
//! `low_var_kl` loss term):
//!
//! ratio = exp(logp - old), clipped = exp(clamp(logp - old, ln(1 - low), ln(1 + high)))
//! pg = max(-A ratio, -A clipped); for A < 0 also min(pg, -A dual)
//! kl = clamp(exp(ref - logp) - (ref - logp) - 1, -10, 10)           (k3 estimator)
//! loss = token_mean(pg) + kl_coef * token_mean(kl)

use burn::tensor::{Bool, Tensor, TensorData};

use crate::error::Result;
use crate::policy::to_vec;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    pub clip_dual: f64,
    pub kl_coef: f64,
}

/// The per-token quantities the loss needs besides the policy's log-probs, row-major
/// (batch, completion_len).
pub struct Targets<'a> {
    pub old_log_probs: &'a [f32],
    pub ref_log_probs: &'a [f32],
    /// One advantage per sequence.
    pub advantages: &'a [f32],
    pub valid: &'a [f32],
}

/// What one micro-batch reports (token means over its real completion tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    pub tokens: usize,
    pub pg_loss: f64,
    pub kl: f64,
    pub clip_frac_high: f64,
    pub clip_frac_low: f64,
    /// Mean of old - new log-prob (EasyR1's `ppo_kl`).
    pub ppo_kl: f64,
}

/// The scalar loss of one micro-batch (token mean) and its statistics. `log_probs` is the
/// policy's (batch, completion_len) output, with gradients.
pub fn loss(
    log_probs: Tensor<2>,
    t: &Targets<'_>,
    cfg: &LossConfig,
) -> Result<(Tensor<1>, LossStats)> {
    let [b, c] = log_probs.dims();
    let device = log_probs.device();
    let host = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [b, c]), &device);
    let old = host(t.old_log_probs);
    let reference = host(t.ref_log_probs);
    let valid = host(t.valid);
    let adv: Vec<f32> = t
        .advantages
        .iter()
        .flat_map(|&a| std::iter::repeat_n(a, c))
        .collect();
    let negative = Tensor::<2, Bool>::from_data(
        TensorData::new(adv.iter().map(|&a| a < 0.0).collect::<Vec<bool>>(), [b, c]),
        &device,
    );
    let adv = host(&adv);
    let tokens = t.valid.iter().filter(|&&v| v > 0.0).count().max(1);

    let neg_approx_kl = log_probs.clone() - old;
    let ratio = neg_approx_kl.clone().exp();
    let clipped = neg_approx_kl
        .clone()
        .clamp((1.0 - cfg.clip_low).ln(), (1.0 + cfg.clip_high).ln())
        .exp();
    let pg1 = adv.clone().neg() * ratio;
    let pg2 = adv.clone().neg() * clipped;
    let pg3 = adv.neg().mul_scalar(cfg.clip_dual);
    let higher = pg1.clone().max_pair(pg2.clone());
    let lower = higher.clone().min_pair(pg3.clone());
    let pg = higher.clone().mask_where(negative.clone(), lower);
    let pg_loss = (pg * valid.clone()).sum().div_scalar(tokens as f64);

    let d = reference - log_probs;
    let kl = (d.clone().exp() - d).sub_scalar(1.0).clamp(-10.0, 10.0);
    let kl_loss = (kl * valid.clone()).sum().div_scalar(tokens as f64);
    let total = pg_loss.clone() + kl_loss.clone().mul_scalar(cfg.kl_coef);

    // Statistics, detached and read back once.
    let frac_high = (pg1.clone().lower(pg2).float() * valid.clone()).sum();
    let frac_low = (higher.greater(pg3).float() * negative.float() * valid.clone()).sum();
    let ppo_kl = (neg_approx_kl.neg() * valid).sum();
    let stats = to_vec(Tensor::cat(
        vec![
            pg_loss.detach(),
            kl_loss.detach(),
            frac_high.detach(),
            frac_low.detach(),
            ppo_kl.detach(),
        ],
        0,
    ))?;
    let n = tokens as f64;
    Ok((
        total,
        LossStats {
            tokens: t.valid.iter().filter(|&&v| v > 0.0).count(),
            pg_loss: stats[0] as f64,
            kl: stats[1] as f64,
            clip_frac_high: stats[2] as f64 / n,
            clip_frac_low: stats[3] as f64 / n,
            ppo_kl: stats[4] as f64 / n,
        },
    ))
}

/// The same objective in f64 on the host, for tests (one row of advantages per sequence).
pub fn reference_loss(log_probs: &[f64], t: &Targets<'_>, cfg: &LossConfig) -> f64 {
    let c = log_probs.len() / t.advantages.len().max(1);
    let tokens = t.valid.iter().filter(|&&v| v > 0.0).count().max(1) as f64;
    let mut pg_sum = 0.0;
    let mut kl_sum = 0.0;
    for (i, &lp) in log_probs.iter().enumerate() {
        if t.valid[i] <= 0.0 {
            continue;
        }
        let a = t.advantages[i / c] as f64;
        let nk = lp - t.old_log_probs[i] as f64;
        let ratio = nk.exp();
        let clipped = nk
            .clamp((1.0 - cfg.clip_low).ln(), (1.0 + cfg.clip_high).ln())
            .exp();
        let higher = (-a * ratio).max(-a * clipped);
        let pg = if a < 0.0 {
            higher.min(-a * cfg.clip_dual)
        } else {
            higher
        };
        pg_sum += pg;
        let d = t.ref_log_probs[i] as f64 - lp;
        kl_sum += (d.exp() - d - 1.0).clamp(-10.0, 10.0);
    }
    pg_sum / tokens + cfg.kl_coef * kl_sum / tokens
}
