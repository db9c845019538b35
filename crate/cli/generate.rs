//! `qoqmed generate`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn list_adapters() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
