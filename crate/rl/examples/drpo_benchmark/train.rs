//! The clipped policy-gradient loop shared by every method: G rollouts per question, advantages from
//! `qoqmed_rl::advantages`, PPO-style clipped ratio (clip 0.2 / 0.3, dual clip 3.0), token mean
//! over the mini-batch (one token per answer here), Adam with grad-norm clip 1.0.

use qoqmed_rl::{AdvantageError, DrpoOptions, DrpoState, Group, KlDamping, advantages};

use crate::policy::{Adam, PARAMS, Policy};
use crate::rng::Rng;
use crate::task::{DOMAINS, LABELS_PER_DOMAIN, Task};

pub struct Budget {
    pub steps: usize,
    pub batch: usize,
    pub group: usize,
    pub minibatches: usize,
    pub lr: f64,
}

const CLIP_LOW: f64 = 0.2;
const CLIP_HIGH: f64 = 0.3;
const DUAL_CLIP: f64 = 3.0;

struct Rollout {
    question: usize,
    actions: Vec<usize>,
    logp_old: Vec<f64>,
}

/// F1 of a one-label answer against the true label set.
fn reward(action: usize, labels: &[usize]) -> f64 {
    if labels.contains(&action) {
        2.0 / (1.0 + labels.len() as f64)
    } else {
        0.0
    }
}

/// d(loss)/d(log pi) of the dual-clipped PPO loss for one token (0 where a clip is active).
fn loss_grad(advantage: f64, ratio: f64) -> f64 {
    let unclipped_active = if advantage >= 0.0 {
        ratio <= 1.0 + CLIP_HIGH
    } else {
        (1.0 - CLIP_LOW..=DUAL_CLIP).contains(&ratio)
    };
    if unclipped_active {
        -advantage * ratio
    } else {
        0.0
    }
}

/// Diagnostics of one training run.
pub struct TrainStats {
    /// Steps where the paper's KL-damping threshold t_p (75th percentile of s' * KL) was <= eps,
    /// so the eps floor set every positive-z rollout's multiplier to about eps / z.
    pub kl_floor_steps: usize,
}

/// The 75th-percentile threshold the paper's KL damping would use on this step, computed on a
/// copy of the state with damping and renormalisation off (s' before damping).
fn damping_threshold(
    state: &DrpoState,
    groups: &[Group<'_>],
    options: &DrpoOptions,
) -> Result<f64, AdvantageError> {
    let mut probe = state.clone();
    let plain = DrpoOptions {
        kl_damping: KlDamping::Off,
        renormalise: false,
        ..*options
    };
    let s = advantages(&mut probe, groups, &plain)?;
    let mut z: Vec<f64> = s
        .values
        .iter()
        .zip(groups.iter().flat_map(|g| g.kl.unwrap_or(&[]).iter()))
        .map(|(s, k)| s * k)
        .collect();
    z.sort_by(f64::total_cmp);
    let pos = options.kl_quantile * (z.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Ok(z[lo] + (z[hi] - z[lo]) * (pos - lo as f64))
}

pub fn train(
    task: &Task,
    init: &Policy,
    options: &DrpoOptions,
    seed: u64,
    budget: &Budget,
) -> Result<(Policy, TrainStats), AdvantageError> {
    let mut stats = TrainStats { kl_floor_steps: 0 };
    let mut rng = Rng::new(seed);
    let reference = init.clone();
    let mut policy = init.clone();
    let mut adam = Adam::new(budget.lr, 1.0);
    let mut state = DrpoState::new();
    let mut grad = vec![0.0; PARAMS];
    for _ in 0..budget.steps {
        // Rollouts with the current policy.
        let mut rollouts = Vec::with_capacity(budget.batch);
        let mut rewards = Vec::with_capacity(budget.batch);
        let mut kls = Vec::with_capacity(budget.batch);
        for _ in 0..budget.batch {
            let qi = rng.below(task.train.len());
            let q = &task.train[qi];
            let fwd = policy.forward(&q.features, q.domain);
            let reference_logp = reference.forward(&q.features, q.domain).logp;
            let probs: Vec<f64> = fwd.logp.iter().map(|l| l.exp()).collect();
            let actions: Vec<usize> = (0..budget.group).map(|_| rng.categorical(&probs)).collect();
            let logp_old: Vec<f64> = actions.iter().map(|&a| fwd.logp[a]).collect();
            rewards.push(
                actions
                    .iter()
                    .map(|&a| reward(q.domain * LABELS_PER_DOMAIN + a, &q.labels))
                    .collect::<Vec<f64>>(),
            );
            // k3 estimate of KL(pi || ref) for the one-token answer, clamped as in the spec.
            kls.push(
                actions
                    .iter()
                    .map(|&a| {
                        let d = reference_logp[a] - fwd.logp[a];
                        (d.exp() - d - 1.0).clamp(-10.0, 10.0)
                    })
                    .collect::<Vec<f64>>(),
            );
            rollouts.push(Rollout {
                question: qi,
                actions,
                logp_old,
            });
        }
        let groups: Vec<Group<'_>> = rollouts
            .iter()
            .zip(rewards.iter().zip(&kls))
            .map(|(r, (rw, kl))| Group {
                id: "",
                domain: DOMAINS[task.train[r.question].domain].name,
                rewards: rw,
                kl: Some(kl),
            })
            .collect();
        if options.kl_damping == KlDamping::Paper
            && damping_threshold(&state, &groups, options)? <= options.eps
        {
            stats.kl_floor_steps += 1;
        }
        let adv = advantages(&mut state, &groups, options)?;

        // One PPO epoch over the batch in mini-batches.
        let per = budget.batch.div_ceil(budget.minibatches);
        for (mb, chunk) in rollouts.chunks(per).enumerate() {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let tokens = (chunk.len() * budget.group) as f64;
            for (k, r) in chunk.iter().enumerate() {
                let q = &task.train[r.question];
                let fwd = policy.forward(&q.features, q.domain);
                let a_row = adv.group(mb * per + k).unwrap_or(&[]);
                for ((&action, &old), &a) in r.actions.iter().zip(&r.logp_old).zip(a_row) {
                    let ratio = (fwd.logp[action] - old).exp();
                    let coef = loss_grad(a, ratio) / tokens;
                    if coef != 0.0 {
                        policy.accumulate_logp_grad(
                            &q.features,
                            q.domain,
                            &fwd,
                            action,
                            coef,
                            &mut grad,
                        );
                    }
                }
            }
            adam.step(&mut policy.params, &mut grad);
        }
    }
    Ok((policy, stats))
}
