//! Time of QoQ-Med-Omni's ECG branch on this machine's adapter, for one ECG (8 x 2500 -> one
//! token): the tiny-omni fixture's encoder, and a random-weight encoder with the released sizes
//! (ECG-JEPA: 768 wide, 12 blocks, 16 heads, MLP 3072, f32; projection to Qwen2.5-VL-7B's 3584 in
//! bf16). Each run records the encoder, submits it and reads the token back (so the time includes
//! one submit and one 14 KB readback).
//!
//!     cargo run --release -p qoqmed-engine --example ecg_encoder_bench [-- RUNS [tiny]]

use std::time::Instant;

use qoqmed_engine::config::{EcgConfig, ModelConfig};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor};
use qoqmed_engine::model::EcgEncoder;
use qoqmed_engine::weights::{ByteSource, MemorySource, ModelFiles, WeightStore};
use safetensors::{Dtype, tensor::TensorView};

/// Seeded values in [-scale, scale) (xorshift; the numbers do not matter, the work does).
fn random(n: usize, scale: f32, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The branch's tensors with `cfg`'s shapes, random, as one in-memory safetensors file.
fn random_checkpoint(cfg: &EcgConfig, hidden: usize) -> WeightStore {
    let (d, m) = (cfg.encoder_embed_dim, cfg.mlp_hidden());
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("encoder.W_P.weight".into(), vec![d, cfg.t]),
        ("encoder.W_P.bias".into(), vec![d]),
        ("encoder.pos_embed".into(), vec![cfg.tokens(), d]),
        ("encoder.norm.weight".into(), vec![d]),
        ("encoder.norm.bias".into(), vec![d]),
    ];
    for i in 0..cfg.encoder_depth {
        let b = format!("encoder.encoder_blocks.blocks.{i}");
        for (name, shape) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.proj.weight", vec![d, d]),
            ("attn.proj.bias", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("mlp.fc1.weight", vec![m, d]),
            ("mlp.fc1.bias", vec![m]),
            ("mlp.fc2.weight", vec![d, m]),
            ("mlp.fc2.bias", vec![d]),
        ] {
            shapes.push((format!("{b}.{name}"), shape));
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let scale = 1.0 / (*shape.last().unwrap() as f32).sqrt();
            let bytes = bytemuck::cast_slice(&random(n, scale, &mut seed)).to_vec();
            (
                format!("time_series_embedding.{name}"),
                Dtype::F32,
                shape,
                bytes,
            )
        })
        .collect();
    for (name, shape) in [
        ("linear.weight", vec![hidden, d]),
        ("linear.bias", vec![hidden]),
    ] {
        let n = shape.iter().product();
        let bytes: Vec<u8> = random(n, 0.03, &mut seed)
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        data.push((
            format!("time_series_embedding.{name}"),
            Dtype::BF16,
            shape,
            bytes,
        ));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, dt, s, b)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let sources: Vec<Box<dyn ByteSource>> =
        vec![Box::new(MemorySource::new("random.safetensors", bytes))];
    pollster::block_on(WeightStore::open(sources)).unwrap()
}

/// CPU seconds this process has used (all threads: a software adapter's workers included), from
/// /proc on Linux; on a shared machine it says what the work costs regardless of contention.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn time(gpu: &Gpu, what: &str, enc: &EcgEncoder, runs: usize) {
    let mut seed = 7u64;
    let x = Tensor::from_f32(gpu, &random(8 * 2500, 2.0, &mut seed), &[1, 8, 2500], "ecg").unwrap();
    let mut times = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs + 1 {
        let c0 = cpu_seconds();
        let t0 = Instant::now();
        let mut rec = Recorder::new(gpu);
        let out = enc.forward(&mut rec, &x, None).unwrap();
        rec.submit().unwrap();
        let v = pollster::block_on(out.to_vec(gpu)).unwrap();
        assert!(v.iter().all(|f| f.is_finite()), "{what}: non-finite token");
        times.push(t0.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, cpu_seconds()) {
            cpu.push(b - a);
        }
    }
    let cpu_note = if cpu.len() > 1 {
        let mut c = cpu[1..].to_vec();
        c.sort_by(f64::total_cmp);
        format!(
            "; CPU time per run (all threads) median {:.2} s",
            c[c.len() / 2]
        )
    } else {
        String::new()
    };
    let warm = times[0];
    let mut rest = times[1..].to_vec();
    rest.sort_by(f64::total_cmp);
    let c = &enc.cfg;
    println!(
        "{what}: dim {} depth {} heads {} mlp {} -> hidden {}: first run {:.3} s (pipelines \
         compiled), then min {:.3} s, median {:.3} s over {runs} runs{cpu_note}",
        c.encoder_embed_dim,
        c.encoder_depth,
        c.encoder_num_heads,
        c.mlp_hidden(),
        enc.hidden,
        warm,
        rest[0],
        rest[rest.len() / 2]
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS must be a number"))
        .unwrap_or(3)
        .max(1);
    let gpu = pollster::block_on(Gpu::new(None)).expect("a wgpu adapter");
    println!("adapter: {}", gpu.adapter);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/tiny-omni");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
    let tiny = pollster::block_on(EcgEncoder::load(
        &gpu,
        &store,
        &cfg.ecg,
        cfg.text.hidden_size,
    ))
    .unwrap();
    time(&gpu, "tiny-omni encoder", &tiny, runs);
    if std::env::args().nth(2).as_deref() == Some("tiny") {
        return;
    }

    let real = EcgConfig::default();
    let t0 = Instant::now();
    let store = random_checkpoint(&real, 3584);
    let enc = pollster::block_on(EcgEncoder::load(&gpu, &store, &real, 3584)).unwrap();
    println!(
        "real-size random encoder: built and uploaded in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    time(&gpu, "real-size encoder (random weights)", &enc, runs);
}
