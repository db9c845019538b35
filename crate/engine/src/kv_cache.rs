//! The KV cache: preallocated for the whole context, one K and one V buffer per layer, with a
//! length cursor. Nothing is concatenated per token. Stored as f32 (the default: the parity tests
//! hold it to 1e-4 of transformers) or f16 (half the memory and the decode reads; the kernels
//! convert on write and on read).

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

/// Storage of the cached keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvFormat {
    #[default]
    F32,
    F16,
}

impl KvFormat {
    pub fn bytes_per_value(self) -> usize {
        match self {
            KvFormat::F32 => 4,
            KvFormat::F16 => 2,
        }
    }
}

pub struct KvCache {
    pub k: Vec<Tensor>, // per layer: (max_ctx, kv_heads, head_dim)
    pub v: Vec<Tensor>, // per layer: (max_ctx, kv_heads, head_dim)
    /// Rows filled so far (the cache position of the next token).
    pub len: usize,
    pub max_ctx: usize,
    pub format: KvFormat,
}

impl KvCache {
    pub fn new(gpu: &Gpu, cfg: &TextConfig, max_ctx: usize) -> Result<Self> {
        Self::with_format(gpu, cfg, max_ctx, KvFormat::F32)
    }

    pub fn with_format(
        gpu: &Gpu,
        cfg: &TextConfig,
        max_ctx: usize,
        format: KvFormat,
    ) -> Result<Self> {
        if max_ctx == 0 {
            return Err(Error::Input("--max-context must be at least 1".into()));
        }
        let shape = [max_ctx, cfg.num_key_value_heads, cfg.head_dim];
        // One layer's K (or V) is one binding: say what fits instead of wgpu's generic error.
        let bytes =
            (max_ctx * cfg.num_key_value_heads * cfg.head_dim * format.bytes_per_value()) as u64;
        let limit = gpu.max_binding().min(gpu.limits.max_buffer_size);
        if bytes > limit {
            let per_row =
                (cfg.num_key_value_heads * cfg.head_dim * format.bytes_per_value()) as u64;
            return Err(Error::GpuLimit(format!(
                "a {max_ctx}-token {format:?} KV cache needs {:.1} MiB per layer, above {}'s \
                 {:.1} MiB binding limit: use a --max-context of at most {}{}",
                bytes as f64 / 1048576.0,
                gpu.adapter.name,
                limit as f64 / 1048576.0,
                limit / per_row,
                if format == KvFormat::F32 {
                    " or an f16 KV cache"
                } else {
                    ""
                }
            )));
        }
        let alloc = |name: String| match format {
            KvFormat::F32 => Tensor::zeros(gpu, &shape, &name),
            KvFormat::F16 => Tensor::zeros_f16(gpu, &shape, &name),
        };
        let mut k = Vec::with_capacity(cfg.num_hidden_layers);
        let mut v = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            k.push(alloc(format!("k_cache.{i}"))?);
            v.push(alloc(format!("v_cache.{i}"))?);
        }
        Ok(Self {
            k,
            v,
            len: 0,
            max_ctx,
            format,
        })
    }

    pub fn remaining(&self) -> usize {
        self.max_ctx - self.len
    }
}
