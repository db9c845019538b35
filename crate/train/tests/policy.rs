//! The burn policy against transformers and against itself (GPU: lavapipe without one).
//!
//! | check | reference | tolerance |
//! |---|---|---|
//! | logits, every golden case, one by one and batched with left padding | transformers f32 goldens (tools/fixtures/make_text_models.py) | 1e-4 + 1e-4 * abs(ref) |
//! | completion log-probs of transformers' greedy continuation (incl. M-RoPE deltas) | log_softmax of the goldens' per-step raw logits | 1e-4 |
//! | LoRA with B = 0 vs the base | the same model without adapters | bit-identical |
//! | loss value | the same objective in f64 on the host | 1e-5 relative |
//! | gradient | central finite differences (eps 5e-4) of the loss along 3 random directions | 1e-2 relative |
//! | loss and gradient with burn's gradient checkpointing (`gradient_checkpointing = true`) | the same without it | 1e-5 relative to the largest gradient |

mod common;

use burn::tensor::Device;
use common::{Golden, assert_close, load_policy, lora};
use qoqmed_train::loss::{LossConfig, Targets, loss, reference_loss};
use qoqmed_train::policy::{HostTensors, Inputs, Mode, Policy, Sequence, to_vec};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const TOL: f32 = 1e-4;

fn prompt_inputs(policy: &Policy, prompts: &[(Vec<u32>, Vec<[u32; 3]>)]) -> Inputs {
    let seqs: Vec<Sequence<'_>> = prompts
        .iter()
        .map(|(ids, pos)| Sequence {
            prompt: ids,
            positions: pos,
            rope_delta: 0,
            completion: &[],
        })
        .collect();
    Inputs::new(&seqs, policy.inv_freq(), policy.freq_axes()).unwrap()
}

/// Checks golden `case`'s logits rows against the forward of batch row `b` of `x`.
fn check_rows(policy: &Policy, model: &str, case: &str, x: &Inputs, b: usize) {
    let g = Golden::load(model, case);
    let (rows, _) = g.f32("logits_rows");
    let cells: Vec<(usize, usize)> = g
        .i64("logits_row_index")
        .iter()
        .map(|&pos| (b, x.column(b, pos as usize)))
        .collect();
    let ours = to_vec(policy.logits_at(x, Mode::POLICY, &cells)).unwrap();
    let worst = assert_close(&format!("{model}/{case} logits"), &ours, &rows, TOL, TOL);
    eprintln!(
        "{model}/{case} (batch row {b} of {}): max |burn - transformers| = {worst:.2e}",
        x.batch
    );
}

#[test]
fn logits_match_transformers_goldens() {
    let device = Device::default();
    for (model, cases) in [
        ("tiny-small-vocab", &["short", "medium", "qoq", "mrope"][..]),
        ("tiny-small-vocab-untied", &["short"][..]),
        ("tiny-qwen-vocab", &["short", "qoq"][..]),
    ] {
        let (policy, _) = load_policy(model, lora(0), &device);
        let prompts: Vec<(Vec<u32>, Vec<[u32; 3]>)> = cases
            .iter()
            .map(|c| {
                let g = Golden::load(model, c);
                (g.ids(), g.positions())
            })
            .collect();
        // One at a time, then all in one left-padded batch (the padding must change nothing).
        for (k, case) in cases.iter().enumerate() {
            let x = prompt_inputs(&policy, &prompts[k..k + 1]);
            check_rows(&policy, model, case, &x, 0);
        }
        if cases.len() > 1 {
            let x = prompt_inputs(&policy, &prompts);
            for (b, case) in cases.iter().enumerate() {
                check_rows(&policy, model, case, &x, b);
            }
        }
    }
}

#[test]
fn completion_log_probs_match_transformers_greedy_steps() {
    let device = Device::default();
    let model = "tiny-small-vocab";
    let (policy, _) = load_policy(model, lora(0), &device);
    let mut seqs_data = Vec::new();
    for case in ["short", "mrope"] {
        let g = Golden::load(model, case);
        let completion: Vec<u32> = g
            .i64("greedy.generated_ids")
            .into_iter()
            .map(|v| v as u32)
            .collect();
        let (steps, shape) = g.f32("greedy.step_logits");
        let vocab = shape[1];
        let expected: Vec<f32> = completion
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                qoqmed_train::rollout::token_log_prob(&steps[j * vocab..(j + 1) * vocab], t, 1.0)
            })
            .collect();
        let delta = g.i64("rope_deltas")[0];
        seqs_data.push((g.ids(), g.positions(), delta, completion, expected));
    }
    let seqs: Vec<Sequence<'_>> = seqs_data
        .iter()
        .map(|(ids, pos, delta, completion, _)| Sequence {
            prompt: ids,
            positions: pos,
            rope_delta: *delta,
            completion,
        })
        .collect();
    let x = Inputs::new(&seqs, policy.inv_freq(), policy.freq_axes()).unwrap();
    let lp = to_vec(policy.log_probs(&x, Mode::POLICY, 1.0)).unwrap();
    for (b, (.., completion, expected)) in seqs_data.iter().enumerate() {
        let ours = &lp[b * x.completion_len..b * x.completion_len + completion.len()];
        let worst = assert_close("greedy log-probs", ours, expected, TOL, 0.0);
        eprintln!("sequence {b}: max |burn - transformers| log-prob = {worst:.2e}");
    }
}

/// Sets every LoRA factor to N(0, scale) values (seeded).
fn randomise_adapters(policy: &mut Policy, seed: u64, scale: f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut saved = HostTensors::new();
    for (name, shape, values) in policy.trainable_tensors().unwrap() {
        let v = values.iter().map(|_| normal(&mut rng) * scale).collect();
        saved.insert(name, (shape, v));
    }
    policy.load_trainable(saved).unwrap();
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u = |r: &mut ChaCha8Rng| ((r.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (a, b) = (u(rng), u(rng));
    ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
}

#[test]
fn lora_with_zero_b_is_exactly_the_base() {
    let device = Device::default();
    let model = "tiny-small-vocab";
    let (base, _) = load_policy(model, lora(0), &device);
    let (mut adapted, _) = load_policy(model, lora(8), &device);
    let g = Golden::load(model, "medium");
    let x = prompt_inputs(&base, &[(g.ids(), g.positions())]);
    let cells: Vec<(usize, usize)> = (0..x.len).map(|c| (0, c)).collect();
    let reference = to_vec(base.logits_at(&x, Mode::POLICY, &cells)).unwrap();
    let with_adapters = to_vec(adapted.logits_at(&x, Mode::POLICY, &cells)).unwrap();
    assert!(
        reference == with_adapters,
        "rank-8 LoRA with B = 0 changed the logits"
    );
    let merged: Vec<f32> = adapted
        .merged_tensor("model.layers.1.mlp.down_proj.weight")
        .unwrap()
        .unwrap()
        .1;
    let plain: Vec<f32> = base
        .merged_tensor("model.layers.1.mlp.down_proj.weight")
        .unwrap()
        .unwrap()
        .1;
    assert!(merged == plain, "merging a zero adapter changed the weight");
    // A nonzero adapter must change them (the check above can fail), and REFERENCE drops it.
    randomise_adapters(&mut adapted, 1, 0.05);
    let changed = to_vec(adapted.logits_at(&x, Mode::POLICY, &cells)).unwrap();
    let max = changed
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        max > 1e-2,
        "a random adapter moved the logits by only {max}"
    );
    let without = to_vec(adapted.logits_at(&x, Mode::REFERENCE, &cells)).unwrap();
    assert!(
        without == reference,
        "Mode::REFERENCE must ignore the adapters"
    );
}

struct LossCase {
    inputs: Inputs,
    old: Vec<f32>,
    reference: Vec<f32>,
    adv: Vec<f32>,
    cfg: LossConfig,
}

fn loss_case(policy: &Policy) -> LossCase {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let prompts: Vec<(Vec<u32>, Vec<u32>)> = (0..3)
        .map(|k| {
            let p: Vec<u32> = (0..5 + 2 * k)
                .map(|_| (rng.next_u64() % 2000) as u32)
                .collect();
            let c: Vec<u32> = (0..4 + k).map(|_| (rng.next_u64() % 2000) as u32).collect();
            (p, c)
        })
        .collect();
    let positions: Vec<Vec<[u32; 3]>> = prompts
        .iter()
        .map(|(p, _)| (0..p.len() as u32).map(|i| [i, i, i]).collect())
        .collect();
    let seqs: Vec<Sequence<'_>> = prompts
        .iter()
        .zip(&positions)
        .map(|((p, c), pos)| Sequence {
            prompt: p,
            positions: pos,
            rope_delta: 0,
            completion: c,
        })
        .collect();
    let inputs = Inputs::new(&seqs, policy.inv_freq(), policy.freq_axes()).unwrap();
    let current = to_vec(policy.log_probs(&inputs, Mode::POLICY, 1.0)).unwrap();
    // Old and reference log-probs near the current ones (ratios inside and outside the clip
    // range, away from its kinks), advantages of both signs.
    let jitter = |rng: &mut ChaCha8Rng, v: f32, spread: f32| {
        let u = (rng.next_u64() % 1000) as f32 / 1000.0 - 0.5;
        v + u * spread
    };
    let kinks = [0.8f32.ln(), 1.3f32.ln()];
    let old: Vec<f32> = current
        .iter()
        .map(|&v| {
            let mut o = jitter(&mut rng, v, 1.2);
            // Keep log-ratios away from the clip kinks, where finite differences are meaningless.
            while kinks.iter().any(|k| (v - o - k).abs() < 0.05) {
                o += 0.05;
            }
            o
        })
        .collect();
    let mut old = old;
    // Sequence 1 has a negative advantage: one of its tokens gets ratio e^1.5 > 3, the dual clip.
    let c = inputs.completion_len;
    old[c] = current[c] - 1.5;
    let reference: Vec<f32> = current.iter().map(|&v| jitter(&mut rng, v, 1.0)).collect();
    LossCase {
        inputs,
        old,
        reference,
        adv: vec![1.3, -0.7, 0.4],
        cfg: LossConfig {
            clip_low: 0.2,
            clip_high: 0.3,
            clip_dual: 3.0,
            kl_coef: 0.5,
        },
    }
}

fn loss_at(policy: &Policy, case: &LossCase) -> f64 {
    let lp = policy.log_probs(&case.inputs, Mode::POLICY, 1.0);
    let t = Targets {
        old_log_probs: &case.old,
        ref_log_probs: &case.reference,
        advantages: &case.adv,
        valid: &case.inputs.valid,
    };
    let (total, _) = loss(lp, &t, &case.cfg).unwrap();
    to_vec(total).unwrap()[0] as f64
}

#[test]
fn loss_and_gradient_match_the_host_objective_and_finite_differences() {
    let device = Device::default().autodiff();
    let (mut policy, _) = load_policy("tiny-small-vocab", lora(4), &device);
    randomise_adapters(&mut policy, 3, 0.05);
    let case = loss_case(&policy.detached());

    // The value against the f64 host objective on the same log-probs.
    let lp = to_vec(policy.detached().log_probs(&case.inputs, Mode::POLICY, 1.0)).unwrap();
    let t = Targets {
        old_log_probs: &case.old,
        ref_log_probs: &case.reference,
        advantages: &case.adv,
        valid: &case.inputs.valid,
    };
    let host = reference_loss(
        &lp.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &t,
        &case.cfg,
    );
    let (total, stats) = loss(
        policy.log_probs(&case.inputs, Mode::POLICY, 1.0),
        &t,
        &case.cfg,
    )
    .unwrap();
    let value = to_vec(total.clone()).unwrap()[0] as f64;
    assert!(
        (value - host).abs() <= 1e-5 * host.abs().max(1.0),
        "loss {value} vs host {host}"
    );
    eprintln!("{stats:?}");
    // Both clips bite on some tokens and not on others: every branch of the objective is in play.
    assert!(
        stats.clip_frac_high > 0.0 && stats.clip_frac_high < 1.0,
        "{stats:?}"
    );
    assert!(
        stats.clip_frac_low > 0.0,
        "{stats:?}: the dual clip never bites"
    );

    // Autodiff gradient, flattened per trainable tensor (same order as trainable_tensors()).
    let grads = burn::optim::GradientsParams::from_grads(total.backward(), &policy.net);
    let mut grad_flat: Vec<Vec<f32>> = Vec::new();
    for layer in &policy.net.layers {
        for (_, lin) in layer.linears() {
            for p in [lin.lora_a.as_ref().unwrap(), lin.lora_b.as_ref().unwrap()] {
                let g = grads.get::<2>(p.id).expect("every adapter gets a gradient");
                grad_flat.push(to_vec(g).unwrap());
            }
        }
    }
    let params = policy.trainable_tensors().unwrap();
    assert_eq!(params.len(), grad_flat.len());
    assert!(
        grad_flat.iter().flatten().any(|g| g.abs() > 1e-6),
        "the gradient is zero"
    );

    // Central differences along random directions: (L(θ + εu) - L(θ - εu)) / 2ε = <∇L, u>.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let eps = 5e-4f32;
    for trial in 0..3 {
        let dir: Vec<Vec<f32>> = params
            .iter()
            .map(|(_, _, v)| v.iter().map(|_| normal(&mut rng)).collect())
            .collect();
        let analytic: f64 = grad_flat
            .iter()
            .zip(&dir)
            .flat_map(|(g, u)| g.iter().zip(u).map(|(&a, &b)| a as f64 * b as f64))
            .sum();
        let shifted = |sign: f32| {
            let mut p2 = policy.detached();
            let mut saved = HostTensors::new();
            for ((name, shape, v), u) in params.iter().zip(&dir) {
                let w = v.iter().zip(u).map(|(&a, &b)| a + sign * eps * b).collect();
                saved.insert(name.clone(), (shape.clone(), w));
            }
            p2.load_trainable(saved).unwrap();
            loss_at(&p2.detached(), &case)
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
        let rel = (numeric - analytic).abs() / analytic.abs().max(1e-3);
        eprintln!(
            "direction {trial}: autodiff {analytic:.6e}, finite differences {numeric:.6e}, rel {rel:.2e}"
        );
        assert!(
            rel < 1e-2,
            "direction {trial}: autodiff {analytic} vs FD {numeric}"
        );
    }
}

/// Loss value and every adapter gradient (flattened, trainable_tensors order) on `device`.
fn loss_and_gradient(device: &Device) -> (f32, Vec<f32>) {
    let (mut policy, _) = load_policy("tiny-small-vocab", lora(4), device);
    randomise_adapters(&mut policy, 3, 0.05);
    let case = loss_case(&policy.detached());
    let t = Targets {
        old_log_probs: &case.old,
        ref_log_probs: &case.reference,
        advantages: &case.adv,
        valid: &case.inputs.valid,
    };
    let (total, _) = loss(
        policy.log_probs(&case.inputs, Mode::POLICY, 1.0),
        &t,
        &case.cfg,
    )
    .unwrap();
    let value = to_vec(total.clone()).unwrap()[0];
    let grads = burn::optim::GradientsParams::from_grads(total.backward(), &policy.net);
    let mut flat = Vec::new();
    for layer in &policy.net.layers {
        for (_, lin) in layer.linears() {
            for p in [lin.lora_a.as_ref().unwrap(), lin.lora_b.as_ref().unwrap()] {
                flat.extend(
                    to_vec(grads.get::<2>(p.id).expect("every adapter gets a gradient")).unwrap(),
                );
            }
        }
    }
    (value, flat)
}

#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradient() {
    let (v0, g0) = loss_and_gradient(&Device::default().autodiff());
    let (v1, g1) = loss_and_gradient(&Device::default().autodiff().gradient_checkpointing());
    assert_eq!(g0.len(), g1.len());
    let scale = g0.iter().fold(0f32, |m, g| m.max(g.abs()));
    assert!(scale > 1e-6, "the gradient is zero");
    let worst = g0
        .iter()
        .zip(&g1)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "loss {v0} vs {v1} with checkpointing; max |gradient difference| {worst:.2e} (largest gradient {scale:.2e})"
    );
    assert!(
        (v0 - v1).abs() <= 1e-5 * v0.abs().max(1.0),
        "loss {v0} vs {v1}"
    );
    assert!(
        worst <= 1e-5 * scale,
        "gradients differ by {worst} (scale {scale})"
    );
}
