//! 12-lead ECGs for QoQ-Med: readers for WFDB, CSV, DICOM waveform and HL7 aECG files (all take
//! bytes, so the crate builds for wasm32), the preprocessing that turns a record into the (8, 2500)
//! tensor the ECG-JEPA encoder takes (spec section 3), and the clinical 12-lead plot.

mod aecg;
mod csv;
mod dicom;
mod dicom_lengths;
mod error;
mod font;
mod lead;
mod plot;
mod preprocess;
mod wfdb;

pub use aecg::read_aecg;
pub use csv::read_csv;
pub use dicom::read_dicom;
pub use error::EcgError;
pub use lead::Lead;
pub use plot::{PlotOptions, plot_png, plot_rgb};
pub use preprocess::{
    MIN_SECONDS, MODEL_LEADS, MODEL_SAMPLES, WINDOW_SECONDS, model_input, resample, zscore,
};
pub use wfdb::read_wfdb;

/// Sampling rates above this are refused: no ECG device records that fast, and a rate from a
/// corrupt header would otherwise size the 10 s window (and its FFT) from garbage.
pub const MAX_RATE_HZ: f64 = 100_000.0;

/// A multi-lead ECG in physical units (millivolts), all leads sampled together.
#[derive(Clone, Debug, PartialEq)]
pub struct Ecg {
    pub sampling_rate_hz: f64,
    /// Recognised leads in file order; every vector has the same length.
    pub leads: Vec<(Lead, Vec<f32>)>,
    /// Channel names the file had that are not one of the twelve standard leads (kept so errors
    /// can say what the file did contain).
    pub other_channels: Vec<String>,
}

impl Ecg {
    /// The samples of one lead, if the record has it.
    pub fn lead(&self, lead: Lead) -> Option<&[f32]> {
        self.leads
            .iter()
            .find(|(l, _)| *l == lead)
            .map(|(_, v)| v.as_slice())
    }

    /// Number of samples per lead (0 for a record without leads).
    pub fn len(&self) -> usize {
        self.leads.first().map_or(0, |(_, v)| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn duration_s(&self) -> f64 {
        self.len() as f64 / self.sampling_rate_hz
    }

    /// Builds a record from named channels: names are normalised with [`Lead::from_name`],
    /// unknown names go to `other_channels`, a lead named twice is an error.
    pub fn from_channels(
        sampling_rate_hz: f64,
        channels: Vec<(String, Vec<f32>)>,
    ) -> Result<Ecg, EcgError> {
        let mut ecg = Ecg {
            sampling_rate_hz,
            leads: Vec::new(),
            other_channels: Vec::new(),
        };
        for (name, samples) in channels {
            ecg.push(Lead::from_name(&name), name, samples)?;
        }
        ecg.check()?;
        Ok(ecg)
    }

    pub(crate) fn push(
        &mut self,
        lead: Option<Lead>,
        name: String,
        samples: Vec<f32>,
    ) -> Result<(), EcgError> {
        match lead {
            Some(lead) if self.lead(lead).is_some() => Err(EcgError::DuplicateLead { lead, name }),
            Some(lead) => {
                self.leads.push((lead, samples));
                Ok(())
            }
            None => {
                self.other_channels.push(name);
                Ok(())
            }
        }
    }

    /// Invariants every reader guarantees: a usable rate and leads of equal length.
    pub(crate) fn check(&self) -> Result<(), EcgError> {
        let rate = self.sampling_rate_hz;
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_HZ) {
            return Err(EcgError::BadRate { rate });
        }
        if let Some((first, samples)) = self.leads.first() {
            for (lead, other) in &self.leads {
                if other.len() != samples.len() {
                    return Err(EcgError::Inconsistent(format!(
                        "lead {lead} has {} samples but lead {first} has {}",
                        other.len(),
                        samples.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// ECG file formats this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcgFormat {
    /// WFDB: a `.hea` text header plus a `.dat` signal file.
    Wfdb,
    Csv,
    Dicom,
    Aecg,
}

/// Guesses the format from a file name and its first bytes (either may be empty). Contents win
/// over the extension: a DICOM file is recognised by its "DICM" marker, aECG by its root element.
pub fn detect(name: &str, bytes: &[u8]) -> Option<EcgFormat> {
    if dicom::has_dicm_marker(bytes) {
        return Some(EcgFormat::Dicom);
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    if head.contains("<AnnotatedECG") {
        return Some(EcgFormat::Aecg);
    }
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "hea" | "dat" => Some(EcgFormat::Wfdb),
        "csv" | "tsv" | "txt" => Some(EcgFormat::Csv),
        "dcm" | "dicom" => Some(EcgFormat::Dicom),
        "xml" => Some(EcgFormat::Aecg),
        _ => None,
    }
}
