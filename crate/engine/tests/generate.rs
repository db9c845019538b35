//! The decode loop with GPU sampling and overlapped steps: greedy ids equal transformers'
//! (goldens of tools/fixtures/make_text_models.py) with and without repetition penalty, sampled
//! ids equal the CPU sampler's for a seed, eos / context / cancel stops as the CPU path, and no
//! bind group built after the first decode step.

mod common_gpu;

use std::path::{Path, PathBuf};

use common_gpu::gpu;
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, Generation, StopReason, generate};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn golden_ids(model: &str, case: &str, name: &str) -> Vec<u32> {
    let path = fixtures().join(format!("goldens/{model}/{case}.safetensors"));
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    bytemuck::pod_collect_to_vec::<u8, i64>(st.tensor(name).unwrap().data())
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

fn load(gpu: &Gpu, folder: &str) -> (TextModel, ModelConfig) {
    let files = ModelFiles::from_dir(&fixtures().join("models").join(folder)).unwrap();
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
    let model = pollster::block_on(TextModel::load(gpu, &store, &cfg.text)).unwrap();
    (model, cfg)
}

fn run(
    gpu: &Gpu,
    model: &TextModel,
    prompt: &[u32],
    opts: &GenerateOptions,
    stop_after: Option<usize>,
) -> Generation {
    let positions = rope::text_positions(0, prompt.len(), 0);
    let mut seen = 0;
    pollster::block_on(generate(
        gpu,
        model,
        prompt,
        &positions,
        0,
        opts,
        &mut |_| {
            seen += 1;
            stop_after != Some(seen)
        },
    ))
    .unwrap()
}

fn greedy(penalty: f32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        repetition_penalty: penalty,
        ..SamplingParams::default()
    }
}

#[test]
fn gpu_greedy_equals_transformers() {
    let gpu = gpu();
    for (folder, cases) in [
        ("tiny-small-vocab", &["short", "medium", "qoq"][..]),
        ("tiny-qwen-vocab", &["short", "qoq"][..]),
    ] {
        let (model, _) = load(&gpu, folder);
        for case in cases {
            let prompt = golden_ids(folder, case, "input_ids");
            for (variant, penalty) in [("greedy", 1.0), ("greedy_rp", 1.05)] {
                let want = golden_ids(folder, case, &format!("{variant}.generated_ids"));
                let opts = GenerateOptions {
                    max_new_tokens: want.len(),
                    sampling: greedy(penalty),
                    max_context: prompt.len() + want.len() + 1,
                    prefill_chunk: 7,
                    ..GenerateOptions::default()
                };
                let out = run(&gpu, &model, &prompt, &opts, None);
                assert_eq!(out.token_ids, want, "{folder}/{case} {variant}");
                assert_eq!(out.stop, StopReason::MaxTokens);
                assert_eq!(
                    out.bind_groups_after_first_step, 0,
                    "{folder}/{case}: decode steps after the first built bind groups"
                );
            }
        }
    }
}

#[test]
fn gpu_and_cpu_paths_agree() {
    let gpu = gpu();
    let (model, cfg) = load(&gpu, "tiny-small-vocab");
    let prompt = golden_ids("tiny-small-vocab", "medium", "input_ids");
    let greedy_ids = golden_ids("tiny-small-vocab", "medium", "greedy.generated_ids");
    let sampled = SamplingParams {
        temperature: 0.7,
        top_k: 0,
        top_p: 0.9,
        repetition_penalty: 1.05,
        seed: 42,
    };
    let wide = SamplingParams {
        temperature: 1.0,
        top_k: 20,
        top_p: 0.99,
        repetition_penalty: 1.0,
        seed: 7,
    };
    // (what, sampling, eos, max_context, cancel after). The eos: the first greedy id that did not
    // occur before it (tiny random models repeat themselves).
    let first_new = (1..greedy_ids.len())
        .find(|&i| !greedy_ids[..i].contains(&greedy_ids[i]))
        .unwrap();
    let eos = greedy_ids[first_new];
    let cases = [
        ("sampled", sampled, vec![], 200, None),
        ("sampled wide", wide, vec![], 200, None),
        ("greedy stops at eos", greedy(1.0), vec![eos], 200, None),
        ("context full", greedy(1.0), vec![], prompt.len() + 3, None),
        ("cancelled", sampled, vec![], 200, Some(5)),
    ];
    for (what, sampling, eos_ids, max_context, cancel) in cases.clone() {
        let opts = |gpu_sampling| GenerateOptions {
            max_new_tokens: 24,
            sampling,
            eos_token_ids: eos_ids.clone(),
            logit_bias: vec![(cfg.image_token_id, -100.0), (5, 1.5)],
            max_context,
            gpu_sampling,
            ..GenerateOptions::default()
        };
        let g = run(&gpu, &model, &prompt, &opts(true), cancel);
        let c = run(&gpu, &model, &prompt, &opts(false), cancel);
        assert_eq!(g.token_ids, c.token_ids, "{what}: ids");
        assert_eq!(g.stop, c.stop, "{what}: stop reason");
        eprintln!("{what}: {} tokens, {:?}", g.token_ids.len(), g.stop);
    }
    let stop = |what: &str, reason, len| {
        let (_, sampling, eos_ids, max_context, cancel) =
            cases.iter().find(|c| c.0 == what).unwrap().clone();
        let opts = GenerateOptions {
            max_new_tokens: 24,
            sampling,
            eos_token_ids: eos_ids,
            max_context,
            ..GenerateOptions::default()
        };
        let out = run(&gpu, &model, &prompt, &opts, cancel);
        assert_eq!((out.stop, out.token_ids.len()), (reason, len), "{what}");
    };
    stop("greedy stops at eos", StopReason::Eos, first_new + 1);
    stop("context full", StopReason::ContextFull, 4);
    stop("cancelled", StopReason::Cancelled, 5);
}
