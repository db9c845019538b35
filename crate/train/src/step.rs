//! The optimisation half of one training step: log-probs recomputed in burn, the clipped
//! objective over micro-batches with gradient accumulation (memory does not grow with the
//! batch), one global gradient-norm clip and one AdamW update per mini-batch.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::loss::{LossConfig, LossStats, Targets, loss};
use crate::policy::{Inputs, Mode, Policy, PolicyNet, Sequence, to_vec};
use crate::rollout::Prompt;

/// One rollout as the update sees it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Index into the step's prompts.
    pub prompt: usize,
    pub tokens: Vec<u32>,
    /// Under the rollout policy (the engine's logits).
    pub old_log_probs: Vec<f32>,
    /// Under the reference policy (the frozen base).
    pub ref_log_probs: Vec<f32>,
    pub advantage: f32,
}

/// Builds burn inputs for `samples` (each with its prompt).
pub fn inputs(policy: &Policy, prompts: &[Prompt], samples: &[&Sample]) -> Result<Inputs> {
    let seqs: Vec<Sequence<'_>> = samples
        .iter()
        .map(|s| {
            let p = &prompts[s.prompt];
            Sequence {
                prompt: &p.ids,
                positions: &p.positions,
                rope_delta: p.rope_delta,
                completion: &s.tokens,
            }
        })
        .collect();
    Inputs::new(&seqs, policy.inv_freq(), policy.freq_axes())
}

/// Per-token log-probs of each sample's completion under `policy` in `mode`, without gradients,
/// `micro` sequences per forward.
pub fn score(
    policy: &Policy,
    prompts: &[Prompt],
    samples: &[&Sample],
    mode: Mode,
    temperature: f32,
    micro: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(micro.max(1)) {
        let x = inputs(policy, prompts, chunk)?;
        let lp = to_vec(policy.log_probs(&x, mode, temperature).detach())?;
        for (i, s) in chunk.iter().enumerate() {
            let row = &lp[i * x.completion_len..i * x.completion_len + s.tokens.len()];
            out.push(row.to_vec());
        }
    }
    Ok(out)
}

/// What the update of one rollout step reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpdateReport {
    /// Token-weighted means over every micro-batch of the step.
    pub loss: f64,
    pub pg_loss: f64,
    pub kl: f64,
    pub clip_frac_high: f64,
    pub clip_frac_low: f64,
    pub ppo_kl: f64,
    /// Global gradient norm before clipping, mean over the step's mini-batches.
    pub grad_norm: f64,
    pub tokens: usize,
}

pub struct Optimizer {
    pub inner: ModuleOptimizer,
    pub learning_rate: f64,
    pub max_grad_norm: f32,
}

impl Optimizer {
    /// AdamW with torch's defaults (betas 0.9 / 0.999, eps 1e-8) and decoupled weight decay, as
    /// the released recipe; the gradient-norm clip is global (torch `clip_grad_norm_`), not
    /// burn's per-tensor one, so it is applied here rather than configured in burn.
    pub fn new(learning_rate: f64, weight_decay: f64, max_grad_norm: f32) -> Self {
        let inner = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(weight_decay as f32)
            .init();
        Optimizer {
            inner,
            learning_rate,
            max_grad_norm,
        }
    }
}

/// Settings of the update.
pub struct UpdateConfig {
    pub loss: LossConfig,
    pub mini_batches: usize,
    pub micro_batch: usize,
    pub temperature: f32,
    /// Seeds LoRA dropout per micro-batch, so a resumed run draws the same masks.
    pub seed: u64,
}

/// Runs the PPO epoch over `samples` (in order, split into `mini_batches` updates).
pub fn update(
    policy: &mut Policy,
    optim: &mut Optimizer,
    prompts: &[Prompt],
    samples: &[Sample],
    cfg: &UpdateConfig,
) -> Result<UpdateReport> {
    let device = policy.net.embed_tokens.val().device();
    let mut report = UpdateReport::default();
    let mut weighted = LossStats::default();
    let mut loss_sum = 0.0;
    let per_mini = samples.len().div_ceil(cfg.mini_batches);
    let minis: Vec<&[Sample]> = samples.chunks(per_mini.max(1)).collect();
    for (m, mini) in minis.iter().enumerate() {
        let micros: Vec<&[Sample]> = mini.chunks(cfg.micro_batch.max(1)).collect();
        let mut accumulator = GradientsAccumulator::<PolicyNet>::new();
        for (k, micro) in micros.iter().enumerate() {
            device
                .seed(cfg.seed ^ ((m as u64) << 32 | k as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let refs: Vec<&Sample> = micro.iter().collect();
            let x = inputs(policy, prompts, &refs)?;
            let c = x.completion_len;
            let pad = |f: &dyn Fn(&Sample) -> &[f32]| -> Vec<f32> {
                micro
                    .iter()
                    .flat_map(|s| {
                        let v = f(s);
                        v.iter()
                            .copied()
                            .chain(std::iter::repeat_n(0.0, c - v.len()))
                    })
                    .collect()
            };
            let old = pad(&|s| &s.old_log_probs);
            let reference = pad(&|s| &s.ref_log_probs);
            let advantages: Vec<f32> = micro.iter().map(|s| s.advantage).collect();
            let targets = Targets {
                old_log_probs: &old,
                ref_log_probs: &reference,
                advantages: &advantages,
                valid: &x.valid,
            };
            let log_probs = policy.log_probs(&x, Mode::TRAIN, cfg.temperature);
            let (total, stats) = loss(log_probs, &targets, &cfg.loss)?;
            let total = total.div_scalar(micros.len() as f64);
            let tokens = stats.tokens as f64;
            loss_sum += (stats.pg_loss + cfg.loss.kl_coef * stats.kl) * tokens;
            weighted.pg_loss += stats.pg_loss * tokens;
            weighted.kl += stats.kl * tokens;
            weighted.clip_frac_high += stats.clip_frac_high * tokens;
            weighted.clip_frac_low += stats.clip_frac_low * tokens;
            weighted.ppo_kl += stats.ppo_kl * tokens;
            weighted.tokens += stats.tokens;
            let grads = GradientsParams::from_grads(total.backward(), &policy.net);
            accumulator.accumulate(&policy.net, grads);
        }
        let mut grads = accumulator.grads();
        report.grad_norm += clip_global_norm(&policy.net, &mut grads, optim.max_grad_norm)?;
        let net = std::mem::replace(&mut policy.net, PolicyNet::placeholder(&device));
        policy.net = optim.inner.step(optim.learning_rate, net, grads);
    }
    let n = weighted.tokens.max(1) as f64;
    report.loss = loss_sum / n;
    report.pg_loss = weighted.pg_loss / n;
    report.kl = weighted.kl / n;
    report.clip_frac_high = weighted.clip_frac_high / n;
    report.clip_frac_low = weighted.clip_frac_low / n;
    report.ppo_kl = weighted.ppo_kl / n;
    report.grad_norm /= minis.len().max(1) as f64;
    report.tokens = weighted.tokens;
    Ok(report)
}

/// Scales every gradient by min(1, max_norm / (norm + 1e-6)) where norm is the l2 norm over all
/// parameters together (torch `clip_grad_norm_`); returns the norm before clipping.
pub fn clip_global_norm(
    net: &PolicyNet,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> Result<f64> {
    struct Squares<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Squares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut squares = Squares {
        grads,
        parts: Vec::new(),
    };
    net.visit(&mut squares);
    if squares.parts.is_empty() {
        return Ok(0.0);
    }
    let total: f64 = to_vec(Tensor::cat(squares.parts, 0))?
        .iter()
        .map(|&v| v as f64)
        .sum();
    let norm = total.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm as f64 / (norm + 1e-6);
        if coef < 1.0 {
            net.visit(&mut Scale {
                grads,
                factor: coef,
            });
        }
    }
    Ok(norm)
}

impl PolicyNet {
    /// A one-element stand-in, held while the optimizer consumes the real module.
    pub fn placeholder(device: &Device) -> Self {
        PolicyNet {
            embed_tokens: Param::from_tensor(Tensor::zeros([1, 1], device)),
            layers: Vec::new(),
            norm: Param::from_tensor(Tensor::zeros([1], device)),
            lm_head: None,
        }
    }
}
