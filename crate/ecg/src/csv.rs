//! CSV (or TSV / semicolon-separated) ECGs: one header row of lead names, one row per sample.
//! CSV carries no sampling rate, so the caller must give it.

use crate::{Ecg, EcgError};

/// Columns whose header says they hold time or sample numbers, not a signal.
const TIME_COLUMNS: [&str; 6] = ["time", "t", "sample", "index", "seconds", "ms"];

/// Reads a CSV ECG in millivolts. A header may carry its unit, "V1 (uV)" or "V1 [uV]" (mV, uV and
/// V are understood; no unit means mV); a time/sample-number column is skipped; an empty cell or
/// "NaN" becomes NaN (so [`crate::model_input`] reports where); other unparsable cells are errors.
pub fn read_csv(bytes: &[u8], sampling_rate_hz: f64) -> Result<Ecg, EcgError> {
    if !(sampling_rate_hz.is_finite() && sampling_rate_hz > 0.0) {
        return Err(EcgError::BadRate {
            rate: sampling_rate_hz,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| EcgError::Csv {
        line: 1,
        msg: format!("not UTF-8 text ({e})"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(EcgError::Csv {
        line: 1,
        msg: "the file is empty".into(),
    })?;
    let delimiter = [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| header.matches(*d).count())
        .unwrap_or(',');
    let names: Vec<String> = header
        .split(delimiter)
        .map(|s| unquote(s).to_string())
        .collect();
    if names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(EcgError::Csv {
            line: 1,
            msg: "the first row is numbers; add a header row of lead names (I,II,III,aVR,...)"
                .into(),
        });
    }
    let scale: Vec<Result<f32, String>> = names.iter().map(|n| unit_scale(n)).collect();
    let mut columns: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(delimiter).collect();
        if cells.len() != names.len() {
            return Err(EcgError::Csv {
                line: i + 1,
                msg: format!(
                    "{} cells, but the header has {} columns",
                    cells.len(),
                    names.len()
                ),
            });
        }
        for ((col, cell), name) in columns.iter_mut().zip(cells).zip(&names) {
            let cell = unquote(cell);
            let value = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
                f32::NAN
            } else {
                cell.parse::<f32>().map_err(|_| EcgError::Csv {
                    line: i + 1,
                    msg: format!("column {name:?}: {cell:?} is not a number"),
                })?
            };
            col.push(value);
        }
    }
    let mut channels = Vec::new();
    for ((name, mut samples), scale) in names.into_iter().zip(columns).zip(scale) {
        let lower = name.to_ascii_lowercase();
        if TIME_COLUMNS
            .iter()
            .any(|t| lower.split([' ', '(', '[']).next() == Some(t))
        {
            continue;
        }
        let scale = scale.map_err(|msg| EcgError::Csv { line: 1, msg })?;
        if scale != 1.0 {
            samples.iter_mut().for_each(|v| *v *= scale);
        }
        channels.push((name, samples));
    }
    Ecg::from_channels(sampling_rate_hz, channels)
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

/// Multiplier to millivolts from a unit written in the header ("V1 (uV)").
fn unit_scale(name: &str) -> Result<f32, String> {
    let Some(open) = name.find(['(', '[']) else {
        return Ok(1.0);
    };
    let unit = name[open + 1..].trim_end_matches([')', ']']).trim();
    match unit {
        "mV" | "mv" => Ok(1.0),
        "uV" | "uv" | "µV" => Ok(1e-3),
        "V" | "v" => Ok(1e3),
        "s" | "ms" => Ok(1.0),
        other => Err(format!(
            "column {name:?}: unknown unit {other:?}; use mV, uV or V"
        )),
    }
}
