//! CPU quantization into the GPU plane layout of docs/weights.md, and back.
//!
//! Q8 is GGUF Q8_0 and Q4 is GGUF Q4_0 (groups of 32 along a row, one f16 scale per group,
//! symmetric), computed exactly as ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`), so qoqmed and llama.cpp quantizing the same weights store the same
//! numbers. Only the byte order differs: codes and scales sit in two planes (a GPU thread loads
//! one 32-value group of codes as a vec4<u32>), and Q4 nibbles are in element order (element j
//! of a row is nibble j % 2 of byte j / 2) where a GGUF Q4_0 block pairs element j with j + 16.
//! [`repack_gguf`] converts GGUF blocks without loss.

use half::f16;

use crate::error::{Error, Result};
use crate::gpu::{GROUP, WeightFormat};

use super::DType;

/// Bytes of one GGUF block of 32 values: Q8_0 = f16 scale + 32 int8, Q4_0 = f16 scale + 16 bytes.
pub fn gguf_block_bytes(format: WeightFormat) -> Option<usize> {
    match format {
        WeightFormat::Q8 => Some(2 + GROUP),
        WeightFormat::Q4 => Some(2 + GROUP / 2),
        _ => None,
    }
}

/// Quantizes one 32-value group to Q8: (codes, scale), as ggml's `quantize_row_q8_0_ref`.
fn group_q8(x: &[f32], codes: &mut [u8]) -> f16 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (c, &v) in codes.iter_mut().zip(x) {
        // roundf: half away from zero, as Rust's round.
        *c = ((v * id).round() as i8) as u8;
    }
    f16::from_f32(d)
}

/// Quantizes one 32-value group to Q4 in element order, as ggml's `quantize_row_q4_0_ref`: the
/// value of largest magnitude maps to code 0 exactly (its sign sets the scale's sign).
fn group_q4(x: &[f32], codes: &mut [u8]) -> f16 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for (byte, pair) in codes.iter_mut().zip(x.chunks_exact(2)) {
        *byte = code(pair[0]) | (code(pair[1]) << 4);
    }
    f16::from_f32(d)
}

/// Quantizes row-major values with rows of `k` into `format`'s planes, appending codes and f16
/// scale bytes. Non-finite values are an error naming `name`; so is k % 32 != 0.
pub fn quantize(
    name: &str,
    format: WeightFormat,
    values: &[f32],
    k: usize,
    codes: &mut Vec<u8>,
    scales: &mut Vec<u8>,
) -> Result<()> {
    if !format.is_quantized() {
        return Err(Error::Input(format!("{name}: {format} is not a quantized format")));
    }
    if k == 0 || k % GROUP != 0 || values.len() % k != 0 {
        return Err(Error::format(
            name,
            format!(
                "{} values in rows of {k} cannot be quantized to {format}: rows must be a multiple \
                 of {GROUP} values; keep this tensor in f16",
                values.len()
            ),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::format(
            name,
            format!(
                "value {i} (row {}, column {}) is {}; the checkpoint is broken",
                i / k,
                i % k,
                values[i]
            ),
        ));
    }
    let code_bytes = format.row_bytes(GROUP);
    let start = codes.len();
    codes.resize(start + values.len() / GROUP * code_bytes, 0);
    scales.reserve(values.len() / GROUP * 2);
    for (x, c) in values
        .chunks_exact(GROUP)
        .zip(codes[start..].chunks_exact_mut(code_bytes))
    {
        let d = match format {
            WeightFormat::Q8 => group_q8(x, c),
            _ => group_q4(x, c),
        };
        scales.extend_from_slice(&d.to_le_bytes());
    }
    Ok(())
}

/// The values `codes` + `scales` stand for, as the GPU computes them (f32).
pub fn dequantize(format: WeightFormat, codes: &[u8], scales: &[u8]) -> Result<Vec<f32>> {
    let code_bytes = format.row_bytes(GROUP);
    if !format.is_quantized()
        || codes.len() % code_bytes != 0
        || codes.len() / code_bytes * 2 != scales.len()
    {
        return Err(Error::Input(format!(
            "{} code bytes and {} scale bytes are not a whole number of {format} groups",
            codes.len(),
            scales.len()
        )));
    }
    let mut out = Vec::with_capacity(codes.len() / code_bytes * GROUP);
    for (c, s) in codes.chunks_exact(code_bytes).zip(scales.chunks_exact(2)) {
        let d = f16::from_le_bytes([s[0], s[1]]).to_f32();
        match format {
            WeightFormat::Q8 => out.extend(c.iter().map(|&q| f32::from(q as i8) * d)),
            _ => {
                for &b in c {
                    out.push((f32::from(b & 15) - 8.0) * d);
                    out.push((f32::from(b >> 4) - 8.0) * d);
                }
            }
        }
    }
    Ok(out)
}

/// GGUF Q8_0 / Q4_0 blocks (one row after another) -> (codes plane, scales plane) of the same
/// numbers; no value changes.
pub fn repack_gguf(format: WeightFormat, blocks: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let Some(block) = gguf_block_bytes(format) else {
        return Err(Error::Input(format!("GGUF blocks of {format} do not exist")));
    };
    if blocks.len() % block != 0 {
        return Err(Error::Input(format!(
            "{} bytes are not a whole number of {block}-byte GGUF {format} blocks",
            blocks.len()
        )));
    }
    let n = blocks.len() / block;
    let mut codes = Vec::with_capacity(n * (block - 2));
    let mut scales = Vec::with_capacity(n * 2);
    for b in blocks.chunks_exact(block) {
        scales.extend_from_slice(&b[..2]);
        let qs = &b[2..];
        match format {
            WeightFormat::Q8 => codes.extend_from_slice(qs),
            _ => {
                // GGUF: byte j holds element j (low nibble) and j + 16 (high nibble).
                let nib = |e: usize| {
                    if e < 16 {
                        qs[e] & 15
                    } else {
                        qs[e - 16] >> 4
                    }
                };
                codes.extend((0..16).map(|j| nib(2 * j) | (nib(2 * j + 1) << 4)));
            }
        }
    }
    Ok((codes, scales))
}

/// Encodes f32 values as a 16/32-bit float format (round to nearest even), little-endian. Values
/// outside f16's range are an error naming `name` (keep such a tensor in bf16).
pub fn encode_float(name: &str, format: WeightFormat, values: &[f32]) -> Result<Vec<u8>> {
    Ok(match format {
        WeightFormat::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        WeightFormat::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        WeightFormat::F16 => {
            let mut out = Vec::with_capacity(values.len() * 2);
            for (i, &v) in values.iter().enumerate() {
                let h = f16::from_f32(v);
                if h.is_infinite() && v.is_finite() {
                    return Err(Error::format(
                        name,
                        format!("value {i} = {v} does not fit f16 (max 65504); keep it in bf16"),
                    ));
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            out
        }
        _ => {
            return Err(Error::Input(format!(
                "{name}: {format} is quantized; use quantize()"
            )));
        }
    })
}

/// Whether every finite value survives conversion to f16 (|v| <= 65504 after rounding).
pub fn fits_f16(values: &[f32]) -> bool {
    values
        .iter()
        .all(|&v| !v.is_finite() || f16::from_f32(v).is_finite())
}

/// The storage dtype a float format is written with on disk.
pub fn float_dtype(format: WeightFormat) -> Option<DType> {
    match format {
        WeightFormat::F32 => Some(DType::F32),
        WeightFormat::F16 => Some(DType::F16),
        WeightFormat::BF16 => Some(DType::BF16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_and_q4_round_trip_within_half_a_step() {
        let values: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        for format in [WeightFormat::Q8, WeightFormat::Q4] {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            quantize("t", format, &values, 64, &mut c, &mut s).unwrap();
            assert_eq!(c.len(), format.row_bytes(64) * 2);
            assert_eq!(s.len(), format.row_scale_bytes(64) * 2);
            let back = dequantize(format, &c, &s).unwrap();
            for (g, (x, y)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
                let d = f16::from_le_bytes([s[2 * g], s[2 * g + 1]]).to_f32().abs();
                for (a, b) in x.iter().zip(y) {
                    // Half a step, plus f16 rounding of the scale times the largest code.
                    assert!((a - b).abs() <= 0.5 * d + 8.0 * d * 1e-3 + 1e-6, "{format}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn zero_groups_and_bad_rows() {
        let (mut c, mut s) = (Vec::new(), Vec::new());
        quantize("z", WeightFormat::Q4, &[0.0; 32], 32, &mut c, &mut s).unwrap();
        assert_eq!(c, vec![0x88; 16]);
        assert_eq!(dequantize(WeightFormat::Q4, &c, &s).unwrap(), vec![0.0; 32]);
        let err = quantize("w", WeightFormat::Q8, &[1.0; 48], 48, &mut c, &mut s).unwrap_err();
        assert!(err.to_string().contains("multiple of 32"), "{err}");
        let mut nan = vec![1.0; 32];
        nan[5] = f32::NAN;
        let err = quantize("w", WeightFormat::Q8, &nan, 32, &mut c, &mut s).unwrap_err();
        assert!(err.to_string().contains("column 5"), "{err}");
    }
}
