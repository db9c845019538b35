//! Step time and memory of `qoqmed train` on this machine's adapter.
//!
//! ```sh
//! cargo run --release -p qoqmed-train --example train_bench -- tiny
//! cargo run --release -p qoqmed-train --example train_bench -- 3b-layers [steps] [ckpt]
//! ```
//! `ckpt` turns on burn's gradient checkpointing (`gradient_checkpointing = true`).
//! `tiny`: the tiny fixture model (tests/fixtures/models/tiny-small-vocab) on the toy set.
//! `3b-layers`: a random-weight model with Qwen2.5-VL-3B's decoder layer shapes (hidden 2048,
//! intermediate 11008, 16 heads of 128, 2 KV heads, M-RoPE [16, 24, 24]), 2 layers, LoRA rank 16 on
//! all seven projections, and the tiny model's 2048-token vocabulary (the real 151936-row
//! embedding is 1.2 GB in f32, far above lavapipe's 128 MiB storage-binding limit, which the
//! engine does not split yet; the vocabulary is not a layer shape). Prints per-phase times from the
//! trainer's metrics and the process's peak resident memory (on a software adapter GPU memory
//! is process memory).

use std::path::{Path, PathBuf};

use qoqmed_train::TrainConfig;
use qoqmed_train::tensors::{HostTensor, serialize};
use qoqmed_train::trainer::Trainer;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use safetensors::Dtype;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Writes a random bf16 Qwen2.5-VL text model with 3B layer shapes into `dir`.
fn write_3b_layers(dir: &Path, layers: usize) {
    let (h, inter, heads, kvh, hd, vocab) =
        (2048usize, 11008usize, 16usize, 2usize, 128usize, 2048usize);
    let small = fixtures().join("models/tiny-small-vocab");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(small.join(f), dir.join(f)).unwrap();
    }
    let config = serde_json::json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "bos_token_id": 2030, "eos_token_id": 2032,
        "vision_start_token_id": 2039, "vision_end_token_id": 2040,
        "image_token_id": 2042, "video_token_id": 2043,
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kvh,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 128000,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": true, "vocab_size": vocab, "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut tensor = |shape: Vec<usize>, std: f32, mean: f32| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| {
                let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                half::bf16::from_f32(mean + std * (u * 2.0 - 1.0) * 1.732).to_le_bytes()
            })
            .collect();
        HostTensor {
            shape,
            bytes,
            dtype: Dtype::BF16,
        }
    };
    let mut t = vec![
        (
            "model.embed_tokens.weight".to_string(),
            tensor(vec![vocab, h], 0.02, 0.0),
        ),
        ("model.norm.weight".to_string(), tensor(vec![h], 0.1, 1.0)),
    ];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![heads * hd, h]),
            ("self_attn.k_proj.weight", vec![kvh * hd, h]),
            ("self_attn.v_proj.weight", vec![kvh * hd, h]),
            ("self_attn.o_proj.weight", vec![h, heads * hd]),
            ("mlp.gate_proj.weight", vec![inter, h]),
            ("mlp.up_proj.weight", vec![inter, h]),
            ("mlp.down_proj.weight", vec![h, inter]),
        ] {
            t.push((format!("{p}.{name}"), tensor(shape, 0.02, 0.0)));
        }
        for (name, n) in [
            ("self_attn.q_proj.bias", heads * hd),
            ("self_attn.k_proj.bias", kvh * hd),
            ("self_attn.v_proj.bias", kvh * hd),
        ] {
            t.push((format!("{p}.{name}"), tensor(vec![n], 0.02, 0.0)));
        }
        for name in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            t.push((format!("{p}.{name}"), tensor(vec![h], 0.1, 1.0)));
        }
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    std::fs::write(dir.join("model.safetensors"), serialize(&t, None).unwrap()).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("tiny");
    let steps: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let ckpt = args.iter().skip(1).any(|a| a == "ckpt");
    let work = std::env::temp_dir().join(format!("qoqmed-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (model, rank, max_new) = match which {
        "tiny" => (fixtures().join("models/tiny-small-vocab"), 8, 24),
        "3b-layers" => {
            let dir = work.join("model-3b-layers");
            std::fs::create_dir_all(&dir).unwrap();
            write_3b_layers(&dir, 2);
            (dir, 16, 24)
        }
        other => panic!("unknown preset {other}: use tiny or 3b-layers"),
    };
    let toml = format!(
        "model = {model:?}\ndata = {:?}\nout = {:?}\nsteps = {steps}\nprompts_per_step = 4\n\
         group_size = 4\nlearning_rate = 0.0001\nlora_rank = {rank}\nlora_alpha = {}\n\
         max_new_tokens = {max_new}\ninstruction = \"none\"\nmicro_batch = 8\n\
         checkpoint_every = 1000\ngradient_checkpointing = {ckpt}\n",
        fixtures().join("train/toy.jsonl"),
        work.join("run"),
        2 * rank
    );
    let cfg = TrainConfig::parse(&toml).unwrap();
    let before = peak_rss_mib();
    let t = std::time::Instant::now();
    let mut trainer = Trainer::new(cfg, false, &mut |l| eprintln!("{l}")).unwrap();
    println!(
        "{which}{}: setup {:.1} s (peak RSS {:.0} MiB before, {:.0} MiB after loading)",
        if ckpt {
            " (gradient checkpointing)"
        } else {
            ""
        },
        t.elapsed().as_secs_f64(),
        before,
        peak_rss_mib()
    );
    println!(
        "step | rollout s | update s (ref + train) | upload s | step s | rollout tok/s | update tok/s | new tokens | peak RSS MiB"
    );
    trainer
        .run(&mut |m| {
            println!(
                "{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0}",
                m.step,
                m.rollout_s,
                m.update_s,
                m.upload_s,
                m.step_s,
                m.rollout_tokens_per_s,
                m.update_tokens_per_s,
                m.response_tokens * 16.0,
                peak_rss_mib()
            );
        })
        .unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
