//! Size accounting before loading: the GPU bytes a model needs (weights in their formats, the KV
//! cache at `--max-context`, the activations of a prefill chunk) against the adapter's limits
//! and an optional memory budget, so a model that cannot fit fails before gigabytes move, with
//! an error that says what to change. Bytes are exact for weights and the KV cache and an upper
//! estimate for activations (the buffers `model::text` allocates per forward size).

use crate::config::{TextConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Weight, WeightFormat};
use crate::weights::{WeightStore, text_tensor_names};

const GB: f64 = 1e9;
const GIB: f64 = (1u64 << 30) as f64;

/// "5.22 GB" or "412.3 MB" (1e9 / 1e6 bytes).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 0.1 * GB {
        format!("{:.2} GB", b / GB)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// Bytes of a buffer holding `bytes`, as the engine pads it (whole u32 words, never empty).
fn padded(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

/// One weight as it will sit on the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub format: WeightFormat,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: &[usize], format: WeightFormat) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            format,
        }
    }

    /// (rows, values per row); a 1-D tensor is one row.
    pub fn rows(&self) -> (usize, usize) {
        crate::weights::qfile::rows_and_len(&self.shape)
    }

    /// Bytes of one row in its planes (codes + scales); a part holds whole rows.
    pub fn row_bytes(&self) -> u64 {
        let k = self.rows().1;
        (self.format.row_bytes(k) + self.format.row_scale_bytes(k)) as u64
    }

    /// Bytes of the tensor's values and scales: what reading it once touches.
    pub fn data_bytes(&self) -> u64 {
        self.rows().0 as u64 * self.row_bytes()
    }

    /// GPU bytes of the tensor split into parts of at most `max_part_bytes` as `Weight::alloc`
    /// will split it (padding included); its data bytes if it cannot be split (`check` says so).
    pub fn gpu_bytes(&self, max_part_bytes: u64) -> u64 {
        Weight::planned_gpu_bytes(&self.name, self.format, &self.shape, max_part_bytes)
            .unwrap_or_else(|_| self.data_bytes())
    }
}

/// The language model's tensors (published names) with their shapes, in checkpoint order.
pub fn text_tensors(cfg: &TextConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let mut t = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut add = |name: &str, shape: Vec<usize>| t.push((format!("{p}.{name}"), shape));
        add("input_layernorm.weight", vec![h]);
        add("self_attn.q_proj.weight", vec![q, h]);
        add("self_attn.q_proj.bias", vec![q]);
        add("self_attn.k_proj.weight", vec![kv, h]);
        add("self_attn.k_proj.bias", vec![kv]);
        add("self_attn.v_proj.weight", vec![kv, h]);
        add("self_attn.v_proj.bias", vec![kv]);
        add("self_attn.o_proj.weight", vec![h, q]);
        add("post_attention_layernorm.weight", vec![h]);
        add("mlp.gate_proj.weight", vec![i, h]);
        add("mlp.up_proj.weight", vec![i, h]);
        add("mlp.down_proj.weight", vec![h, i]);
    }
    t.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        t.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    t
}

/// The language model's tensors of a checkpoint as they will sit on the GPU (stored formats).
/// Missing tensors are left out: the loader reports them by name.
pub fn text_specs(cfg: &TextConfig, store: &WeightStore) -> Vec<TensorSpec> {
    text_tensors(cfg)
        .iter()
        .filter_map(|(name, _)| {
            let base = name.strip_prefix("model.").unwrap_or(name);
            store.find_any(&text_tensor_names(base)).ok()
        })
        .map(|i| TensorSpec::new(i.name.clone(), &i.shape, i.format))
        .collect()
}

/// Plans the language model of `store` at `run` on `gpu` and checks it against the adapter's
/// limits and `budget` (bytes): the check to make before uploading anything.
pub fn check_text_model(
    gpu: &Gpu,
    cfg: &TextConfig,
    store: &WeightStore,
    run: RunShape,
    budget: Option<u64>,
) -> Result<MemoryPlan> {
    let part = gpu.max_binding().min(gpu.limits.max_buffer_size);
    let plan = MemoryPlan::new(cfg, &text_specs(cfg, store), run, part);
    plan.check(&MemoryLimits {
        max_binding: gpu.max_binding(),
        max_buffer: gpu.limits.max_buffer_size,
        budget,
    })?;
    Ok(plan)
}

/// The vision tower's tensors (published names) with their shapes.
pub fn vision_tensors(v: &VisionConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (v.hidden_size, v.intermediate_size);
    let merged = h * v.spatial_merge_size * v.spatial_merge_size;
    let p = v.patch_size;
    let mut t = vec![(
        "visual.patch_embed.proj.weight".to_string(),
        vec![h, v.in_channels, v.temporal_patch_size, p, p],
    )];
    for b in 0..v.depth {
        let mut add =
            |name: &str, shape: Vec<usize>| t.push((format!("visual.blocks.{b}.{name}"), shape));
        add("norm1.weight", vec![h]);
        add("norm2.weight", vec![h]);
        add("attn.qkv.weight", vec![3 * h, h]);
        add("attn.qkv.bias", vec![3 * h]);
        add("attn.proj.weight", vec![h, h]);
        add("attn.proj.bias", vec![h]);
        for (m, shape) in [
            ("gate_proj", [i, h]),
            ("up_proj", [i, h]),
            ("down_proj", [h, i]),
        ] {
            add(&format!("mlp.{m}.weight"), shape.to_vec());
            add(&format!("mlp.{m}.bias"), vec![shape[0]]);
        }
    }
    for (name, shape) in [
        ("visual.merger.ln_q.weight", vec![h]),
        ("visual.merger.mlp.0.weight", vec![merged, merged]),
        ("visual.merger.mlp.0.bias", vec![merged]),
        (
            "visual.merger.mlp.2.weight",
            vec![v.out_hidden_size, merged],
        ),
        ("visual.merger.mlp.2.bias", vec![v.out_hidden_size]),
    ] {
        t.push((name.to_string(), shape));
    }
    t
}

/// What the accounting needs to know besides the weights.
#[derive(Clone, Copy, Debug)]
pub struct RunShape {
    /// KV cache rows (`--max-context`).
    pub max_context: usize,
    /// Prompt tokens per prefill submission.
    pub prefill_chunk: usize,
    /// Bytes per cached K/V value (4: f32 cache, 2: f16).
    pub kv_value_bytes: usize,
}

/// The adapter's limits and the user's budget.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimits {
    pub max_binding: u64,
    pub max_buffer: u64,
    /// Total GPU bytes the model may take (`--memory-budget`); None: unchecked.
    pub budget: Option<u64>,
}

/// The GPU bytes a run needs, by kind.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub weights: u64,
    /// Values and GPU bytes of the matrices (2-D+) in `weights`, for format advice.
    pub matrix_values: u64,
    pub matrix_bytes: u64,
    pub kv_cache: u64,
    /// KV bytes per context position (all layers, K and V).
    pub kv_per_token: u64,
    /// One layer's K (or V) buffer.
    pub kv_layer_buffer: u64,
    pub activations: u64,
    /// The largest activation buffer.
    pub largest_activation: u64,
    /// The largest row of any weight (a part holds whole rows).
    pub largest_row: (String, u64),
    pub max_context: usize,
}

/// Bytes of the activation buffers one forward of `n` tokens allocates (`model::text::Scratch`
/// with last-row logits), plus the sampler's per-vocabulary buffers.
fn activation_buffers(cfg: &TextConfig, n: usize) -> Vec<u64> {
    let (h, i, hd, v) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.head_dim,
        cfg.vocab_size,
    );
    let (heads, kvh) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let f = |values: usize| padded(values as u64 * 4);
    vec![
        f(n),              // ids
        f(n * hd / 2),     // rope cos
        f(n * hd / 2),     // rope sin
        f(n * h),          // x
        f(n * h),          // h
        f(n * heads * hd), // q
        f(n * kvh * hd),   // k
        f(n * kvh * hd),   // v
        f(n * heads * hd), // attn
        f(n * h),          // o
        f(n * i),          // gate
        f(n * i),          // up
        f(n * i),          // act
        f(h),              // last row
        f(v),              // logits
    ]
}

impl MemoryPlan {
    /// The plan for `weights` split at `max_part_bytes` (the adapter's binding limit).
    pub fn new(
        cfg: &TextConfig,
        weights: &[TensorSpec],
        run: RunShape,
        max_part_bytes: u64,
    ) -> Self {
        let bytes = |w: &TensorSpec| w.gpu_bytes(max_part_bytes);
        let matrix_values = weights
            .iter()
            .filter(|w| w.shape.len() >= 2)
            .map(|w| w.shape.iter().product::<usize>() as u64)
            .sum();
        let matrix_bytes = weights
            .iter()
            .filter(|w| w.shape.len() >= 2)
            .map(bytes)
            .sum();
        let kv_layer_buffer = padded(
            (run.max_context * cfg.num_key_value_heads * cfg.head_dim * run.kv_value_bytes) as u64,
        );
        let kv_per_token = (2
            * cfg.num_hidden_layers
            * cfg.num_key_value_heads
            * cfg.head_dim
            * run.kv_value_bytes) as u64;
        // One set for a prefill chunk (shorter chunks reuse it) and one for decode steps.
        let chunk = run.prefill_chunk.clamp(1, run.max_context.max(1));
        let sets = [chunk, 1];
        let buffers: Vec<u64> = sets
            .iter()
            .flat_map(|&n| activation_buffers(cfg, n))
            .collect();
        let largest_row = weights
            .iter()
            .map(|w| (w.name.clone(), w.row_bytes()))
            .max_by_key(|(_, b)| *b)
            .unwrap_or_default();
        MemoryPlan {
            weights: weights.iter().map(bytes).sum(),
            matrix_values,
            matrix_bytes,
            kv_cache: 2 * cfg.num_hidden_layers as u64 * kv_layer_buffer,
            kv_per_token,
            kv_layer_buffer,
            activations: buffers.iter().sum::<u64>() + 3 * padded(cfg.vocab_size as u64 * 4),
            largest_activation: buffers.iter().copied().max().unwrap_or(0),
            largest_row,
            max_context: run.max_context,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }

    /// Checks the plan against `limits`; the error names what does not fit and what to change.
    pub fn check(&self, limits: &MemoryLimits) -> Result<()> {
        let cap = limits.max_binding.min(limits.max_buffer);
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        if self.largest_row.1 > cap {
            return Err(Error::GpuLimit(format!(
                "one row of `{}` takes {:.1} MiB but this adapter binds at most {:.1} MiB per buffer; \
                 no split can help: use an adapter with larger storage bindings",
                self.largest_row.0,
                mib(self.largest_row.1),
                mib(cap)
            )));
        }
        if self.kv_layer_buffer > cap {
            let fits = self.max_context as u64 * cap / self.kv_layer_buffer;
            return Err(Error::GpuLimit(format!(
                "one layer's KV cache at --max-context {} takes {:.1} MiB but this adapter binds at \
                 most {:.1} MiB per buffer: use --max-context {fits} or less",
                self.max_context,
                mib(self.kv_layer_buffer),
                mib(cap)
            )));
        }
        if self.largest_activation > cap {
            return Err(Error::GpuLimit(format!(
                "an activation buffer of {:.1} MiB exceeds this adapter's {:.1} MiB binding limit: \
                 use a shorter prefill chunk",
                mib(self.largest_activation),
                mib(cap)
            )));
        }
        let Some(budget) = limits.budget else {
            return Ok(());
        };
        if self.total() <= budget {
            return Ok(());
        }
        let mut advice = Vec::new();
        let fixed = self.weights + self.activations;
        if fixed < budget && self.kv_per_token > 0 {
            let ctx = (budget - fixed) / self.kv_per_token;
            advice.push(format!("--max-context {ctx} or less"));
        }
        // What the whole run would take with every matrix in q8 (8.5 bits per value) or q4 (4.5).
        for (format, bits) in [("q8", 8.5), ("q4", 4.5)] {
            let matrices = self.matrix_values as f64 * bits / 8.0;
            let est = (self.total() - self.matrix_bytes) as f64 + matrices;
            if est <= budget as f64 && matrices < self.matrix_bytes as f64 {
                advice.push(format!(
                    "a {format} model (`qoqmed quantize --format {format}`: about {} in all)",
                    human(est as u64)
                ));
            }
        }
        if advice.is_empty() {
            advice.push("a smaller model or an adapter with more memory".into());
        }
        Err(Error::GpuLimit(format!(
            "this model needs {} but the memory budget is {} ({:.2} GiB); try {}",
            self.summary(),
            human(budget),
            budget as f64 / GIB,
            advice.join(", or ")
        )))
    }

    /// "5.22 GB = 4.86 GiB (weights 4.83 GB, KV cache 234.9 MB at 4096 positions, activations
    /// 158.3 MB)".
    pub fn summary(&self) -> String {
        format!(
            "{} = {:.2} GiB (weights {}, KV cache {} at {} positions, activations {})",
            human(self.total()),
            self.total() as f64 / GIB,
            human(self.weights),
            human(self.kv_cache),
            self.max_context,
            human(self.activations)
        )
    }
}
