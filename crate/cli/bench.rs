//! `qoqmed bench`: decode and prefill speed on a model folder, stated portably as achieved
//! weight-read bandwidth over the bandwidth of a plain copy kernel on the same adapter, same run
//! (docs: ../shared performance notes). Prints numbers; it asserts nothing.

use std::path::PathBuf;

use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, ops, read_buffer};
use qoqmed_engine::model::{TextModel, rope};
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use web_time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder.
    #[arg(long)]
    model: PathBuf,
    /// Synthetic prompt length.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Greedy decode steps timed.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    #[arg(long)]
    adapter: Option<usize>,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// GB/s of a copy kernel over `bytes` (read + write counted), best of `reps` single-submit runs.
fn copy_bandwidth(gpu: &Gpu, bytes: u64, reps: usize) -> anyhow::Result<f64> {
    let n = (bytes / 4) as usize;
    let src = Tensor::zeros(gpu, &[n], "copy.src")?;
    let dst = Tensor::zeros(gpu, &[n], "copy.dst")?;
    let mut best = f64::INFINITY;
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let mut rec = Recorder::new(gpu);
        ops::copy(&mut rec, &src, 0, &dst, 0, n)?;
        rec.submit()?;
        pollster::block_on(read_buffer(gpu, &dst.buffer, 0, 4))?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * 4) as f64 / best / 1e9)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut files = ModelFiles::from_dir(&args.model)?;
    let config = ModelConfig::from_json(&files.config)?;
    let gpu = pollster::block_on(Gpu::new(args.adapter))?;
    let t_load = Instant::now();
    let store = pollster::block_on(WeightStore::open(std::mem::take(&mut files.weights)))?;
    let model = pollster::block_on(TextModel::load(&gpu, &store, &config.text))?;
    let load_s = t_load.elapsed().as_secs_f64();

    let copy_bytes = (gpu.max_binding().min(256 << 20) / 2).min(64 << 20);
    let copy_gbs = copy_bandwidth(&gpu, copy_bytes, 5)?;

    let vocab = config.text.vocab_size;
    let prompt: Vec<u32> = (0..args.prompt_tokens.max(1))
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let positions = rope::text_positions(0, prompt.len(), 0);
    let opts = GenerateOptions {
        max_new_tokens: args.new_tokens.max(2),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        },
        max_context: prompt.len() + args.new_tokens.max(2) + 1,
        ..GenerateOptions::default()
    };
    let out = pollster::block_on(generate(
        &gpu,
        &model,
        &prompt,
        &positions,
        0,
        &opts,
        &mut |_| true,
    ))?;
    let bytes_per_token = model.weight_bytes_per_token();
    let decode = out.decode_tokens_per_s();
    let achieved_gbs = bytes_per_token as f64 * decode / 1e9;
    let report = serde_json::json!({
        "adapter": gpu.adapter.to_string(),
        "model": args.model.display().to_string(),
        "load_s": load_s,
        "prompt_tokens": out.prompt_tokens,
        "new_tokens": out.token_ids.len(),
        "prefill_tokens_per_s": out.prefill_tokens_per_s(),
        "decode_tokens_per_s": decode,
        "weight_bytes_per_token": bytes_per_token,
        "achieved_weight_gb_per_s": achieved_gbs,
        "copy_kernel_gb_per_s": copy_gbs,
        "efficiency_vs_copy": achieved_gbs / copy_gbs,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("adapter                 {}", gpu.adapter);
        println!(
            "model                   {} (load {load_s:.2} s)",
            args.model.display()
        );
        println!(
            "prefill                 {:.1} tok/s over {} tokens",
            out.prefill_tokens_per_s(),
            out.prompt_tokens
        );
        println!(
            "decode                  {decode:.1} tok/s over {} tokens",
            out.token_ids.len()
        );
        println!(
            "weights read per token  {:.2} MB",
            bytes_per_token as f64 / 1e6
        );
        println!("achieved weight read    {achieved_gbs:.3} GB/s");
        println!(
            "copy kernel             {copy_gbs:.3} GB/s ({} MiB, read+write)",
            copy_bytes >> 20
        );
        println!(
            "efficiency vs copy      {:.1} %",
            100.0 * achieved_gbs / copy_gbs
        );
    }
    Ok(())
}
