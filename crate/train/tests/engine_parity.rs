//! The engine's rollout log-probs against burn's recomputation of the same completions: the
//! importance ratio exp(burn - engine) is only honest if they agree. The policy carries a random
//! nonzero LoRA adapter, so this also checks the merged working copy the engine runs.
//!
//! Tolerance: 5e-5 absolute per token log-prob (observed 9e-6; both f32, the matmuls sum in
//! different orders, each within 1e-4 of transformers on the logits).

mod common;

use burn::tensor::Device;
use common::{Golden, load_policy, lora, model_dir};
use qoqmed_train::policy::{HostTensors, Mode};
use qoqmed_train::rollout::{Engine, Prompt, RolloutParams};
use qoqmed_train::step::{Sample, score};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const TOL: f32 = 5e-5;

#[test]
fn engine_and_burn_log_probs_agree_on_sampled_completions() {
    let model = "tiny-small-vocab";
    let device = Device::default();
    let (mut policy, _) = load_policy(model, lora(8), &device);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut saved = HostTensors::new();
    for (name, shape, values) in policy.trainable_tensors().unwrap() {
        let v = values
            .iter()
            .map(|_| ((rng.next_u64() % 2001) as f32 / 1000.0 - 1.0) * 0.05)
            .collect();
        saved.insert(name, (shape, v));
    }
    policy.load_trainable(saved).unwrap();

    let (mut engine, _) = Engine::new(&model_dir(model), None).unwrap();
    engine.upload(&policy).unwrap();
    let prompts: Vec<Prompt> = ["short", "mrope", "qoq"]
        .iter()
        .map(|case| {
            let g = Golden::load(model, case);
            Prompt {
                ids: g.ids(),
                positions: g.positions(),
                rope_delta: g.i64("rope_deltas")[0],
            }
        })
        .collect();
    for temperature in [1.0f32, 0.7] {
        let params = RolloutParams {
            temperature,
            top_p: 0.99,
            top_k: 0,
            max_new_tokens: 16,
        };
        let mut samples = Vec::new();
        for (p, prompt) in prompts.iter().enumerate() {
            for seed in 0..3 {
                let r = engine.rollout(prompt, &params, seed).unwrap();
                assert_eq!(r.tokens.len(), r.log_probs.len());
                samples.push(Sample {
                    prompt: p,
                    tokens: r.tokens,
                    old_log_probs: r.log_probs,
                    ref_log_probs: Vec::new(),
                    advantage: 0.0,
                });
            }
        }
        let views: Vec<&Sample> = samples.iter().collect();
        let burn = score(&policy, &prompts, &views, Mode::POLICY, temperature, 4).unwrap();
        let mut worst = 0.0f32;
        let mut tokens = 0;
        for (s, b) in samples.iter().zip(&burn) {
            assert_eq!(s.old_log_probs.len(), b.len());
            for (&e, &x) in s.old_log_probs.iter().zip(b) {
                assert!(e.is_finite() && e <= 0.0, "engine log-prob {e}");
                worst = worst.max((e - x).abs());
                tokens += 1;
            }
        }
        eprintln!(
            "temperature {temperature}: {tokens} sampled tokens, max |engine - burn| log-prob = {worst:.2e}"
        );
        assert!(worst <= TOL, "engine vs burn log-probs differ by {worst}");
        // Not a vacuous check: the adapter matters for these log-probs.
        let base = score(&policy, &prompts, &views, Mode::REFERENCE, temperature, 4).unwrap();
        let moved = base
            .iter()
            .flatten()
            .zip(burn.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 10.0 * TOL,
            "the adapter moved log-probs by only {moved}"
        );
    }
}
