//! The ECG branch (QoQ-Med-Omni's `time_series_embedding`) against the PyTorch reference of
//! tools/fixtures/ecg_model.py on the tiny-omni checkpoint (goldens from
//! tools/fixtures/ecg_model_goldens.py), the kernels it adds against CPU references, and the
//! checkpoint errors. Tolerances (f32 math; the encoder is stored in F32, its projection in BF16):
//!
//! | stage | abs tolerance (+ the same relative) | why |
//! |---|---|---|
//! | layer_norm, mean_rows kernels vs CPU f64 | 1e-5 | one row's reductions in f32 |
//! | ecg.patch_embed | 1e-5 | a 50-term f32 dot product + bias |
//! | ecg.block.i, ecg.norm | 1e-4 | f32 sums in another order than torch, over 2 blocks |
//! | ecg.pooled, ecg.tokens (the encoder's output) | 1e-4 | the bound |
//! | embeds (ECG rows injected), layer.i, norm, logits, step logits | 1e-4 | as the text parity |
//! | prompt ids, greedy ids | exact | |

mod common_gpu;

use std::path::{Path, PathBuf};

use common_gpu::{DTYPES, Rng, assert_close, gpu, weight};
use qoqmed_engine::chat::{ChatTemplate, QWEN2_5_VL_TEMPLATE, Tokenizer, user_message};
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate_after};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, ops};
use qoqmed_engine::model::{EcgEncoder, Injection, Logits, Session, TextModel, rope};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{ByteSource, MemorySource, ModelFiles, WeightStore};
use safetensors::{Dtype, SafeTensors};

const OMNI: &str = "tiny-omni";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn golden(case: &str) -> Vec<u8> {
    let path = fixtures().join(format!("goldens/{OMNI}/{case}.safetensors"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32_of(bytes: &[u8], name: &str) -> (Vec<f32>, Vec<usize>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("golden {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    (bytemuck::pod_collect_to_vec(t.data()), t.shape().to_vec())
}

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    pollster::block_on(t.to_vec(gpu)).expect("readback")
}

fn omni_files() -> ModelFiles {
    ModelFiles::from_dir(&fixtures().join("models").join(OMNI)).unwrap()
}

fn open(files: ModelFiles) -> (ModelConfig, WeightStore) {
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
    (cfg, store)
}

fn load(gpu: &Gpu, cfg: &ModelConfig, store: &WeightStore) -> qoqmed_engine::Result<EcgEncoder> {
    pollster::block_on(EcgEncoder::load(gpu, store, &cfg.ecg, cfg.text.hidden_size))
}

#[test]
fn layer_norm_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(30);
    for (f, dtype) in DTYPES.into_iter().enumerate() {
        // The bias in another format than the weight: each has its own loader.
        let bias_format = DTYPES[(f + 1) % DTYPES.len()];
        for (rows, n, offset) in [(1, 67, 0.0), (5, 300, 40.0), (3, 768, -3.0)] {
            // An offset far from 0 checks the variance is taken around the mean (two passes).
            let x: Vec<f32> = rng.vec(rows * n, 2.0).iter().map(|v| v + offset).collect();
            let (wv, w) = weight(&gpu, &mut rng, "ln.weight", &[n], dtype, 1.0);
            let (bv, b) = weight(&gpu, &mut rng, "ln.bias", &[n], bias_format, 0.5);
            let xt = Tensor::from_f32(&gpu, &x, &[rows, n], "x").unwrap();
            let out = Tensor::zeros(&gpu, &[rows, n], "out").unwrap();
            let mut rec = Recorder::new(&gpu);
            ops::layer_norm(&mut rec, &xt, &w, &b, 1e-6, &out).unwrap();
            rec.submit().unwrap();
            let mut want = Vec::with_capacity(rows * n);
            for row in x.chunks(n) {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (var + 1e-6).sqrt();
                for (i, &v) in row.iter().enumerate() {
                    want.push(((v as f64 - mean) * inv * wv[i] as f64 + bv[i] as f64) as f32);
                }
            }
            let what = format!("layer_norm {dtype:?} + {bias_format:?} bias, {rows}x{n}");
            assert_close(&what, &read(&gpu, &out), &want, 1e-5, 1e-5);
        }
    }
}

#[test]
fn layer_norm_refuses_bad_shapes() {
    let gpu = gpu();
    let mut rng = Rng::new(31);
    let (_, w) = weight(&gpu, &mut rng, "w", &[32], DTYPES[0], 1.0);
    let (_, b9) = weight(&gpu, &mut rng, "b9", &[9], DTYPES[0], 1.0);
    let x = Tensor::zeros(&gpu, &[2, 32], "x").unwrap();
    let y = Tensor::zeros(&gpu, &[2, 31], "y").unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = ops::layer_norm(&mut rec, &x, &w, &b9, 1e-5, &x).unwrap_err();
    assert!(err.to_string().contains("[9]"), "{err}");
    let err = ops::layer_norm(&mut rec, &x, &w, &w, 1e-5, &y).unwrap_err();
    assert!(err.to_string().contains("[2, 31]"), "{err}");
}

#[test]
fn mean_rows_matches_cpu() {
    let gpu = gpu();
    let mut rng = Rng::new(32);
    for (rows, n) in [(1, 5), (400, 96), (7, 130)] {
        let x = rng.vec(rows * n, 3.0);
        let xt = Tensor::from_f32(&gpu, &x, &[rows, n], "x").unwrap();
        // Guard values around the output catch writes past its end.
        let out = Tensor::from_f32(&gpu, &vec![7.0; n + 3], &[n + 3], "out").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::mean_rows(&mut rec, &xt, &out.view(&[n + 3]).unwrap()).unwrap_err();
        let mut rec2 = Recorder::new(&gpu);
        let row = Tensor::zeros(&gpu, &[n], "row").unwrap();
        ops::mean_rows(&mut rec2, &xt, &row).unwrap();
        ops::copy(&mut rec2, &row, 0, &out, 1, n).unwrap();
        drop(rec);
        rec2.submit().unwrap();
        let mut want = vec![7.0f32];
        want.extend(
            (0..n).map(|j| {
                ((0..rows).map(|i| x[i * n + j] as f64).sum::<f64>() / rows as f64) as f32
            }),
        );
        want.extend([7.0, 7.0]);
        assert_close(
            &format!("mean_rows {rows}x{n}"),
            &read(&gpu, &out),
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn encoder_stages_match_the_reference() {
    let gpu = gpu();
    let (cfg, store) = open(omni_files());
    assert_eq!(cfg.time_series_token_id, Some(2048));
    let enc = load(&gpu, &cfg, &store).unwrap();
    let g = golden("ecg");
    let (input, shape) = f32_of(&g, "ecg.input");
    assert_eq!(shape, vec![8, 2500]);
    let x = Tensor::from_f32(&gpu, &input, &[1, 8, 2500], "ecg").unwrap();
    let mut taps = Vec::new();
    let mut rec = Recorder::new(&gpu);
    let tokens = enc.forward(&mut rec, &x, Some(&mut taps)).unwrap();
    rec.submit().unwrap();
    let names: Vec<&str> = taps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ecg.patch_embed",
            "ecg.block.0",
            "ecg.block.1",
            "ecg.norm",
            "ecg.pooled",
            "ecg.tokens"
        ]
    );
    for (name, t) in &taps {
        let (want, shape) = f32_of(&g, name);
        assert_eq!(t.shape, shape, "{name}");
        let tol = if name == "ecg.patch_embed" {
            1e-5
        } else {
            1e-4
        };
        assert_close(name, &read(&gpu, t), &want, tol, tol);
    }
    assert_eq!(tokens.shape, vec![1, cfg.text.hidden_size]);
}

#[test]
fn two_ecgs_give_two_tokens_in_order() {
    let gpu = gpu();
    let (cfg, store) = open(omni_files());
    let enc = load(&gpu, &cfg, &store).unwrap();
    let g = golden("two_ecgs");
    let (want, shape) = f32_of(&g, "ecg.tokens");
    assert_eq!(shape, vec![2, cfg.text.hidden_size]);
    let mut input = Vec::new();
    for name in ["waveform_ecg_dicom", "waveform_ecg_variant_dicom"] {
        let path = fixtures().join(format!("ecg/{name}.model_input.f32"));
        let bytes = std::fs::read(path).unwrap();
        input.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
    }
    let x = Tensor::from_f32(&gpu, &input, &[2, 8, 2500], "ecgs").unwrap();
    let mut rec = Recorder::new(&gpu);
    let tokens = enc.forward(&mut rec, &x, None).unwrap();
    rec.submit().unwrap();
    assert_close("two ECGs' tokens", &read(&gpu, &tokens), &want, 1e-4, 1e-4);

    let bad = Tensor::zeros(&gpu, &[8, 2499], "short").unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = enc.forward(&mut rec, &bad, None).err().unwrap().to_string();
    assert!(err.contains("(ecgs, 8, 2500)"), "{err}");
}

/// The checkpoint's tensors with `rename` applied, as an in-memory source.
fn renamed(rename: impl Fn(&str) -> Option<String>) -> WeightStore {
    let files = omni_files();
    let bytes = files.weights[0].as_slice().unwrap().to_vec();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| rename(&n).map(|n| (n, v)))
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    let sources: Vec<Box<dyn ByteSource>> =
        vec![Box::new(MemorySource::new("model.safetensors", out))];
    pollster::block_on(WeightStore::open(sources)).unwrap()
}

#[test]
fn branch_under_model_prefix_loads_the_same() {
    let gpu = gpu();
    let (cfg, _) = open(omni_files());
    let store =
        renamed(|n| Some(n.replace("time_series_embedding.", "model.time_series_embedding.")));
    assert!(
        store
            .get("model.time_series_embedding.encoder.W_P.weight")
            .is_some()
    );
    let enc = load(&gpu, &cfg, &store).unwrap();
    let g = golden("ecg");
    let (input, _) = f32_of(&g, "ecg.input");
    let x = Tensor::from_f32(&gpu, &input, &[1, 8, 2500], "ecg").unwrap();
    let mut rec = Recorder::new(&gpu);
    let tokens = enc.forward(&mut rec, &x, None).unwrap();
    rec.submit().unwrap();
    let (want, _) = f32_of(&g, "ecg.tokens");
    assert_close(
        "model.-prefixed branch",
        &read(&gpu, &tokens),
        &want,
        1e-4,
        1e-4,
    );
}

/// A change to a config (the tests' way of making it disagree with the checkpoint).
type Edit = fn(&mut qoqmed_engine::config::EcgConfig);

#[test]
fn checkpoint_errors_name_what_is_wrong() {
    let gpu = gpu();
    // No branch at all (the text models): a clear error, and `present` says so up front.
    let files = ModelFiles::from_dir(&fixtures().join("models/tiny-small-vocab")).unwrap();
    let (cfg, store) = open(files);
    assert!(!EcgEncoder::present(&store));
    let err = load(&gpu, &cfg, &store).err().unwrap().to_string();
    assert!(err.contains("no ECG branch"), "{err}");

    // time_series_config that disagrees with the tensors: every size key, named in the error.
    let (base, store) = open(omni_files());
    assert!(EcgEncoder::present(&store));
    let cases: [(&str, Edit, &str); 6] = [
        (
            "embed dim",
            |c| c.encoder_embed_dim = 768,
            "encoder.W_P.weight",
        ),
        ("mlp ratio", |c| c.mlp_ratio = 4.0, "mlp.fc1.weight"),
        ("samples per patch", |c| c.t = 25, "encoder.W_P.weight"),
        ("patches", |c| c.p = 25, "encoder.pos_embed"),
        ("depth too big", |c| c.encoder_depth = 3, "holds 2 blocks"),
        ("depth too small", |c| c.encoder_depth = 1, "holds 2 blocks"),
    ];
    for (what, edit, names) in cases {
        let mut cfg = base.clone();
        edit(&mut cfg.ecg);
        let err = load(&gpu, &cfg, &store).err().unwrap().to_string();
        assert!(err.contains("time_series_config"), "{what}: {err}");
        assert!(err.contains(names), "{what}: {err}");
    }
    // The projection must produce the language model's width.
    let err = pollster::block_on(EcgEncoder::load(&gpu, &store, &base.ecg, 32))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("time_series_embedding.linear.weight") && err.contains("hidden_size 32"),
        "{err}"
    );

    // A missing tensor is named.
    let store = renamed(|n| (!n.contains("blocks.1.mlp.fc2.bias")).then(|| n.to_string()));
    let err = load(&gpu, &base, &store).err().unwrap().to_string();
    assert!(err.contains("blocks.1.mlp.fc2.bias"), "{err}");
}

/// The golden case's prompt as the engine builds it: `template` over the user turn (question, then
/// one ECG item per ECG), tokenized.
fn prompt_ids(files: &ModelFiles, template: &ChatTemplate, case: &str) -> Vec<u32> {
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join(format!("goldens/{OMNI}/{case}.json"))).unwrap(),
    )
    .unwrap();
    let ecgs = meta["ecg_inputs"].as_array().unwrap().len();
    let tokenizer = Tokenizer::from_bytes(&files.tokenizer).unwrap();
    let messages = [user_message(&[], meta["prompt"].as_str().unwrap(), ecgs)];
    tokenizer
        .encode(&template.render(&messages, true).unwrap())
        .unwrap()
}

fn ids_of(bytes: &[u8], name: &str) -> Vec<u32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

#[test]
fn prompts_put_one_token_per_ecg_after_the_text_with_or_without_the_template_branch() {
    let files = omni_files();
    // chat_template.json holds QoQ-Med-Omni's template ({"type": "time-series"} renders the
    // token); tokenizer_config.json holds Qwen2.5-VL's, which has no such branch, so the engine
    // writes the token itself. Both must give the reference ids.
    let omni = ChatTemplate::from_files(
        files.chat_template.as_deref(),
        files.tokenizer_config.as_deref(),
    )
    .unwrap();
    let qwen = ChatTemplate::from_files(None, files.tokenizer_config.as_deref()).unwrap();
    assert!(!QWEN2_5_VL_TEMPLATE.contains("time-series"));
    for case in ["ecg", "text", "two_ecgs"] {
        let want = ids_of(&golden(case), "input_ids");
        assert_eq!(
            prompt_ids(&files, &omni, case),
            want,
            "{case}, Omni template"
        );
        assert_eq!(
            prompt_ids(&files, &qwen, case),
            want,
            "{case}, Qwen2.5-VL template"
        );
    }
    // A template that renders only the first ECG "allows one": two are refused, not dropped.
    let one_ecg = QWEN2_5_VL_TEMPLATE.replace(
        "{% elif 'text' in content %}",
        "{% elif content['type'] == 'time-series' %}{% if ts.n == 0 %}<|time_series_pad|>\
         {% endif %}{% set ts.n = ts.n + 1 %}{% elif 'text' in content %}",
    );
    let one =
        ChatTemplate::from_jinja(&format!("{{% set ts = namespace(n=0) %}}{one_ecg}")).unwrap();
    let err = one
        .render(&[user_message(&[], "Compare.", 2)], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrote 1 <|time_series_pad|> for 2 ECG"),
        "{err}"
    );
    assert!(one.render(&[user_message(&[], "One.", 1)], true).is_ok());
    // The question itself must not smuggle in the token.
    let err = omni
        .render(&[user_message(&[], "<|time_series_pad|>?", 1)], true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrote 2"), "{err}");
}

/// Stage and greedy parity of a prompt with ECG tokens: the encoder and the prompt recorded into
/// one command buffer, the tokens injected at `<|time_series_pad|>`.
fn check_prompt(gpu: &Gpu, case: &str, ecg_files: &[&str]) {
    let files = omni_files();
    let (cfg, store) = open(files);
    let text = pollster::block_on(TextModel::load(gpu, &store, &cfg.text)).unwrap();
    let enc = load(gpu, &cfg, &store).unwrap();
    let g = golden(case);
    let ids = ids_of(&g, "input_ids");
    let (positions, delta) = rope::prompt_positions(&ids, cfg.image_token_id, &[]).unwrap();
    let ts = cfg.time_series_token_id.unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == ts).count(), ecg_files.len());

    let mut input = Vec::new();
    for name in ecg_files {
        let bytes = std::fs::read(fixtures().join(format!("ecg/{name}.model_input.f32"))).unwrap();
        input.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
    }
    let record_encoder = |rec: &mut Recorder| -> Vec<Injection> {
        if ecg_files.is_empty() {
            return Vec::new();
        }
        let x = Tensor::from_f32(gpu, &input, &[ecg_files.len(), 8, 2500], "ecgs").unwrap();
        let tokens = enc.forward(rec, &x, None).unwrap();
        vec![Injection::at_token(&ids, ts, tokens).unwrap()]
    };

    // Stages: injected embeddings, every layer, the final norm, logits rows.
    let mut rec = Recorder::new(gpu);
    let inject = record_encoder(&mut rec);
    let mut session = Session::new(gpu, &text.cfg, ids.len()).unwrap();
    let mut taps = Vec::new();
    let logits = text
        .forward_injected(
            &mut rec,
            &mut session,
            &ids,
            &positions,
            Logits::All,
            Some(&mut taps),
            &inject,
        )
        .unwrap();
    rec.submit().unwrap();
    for (name, t) in &taps {
        let (want, shape) = f32_of(&g, name);
        assert_eq!(t.shape, shape, "{name}");
        assert_close(&format!("{case} {name}"), &read(gpu, t), &want, 1e-4, 1e-4);
    }
    let all = read(gpu, &logits);
    let vocab = text.cfg.vocab_size;
    let rows = ids_of(&g, "logits_row_index");
    let got: Vec<f32> = rows
        .iter()
        .flat_map(|&r| all[r as usize * vocab..][..vocab].to_vec())
        .collect();
    let (want, _) = f32_of(&g, "logits_rows");
    assert_close(&format!("{case} logits"), &got, &want, 1e-4, 1e-4);

    // Greedy decoding: the encoder in the first prefill submission, 12 ids, raw step logits.
    let want = ids_of(&g, "greedy.generated_ids");
    let mut first = Recorder::new(gpu);
    let inject = record_encoder(&mut first);
    let opts = GenerateOptions {
        max_new_tokens: want.len(),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        },
        max_context: ids.len() + want.len() + 1,
        prefill_chunk: 16, // the ECG token lands in a later chunk than the first
        keep_logits: true,
        inject,
        ..GenerateOptions::default()
    };
    let out = pollster::block_on(generate_after(
        first,
        &text,
        &ids,
        &positions,
        delta,
        &opts,
        &mut |_| true,
    ))
    .unwrap();
    assert_eq!(out.token_ids, want, "{case}: greedy ids");
    let (steps, _) = f32_of(&g, "greedy.step_logits");
    assert_close(
        &format!("{case} step logits"),
        &out.step_logits.concat(),
        &steps,
        1e-4,
        1e-4,
    );
}

#[test]
fn ecg_prompt_matches_the_reference() {
    check_prompt(&gpu(), "ecg", &["waveform_ecg_dicom"]);
}

#[test]
fn text_prompt_on_the_omni_checkpoint_matches_the_reference() {
    check_prompt(&gpu(), "text", &[]);
}

#[test]
fn two_ecg_prompt_matches_the_reference() {
    check_prompt(
        &gpu(),
        "two_ecgs",
        &["waveform_ecg_dicom", "waveform_ecg_variant_dicom"],
    );
}
