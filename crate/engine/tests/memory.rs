//! Size accounting on the published Qwen2.5-VL-7B config (tests/fixtures/config-layouts/flat.json):
//! what the 7B needs in each format at 4K context, and the errors that say what to change.
//! GB = 1e9 bytes, GiB = 2^30 bytes. "LM" = the language model (`model.*` + `lm_head`): weights,
//! KV cache, activations; the vision tower (f16) is accounted separately.

use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::gpu::WeightFormat;
use qoqmed_engine::model::memory::{
    MemoryLimits, MemoryPlan, RunShape, TensorSpec, text_tensors, vision_tensors,
};
use qoqmed_engine::weights::DType;
use qoqmed_engine::weights::policy::FormatPlan;

const GB: f64 = 1e9;
const GIB: f64 = (1u64 << 30) as f64;

fn config_7b() -> ModelConfig {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/config-layouts/flat.json"
    );
    ModelConfig::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn specs(tensors: &[(String, Vec<usize>)], plan: &FormatPlan) -> Vec<TensorSpec> {
    tensors
        .iter()
        .map(|(n, s)| TensorSpec::new(n.clone(), s, plan.choose(n, s, DType::BF16)))
        .collect()
}

fn plan_7b(linear: WeightFormat, head: WeightFormat, ctx: usize, kv_bytes: usize) -> MemoryPlan {
    let cfg = config_7b();
    let mut formats = FormatPlan::for_format(linear);
    formats.head = head;
    let run = RunShape {
        max_context: ctx,
        prefill_chunk: 512,
        kv_value_bytes: kv_bytes,
    };
    // Parts of at most 128 MiB, as on lavapipe and in many browsers.
    MemoryPlan::new(
        &cfg.text,
        &specs(&text_tensors(&cfg.text), &formats),
        run,
        128 << 20,
    )
}

#[test]
fn seven_b_in_q4_at_4k_context() {
    use WeightFormat::{BF16, F16, Q4, Q8};
    let cfg = config_7b();
    let all_q4 = plan_7b(Q4, Q4, 4096, 2);
    // Every LM matrix counted: 28 layers of linears, the embedding and the untied lm_head.
    let lm_linears = 28 * (2 * 3584 * 3584 + 2 * 512 * 3584 + 3 * 18944 * 3584) as u64;
    let heads = 2 * 152064 * 3584u64;
    assert_eq!(all_q4.matrix_values, lm_linears + heads);
    for (what, p) in [
        ("LM q4, head q4, f16 KV", &all_q4),
        (
            "LM q4, head q8 (default), f16 KV",
            &plan_7b(Q4, Q8, 4096, 2),
        ),
        (
            "LM q4, head q8 (default), f32 KV",
            &plan_7b(Q4, Q8, 4096, 4),
        ),
        ("LM q8, f32 KV", &plan_7b(Q8, Q8, 4096, 4)),
        ("LM bf16, f32 KV", &plan_7b(BF16, BF16, 4096, 4)),
    ] {
        eprintln!("7B {what} at 4096: {}", p.summary());
    }
    // The target of issue 9: the 7B LM in q4 at 4K context under 4.8 GB. It holds with the
    // embedding and lm_head in q4 too (`--head-format q4`) and an f16 KV cache. The default q8
    // head adds 0.55 GB: 5.2 GB (4.86 GiB), over the target in either unit.
    assert!(
        (all_q4.total() as f64) < 4.8 * GB,
        "7B q4 at 4K: {}",
        all_q4.summary()
    );
    let default_head = plan_7b(Q4, Q8, 4096, 2);
    assert!(
        (default_head.total() as f64) > 4.8 * GIB,
        "{}",
        default_head.summary()
    );
    // Exact weight bytes: q4 = 18 bytes per 32 values (4.5 bits), q8 = 34 (8.5 bits).
    let vectors = 28 * (2 * 3584 + 3584 + 2 * 512) as u64 * 2 + 3584 * 2;
    assert_eq!(all_q4.weights, (lm_linears + heads) / 32 * 18 + vectors);
    assert_eq!(
        default_head.weights,
        lm_linears / 32 * 18 + heads / 32 * 34 + vectors
    );
    // KV: 28 layers x 4096 x 4 kv heads x 128 x (K, V) x 2 bytes.
    assert_eq!(all_q4.kv_cache, 28 * 4096 * 4 * 128 * 2 * 2);
    // The vision tower in f16 adds 1.34 GB on top (not in the numbers above).
    let vision = specs(
        &vision_tensors(cfg.vision.as_ref().unwrap()),
        &FormatPlan::for_format(Q4),
    );
    assert!(vision.iter().all(|s| s.format == F16 || s.shape.len() == 1));
    let vision_bytes: u64 = vision.iter().map(|s| s.gpu_bytes(128 << 20)).sum();
    eprintln!("vision tower (f16): {:.3} GB", vision_bytes as f64 / GB);
    assert!((1.3 * GB..1.4 * GB).contains(&(vision_bytes as f64)));
}

#[test]
fn errors_say_what_to_change() {
    use WeightFormat::{BF16, Q4, Q8};
    let limits = |budget: f64| MemoryLimits {
        max_binding: 128 << 20,
        max_buffer: 2 << 30,
        budget: Some((budget * GB) as u64),
    };
    // bf16 (15.9 GB) does not fit 9 GB; the error proposes q8 (8.7 GB) and q4 (4.9 GB).
    let err = plan_7b(BF16, BF16, 4096, 4)
        .check(&limits(9.0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--format q4") && err.contains("--format q8"),
        "{err}"
    );
    // At 8 GB only q4 fits.
    let err = plan_7b(BF16, BF16, 4096, 4)
        .check(&limits(8.0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--format q4") && !err.contains("--format q8"),
        "{err}"
    );
    // q4 at 32K context with f32 KV overflows 5 GB through its KV cache: shorten the context.
    let err = plan_7b(Q4, Q8, 32768, 4)
        .check(&limits(5.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-context"), "{err}");
    // One layer's f32 K cache at 100K positions is 200 MiB: beyond a 128 MiB binding.
    let err = plan_7b(Q4, Q8, 100_000, 4)
        .check(&MemoryLimits {
            max_binding: 128 << 20,
            max_buffer: 2 << 30,
            budget: None,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-context 65536 or less"), "{err}");
    // Fits: no error.
    plan_7b(Q4, Q4, 4096, 2).check(&limits(4.8)).unwrap();
}
