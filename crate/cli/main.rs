//! `qoqmed`: the native command line. Each subcommand lives in its own file; other tools call these
//! commands, so their flags and JSON outputs are a stable contract.

mod advantages;
mod bench;
mod ecg_plot;
mod export;
mod generate;
mod preprocess;
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
    /// List the GPU adapters wgpu can see (use the index with `generate --adapter`).
    Adapters,
    /// Turn images and ECGs into the tensors the model takes and write them to a safetensors file.
    Preprocess(preprocess::Args),
    /// Draw a 12-lead ECG in the clinical layout (3x4 + lead II rhythm strip) as a PNG.
    EcgPlot(ecg_plot::Args),
    /// Compute GRPO / DRPO advantages for groups of rollout rewards (JSON in, JSON out).
    Advantages(advantages::Args),
    /// Fine-tune with DRPO / GRPO (burn on the GPU, rollouts from the engine; `train` feature).
    Train(train::Args),
    /// Merge a training run's checkpoint into a model folder `generate` loads (`train` feature).
    Export(export::Args),
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
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Adapters => generate::list_adapters_cmd(),
        Command::Preprocess(args) => preprocess::run(args),
        Command::EcgPlot(args) => ecg_plot::run(args),
        Command::Advantages(args) => advantages::run(args),
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
