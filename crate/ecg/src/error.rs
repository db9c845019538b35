//! One error type for every reader and for preprocessing; each message says what was wrong and
//! what to do about it.

use crate::Lead;

#[derive(Debug, thiserror::Error)]
pub enum EcgError {
    #[error("WFDB header line {line}: {msg}")]
    WfdbHeader { line: usize, msg: String },
    #[error(
        "WFDB signal format {code} is not supported (supported: 16, 212, 80); convert the record \
         with wfdb's `wrsamp` to format 16"
    )]
    UnsupportedWfdbFormat { code: String },
    #[error(
        "the .dat file is truncated: the header describes {expected} bytes ({samples} samples x \
         {signals} signals in format {format}) but the .dat has {got}; re-download the record"
    )]
    TruncatedDat {
        expected: usize,
        got: usize,
        samples: usize,
        signals: usize,
        format: u32,
    },
    #[error("the .hea and .dat do not belong together: {0}")]
    Mismatch(String),
    #[error("CSV line {line}: {msg}")]
    Csv { line: usize, msg: String },
    #[error("DICOM ECG: {0}")]
    Dicom(String),
    #[error("HL7 aECG: {0}")]
    Aecg(String),
    #[error(
        "the ECG lacks lead(s) {missing}, which the model needs (I, II and V1-V6); channels found: \
         {found}",
        missing = join(missing),
        found = if found.is_empty() { "none".to_string() } else { found.join(", ") }
    )]
    MissingLeads {
        missing: Vec<Lead>,
        found: Vec<String>,
    },
    #[error("lead {lead} is named twice (second time as {name:?}); keep one channel per lead")]
    DuplicateLead { lead: Lead, name: String },
    #[error(
        "lead {lead} has a non-finite sample ({value}) at index {index}; fill or trim the gap \
         before using this record"
    )]
    NonFinite {
        lead: Lead,
        index: usize,
        value: f32,
    },
    #[error(
        "the record lasts {seconds:.3} s ({samples} samples at {rate} Hz); at least {min} s is \
         needed (10 s is the model's window)"
    )]
    TooShort {
        seconds: f64,
        samples: usize,
        rate: f64,
        min: f64,
    },
    #[error(
        "sampling rate {rate} Hz is not usable; give a positive rate up to 100 kHz (e.g. \
         --ecg-rate 500)"
    )]
    BadRate { rate: f64 },
    #[error("inconsistent record: {0}")]
    Inconsistent(String),
    #[error("could not encode the plot: {0}")]
    Plot(String),
}

fn join(leads: &[Lead]) -> String {
    leads
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}
