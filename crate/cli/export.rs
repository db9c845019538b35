//! `qoqmed export --run DIR --out DIR`: a training run's checkpoint as a plain Hugging Face model
//! folder (adapters merged, the base's names and dtypes), loadable by `qoqmed generate`, the
//! quantizer and the browser app. Needs the `train` cargo feature (it merges with burn).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The run folder (`out` of the training config).
    #[arg(long)]
    run: PathBuf,
    /// New folder for the model.
    #[arg(long)]
    out: PathBuf,
    /// A checkpoint folder of the run (default: the newest).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Element type of the trained tensors: base (the checkpoint's own), f32, f16 or bf16.
    #[arg(long, default_value = "base")]
    dtype: String,
    /// Largest weight file in MiB; bigger models are sharded with an index.
    #[arg(long, default_value_t = 2048)]
    shard_mb: u64,
}

#[cfg(not(feature = "train"))]
pub fn run(_: Args) -> anyhow::Result<()> {
    anyhow::bail!(
        "this qoqmed was built without the trainer; build it with `cargo build --release --features train`"
    )
}

#[cfg(feature = "train")]
pub fn run(args: Args) -> anyhow::Result<()> {
    use qoqmed_train::export::{ExportOptions, export};

    if args.shard_mb == 0 {
        anyhow::bail!("--shard-mb must be at least 1");
    }
    let opts = ExportOptions {
        dtype: args.dtype.parse().map_err(anyhow::Error::msg)?,
        shard_bytes: args.shard_mb << 20,
        checkpoint: args.checkpoint,
    };
    let report = export(&args.run, &args.out, &opts)?;
    eprintln!(
        "exported step {} ({}) to {}: {} files, {:.1} MiB of weights",
        report.step,
        report.checkpoint.display(),
        args.out.display(),
        report.files.len(),
        report.bytes as f64 / 1048576.0
    );
    Ok(())
}
