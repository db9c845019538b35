//! The KV cache: preallocated for the whole context, one K and one V buffer per layer, with a
//! length cursor. Nothing is concatenated per token.

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

pub struct KvCache {
    pub k: Vec<Tensor>, // per layer: (max_ctx, kv_heads, head_dim)
    pub v: Vec<Tensor>, // per layer: (max_ctx, kv_heads, head_dim)
    /// Rows filled so far (the cache position of the next token).
    pub len: usize,
    pub max_ctx: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, cfg: &TextConfig, max_ctx: usize) -> Result<Self> {
        if max_ctx == 0 {
            return Err(Error::Input("--max-context must be at least 1".into()));
        }
        let shape = [max_ctx, cfg.num_key_value_heads, cfg.head_dim];
        let mut k = Vec::with_capacity(cfg.num_hidden_layers);
        let mut v = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            k.push(Tensor::zeros(gpu, &shape, &format!("k_cache.{i}"))?);
            v.push(Tensor::zeros(gpu, &shape, &format!("v_cache.{i}"))?);
        }
        Ok(Self {
            k,
            v,
            len: 0,
            max_ctx,
        })
    }

    pub fn remaining(&self) -> usize {
        self.max_ctx - self.len
    }
}
