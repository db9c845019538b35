//! `qoqmed`: the native command line. Each subcommand lives in its own file; other tools call these
//! commands, so their flags and JSON outputs are a stable contract.

mod advantages;
mod bench;
mod bench_copy;
mod bench_vision;
mod ecg_plot;
mod export;
mod generate;
mod preprocess;
mod quantize;
mod serve;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qoqmed",
    version,
    about = "QoQ-Med on your own GPU (research preview, not for clinical use)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about images, ECGs and text with a QoQ-Med / Qwen2.5-VL checkpoint.
    Generate(generate::Args),
    /// Measure prefill/decode speed and bandwidth efficiency against a copy kernel on this adapter.
    Bench(bench::Args),
    /// Convert a Hugging Face checkpoint to 4/8-bit (or f16) weights in a new model folder.
    Quantize(quantize::Args),
    /// Time the vision tower on one image and compare its GFLOP/s with the engine's matmul.
    BenchVision(bench_vision::Args),
    /// List the GPU adapters wgpu can see (use the index with `generate --adapter`).
    Adapters,
    /// Turn images and ECGs into the tensors the model takes and write them to a safetensors file.
    Preprocess(preprocess::Args),
    /// Draw a 12-lead ECG in the clinical layout (3x4 + lead II rhythm strip) as a PNG.
    EcgPlot(ecg_plot::Args),
    /// Serve the web app and a model folder on 127.0.0.1 (the browser runs the model on its GPU).
    Serve(serve::Args),
    /// Compute GRPO / DRPO advantages for groups of rollout rewards (JSON in, JSON out).
    Advantages(advantages::Args),
    /// Fine-tune with DRPO / GRPO (burn on the GPU, rollouts from the engine; `train` feature).
    Train(train::Args),
    /// Merge a training run's checkpoint into a model folder `generate` loads (`train` feature).
    Export(export::Args),
}

/// A progress bar for loading weights, on stderr when it is a terminal (never with --json).
fn load_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "loading weights {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("template"),
    );
    Some(bar)
}

/// The weight store's progress callback driving `bar`.
fn progress_fn(bar: indicatif::ProgressBar) -> qoqmed_engine::weights::ProgressFn {
    Box::new(move |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    })
}

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid" on headless machines (servers,
/// CI) although compute works; point it at the temp dir so a newcomer's first run looks clean.
fn quiet_headless_vulkan() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: the first statement of main, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

fn main() -> std::process::ExitCode {
    quiet_headless_vulkan();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run_cmd(args),
        Command::Bench(args) => bench::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::BenchVision(args) => bench_vision::run(args),
        Command::Adapters => generate::list_adapters_cmd(),
        Command::Preprocess(args) => preprocess::run(args),
        Command::EcgPlot(args) => ecg_plot::run(args),
        Command::Advantages(args) => advantages::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
