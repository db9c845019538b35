//! `qoqmed bench`: prefill and decode speed, stated portably as achieved weight-read bandwidth
//! over the best of several copy kernels on the same adapter in the same run
//! (../shared/docs/performance.md). Runs a model folder, or a random-weight model with the real
//! shapes of Qwen2.5-VL 3B / 7B / 32B (or any config.json) generated on the fly: no files. Prints
//! numbers; it asserts nothing.

use std::path::PathBuf;

use anyhow::{Context, bail};
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::{Gpu, WeightFormat};
use qoqmed_engine::kv_cache::KvFormat;
use qoqmed_engine::model::memory::{MemoryLimits, MemoryPlan, RunShape, TensorSpec, text_tensors};
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::policy::FormatPlan;
use qoqmed_engine::weights::synthetic::SyntheticSource;
use qoqmed_engine::weights::{ByteSource, DType, ModelFiles, WeightStore};
use web_time::Instant;

use crate::bench_copy::{copy_bandwidth, gemm_gflops, matmul_peak_gflops};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder to measure (instead of --config).
    #[arg(long, conflicts_with = "config")]
    model: Option<PathBuf>,
    /// Random weights with the shapes of `3b`, `7b`, `32b` (Qwen2.5-VL language models) or of a
    /// config.json FILE; generated on the fly, no files written.
    #[arg(long)]
    config: Option<String>,
    /// Decoder layers to build (default: the config's); speeds for the full depth are then
    /// extrapolated and say so.
    #[arg(long)]
    layers: Option<usize>,
    /// Vocabulary size (default: the config's).
    #[arg(long)]
    vocab: Option<usize>,
    /// Language-model linears: q4, q8, f16 or bf16 (with --config).
    #[arg(long, default_value = "q4")]
    format: String,
    /// Embedding and lm_head format (default: q8 for q4/q8, else --format).
    #[arg(long)]
    head_format: Option<String>,
    /// KV cache positions (default: prompt + new tokens + 1).
    #[arg(long)]
    context: Option<usize>,
    /// KV cache storage: f32 or f16.
    #[arg(long, default_value = "f32")]
    kv: String,
    /// Synthetic prompt length.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Greedy decode steps timed.
    #[arg(long, default_value_t = 16)]
    new_tokens: usize,
    /// Refuse to load when the accounting exceeds this many GB (1e9 bytes).
    #[arg(long)]
    memory_budget_gb: Option<f64>,
    #[arg(long)]
    adapter: Option<usize>,
    /// One JSON object as the last line instead of the table.
    #[arg(long)]
    json: bool,
}

/// (hidden, intermediate, layers, heads, kv heads, vocab) of the Qwen2.5-VL language models.
/// Untied lm_head for all three, as the peer's GGUF (the real 3B ties it to the embedding).
fn preset(name: &str) -> Option<[usize; 6]> {
    Some(match name {
        "3b" => [2048, 11008, 36, 16, 2, 151936],
        "7b" => [3584, 18944, 28, 28, 4, 152064],
        "32b" => [5120, 27648, 64, 40, 8, 152064],
        _ => return None,
    })
}

fn config_for(name: &str) -> anyhow::Result<ModelConfig> {
    let json = match preset(name) {
        Some([h, i, l, nh, kv, v]) => serde_json::json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "hidden_size": h, "intermediate_size": i, "num_hidden_layers": l,
            "num_attention_heads": nh, "num_key_value_heads": kv, "vocab_size": v,
            "rms_norm_eps": 1e-6, "rope_theta": 1e6, "max_position_embeddings": 128000,
            "tie_word_embeddings": false, "eos_token_id": 151645, "image_token_id": 151655,
            "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        })
        .to_string()
        .into_bytes(),
        None => std::fs::read(name).with_context(|| {
            format!("--config {name}: not 3b, 7b or 32b, and not a readable config.json")
        })?,
    };
    Ok(ModelConfig::from_json(&json)?)
}

fn parse_format(flag: &str, s: &str) -> anyhow::Result<WeightFormat> {
    WeightFormat::parse(s)
        .filter(|f| *f != WeightFormat::F32)
        .with_context(|| format!("{flag} {s}: choose q4, q8, f16 or bf16"))
}

/// Weight bytes one decode step reads: everything but the embedding table, of which one row.
fn bytes_per_token(specs: &[TensorSpec], tied: bool) -> u64 {
    specs
        .iter()
        .map(|s| {
            if s.name.ends_with("embed_tokens.weight") && !tied {
                s.row_bytes()
            } else {
                s.data_bytes()
            }
        })
        .sum()
}

/// Multiply-adds of the matrices one token goes through (embedding excluded), times 2.
fn flops_per_token(specs: &[TensorSpec], tied: bool) -> f64 {
    specs
        .iter()
        .filter(|s| s.shape.len() == 2 && (tied || !s.name.ends_with("embed_tokens.weight")))
        .map(|s| 2.0 * (s.shape[0] * s.shape[1]) as f64)
        .sum()
}

/// What is measured: a checkpoint folder or a synthetic model.
struct Subject {
    config: ModelConfig,
    sources: Vec<Box<dyn ByteSource>>,
    /// The synthetic model's tensors in their formats (empty for a checkpoint: read from it).
    specs: Vec<TensorSpec>,
    label: String,
    format: String,
    /// The config's own depth, for extrapolating a `--layers` run.
    full_layers: usize,
    plan: Option<FormatPlan>,
}

fn subject(args: &Args) -> anyhow::Result<Subject> {
    match (&args.model, &args.config) {
        (Some(dir), None) => {
            let mut files = ModelFiles::from_dir(dir)?;
            let config = ModelConfig::from_json(&files.config)?;
            Ok(Subject {
                sources: std::mem::take(&mut files.weights),
                specs: Vec::new(),
                label: dir.display().to_string(),
                format: "checkpoint".into(),
                full_layers: config.text.num_hidden_layers,
                plan: None,
                config,
            })
        }
        (None, Some(name)) => {
            let mut config = config_for(name)?;
            let full_layers = config.text.num_hidden_layers;
            if let Some(l) = args.layers {
                config.text.num_hidden_layers = l;
            }
            if let Some(v) = args.vocab {
                config.text.vocab_size = v;
            }
            let linear = parse_format("--format", &args.format)?;
            let mut plan = FormatPlan::for_format(linear);
            if let Some(h) = &args.head_format {
                plan.head = parse_format("--head-format", h)?;
            }
            let source = SyntheticSource::text_model(&config.text, &plan, 1234)?;
            Ok(Subject {
                specs: source.specs().to_vec(),
                sources: vec![Box::new(source)],
                label: name.clone(),
                format: format!("{}+head-{}", plan.linear, plan.head),
                full_layers,
                plan: Some(plan),
                config,
            })
        }
        _ => bail!("give --model DIR or --config 3b|7b|32b|FILE"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu = pollster::block_on(Gpu::new(args.adapter))?;
    let Subject {
        config,
        sources: store_sources,
        specs,
        label,
        format,
        full_layers,
        plan: format_plan,
    } = subject(&args)?;
    let cfg = &config.text;
    let kv_format = match args.kv.as_str() {
        "f32" => KvFormat::F32,
        "f16" => KvFormat::F16,
        other => bail!("--kv {other}: choose f32 or f16"),
    };
    let prompt_len = args.prompt_tokens.max(1);
    let new_tokens = args.new_tokens.max(2);
    let max_context = args.context.unwrap_or(prompt_len + new_tokens + 1);

    let t_load = Instant::now();
    let store = pollster::block_on(WeightStore::open(store_sources))?;
    // What sits on the GPU: the synthetic plan, or the checkpoint's tensors as stored.
    let specs = if specs.is_empty() {
        text_tensors(cfg)
            .iter()
            .filter_map(|(name, _)| store.get(name))
            .map(|i| TensorSpec::new(i.name.clone(), &i.shape, i.format))
            .collect()
    } else {
        specs
    };
    let plan = MemoryPlan::new(
        cfg,
        &specs,
        RunShape {
            max_context,
            prefill_chunk: 512,
            kv_value_bytes: kv_format.bytes_per_value(),
        },
        gpu.max_binding().min(gpu.limits.max_buffer_size),
    );
    plan.check(&MemoryLimits {
        max_binding: gpu.max_binding(),
        max_buffer: gpu.limits.max_buffer_size,
        budget: args.memory_budget_gb.map(|g| (g * 1e9) as u64),
    })?;
    let bar = crate::load_bar(args.json);
    if let Some(bar) = &bar {
        store.set_progress(crate::progress_fn(bar.clone()));
    }
    let model = pollster::block_on(TextModel::load(&gpu, &store, cfg))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let load_s = t_load.elapsed().as_secs_f64();

    let vocab = cfg.vocab_size;
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let positions = rope::text_positions(0, prompt.len(), 0);
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        sampling: SamplingParams::default(),
        max_context,
        kv_format,
        ..GenerateOptions::default()
    };
    // GPU memory is sampled while the session (KV cache, activations) is alive.
    let mut peak: Option<(u64, u64)> = None;
    let out = pollster::block_on(generate(
        &gpu,
        &model,
        &prompt,
        &positions,
        0,
        &opts,
        &mut |_| {
            if let Some(r) = gpu.device.generate_allocator_report() {
                let (a, b) = peak.unwrap_or((0, 0));
                peak = Some((
                    a.max(r.total_allocated_bytes),
                    b.max(r.total_reserved_bytes),
                ));
            }
            true
        },
    ))?;
    // The bounds, after the model run so their buffers are not counted in its memory.
    let copies = copy_bandwidth(&gpu)?;
    let (best_copy, copy_gbs) = copies
        .iter()
        .cloned()
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let gemm = gemm_gflops(&gpu, &store, prompt_len)?;
    let peak_matmul = matmul_peak_gflops(&gpu, cfg, prompt_len)?;

    let tied = cfg.tie_word_embeddings;
    let per_token = bytes_per_token(&specs, tied);
    let decode = out.decode_tokens_per_s();
    let prefill = out.prefill_tokens_per_s();
    let read_gbs = per_token as f64 * decode / 1e9;
    let model_gflops = flops_per_token(&specs, tied) * prefill / 1e9;
    let layers = cfg.num_hidden_layers;
    let mut report = serde_json::json!({
        "adapter": gpu.adapter.to_string(),
        "config": label,
        "format": format,
        "kv_cache": args.kv,
        "layers": layers,
        "vocab": vocab,
        "prompt_tokens": out.prompt_tokens,
        "new_tokens": out.token_ids.len(),
        "load_s": load_s,
        "prefill_tokens_per_s": prefill,
        "decode_tokens_per_s": decode,
        "weight_bytes_per_token": per_token,
        "read_gb_per_s": read_gbs,
        "copy_gb_per_s": copy_gbs,
        "copy_kernel": best_copy,
        "copy_kernels_gb_per_s": copies.iter().map(|(n, g)| (n.clone(), serde_json::json!(g))).collect::<serde_json::Map<_, _>>(),
        "bandwidth_ratio": read_gbs / copy_gbs,
        "prefill_gflops": gemm.0,
        "prefill_gemm_shape": gemm.1,
        "prefill_model_gflops": model_gflops,
        "matmul_peak_gflops": peak_matmul.0,
        "matmul_peak_shape": peak_matmul.1,
        "peak_gpu_bytes": peak.map_or(plan.total(), |p| p.0),
        "peak_gpu_reserved_bytes": peak.map(|p| p.1),
        "peak_gpu_bytes_source": if peak.is_some() { "allocator report" } else { "size accounting" },
        "accounted_gpu_bytes": plan.total(),
        "bind_groups_after_first_step": out.bind_groups_after_first_step,
    });
    if let (true, Some(fplan)) = (layers < full_layers, format_plan) {
        // Full depth, by bytes at the measured read bandwidth and by FLOPs at the measured rate.
        let mut full_cfg = cfg.clone();
        full_cfg.num_hidden_layers = full_layers;
        let full_specs: Vec<TensorSpec> = text_tensors(&full_cfg)
            .iter()
            .map(|(n, s)| TensorSpec::new(n.clone(), s, fplan.choose(n, s, DType::BF16)))
            .collect();
        let full_bytes = bytes_per_token(&full_specs, tied);
        report["extrapolated_full_depth"] = serde_json::json!({
            "layers": full_layers,
            "weight_bytes_per_token": full_bytes,
            "decode_tokens_per_s": read_gbs * 1e9 / full_bytes as f64,
            "prefill_tokens_per_s": model_gflops * 1e9 / flops_per_token(&full_specs, tied),
            "method": "extrapolated from this run: decode at the measured read GB/s, prefill at the measured model GFLOP/s",
        });
    }
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!("adapter                 {}", gpu.adapter);
    println!(
        "model                   {label} ({layers} layers, vocab {vocab}, {format}), load {load_s:.2} s"
    );
    println!("memory (accounted)      {}", plan.summary());
    println!(
        "prefill                 {prefill:.2} tok/s over {} tokens ({model_gflops:.2} GFLOP/s over the model)",
        out.prompt_tokens
    );
    println!(
        "decode                  {decode:.3} tok/s over {} tokens",
        out.token_ids.len()
    );
    println!("weights read per token  {:.2} MB", per_token as f64 / 1e6);
    println!("achieved weight read    {read_gbs:.3} GB/s");
    for (name, g) in &copies {
        println!("copy kernel {name:<11} {g:.3} GB/s (read + write)");
    }
    println!(
        "bandwidth ratio         {:.1} % of {best_copy}",
        100.0 * read_gbs / copy_gbs
    );
    println!("prefill GEMM            {:.2} GFLOP/s ({})", gemm.0, gemm.1);
    println!(
        "plain matmul            {:.2} GFLOP/s ({})",
        peak_matmul.0, peak_matmul.1
    );
    if let Some((allocated, reserved)) = peak {
        println!(
            "peak GPU bytes          {:.1} MB allocated, {:.1} MB reserved (allocator report)",
            allocated as f64 / 1e6,
            reserved as f64 / 1e6
        );
    }
    if let Some(x) = report.get("extrapolated_full_depth") {
        println!(
            "full depth ({full_layers} layers, EXTRAPOLATED): decode {:.3} tok/s, prefill {:.2} tok/s",
            x["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
            x["prefill_tokens_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
