//! The streaming loader at real size: a Qwen2.5 vocabulary (152064) whose embedding and lm_head
//! exceed a 128 MiB storage binding (lavapipe's, and wgpu's default) load as split weights from a
//! random-weight checkpoint (weights::synthetic), rows land in the right parts (checked against
//! the store's own bytes through the gather and the GEMV), progress adds up, and the model
//! generates.

mod common_gpu;

use common_gpu::gpu;
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::{Recorder, Tensor, WeightFormat, ops};
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::weights::policy::FormatPlan;
use qoqmed_engine::weights::synthetic::SyntheticSource;
use qoqmed_engine::weights::{ByteSource, LoadProgress, WeightStore, upload};

fn config(vocab: usize) -> ModelConfig {
    let json = serde_json::json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 1,
        "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": vocab,
        "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": false,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "image_token_id": 151655, "eos_token_id": 151645,
    });
    ModelConfig::from_json(json.to_string().as_bytes()).unwrap()
}

#[test]
fn real_vocabulary_loads_split_under_a_128_mib_binding() {
    let gpu = gpu();
    let limit = gpu.max_binding().min(gpu.limits.max_buffer_size);
    let cfg = config(152064);
    // The defaults: q4 linears, q8 embedding and lm_head (2 parts each at 128 MiB).
    for (linear, head) in [(WeightFormat::Q4, WeightFormat::Q8)] {
        let mut plan = FormatPlan::for_format(linear);
        plan.head = head;
        let source = SyntheticSource::text_model(&cfg.text, &plan, 3).unwrap();
        let store = pollster::block_on(WeightStore::open(vec![
            Box::new(source) as Box<dyn ByteSource>
        ]))
        .unwrap();
        let seen = std::rc::Rc::new(std::cell::Cell::new(LoadProgress { done: 0, total: 0 }));
        let sink = seen.clone();
        store.set_progress(Box::new(move |p| sink.set(p)));

        let info = store.get("lm_head.weight").unwrap().clone();
        let head_w = pollster::block_on(upload(&gpu, &store, &info)).unwrap();
        let bytes = info.stored_bytes();
        eprintln!(
            "{head} lm_head: {:.1} MiB in {} parts (binding limit {:.0} MiB)",
            bytes as f64 / 1048576.0,
            head_w.parts.len(),
            limit as f64 / 1048576.0
        );
        if bytes > limit {
            assert!(head_w.parts.len() > 1, "{head}: not split");
        }
        // GEMV rows from every part against the store's own values.
        let h = 1024;
        let x: Vec<f32> = (0..h)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let xt = Tensor::from_f32(&gpu, &x, &[1, h], "x").unwrap();
        let y = Tensor::zeros(&gpu, &[1, 152064], "y").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::linear(&mut rec, &xt, &head_w, None, &y).unwrap();
        rec.submit().unwrap();
        let got = pollster::block_on(y.to_vec(&gpu)).unwrap();
        let values = pollster::block_on(store.read_f32(&info)).unwrap();
        for part in &head_w.parts {
            for r in [
                part.rows.start,
                (part.rows.start + part.rows.end) / 2,
                part.rows.end - 1,
            ] {
                let want: f32 = values[r * h..(r + 1) * h]
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (got[r] - want).abs() <= 1e-3 + 1e-3 * want.abs(),
                    "{head} row {r} (part {:?}): {} vs {want}",
                    part.rows,
                    got[r]
                );
            }
        }
        // The gather reads ids from every part of the embedding.
        let embed = store.get("model.embed_tokens.weight").unwrap().clone();
        let table = pollster::block_on(upload(&gpu, &store, &embed)).unwrap();
        let ids = [0u32, 70001, 100_000, 152063];
        let ids_t = Tensor::from_f32(
            &gpu,
            &ids.iter().map(|&i| f32::from_bits(i)).collect::<Vec<_>>(),
            &[4],
            "ids",
        )
        .unwrap();
        let out = Tensor::zeros(&gpu, &[4, h], "rows").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::embedding(&mut rec, &ids_t.buffer, 4, &table, &out).unwrap();
        rec.submit().unwrap();
        let rows = pollster::block_on(out.to_vec(&gpu)).unwrap();
        let evalues = pollster::block_on(store.read_f32(&embed)).unwrap();
        for (t, &id) in ids.iter().enumerate() {
            assert_eq!(
                rows[t * h..(t + 1) * h],
                evalues[id as usize * h..(id as usize + 1) * h],
                "{head} embedding row {id}"
            );
        }
        let uploaded = seen.get();
        assert_eq!(uploaded.done, info.stored_bytes() + embed.stored_bytes());

        // The whole model loads through the same path and generates finite logits.
        let model = pollster::block_on(TextModel::load(&gpu, &store, &cfg.text)).unwrap();
        assert_eq!(
            seen.get().done,
            seen.get().total + uploaded.done,
            "progress adds up"
        );
        let prompt = [151644u32, 872, 198, 9707, 1879];
        let opts = GenerateOptions {
            max_new_tokens: 3,
            max_context: 16,
            ..GenerateOptions::default()
        };
        let positions = rope::text_positions(0, prompt.len(), 0);
        let out = pollster::block_on(generate(
            &gpu,
            &model,
            &prompt,
            &positions,
            0,
            &opts,
            &mut |_| true,
        ))
        .unwrap();
        assert_eq!(out.token_ids.len(), 3);
        assert!(out.token_ids.iter().all(|&t| (t as usize) < 152064));
    }
}
