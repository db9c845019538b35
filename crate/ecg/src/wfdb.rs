//! WFDB records (PhysioNet): a text header (`.hea`) and one binary signal file (`.dat`), in
//! formats 16, 212 and 80 as PTB-XL and MIMIC-IV-ECG ship them.
//! Header grammar: https://physionet.org/physiotools/wag/header-5.htm

use crate::{Ecg, EcgError};

/// One signal line of the header.
struct Signal {
    file: String,
    format: u32,
    byte_offset: usize,
    gain: f64,
    baseline: i64,
    /// Divides digital units / gain into millivolts.
    to_mv: f64,
    checksum: Option<i64>,
    description: String,
}

/// Reads a WFDB record from its header text and the bytes of the one `.dat` file it names.
/// Samples go to millivolts as (digital - baseline) / gain (gain 0 or absent means 200 adu/mV, the
/// WFDB default); the format's "invalid sample" code becomes NaN, which [`crate::model_input`]
/// reports. Header checksums, when present, are verified so a `.dat` from another record is caught.
pub fn read_wfdb(header: &[u8], dat: &[u8]) -> Result<Ecg, EcgError> {
    let text = std::str::from_utf8(header).map_err(|_| EcgError::WfdbHeader {
        line: 1,
        msg: "the header is not text (did you pass the .dat as the .hea?)".into(),
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (record_line, record) = lines.next().ok_or(EcgError::WfdbHeader {
        line: 1,
        msg: "the header is empty".into(),
    })?;
    let bad = |line: usize, msg: String| EcgError::WfdbHeader { line, msg };
    let fields: Vec<&str> = record.split_whitespace().collect();
    let name = fields.first().copied().unwrap_or_default();
    if name.contains('/') {
        return Err(bad(
            record_line,
            "multi-segment records are not supported; read one segment's header instead".into(),
        ));
    }
    let nsig: usize = fields.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
        bad(
            record_line,
            format!("expected `NAME NSIG FS NSAMP`, got {record:?}"),
        )
    })?;
    let fs = match fields.get(2) {
        // "500/1000(0)": only the part before a counter frequency is the sampling rate.
        Some(f) => f
            .split(['/', '('])
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| bad(record_line, format!("bad sampling frequency {f:?}")))?,
        None => 250.0,
    };
    let nsamp: Option<usize> = match fields.get(3) {
        Some(n) => Some(
            n.parse()
                .map_err(|_| bad(record_line, format!("bad sample count {n:?}")))?,
        ),
        None => None,
    };

    // No with_capacity: nsig is untrusted until that many signal lines have been read.
    let mut signals = Vec::new();
    for _ in 0..nsig {
        let (line, text) = lines.next().ok_or_else(|| {
            bad(
                record_line,
                format!("the record line announces {nsig} signals but fewer follow"),
            )
        })?;
        signals.push(parse_signal(line, text)?);
    }
    let Some(first) = signals.first() else {
        return Err(bad(record_line, "the record has no signals".into()));
    };
    if let Some(other) = signals.iter().find(|s| s.file != first.file) {
        return Err(EcgError::Mismatch(format!(
            "signals are spread over several files ({} and {}); only single-file records are read",
            first.file, other.file
        )));
    }
    if let Some(other) = signals.iter().find(|s| s.format != first.format) {
        return Err(EcgError::UnsupportedWfdbFormat {
            code: format!("{} mixed with {} in one file", first.format, other.format),
        });
    }
    let format = first.format;
    let offset = first.byte_offset;
    let body = dat.get(offset..).ok_or(EcgError::TruncatedDat {
        expected: offset,
        got: dat.len(),
        samples: nsamp.unwrap_or(0),
        signals: nsig,
        format,
    })?;
    let values_in_body = match format {
        16 => body.len() / 2,
        212 => body.len() * 2 / 3,
        _ => body.len(),
    };
    let nsamp = nsamp.filter(|&n| n > 0).unwrap_or(values_in_body / nsig);
    let total = nsamp
        .checked_mul(nsig)
        .ok_or_else(|| bad(record_line, "sample count overflows".into()))?;
    let expected = match format {
        16 => total.checked_mul(2),
        212 => total.div_ceil(2).checked_mul(3),
        _ => Some(total),
    }
    .ok_or_else(|| bad(record_line, "sample count overflows".into()))?;
    if body.len() < expected {
        return Err(EcgError::TruncatedDat {
            expected: expected.saturating_add(offset),
            got: dat.len(),
            samples: nsamp,
            signals: nsig,
            format,
        });
    }
    // 212 packs pairs; an odd total leaves up to 2 spare bytes. Anything more means another record.
    if body.len() > expected + 2 {
        return Err(EcgError::Mismatch(format!(
            "the header describes {} bytes of samples ({nsamp} samples x {nsig} signals, format \
             {format}) but the .dat holds {}",
            expected,
            body.len()
        )));
    }
    let digital = decode(format, body, total);

    let mut channels = Vec::with_capacity(nsig);
    for (k, sig) in signals.iter().enumerate() {
        let mut sum: i64 = 0;
        let invalid = invalid_code(format);
        let samples: Vec<f32> = digital
            .iter()
            .skip(k)
            .step_by(nsig)
            .map(|&d| {
                sum += i64::from(d);
                if d == invalid {
                    f32::NAN
                } else {
                    ((f64::from(d) - sig.baseline as f64) / sig.gain * sig.to_mv) as f32
                }
            })
            .collect();
        if let Some(want) = sig.checksum {
            // WFDB checksums are the 16-bit two's complement sum of the signal's samples.
            let got = sum as i16 as i64;
            if got != want as i16 as i64 {
                return Err(EcgError::Mismatch(format!(
                    "checksum of signal {} ({}) is {got}, the header says {want}: the .dat is \
                     corrupt or from another record",
                    k + 1,
                    sig.description
                )));
            }
        }
        channels.push((sig.description.clone(), samples));
    }
    Ecg::from_channels(fs, channels)
}

fn parse_signal(line: usize, text: &str) -> Result<Signal, EcgError> {
    let bad = |msg: String| EcgError::WfdbHeader { line, msg };
    let mut fields = text.split_whitespace();
    let file = fields.next().unwrap_or_default().to_string();
    let spec = fields
        .next()
        .ok_or_else(|| bad(format!("signal line has no format: {text:?}")))?;
    // FORMAT[xSPF][:SKEW][+OFFSET]
    let (spec, byte_offset) = match spec.split_once('+') {
        Some((s, o)) => (
            s,
            o.parse()
                .map_err(|_| bad(format!("bad byte offset {o:?}")))?,
        ),
        None => (spec, 0usize),
    };
    let (spec, skew) = spec.split_once(':').unwrap_or((spec, "0"));
    let (code, spf) = spec.split_once('x').unwrap_or((spec, "1"));
    let format: u32 = match code {
        "16" | "212" | "80" => code.parse().unwrap_or(16),
        _ => {
            return Err(EcgError::UnsupportedWfdbFormat {
                code: code.to_string(),
            });
        }
    };
    if spf != "1" {
        return Err(bad(format!(
            "{spf} samples per frame (oversampled signals) are not supported"
        )));
    }
    if skew.parse::<i64>() != Ok(0) {
        return Err(bad(format!("signal skew {skew:?} is not supported")));
    }
    // ADCGAIN[(BASELINE)][/UNITS]
    let (gain, mut baseline, units) = match fields.next() {
        Some(g) => {
            let (g, units) = g.split_once('/').unwrap_or((g, "mV"));
            let (g, base) = match g.split_once('(') {
                Some((g, b)) => {
                    let b = b.trim_end_matches(')');
                    (
                        g,
                        Some(
                            b.parse::<i64>()
                                .map_err(|_| bad(format!("bad baseline {b:?}")))?,
                        ),
                    )
                }
                None => (g, None),
            };
            let gain: f64 = g.parse().map_err(|_| bad(format!("bad ADC gain {g:?}")))?;
            (gain, base, units.to_string())
        }
        None => (0.0, None, "mV".to_string()),
    };
    let gain = if gain == 0.0 { 200.0 } else { gain };
    if !gain.is_finite() {
        return Err(bad(format!("ADC gain {gain} is not finite")));
    }
    let to_mv = match units.as_str() {
        "mV" | "mv" | "MV" => 1.0,
        "uV" | "uv" | "µV" | "microvolt" => 1e-3,
        "V" | "v" => 1e3,
        other => {
            return Err(bad(format!(
                "unknown units {other:?}; expected mV, uV or V"
            )));
        }
    };
    let _adc_resolution = fields.next();
    let adc_zero: i64 = match fields.next() {
        Some(z) => z.parse().map_err(|_| bad(format!("bad ADC zero {z:?}")))?,
        None => 0,
    };
    // The baseline defaults to the ADC zero when the gain field has none.
    if baseline.is_none() {
        baseline = Some(adc_zero);
    }
    let _initial_value = fields.next();
    let checksum = match fields.next() {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| bad(format!("bad checksum {c:?}")))?,
        ),
        None => None,
    };
    let _block_size = fields.next();
    let description = fields.collect::<Vec<_>>().join(" ");
    Ok(Signal {
        file,
        format,
        byte_offset,
        gain,
        baseline: baseline.unwrap_or(0),
        to_mv,
        checksum,
        description,
    })
}

/// The code each format reserves for "no sample here".
fn invalid_code(format: u32) -> i32 {
    match format {
        16 => -32768,
        212 => -2048,
        _ => -128,
    }
}

/// Frame-interleaved digital samples; `body` holds at least enough bytes for `total` values.
fn decode(format: u32, body: &[u8], total: usize) -> Vec<i32> {
    let mut out = Vec::with_capacity(total);
    match format {
        16 => out.extend(
            body.chunks_exact(2)
                .take(total)
                .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]]))),
        ),
        212 => {
            // Two 12-bit two's complement values in 3 bytes: low byte of the first, then the high
            // nibbles (first in bits 0-3, second in bits 4-7), then the low byte of the second.
            for b in body.chunks_exact(3) {
                let s0 = i32::from(b[0]) | (i32::from(b[1] & 0x0f) << 8);
                let s1 = i32::from(b[2]) | (i32::from(b[1] & 0xf0) << 4);
                for s in [s0, s1] {
                    if out.len() < total {
                        out.push(if s >= 2048 { s - 4096 } else { s });
                    }
                }
            }
        }
        // Format 80: 8-bit offset binary.
        _ => out.extend(body.iter().take(total).map(|&b| i32::from(b) - 128)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::read_wfdb;
    use crate::Lead;

    #[test]
    fn format_212_with_an_odd_sample_count() {
        // 100, -5, 2047 packed in pairs; the last pair is padded with a zero.
        let dat = [0x64, 0xF0, 0xFB, 0xFF, 0x07, 0x00];
        let hea = "rec 1 500 3\nrec.dat 212 200/mV 12 0 100 2142 0 V1\n";
        let ecg = read_wfdb(hea.as_bytes(), &dat).expect("212");
        assert_eq!(ecg.lead(Lead::V1), Some(&[0.5, -0.025, 10.235][..]));
    }

    #[test]
    fn ptbxl_and_mimic_headers() {
        // PTB-XL: gain 1000 adu/mV, baseline 0. MIMIC-IV-ECG: base time and date on the record line.
        let dat: Vec<u8> = [1000i16, -500, 2000, 250]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for record in ["00001_hr 2 500 2", "40689238 2 500 2 13:13:00 08/06/2180"] {
            let hea = format!(
                "{record}\nx.dat 16 1000.0(0)/mV 16 0 1000 3000 0 I\nx.dat 16 1000.0(0)/mV 16 0 -500 -250 0 II\n# age: 56\n"
            );
            let ecg = read_wfdb(hea.as_bytes(), &dat).expect("header");
            assert_eq!(ecg.sampling_rate_hz, 500.0);
            assert_eq!(ecg.lead(Lead::I), Some(&[1.0, 2.0][..]));
            assert_eq!(ecg.lead(Lead::II), Some(&[-0.5, 0.25][..]));
        }
        // Units in microvolts, a baseline, no checksum fields, and a byte offset.
        let mut dat = vec![0xAA; 4];
        dat.extend([110i16, 90].iter().flat_map(|v| v.to_le_bytes()));
        let hea = "r 1 250\nr.dat 16+4 2(10)/uV 16 0 0 200 0 Lead I\n";
        let ecg = read_wfdb(hea.as_bytes(), &dat).expect("offset");
        assert_eq!(ecg.lead(Lead::I), Some(&[0.05, 0.04][..]));
        // Without a description the channel is kept by name only.
        let ecg = read_wfdb(b"r 1 250\nr.dat 16+4 2(10)/uV\n", &dat).expect("no description");
        assert_eq!(ecg.other_channels, vec![String::new()]);
        assert!(ecg.leads.is_empty());
    }
}
