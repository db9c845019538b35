//! Weight formats: how one weight's values sit in GPU memory (docs/weights.md has the layout).
//! Quantization is a weight type, not a second model: every op takes every format.

use crate::error::{Error, Result};
use crate::weights::DType;

/// Values per quantization group along a row (= one GGUF Q8_0 / Q4_0 block).
pub const GROUP: usize = 32;

/// GPU storage format of a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    BF16,
    /// int8 codes, 4 per u32; one f16 scale per 32 values of a row. value = code * scale.
    Q8,
    /// u4 codes, 8 per u32; one f16 scale per 32 values of a row. value = (code - 8) * scale.
    Q4,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 5] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::BF16,
        WeightFormat::Q8,
        WeightFormat::Q4,
    ];

    /// "f32", "f16", "bf16", "q8", "q4" (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "bf16" => Some(Self::BF16),
            "q8" => Some(Self::Q8),
            "q4" => Some(Self::Q4),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    pub fn is_quantized(self) -> bool {
        matches!(self, Self::Q8 | Self::Q4)
    }

    /// The WGSL define that selects this format's loader in `shaders/weights.wgsl`.
    pub fn define(self) -> &'static str {
        match self {
            Self::F32 => "W_F32",
            Self::F16 => "W_F16",
            Self::BF16 => "W_BF16",
            Self::Q8 => "W_Q8",
            Self::Q4 => "W_Q4",
        }
    }

    /// Bytes of one row of `k` values in the values (codes) plane.
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            Self::F32 => 4 * k,
            Self::F16 | Self::BF16 => 2 * k,
            Self::Q8 => k,
            Self::Q4 => k / 2,
        }
    }

    /// Bytes of one row's f16 scales (0 for unquantized formats).
    pub fn row_scale_bytes(self, k: usize) -> usize {
        if self.is_quantized() {
            k / GROUP * 2
        } else {
            0
        }
    }

    /// Storage per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        match self {
            Self::F32 => 32.0,
            Self::F16 | Self::BF16 => 16.0,
            Self::Q8 => 8.5,
            Self::Q4 => 4.5,
        }
    }

    /// Quantized formats group rows in 32s; anything else takes any row length.
    pub fn check_row_len(self, name: &str, shape: &[usize]) -> Result<()> {
        if !self.is_quantized() {
            return Ok(());
        }
        let k: usize = shape.iter().skip(1).product();
        if shape.len() < 2 || !k.is_multiple_of(GROUP) {
            return Err(Error::format(
                name,
                format!(
                    "shape {shape:?} cannot be stored as {self}: {} needs a matrix whose rows are a \
                     multiple of {GROUP} values; keep this tensor in f16",
                    self.as_str()
                ),
            ));
        }
        Ok(())
    }
}

impl From<DType> for WeightFormat {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => Self::F32,
            DType::F16 => Self::F16,
            DType::BF16 => Self::BF16,
        }
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
