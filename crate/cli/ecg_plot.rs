//! `qoqmed ecg-plot FILE --out ecg.png`: the clinical 12-lead picture of an ECG file, and
//! `read_ecg_file`, the file side of the ECG readers (the `preprocess` command uses it too).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qoqmed_ecg::{Ecg, PlotOptions};

#[derive(clap::Args)]
pub struct Args {
    /// The ECG: WFDB (.hea or .dat, the other file beside it), .csv (needs --ecg-rate), DICOM
    /// waveform (.dcm) or HL7 aECG (.xml).
    pub file: PathBuf,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Sampling rate in Hz, required for CSV files (they carry none).
    #[arg(long = "ecg-rate")]
    pub ecg_rate: Option<f64>,
    /// Resolution in pixels per millimetre of ECG paper (25 mm/s, 10 mm/mV).
    #[arg(long, default_value_t = 5.0)]
    pub px_per_mm: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ecg = read_ecg_file(&args.file, args.ecg_rate)?;
    if !(args.px_per_mm.is_finite() && (1.0..=40.0).contains(&args.px_per_mm)) {
        bail!(
            "--px-per-mm must be between 1 and 40, got {}",
            args.px_per_mm
        );
    }
    let png = qoqmed_ecg::plot_png(
        &ecg,
        &PlotOptions {
            px_per_mm: args.px_per_mm,
        },
    )?;
    std::fs::write(&args.out, png).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// Reads an ECG file, choosing the reader from its contents and extension. For WFDB either file
/// may be given: the record is its `.hea` and the `.dat` the header names, from the same folder.
/// `rate_hz` is required for CSV and ignored by the other formats (they carry their own rate).
/// The files are gathered as `generate --ecg` gathers them and read by the pipeline's
/// [`qoqmed_pipeline::read_ecg`] (the format dispatch `generate` and the web app use).
pub fn read_ecg_file(path: &Path, rate_hz: Option<f64>) -> anyhow::Result<Ecg> {
    let input = crate::generate::ecg_input(path)?;
    qoqmed_pipeline::read_ecg(&input, rate_hz)
        .with_context(|| format!("ECG file {}", path.display()))
}

/// The file name on the first signal line (the line after the record line).
pub(crate) fn dat_file_name(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    lines.next()?;
    lines.next()?.split_whitespace().next().map(str::to_string)
}
