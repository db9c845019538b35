//! Stage and end-to-end parity with Hugging Face transformers on the committed tiny models
//! (goldens from tools/fixtures/make_text_models.py). Tolerances (f32 math, bf16 weights):
//!
//! | stage | abs tolerance | why |
//! |---|---|---|
//! | embeds | 0 | a gather of bf16 values widened to f32 |
//! | layer.i, norm | 1e-4 + 1e-4 * abs(ref) | f32 sums in another order than torch |
//! | logits (prefill and every decode step) | 1e-4 + 1e-4 * abs(ref) | same; reference-data.md asks 1e-4, the issue 1e-3 |
//! | greedy ids | exact | |
//! | f16 KV cache: every stage, logits | 1e-2 + 1e-2 * abs(ref), top-1 equal | keys/values rounded to f16 |

mod common_gpu;

use std::path::{Path, PathBuf};

use common_gpu::{assert_close, gpu};
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::{Gpu, Recorder};
use qoqmed_engine::kv_cache::KvFormat;
use qoqmed_engine::model::rope;
use qoqmed_engine::model::{Logits, Session, TextModel};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use safetensors::{Dtype, SafeTensors};

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    fn load(model: &str, case: &str) -> Self {
        let path = fixtures()
            .join("goldens")
            .join(model)
            .join(format!("{case}.safetensors"));
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }
    fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .names()
            .contains(&name)
    }
    fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        (bytemuck::pod_collect_to_vec(t.data()), t.shape().to_vec())
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        bytemuck::pod_collect_to_vec(t.data())
    }
    fn ids(&self, name: &str) -> Vec<u32> {
        self.i64(name).into_iter().map(|v| v as u32).collect()
    }
}

fn load_model(gpu: &Gpu, folder: &str) -> (TextModel, ModelConfig) {
    let files = ModelFiles::from_dir(&fixtures().join("models").join(folder)).unwrap();
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
    (
        pollster::block_on(TextModel::load(gpu, &store, &cfg.text)).unwrap(),
        cfg,
    )
}

/// The prompt's M-RoPE positions as our engine computes them; cases with image placeholders
/// (no pixels) carry the processor's (t, h, w) patch grid in their json.
fn positions(
    model: &str,
    case: &str,
    ids: &[u32],
    cfg: &ModelConfig,
) -> (Vec<rope::Position>, i64) {
    let path = fixtures()
        .join("goldens")
        .join(model)
        .join(format!("{case}.json"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let grids: Vec<[u32; 3]> = match json.get("image_grid_thw").filter(|g| !g.is_null()) {
        Some(g) => {
            let g: Vec<u32> = serde_json::from_value(g.clone()).unwrap();
            let merge = cfg.vision.as_ref().unwrap().spatial_merge_size as u32;
            vec![[g[0], g[1] / merge, g[2] / merge]]
        }
        None => Vec::new(),
    };
    rope::prompt_positions(ids, cfg.image_token_id, &grids).unwrap()
}

fn check_stages(gpu: &Gpu, folder: &str, golden_model: &str, case: &str) {
    check_stages_kv(gpu, folder, golden_model, case, KvFormat::F32, TOL);
}

/// Every stage with the KV cache stored as `kv`, within `tol` (abs and rel) of the goldens.
fn check_stages_kv(
    gpu: &Gpu,
    folder: &str,
    golden_model: &str,
    case: &str,
    kv: KvFormat,
    tol: f32,
) {
    let (model, cfg) = load_model(gpu, folder);
    let g = Golden::load(golden_model, case);
    let ids = g.ids("input_ids");
    let (positions, delta) = positions(golden_model, case, &ids, &cfg);
    assert_eq!(
        delta,
        g.i64("rope_deltas")[0],
        "{folder}/{case}: rope_deltas"
    );
    let golden_pos = g.i64("position_ids");
    for (axis, chunk) in golden_pos.chunks(ids.len()).enumerate() {
        let ours: Vec<i64> = positions.iter().map(|p| p[axis] as i64).collect();
        assert_eq!(ours, chunk, "{folder}/{case}: position_ids axis {axis}");
    }
    let mut session = Session::with_kv_format(gpu, &model.cfg, ids.len() + 4, kv).unwrap();
    let mut taps = Vec::new();
    let mut rec = Recorder::new(gpu);
    let logits = model
        .forward(
            &mut rec,
            &mut session,
            &ids,
            &positions,
            Logits::All,
            Some(&mut taps),
        )
        .unwrap();
    rec.submit().unwrap();
    for (name, t) in &taps {
        let got = pollster::block_on(t.to_vec(gpu)).unwrap();
        let (want, shape) = g.f32(name);
        assert_eq!(t.shape, shape, "{name}");
        let tol = if name == "embeds" { 0.0 } else { tol };
        assert_close(
            &format!("{folder}/{case} {kv:?} kv {name}"),
            &got,
            &want,
            tol,
            tol,
        );
    }
    assert_eq!(
        taps.len(),
        model.cfg.num_hidden_layers + 2,
        "taps: embeds, every layer, norm"
    );
    let all = pollster::block_on(logits.to_vec(gpu)).unwrap();
    let rows: Vec<i64> = g.i64("logits_row_index");
    let (want, shape) = g.f32("logits_rows");
    let vocab = model.cfg.vocab_size;
    assert_eq!(shape, vec![rows.len(), vocab]);
    let got: Vec<f32> = rows
        .iter()
        .flat_map(|&r| all[r as usize * vocab..][..vocab].to_vec())
        .collect();
    assert_close(
        &format!("{folder}/{case} {kv:?} kv logits"),
        &got,
        &want,
        tol,
        tol,
    );
    // The top-1 token of every golden row is ours too.
    for (r, (g_row, w_row)) in got.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
        let top = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        assert_eq!(
            top(g_row),
            top(w_row),
            "{folder}/{case} {kv:?} kv: top-1 of logits row {r}"
        );
    }
}

fn check_greedy(
    gpu: &Gpu,
    folder: &str,
    golden_model: &str,
    case: &str,
    variant: &str,
    penalty: f32,
) {
    let (model, cfg) = load_model(gpu, folder);
    let g = Golden::load(golden_model, case);
    let ids = g.ids("input_ids");
    let (positions, delta) = positions(golden_model, case, &ids, &cfg);
    let want = g.ids(&format!("{variant}.generated_ids"));
    let opts = GenerateOptions {
        max_new_tokens: want.len(),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: penalty,
            ..SamplingParams::default()
        },
        eos_token_ids: Vec::new(),
        max_context: ids.len() + want.len() + 1,
        prefill_chunk: 7, // several prefill submissions: exercises the cache cursor across chunks
        keep_logits: true,
        ..GenerateOptions::default()
    };
    let out = pollster::block_on(generate(
        gpu,
        &model,
        &ids,
        &positions,
        delta,
        &opts,
        &mut |_| true,
    ))
    .unwrap();
    assert_eq!(out.token_ids, want, "{folder}/{case} {variant}: greedy ids");
    let vocab = model.cfg.vocab_size;
    let steps_name = format!("{variant}.step_logits");
    if g.has(&steps_name) {
        let (steps, _) = g.f32(&steps_name);
        let got: Vec<f32> = out.step_logits.concat();
        assert_close(
            &format!("{folder}/{case} {variant} step logits"),
            &got,
            &steps,
            TOL,
            TOL,
        );
    } else {
        // Big vocab: the goldens keep the top-64 of each step.
        let (vals, _) = g.f32(&format!("{steps_name}_topk_values"));
        let idx = g.i64(&format!("{steps_name}_topk_indices"));
        let k = vals.len() / want.len();
        for (s, step) in out.step_logits.iter().enumerate() {
            let got: Vec<f32> = idx[s * k..][..k]
                .iter()
                .map(|&i| step[i as usize])
                .collect();
            assert_close(
                &format!("{folder}/{case} {variant} step {s} top-{k}"),
                &got,
                &vals[s * k..][..k],
                TOL,
                TOL,
            );
        }
    }
    assert_eq!(out.step_logits.len(), want.len());
    assert!(vocab > 0);
}

#[test]
fn stages_match_transformers_small_vocab() {
    let gpu = gpu();
    for case in ["short", "medium", "qoq", "mrope"] {
        check_stages(&gpu, "tiny-small-vocab", "tiny-small-vocab", case);
    }
}

/// An f16 KV cache rounds keys and values to 11 significant bits. Measured on lavapipe on these
/// cases: max abs error 4.8e-3 on the logits, 1.2e-3 after the layers, 9.1e-3 after the final norm
/// (which scales up); tolerance 1e-2 abs + 1e-2 rel, and the top-1 token of every row equal.
#[test]
fn f16_kv_cache_stays_close_to_transformers() {
    let gpu = gpu();
    for case in ["short", "medium", "qoq", "mrope"] {
        check_stages_kv(
            &gpu,
            "tiny-small-vocab",
            "tiny-small-vocab",
            case,
            KvFormat::F16,
            1e-2,
        );
    }
}

#[test]
fn nested_sharded_checkpoint_gives_the_same_stages() {
    let gpu = gpu();
    check_stages(&gpu, "tiny-small-vocab-nested", "tiny-small-vocab", "short");
}

#[test]
fn greedy_ids_match_transformers_small_vocab() {
    let gpu = gpu();
    for case in ["short", "medium", "qoq", "mrope"] {
        check_greedy(
            &gpu,
            "tiny-small-vocab",
            "tiny-small-vocab",
            case,
            "greedy",
            1.0,
        );
        check_greedy(
            &gpu,
            "tiny-small-vocab",
            "tiny-small-vocab",
            case,
            "greedy_rp",
            1.05,
        );
    }
}

#[test]
fn untied_lm_head_matches_transformers() {
    let gpu = gpu();
    check_stages(
        &gpu,
        "tiny-small-vocab-untied",
        "tiny-small-vocab-untied",
        "short",
    );
    check_greedy(
        &gpu,
        "tiny-small-vocab-untied",
        "tiny-small-vocab-untied",
        "short",
        "greedy",
        1.0,
    );
}

#[test]
fn real_vocab_model_matches_transformers() {
    let gpu = gpu();
    for case in ["short", "qoq"] {
        check_stages(&gpu, "tiny-qwen-vocab", "tiny-qwen-vocab", case);
        check_greedy(
            &gpu,
            "tiny-qwen-vocab",
            "tiny-qwen-vocab",
            case,
            "greedy",
            1.0,
        );
        check_greedy(
            &gpu,
            "tiny-qwen-vocab",
            "tiny-qwen-vocab",
            case,
            "greedy_rp",
            1.05,
        );
    }
}

/// A source that only answers byte-range reads (as fetched ranges or JS file slices on the web),
/// so the loader's streaming path runs instead of the zero-copy one.
struct RangeOnly(qoqmed_engine::weights::MemorySource);

impl qoqmed_engine::weights::ByteSource for RangeOnly {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> qoqmed_engine::weights::ReadFuture<'_> {
        self.0.read(offset, len)
    }
}

#[test]
fn range_only_sources_load_the_same_model() {
    let gpu = gpu();
    let dir = fixtures().join("models/tiny-small-vocab-nested");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let mut sources: Vec<Box<dyn qoqmed_engine::weights::ByteSource>> = Vec::new();
    for s in &files.weights {
        let bytes = s.as_slice().expect("mmapped natively").to_vec();
        sources.push(Box::new(RangeOnly(
            qoqmed_engine::weights::MemorySource::new(s.name(), bytes),
        )));
    }
    let store = pollster::block_on(WeightStore::open(sources)).unwrap();
    let model = pollster::block_on(TextModel::load(&gpu, &store, &cfg.text)).unwrap();
    let g = Golden::load("tiny-small-vocab", "short");
    let ids = g.ids("input_ids");
    let positions = rope::text_positions(0, ids.len(), 0);
    let mut session = Session::new(&gpu, &model.cfg, ids.len()).unwrap();
    let mut rec = Recorder::new(&gpu);
    let logits = model
        .forward(&mut rec, &mut session, &ids, &positions, Logits::Last, None)
        .unwrap();
    rec.submit().unwrap();
    let got = pollster::block_on(logits.to_vec(&gpu)).unwrap();
    let (rows, _) = g.f32("logits_rows");
    let vocab = model.cfg.vocab_size;
    let last = &rows[rows.len() - vocab..];
    assert_close("range-only source, last logits", &got, last, TOL, TOL);
    // The context is exactly full now: one more token must be refused, not written out of bounds.
    let mut rec = Recorder::new(&gpu);
    let err = model.forward(
        &mut rec,
        &mut session,
        &[1],
        &rope::text_positions(ids.len(), 1, 0),
        Logits::Last,
        None,
    );
    assert!(err.is_err_and(|e| e.to_string().contains("--max-context")));
}
