//! A random-weight checkpoint with real shapes, generated on read: a [`ByteSource`] that looks like
//! one qoqmed safetensors file (header, then every tensor in the formats a [`FormatPlan`] picks)
//! without existing anywhere. `qoqmed bench --config 7b` loads it through the ordinary loader, so
//! the benchmark streams, splits and computes exactly what a real model would, from no files.
//!
//! Values are a pure function of the byte offset (reads of any piece agree), scaled like a
//! trained model's (weights ~ 0.02 rms, norms 1) so activations and logits stay finite.

use crate::config::TextConfig;
use crate::error::Result;
use crate::gpu::{GROUP, WeightFormat};
use crate::model::memory::{TensorSpec, text_tensors};

use super::policy::{FormatPlan, Role, role};
use super::qfile::{self, StoredTensor};
use super::{ByteSource, DType, ReadFuture};

/// What one stored tensor's bytes hold.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// Uniform random bytes: q8/q4 codes.
    Codes,
    /// One f16 scale for every group, so dequantized weights have `rms`.
    Scales(f32),
    /// Floats of this format: uniform with rms `rms` around `mean`.
    Floats(WeightFormat, f32, f32),
}

struct Region {
    start: u64,
    end: u64,
    fill: Fill,
}

/// The synthetic file.
pub struct SyntheticSource {
    name: String,
    header: Vec<u8>,
    regions: Vec<Region>,
    len: u64,
    seed: u64,
    specs: Vec<TensorSpec>,
}

/// Weight rms of the random matrices (as `make_synthetic.py` and the peer's GGUF use).
const RMS: f32 = 0.02;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SyntheticSource {
    /// The language model of `cfg` with formats from `plan` (checkpoint dtype taken as BF16).
    pub fn text_model(cfg: &TextConfig, plan: &FormatPlan, seed: u64) -> Result<Self> {
        let mut stored: Vec<StoredTensor> = Vec::new();
        let mut fills = Vec::new();
        let mut specs = Vec::new();
        let mut formats = Vec::new();
        for (name, shape) in text_tensors(cfg) {
            let format = plan.choose(&name, &shape, DType::BF16);
            let k = shape.last().copied().unwrap_or(1);
            let is_norm = role(&name, &shape) == Role::Vector && name.ends_with("norm.weight");
            for t in qfile::stored_tensors(&name, format, &shape)? {
                fills.push(match (format, t.name == name) {
                    (WeightFormat::Q8 | WeightFormat::Q4, true) => Fill::Codes,
                    // rms of uniform codes: q8 in [-128, 127] ~ 73.9, q4 (c - 8) in [-8, 7] ~ 4.61.
                    (WeightFormat::Q8, false) => Fill::Scales(RMS / 73.9),
                    (_, false) => Fill::Scales(RMS / 4.61),
                    (f, true) if is_norm => Fill::Floats(f, 1.0, 0.0),
                    (f, true) => Fill::Floats(f, 0.0, RMS),
                });
                stored.push(t);
            }
            debug_assert!(!format.is_quantized() || k % GROUP == 0);
            specs.push(TensorSpec::new(name.clone(), &shape, format));
            formats.push((name, format));
        }
        let metadata = qfile::metadata(formats.iter().map(|(n, f)| (n.as_str(), *f)));
        let header = qfile::header_bytes(&stored, &metadata, 0);
        let mut regions = Vec::with_capacity(stored.len());
        let mut at = header.len() as u64;
        for (t, fill) in stored.iter().zip(fills) {
            regions.push(Region {
                start: at,
                end: at + t.bytes(),
                fill,
            });
            at += t.bytes();
        }
        Ok(Self {
            name: format!(
                "synthetic-{}L-h{}-v{}",
                cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
            ),
            header,
            regions,
            len: at,
            seed,
            specs,
        })
    }

    /// Every tensor with the format it is stored in (for size accounting).
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    fn fill(&self, region: &Region, from: u64, out: &mut [u8]) {
        let rel = from - region.start;
        match region.fill {
            Fill::Codes => {
                let mut i = 0;
                while i < out.len() {
                    let pos = rel + i as u64;
                    let word =
                        splitmix(self.seed ^ (region.start + pos / 8).wrapping_mul(0x2545_F491));
                    let o = (pos % 8) as usize;
                    let n = (8 - o).min(out.len() - i);
                    out[i..i + n].copy_from_slice(&word.to_le_bytes()[o..o + n]);
                    i += n;
                }
            }
            Fill::Scales(s) => {
                let bytes = half::f16::from_f32(s).to_le_bytes();
                for (i, b) in out.iter_mut().enumerate() {
                    *b = bytes[((rel + i as u64) % 2) as usize];
                }
            }
            Fill::Floats(format, mean, rms) => {
                let size = format.row_bytes(1);
                let mut i = 0;
                while i < out.len() {
                    let pos = rel + i as u64;
                    let element = pos / size as u64;
                    let word =
                        splitmix(self.seed ^ (region.start + element).wrapping_mul(0x9E37_79B9));
                    // Uniform in [-sqrt(3), sqrt(3)) has rms 1.
                    let u = (word >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                    let v = mean + rms * 3f32.sqrt() * u;
                    let bytes: [u8; 4] = match format {
                        WeightFormat::F32 => v.to_le_bytes(),
                        WeightFormat::BF16 => {
                            let h = half::bf16::from_f32(v).to_le_bytes();
                            [h[0], h[1], 0, 0]
                        }
                        _ => {
                            let h = half::f16::from_f32(v).to_le_bytes();
                            [h[0], h[1], 0, 0]
                        }
                    };
                    let o = (pos % size as u64) as usize;
                    let n = (size - o).min(out.len() - i);
                    out[i..i + n].copy_from_slice(&bytes[o..o + n]);
                    i += n;
                }
            }
        }
    }
}

impl ByteSource for SyntheticSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        let end = offset.saturating_add(len as u64);
        if end > self.len {
            let err = crate::error::Error::format(
                &self.name,
                format!(
                    "read of {len} bytes at {offset} past the end ({} bytes)",
                    self.len
                ),
            );
            return Box::pin(std::future::ready(Err(err)));
        }
        let mut out = vec![0u8; len];
        let h = self.header.len() as u64;
        if offset < h {
            let n = (h - offset).min(len as u64) as usize;
            out[..n].copy_from_slice(&self.header[offset as usize..offset as usize + n]);
        }
        // Regions are sorted: find the first that ends after `offset`.
        let first = self.regions.partition_point(|r| r.end <= offset);
        for r in &self.regions[first..] {
            if r.start >= end {
                break;
            }
            let from = r.start.max(offset);
            let to = r.end.min(end);
            let slice = &mut out[(from - offset) as usize..(to - offset) as usize];
            self.fill(r, from, slice);
        }
        Box::pin(std::future::ready(Ok(out)))
    }
}
