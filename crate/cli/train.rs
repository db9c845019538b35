//! `qoqmed train --config FILE.toml [--resume]`: DRPO / GRPO fine-tuning with burn, rollouts from
//! the engine (crate/train). Built only with the `train` cargo feature, so the default and wasm
//! builds never compile burn; without it the command says how to get it.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Run configuration (keys: docs/training.md).
    #[arg(long)]
    config: PathBuf,
    /// Continue the run in the config's `out` folder from its newest checkpoint.
    #[arg(long)]
    resume: bool,
}

#[cfg(not(feature = "train"))]
pub fn run(_: Args) -> anyhow::Result<()> {
    anyhow::bail!(
        "this qoqmed was built without the trainer; build it with `cargo build --release --features train`"
    )
}

#[cfg(feature = "train")]
pub fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    use indicatif::{ProgressBar, ProgressStyle};
    use qoqmed_train::{TrainConfig, trainer::Trainer};

    let cfg = TrainConfig::load(&args.config)?;
    let steps = cfg.steps;
    let out = cfg.out.clone();
    let mut trainer = Trainer::new(cfg, args.resume, &mut |line| eprintln!("{line}"))
        .with_context(|| format!("starting the run in {}", out.display()))?;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step);
    trainer.run(&mut |m| {
        bar.suspend(|| println!("{}", m.summary()));
        bar.set_message(format!("reward {:.3}", m.reward_mean));
        bar.set_position(m.step);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "done: {} steps; metrics in {}, checkpoints in {}",
        trainer.step,
        out.join("metrics.csv").display(),
        out.join("checkpoints").display()
    );
    Ok(())
}
