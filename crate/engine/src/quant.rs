//! Weight formats on the CPU: f32 values to the GPU planes of a [`WeightFormat`] and back, and the
//! lossless repack of GGUF Q8_0 / Q4_0 blocks. The planes are exactly what `Weight::write_rows`
//! takes and what quantized safetensors store (docs/weights.md).
//!
//! Q8 and Q4 round exactly as ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`), so a tensor quantized here and the same tensor quantized by llama.cpp
//! hold the same codes and scales.

use crate::error::{Error, Result};
use crate::gpu::{GROUP, WeightFormat};

/// One tensor's GPU planes: values (or codes) and, for Q8/Q4, the f16 scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Planes {
    pub values: Vec<u8>,
    pub scales: Option<Vec<u8>>,
}

fn check(format: WeightFormat, n: usize, k: usize) -> Result<()> {
    if k == 0 || !n.is_multiple_of(k) {
        return Err(Error::Input(format!(
            "{n} values are not whole rows of {k}"
        )));
    }
    if format.is_quantized() && !k.is_multiple_of(GROUP) {
        return Err(Error::Input(format!(
            "{format} needs rows of a multiple of {GROUP} values, got {k}"
        )));
    }
    Ok(())
}

/// Encodes `values` (rows of `k`) as `format`'s planes. 16-bit formats round to nearest even.
pub fn quantize(format: WeightFormat, values: &[f32], k: usize) -> Result<Planes> {
    check(format, values.len(), k)?;
    let plain = |values: Vec<u8>| Planes {
        values,
        scales: None,
    };
    Ok(match format {
        WeightFormat::F32 => plain(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        WeightFormat::F16 => plain(
            values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        WeightFormat::BF16 => plain(
            values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        WeightFormat::Q8 => {
            let mut codes = Vec::with_capacity(values.len());
            let mut scales = Vec::with_capacity(values.len() / GROUP * 2);
            for g in values.chunks_exact(GROUP) {
                let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                scales.extend(half::f16::from_f32(d).to_le_bytes());
                codes.extend(g.iter().map(|&v| (v * id).round() as i8 as u8));
            }
            Planes {
                values: codes,
                scales: Some(scales),
            }
        }
        WeightFormat::Q4 => {
            let mut codes = Vec::with_capacity(values.len() / 2);
            let mut scales = Vec::with_capacity(values.len() / GROUP * 2);
            for g in values.chunks_exact(GROUP) {
                // The value of largest magnitude, with its sign, maps to code 0 (ggml's choice).
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in g {
                    if amax < v.abs() {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                scales.extend(half::f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                codes.extend(g.chunks_exact(2).map(|p| q(p[0]) | (q(p[1]) << 4)));
            }
            Planes {
                values: codes,
                scales: Some(scales),
            }
        }
    })
}

/// Decodes planes of rows of `k` values back to f32 (exactly what the GPU kernels compute per value).
pub fn dequantize(
    format: WeightFormat,
    values: &[u8],
    scales: Option<&[u8]>,
    k: usize,
) -> Result<Vec<f32>> {
    let rows = values.len() / format.row_bytes(k).max(1);
    if k == 0 || values.len() != rows * format.row_bytes(k) {
        return Err(Error::Input(format!(
            "{} bytes are not whole {format} rows of {k} values",
            values.len()
        )));
    }
    let scale_of = |scales: Option<&[u8]>| -> Result<Vec<f32>> {
        let s = scales.ok_or_else(|| Error::Input(format!("{format} needs its scales plane")))?;
        if s.len() != rows * format.row_scale_bytes(k) {
            return Err(Error::Input(format!(
                "{} scale bytes for {rows} rows of {k} {format} values",
                s.len()
            )));
        }
        Ok(s.chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect())
    };
    Ok(match format {
        WeightFormat::F32 => values
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        WeightFormat::F16 => values
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        WeightFormat::BF16 => values
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        WeightFormat::Q8 => {
            let s = scale_of(scales)?;
            values
                .iter()
                .enumerate()
                .map(|(i, &c)| c as i8 as f32 * s[i / GROUP])
                .collect()
        }
        WeightFormat::Q4 => {
            let s = scale_of(scales)?;
            values
                .iter()
                .enumerate()
                .flat_map(|(b, &c)| {
                    let d = s[2 * b / GROUP];
                    [((c & 15) as f32 - 8.0) * d, ((c >> 4) as f32 - 8.0) * d]
                })
                .collect()
        }
    })
}

/// GGUF block size in bytes (f16 scale + codes) of a quantized format.
fn gguf_block_bytes(format: WeightFormat) -> Result<usize> {
    match format {
        WeightFormat::Q8 => Ok(2 + GROUP),
        WeightFormat::Q4 => Ok(2 + GROUP / 2),
        _ => Err(Error::Input(format!("{format} has no GGUF block form"))),
    }
}

/// Repacks GGUF Q8_0 / Q4_0 blocks (a tensor's blocks in row order) into our planes, bit for bit:
/// Q8_0 splits scale and codes; Q4_0 also reorders nibbles (GGUF holds elements j and j + 16 of a
/// block in one byte, we hold j and j + 1).
pub fn from_gguf_blocks(format: WeightFormat, blocks: &[u8]) -> Result<Planes> {
    let bb = gguf_block_bytes(format)?;
    if !blocks.len().is_multiple_of(bb) {
        return Err(Error::Input(format!(
            "{} bytes are not whole {format} GGUF blocks of {bb}",
            blocks.len()
        )));
    }
    let n = blocks.len() / bb;
    let mut values = Vec::with_capacity(n * (bb - 2));
    let mut scales = Vec::with_capacity(n * 2);
    for b in blocks.chunks_exact(bb) {
        scales.extend_from_slice(&b[..2]);
        let qs = &b[2..];
        match format {
            WeightFormat::Q8 => values.extend_from_slice(qs),
            _ => {
                let nib = |j: usize| {
                    if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 }
                };
                values.extend((0..16).map(|i| nib(2 * i) | (nib(2 * i + 1) << 4)));
            }
        }
    }
    Ok(Planes {
        values,
        scales: Some(scales),
    })
}

/// The inverse of [`from_gguf_blocks`].
pub fn to_gguf_blocks(format: WeightFormat, planes: &Planes) -> Result<Vec<u8>> {
    let bb = gguf_block_bytes(format)?;
    let scales = planes
        .scales
        .as_deref()
        .ok_or_else(|| Error::Input(format!("{format} needs its scales plane")))?;
    let code_bytes = bb - 2;
    let n = scales.len() / 2;
    if scales.len() != n * 2 || planes.values.len() != n * code_bytes {
        return Err(Error::Input(format!(
            "{} code bytes and {} scale bytes are not whole {format} groups",
            planes.values.len(),
            scales.len()
        )));
    }
    let mut out = Vec::with_capacity(n * bb);
    for (s, c) in scales
        .chunks_exact(2)
        .zip(planes.values.chunks_exact(code_bytes))
    {
        out.extend_from_slice(s);
        match format {
            WeightFormat::Q8 => out.extend_from_slice(c),
            _ => {
                let nib = |j: usize| (c[j / 2] >> (4 * (j % 2))) & 15;
                out.extend((0..16).map(|j| nib(j) | (nib(j + 16) << 4)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1013) as f32 / 506.0 - 1.0) * (1.0 + (i / 32) as f32))
            .collect()
    }

    #[test]
    fn unquantized_formats_round_trip() {
        let v = values(96);
        for f in [WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16] {
            let p = quantize(f, &v, 48).unwrap();
            assert_eq!(p.values.len(), f.row_bytes(48) * 2);
            let back = dequantize(f, &p.values, None, 48).unwrap();
            for (a, b) in v.iter().zip(&back) {
                let tol = if f == WeightFormat::F32 {
                    0.0
                } else {
                    a.abs() / 128.0
                };
                assert!((a - b).abs() <= tol, "{f}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn quantized_error_is_within_a_step() {
        let v = values(32 * 12);
        // Q8 rounds to half a step; Q4 also clamps code 16 to 15 (ggml's Q4_0 spends its 16th
        // level on the negative side of the extreme value): up to one step at the other end.
        for (f, steps, err_steps) in [(WeightFormat::Q8, 127.0, 0.5), (WeightFormat::Q4, 8.0, 1.0)]
        {
            let p = quantize(f, &v, 64).unwrap();
            let s = p.scales.as_ref().unwrap();
            assert_eq!(s.len(), 12 * 2);
            assert_eq!(p.values.len(), f.row_bytes(64) * 6);
            let back = dequantize(f, &p.values, Some(s), 64).unwrap();
            for (g, (a, b)) in v.chunks(32).zip(back.chunks(32)).enumerate() {
                let amax = a.iter().fold(0f32, |m, x| m.max(x.abs()));
                // Plus the f16 rounding of the scale over up to `steps` steps.
                let tol = amax / steps * (err_steps + steps / 1024.0) + 1e-6;
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= tol,
                        "{f} group {g}: {x} vs {y} (tol {tol})"
                    );
                }
            }
        }
    }

    #[test]
    fn q4_extreme_value_maps_to_code_zero() {
        let mut v = vec![0.25f32; 32];
        v[5] = -2.0;
        let p = quantize(WeightFormat::Q4, &v, 32).unwrap();
        // d = -2 / -8 = 0.25: 0.25 -> code 9, -2 -> code 0; elements 4 and 5 share byte 2.
        assert_eq!(p.values[2] & 15, 9);
        let back = dequantize(WeightFormat::Q4, &p.values, p.scales.as_deref(), 32).unwrap();
        assert_eq!(back[5], -2.0);
        assert_eq!(
            p.values[2] >> 4,
            0,
            "element 5 (high nibble of byte 2) is code 0"
        );
    }

    #[test]
    fn gguf_blocks_repack_losslessly() {
        let v = values(32 * 6);
        for f in [WeightFormat::Q8, WeightFormat::Q4] {
            let p = quantize(f, &v, 96).unwrap();
            let blocks = to_gguf_blocks(f, &p).unwrap();
            assert_eq!(blocks.len(), 6 * gguf_block_bytes(f).unwrap());
            assert_eq!(from_gguf_blocks(f, &blocks).unwrap(), p);
        }
        // A GGUF Q4_0 block holds element j in qs[j] & 15 and element j + 16 in qs[j] >> 4.
        let mut block = vec![0u8; 18];
        block[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
        for j in 0..16u8 {
            block[2 + j as usize] = (j % 16) | (((15 - j) % 16) << 4);
        }
        let p = from_gguf_blocks(WeightFormat::Q4, &block).unwrap();
        let back = dequantize(WeightFormat::Q4, &p.values, p.scales.as_deref(), 32).unwrap();
        for j in 0..16 {
            assert_eq!(back[j], j as f32 - 8.0);
            assert_eq!(back[j + 16], (15 - j) as f32 - 8.0);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(quantize(WeightFormat::Q4, &[0.0; 40], 20).is_err());
        assert!(quantize(WeightFormat::F16, &[0.0; 5], 2).is_err());
        assert!(dequantize(WeightFormat::Q8, &[0; 32], None, 32).is_err());
        assert!(from_gguf_blocks(WeightFormat::Q8, &[0; 35]).is_err());
    }
}
