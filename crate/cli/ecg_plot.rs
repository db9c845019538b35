//! `qoqmed ecg-plot FILE --out ecg.png`: the clinical 12-lead picture of an ECG file, and
//! `read_ecg_file`, the file side of the ECG readers (the `preprocess` command uses it too).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qoqmed_ecg::{Ecg, EcgFormat, PlotOptions};

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
/// may be given: a `.hea` is read with the `.dat` it names from the same folder, a `.dat` with the
/// `.hea` of the same stem. `rate_hz` is required for CSV and ignored by the other formats (they
/// carry their own rate).
pub fn read_ecg_file(path: &Path, rate_hz: Option<f64>) -> anyhow::Result<Ecg> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading ECG file {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = qoqmed_ecg::detect(&name, &bytes).with_context(|| {
        format!(
            "{}: unknown ECG format; use .hea/.dat (WFDB), .csv, .dcm (DICOM waveform) or .xml (HL7 aECG)",
            path.display()
        )
    })?;
    let ecg = match format {
        EcgFormat::Dicom => qoqmed_ecg::read_dicom(&bytes)?,
        EcgFormat::Aecg => qoqmed_ecg::read_aecg(&bytes)?,
        EcgFormat::Csv => {
            let rate = rate_hz.context(
                "CSV ECGs carry no sampling rate: pass --ecg-rate HZ (e.g. --ecg-rate 500)",
            )?;
            qoqmed_ecg::read_csv(&bytes, rate)?
        }
        EcgFormat::Wfdb => read_wfdb_pair(path, bytes)?,
    };
    Ok(ecg)
}

fn read_wfdb_pair(path: &Path, bytes: Vec<u8>) -> anyhow::Result<Ecg> {
    let is_header = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hea"));
    let (header_path, header) = if is_header {
        (path.to_path_buf(), bytes)
    } else {
        let hea = path.with_extension("hea");
        let header = std::fs::read(&hea).with_context(|| {
            format!(
                "reading the WFDB header {} that goes with {}",
                hea.display(),
                path.display()
            )
        })?;
        (hea, header)
    };
    let dat_name = dat_file_name(&header).with_context(|| {
        format!(
            "{}: no signal line names a .dat file",
            header_path.display()
        )
    })?;
    if dat_name.contains(['/', '\\']) || dat_name == ".." {
        bail!(
            "{}: the .dat name {dat_name:?} points outside the record's folder",
            header_path.display()
        );
    }
    let dat_path = header_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&dat_name);
    let dat = std::fs::read(&dat_path).with_context(|| {
        format!(
            "reading {} (named in {})",
            dat_path.display(),
            header_path.display()
        )
    })?;
    qoqmed_ecg::read_wfdb(&header, &dat)
        .with_context(|| format!("WFDB record {}", header_path.display()))
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
