//! DICOM waveform objects (12-lead ECG Waveform Storage and kin), read with dicom-rs.
//! Values follow PS3.3 C.10.9 and pydicom's `multiplex_array`:
//! physical = raw * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline,
//! in the units of ChannelSensitivityUnitsSequence (uV, mV or V), converted to mV here.

use dicom_core::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use crate::{Ecg, EcgError, Lead};

pub(crate) fn has_dicm_marker(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.get(..4) == Some(b"DICM")
}

/// Reads the multiplex group that holds the most of the twelve leads (a rhythm group, not a
/// group of median beats, when both qualify), so the whole 10 s record is used.
pub fn read_dicom(bytes: &[u8]) -> Result<Ecg, EcgError> {
    let start = if bytes.get(128..132) == Some(b"DICM") {
        128
    } else if bytes.get(..4) == Some(b"DICM") {
        0
    } else {
        return Err(EcgError::Dicom(
            "not a DICOM file (no \"DICM\" marker at byte 128); export the ECG as a DICOM Part 10 file".into(),
        ));
    };
    crate::dicom_lengths::check(&bytes[start..])
        .map_err(|e| EcgError::Dicom(format!("could not parse the file: {e}")))?;
    let object = OpenFileOptions::new()
        .from_reader(&bytes[start..])
        .map_err(|e| EcgError::Dicom(format!("could not parse the file: {e}")))?;
    let groups = object
        .element_opt(tags::WAVEFORM_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .ok_or_else(|| {
            EcgError::Dicom(
                "no Waveform Sequence (5400,0100): this DICOM is not a waveform (ECG) object"
                    .into(),
            )
        })?;
    let mut best: Option<(usize, bool, Ecg)> = None;
    let mut errors = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        match read_group(group) {
            Ok(ecg) => {
                let label = text(group, tags::MULTIPLEX_GROUP_LABEL).to_ascii_uppercase();
                let rhythm = !label.contains("MEDIAN");
                let key = (ecg.leads.len(), rhythm);
                if best.as_ref().is_none_or(|(n, r, _)| key > (*n, *r)) {
                    best = Some((key.0, key.1, ecg));
                }
            }
            Err(e) => errors.push(format!("group {}: {e}", index + 1)),
        }
    }
    match best {
        Some((_, _, ecg)) => Ok(ecg),
        None if errors.is_empty() => Err(EcgError::Dicom("the Waveform Sequence is empty".into())),
        None => Err(EcgError::Dicom(errors.join("; "))),
    }
}

fn read_group(group: &InMemDicomObject) -> Result<Ecg, String> {
    let channels: usize = int(group, tags::NUMBER_OF_WAVEFORM_CHANNELS)?;
    let samples: usize = int(group, tags::NUMBER_OF_WAVEFORM_SAMPLES)?;
    let rate = float(group, tags::SAMPLING_FREQUENCY)?;
    let bits: usize = int(group, tags::WAVEFORM_BITS_ALLOCATED)?;
    let interpretation = text(group, tags::WAVEFORM_SAMPLE_INTERPRETATION);
    let definitions = group
        .element_opt(tags::CHANNEL_DEFINITION_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .ok_or("no Channel Definition Sequence (003A,0200)")?;
    if definitions.len() != channels {
        return Err(format!(
            "{channels} channels announced but {} channel definitions",
            definitions.len()
        ));
    }
    let data = group
        .element_opt(tags::WAVEFORM_DATA)
        .ok()
        .flatten()
        .ok_or("no Waveform Data (5400,1010)")?;
    let raw = decode(data.value().primitive(), bits, &interpretation)?;
    let total = channels
        .checked_mul(samples)
        .ok_or("sample count overflows")?;
    if raw.len() < total {
        return Err(format!(
            "Waveform Data holds {} values, but {channels} channels x {samples} samples were announced (truncated file?)",
            raw.len()
        ));
    }
    let mut ecg = Ecg {
        sampling_rate_hz: rate,
        leads: Vec::new(),
        other_channels: Vec::new(),
    };
    for (k, def) in definitions.iter().enumerate() {
        let (lead, name) = channel_name(def);
        let sensitivity = float(def, tags::CHANNEL_SENSITIVITY).unwrap_or(1.0);
        let correction = float(def, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR).unwrap_or(1.0);
        let baseline = float(def, tags::CHANNEL_BASELINE).unwrap_or(0.0);
        let unit = def
            .element_opt(tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE)
            .ok()
            .flatten()
            .and_then(|e| e.items())
            .and_then(|items| items.first())
            .map(|item| text(item, tags::CODE_VALUE))
            .unwrap_or_default();
        let to_mv = match unit.as_str() {
            "uV" => 1e-3,
            "mV" | "" => 1.0,
            "V" => 1e3,
            other => {
                return Err(format!(
                    "channel {name}: unknown sensitivity unit {other:?}"
                ));
            }
        };
        let scale = sensitivity * correction;
        let values: Vec<f32> = raw[..total]
            .iter()
            .skip(k)
            .step_by(channels)
            .map(|&r| ((r * scale + baseline) * to_mv) as f32)
            .collect();
        ecg.push(lead, name, values).map_err(|e| e.to_string())?;
    }
    ecg.check().map_err(|e| e.to_string())?;
    Ok(ecg)
}

/// The lead from the channel source code (meaning first, then the SCPECG/MDC code value), else
/// from the Channel Label; the name kept for messages is the first text found.
fn channel_name(def: &InMemDicomObject) -> (Option<Lead>, String) {
    let source = def
        .element_opt(tags::CHANNEL_SOURCE_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .and_then(|items| items.first());
    let meaning = source
        .map(|s| text(s, tags::CODE_MEANING))
        .unwrap_or_default();
    let code = source
        .map(|s| text(s, tags::CODE_VALUE))
        .unwrap_or_default();
    let label = text(def, tags::CHANNEL_LABEL);
    let lead = Lead::from_name(&meaning)
        .or_else(|| Lead::from_code(&code))
        .or_else(|| Lead::from_name(&label));
    let name = [meaning, label, code]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into());
    (lead, name)
}

fn decode(
    value: Option<&PrimitiveValue>,
    bits: usize,
    interpretation: &str,
) -> Result<Vec<f64>, String> {
    let value = value.ok_or("Waveform Data is not a plain value")?;
    let signed = matches!(interpretation, "SS" | "SB" | "SL" | "");
    Ok(match (value, bits) {
        (PrimitiveValue::U16(v), 16) if signed => v.iter().map(|&x| f64::from(x as i16)).collect(),
        (PrimitiveValue::U16(v), 16) => v.iter().map(|&x| f64::from(x)).collect(),
        (PrimitiveValue::I16(v), 16) => v.iter().map(|&x| f64::from(x)).collect(),
        (PrimitiveValue::U8(v), 8) if signed => v.iter().map(|&x| f64::from(x as i8)).collect(),
        (PrimitiveValue::U8(v), 8) => v.iter().map(|&x| f64::from(x)).collect(),
        (PrimitiveValue::U8(v), 16) => v
            .chunks_exact(2)
            .map(|b| {
                let u = u16::from_le_bytes([b[0], b[1]]);
                if signed {
                    f64::from(u as i16)
                } else {
                    f64::from(u)
                }
            })
            .collect(),
        (PrimitiveValue::U8(v), 32) => v
            .chunks_exact(4)
            .map(|b| {
                let u = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if signed {
                    f64::from(u as i32)
                } else {
                    f64::from(u)
                }
            })
            .collect(),
        (PrimitiveValue::U32(v), 32) if signed => v.iter().map(|&x| f64::from(x as i32)).collect(),
        (PrimitiveValue::U32(v), 32) => v.iter().map(|&x| f64::from(x)).collect(),
        (PrimitiveValue::I32(v), 32) => v.iter().map(|&x| f64::from(x)).collect(),
        _ => {
            return Err(format!(
                "Waveform Data with {bits} bits allocated and interpretation {interpretation:?} is not supported"
            ));
        }
    })
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').trim().to_string())
        .unwrap_or_default()
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Result<usize, String> {
    let e = obj
        .element_opt(tag)
        .ok()
        .flatten()
        .ok_or_else(|| format!("missing {tag}"))?;
    e.to_int::<usize>().map_err(|err| format!("{tag}: {err}"))
}

fn float(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Result<f64, String> {
    let e = obj
        .element_opt(tag)
        .ok()
        .flatten()
        .ok_or_else(|| format!("missing {tag}"))?;
    let v = e.to_float64().map_err(|err| format!("{tag}: {err}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{tag} is not finite"))
    }
}
