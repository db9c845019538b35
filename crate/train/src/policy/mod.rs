//! The policy in burn: Qwen2.5-VL's language model (`model.*` + `lm_head`), loaded from the same
//! checkpoint with the engine's config and safetensors loader and the same tensor names, with
//! LoRA adapters on chosen projections (or every weight trainable: full fine-tune). The vision
//! tower and the ECG encoder are not here: their features come from the engine and replace
//! embedding rows ([`Inputs::overrides`]), so the trainer never re-implements them (they stay frozen).

mod inputs;
mod linear;

pub use inputs::{Inputs, Override, Sequence};
pub use linear::{Ids, Linear, Mode};

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use qoqmed_engine::config::TextConfig;
use qoqmed_engine::weights::{WeightStore, text_tensor_names};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// Largest logits block one head matmul produces (see [`Policy::log_probs`]).
pub const LOGITS_CHUNK_BYTES: usize = 64 << 20;

#[derive(Module, Debug)]
pub struct Layer {
    pub input_layernorm: Param<Tensor<1>>,          // (hidden)
    pub post_attention_layernorm: Param<Tensor<1>>, // (hidden)
    pub q_proj: Linear,                             // (heads * head_dim, hidden) + bias
    pub k_proj: Linear,                             // (kv_heads * head_dim, hidden) + bias
    pub v_proj: Linear,                             // (kv_heads * head_dim, hidden) + bias
    pub o_proj: Linear,                             // (hidden, heads * head_dim)
    pub gate_proj: Linear,                          // (intermediate, hidden)
    pub up_proj: Linear,                            // (intermediate, hidden)
    pub down_proj: Linear,                          // (hidden, intermediate)
}

impl Layer {
    /// The projections by their checkpoint names, in checkpoint order, mutably.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
            ("mlp.gate_proj", &mut self.gate_proj),
            ("mlp.up_proj", &mut self.up_proj),
            ("mlp.down_proj", &mut self.down_proj),
        ]
    }

    /// The projections by their checkpoint names, in checkpoint order.
    pub fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("self_attn.q_proj", &self.q_proj),
            ("self_attn.k_proj", &self.k_proj),
            ("self_attn.v_proj", &self.v_proj),
            ("self_attn.o_proj", &self.o_proj),
            ("mlp.gate_proj", &self.gate_proj),
            ("mlp.up_proj", &self.up_proj),
            ("mlp.down_proj", &self.down_proj),
        ]
    }
}

/// The trainable module (what the optimizer sees).
#[derive(Module, Debug)]
pub struct PolicyNet {
    pub embed_tokens: Param<Tensor<2>>, // (vocab, hidden)
    pub layers: Vec<Layer>,
    pub norm: Param<Tensor<1>>,            // (hidden)
    pub lm_head: Option<Param<Tensor<2>>>, // (vocab, hidden); None = tied to embed_tokens
}

/// How the adapters are set up.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    /// 0 = no adapters, every language-model weight trainable.
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Projection names (`q_proj`, ..., `down_proj`).
    pub targets: Vec<String>,
    pub seed: u64,
}

impl LoraSpec {
    pub fn from_config(c: &TrainConfig) -> Self {
        LoraSpec {
            rank: c.lora_rank,
            alpha: c.lora_alpha,
            dropout: c.lora_dropout,
            targets: c.lora_targets.clone(),
            seed: c.seed,
        }
    }
}

pub struct Policy {
    pub net: PolicyNet,
    pub cfg: TextConfig,
    pub lora: LoraSpec,
    inv_freq: Vec<f32>,
    freq_axes: Vec<usize>,
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// One language-model tensor as f32, its name and shape checked. The trainer is native only, where
/// byte sources are memory maps or memory and their futures are ready at once.
fn load_f32(store: &WeightStore, base: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let info = store.find_any(&text_tensor_names(base))?;
    info.expect_shape(shape)?;
    Ok(pollster::block_on(store.read_f32(info))?)
}

impl Policy {
    /// Loads the language model from `store` (names and shapes checked against `cfg`) onto
    /// `device` (an autodiff device to train), adding adapters per `lora`.
    pub fn load(
        store: &WeightStore,
        cfg: &TextConfig,
        lora: LoraSpec,
        device: &Device,
    ) -> Result<Self> {
        let full = lora.rank == 0;
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let mut ids = Ids::new();
        let mut rng = ChaCha8Rng::seed_from_u64(lora.seed ^ 0x4c6f_5241);
        let embed = load_f32(store, "embed_tokens.weight", &[cfg.vocab_size, h])?;
        let embed_tokens = ids.param(tensor(embed, [cfg.vocab_size, h], device), full);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("layers.{l}");
            let mut norm = |name: &str| -> Result<Param<Tensor<1>>> {
                let v = (load_f32(store, &format!("{p}.{name}.weight"), &[h]))?;
                Ok(ids.param(tensor(v, [h], device), full))
            };
            let input_layernorm = norm("input_layernorm")?;
            let post_attention_layernorm = norm("post_attention_layernorm")?;
            let mut lin = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
                let base = format!("{p}.{name}");
                let w = (load_f32(store, &format!("{base}.weight"), &[out, inp]))?;
                let b = if bias {
                    let v = (load_f32(store, &format!("{base}.bias"), &[out]))?;
                    Some(ids.param(tensor(v, [out], device), full))
                } else {
                    None
                };
                let short = name.rsplit('.').next().unwrap_or(name);
                let adapt = !full && lora.targets.iter().any(|t| t == short);
                let (lora_a, lora_b) = if adapt {
                    // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
                    // B = 0, so the adapted model starts exactly at the base.
                    let bound = 1.0 / (inp as f64).sqrt();
                    let a: Vec<f32> = (0..lora.rank * inp)
                        .map(|_| (uniform(&mut rng) * 2.0 - 1.0) as f32 * bound as f32)
                        .collect();
                    let a = ids.param(tensor(a, [lora.rank, inp], device), true);
                    let b = ids.param(Tensor::zeros([out, lora.rank], device), true);
                    (Some(a), Some(b))
                } else {
                    (None, None)
                };
                Ok(Linear {
                    weight: ids.param(tensor(w, [out, inp], device), full),
                    bias: b,
                    lora_a,
                    lora_b,
                    scale: if adapt {
                        lora.alpha / lora.rank as f64
                    } else {
                        0.0
                    },
                    dropout: lora.dropout,
                })
            };
            layers.push(Layer {
                input_layernorm,
                post_attention_layernorm,
                q_proj: lin("self_attn.q_proj", q_out, h, true)?,
                k_proj: lin("self_attn.k_proj", kv_out, h, true)?,
                v_proj: lin("self_attn.v_proj", kv_out, h, true)?,
                o_proj: lin("self_attn.o_proj", h, q_out, false)?,
                gate_proj: lin("mlp.gate_proj", i, h, false)?,
                up_proj: lin("mlp.up_proj", i, h, false)?,
                down_proj: lin("mlp.down_proj", h, i, false)?,
            });
        }
        let norm = load_f32(store, "norm.weight", &[h])?;
        let norm = ids.param(tensor(norm, [h], device), full);
        let has_head = store.find_any(&text_tensor_names("lm_head.weight")).is_ok();
        let lm_head = if has_head {
            let v = load_f32(store, "lm_head.weight", &[cfg.vocab_size, h])?;
            Some(ids.param(tensor(v, [cfg.vocab_size, h], device), full))
        } else if cfg.tie_word_embeddings {
            None
        } else {
            return Err(qoqmed_engine::Error::MissingTensor {
                name: "lm_head.weight".into(),
                tried: text_tensor_names("lm_head.weight").to_vec(),
            }
            .into());
        };
        Ok(Policy {
            net: PolicyNet {
                embed_tokens,
                layers,
                norm,
                lm_head,
            },
            cfg: cfg.clone(),
            lora,
            inv_freq: qoqmed_engine::model::rope::inv_freq(cfg.rope_theta, hd),
            freq_axes: qoqmed_engine::model::rope::frequency_axes(&cfg.mrope_section),
        })
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    pub fn freq_axes(&self) -> &[usize] {
        &self.freq_axes
    }

    /// Hidden states after the last decoder layer (before the final norm): (b, n, hidden).
    pub fn hidden(&self, inputs: &Inputs, mode: Mode) -> Tensor<3> {
        let cfg = &self.cfg;
        let net = &self.net;
        let device = net.embed_tokens.val().device();
        let (b, n) = (inputs.batch, inputs.len);
        let h = cfg.hidden_size;
        let ids =
            Tensor::<1, Int>::from_data(TensorData::new(inputs.ids.clone(), [b * n]), &device);
        let mut x = net.embed_tokens.val().select(0, ids);
        if let Some(o) = &inputs.overrides {
            // Rows of `features` (frozen engine outputs) replace the placeholder embeddings.
            let rows = o.features.dims()[0];
            let ext = Tensor::cat(vec![Tensor::zeros([1, h], &device), o.features.clone()], 0);
            let idx =
                Tensor::<1, Int>::from_data(TensorData::new(o.row_of.clone(), [b * n]), &device);
            let picked = ext.select(0, idx);
            let mask = Tensor::<1, Int>::from_data(
                TensorData::new(o.row_of.iter().map(|&r| (r > 0) as i32).collect(), [b * n]),
                &device,
            )
            .bool()
            .unsqueeze_dim::<2>(1)
            .expand([b * n, h]);
            debug_assert!(o.row_of.iter().all(|&r| (r as usize) <= rows));
            x = x.mask_where(mask, picked);
        }
        let mut x = x.reshape([b, n, h]);
        let cos = tensor(inputs.cos.clone(), [b, n, cfg.head_dim], &device).unsqueeze_dim::<4>(1);
        let sin = tensor(inputs.sin.clone(), [b, n, cfg.head_dim], &device).unsqueeze_dim::<4>(1);
        let mask = tensor(inputs.mask.clone(), [b, n, n], &device).unsqueeze_dim::<4>(1);
        for layer in &net.layers {
            x = self.layer(layer, x, &cos, &sin, &mask, mode);
        }
        x
    }

    fn layer(
        &self,
        layer: &Layer,
        x: Tensor<3>,
        cos: &Tensor<4>,  // (b, 1, n, head_dim)
        sin: &Tensor<4>,  // (b, 1, n, head_dim)
        mask: &Tensor<4>, // (b, 1, n, n) additive
        mode: Mode,
    ) -> Tensor<3> {
        let cfg = &self.cfg;
        let [b, n, h] = x.dims();
        let (heads, kvh, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let eps = cfg.rms_norm_eps as f64;
        let normed = rms_norm(x.clone(), &layer.input_layernorm, eps).reshape([b * n, h]);
        let split = |t: Tensor<2>, nh: usize| t.reshape([b, n, nh, hd]).swap_dims(1, 2);
        let q = split(layer.q_proj.forward(normed.clone(), mode), heads);
        let k = split(layer.k_proj.forward(normed.clone(), mode), kvh);
        let v = split(layer.v_proj.forward(normed, mode), kvh);
        let q = rope(q, cos, sin);
        let k = rope(k, cos, sin);
        // GQA: query head j reads kv head j / (heads / kv_heads), as transformers' repeat_kv.
        let groups = heads / kvh;
        let repeat = |t: Tensor<4>| {
            t.unsqueeze_dim::<5>(2)
                .repeat_dim(2, groups)
                .reshape([b, heads, n, hd])
        };
        let (k, v) = (repeat(k), repeat(v));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt())
            + mask.clone();
        let attn = softmax(scores, 3).matmul(v);
        let attn = attn.swap_dims(1, 2).reshape([b * n, heads * hd]);
        let x = x + layer.o_proj.forward(attn, mode).reshape([b, n, h]);
        let normed = rms_norm(x.clone(), &layer.post_attention_layernorm, eps).reshape([b * n, h]);
        let gate = layer.gate_proj.forward(normed.clone(), mode);
        let up = layer.up_proj.forward(normed, mode);
        let down = layer.down_proj.forward(silu(gate) * up, mode);
        x + down.reshape([b, n, h])
    }

    fn head(&self) -> Tensor<2> {
        match &self.net.lm_head {
            Some(w) => w.val(),
            None => self.net.embed_tokens.val(),
        }
    }

    /// Logits at the given (sequence, column) cells: (cells, vocab). Parity tests and tools;
    /// training uses [`Self::log_probs`].
    pub fn logits_at(&self, inputs: &Inputs, mode: Mode, cells: &[(usize, usize)]) -> Tensor<2> {
        let x = self.hidden(inputs, mode);
        let [b, n, h] = x.dims();
        let device = x.device();
        let rows: Vec<i32> = cells.iter().map(|&(i, col)| (i * n + col) as i32).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [cells.len()]), &device);
        let x = x.reshape([b * n, h]).select(0, idx);
        self.head_rows(x)
    }

    /// Final norm and lm_head of (rows, hidden) -> (rows, vocab).
    fn head_rows(&self, x: Tensor<2>) -> Tensor<2> {
        let [m, h] = x.dims();
        let x = rms_norm(
            x.reshape([1, m, h]),
            &self.net.norm,
            self.cfg.rms_norm_eps as f64,
        )
        .reshape([m, h]);
        x.matmul(self.head().transpose())
    }

    /// Log-probabilities of the completion tokens under logits / `temperature`: (b, completion
    /// len). Only the completion positions go through the final norm and the head, in chunks of
    /// rows whose logits stay under [`LOGITS_CHUNK_BYTES`] (the full vocabulary is 0.6 MB per
    /// row, and adapters cap a storage binding at 128 MiB - 4 GiB).
    pub fn log_probs(&self, inputs: &Inputs, mode: Mode, temperature: f32) -> Tensor<2> {
        let x = self.hidden(inputs, mode);
        let device = x.device();
        let (b, c, h) = (inputs.batch, inputs.completion_len, self.cfg.hidden_size);
        let x = x.narrow(1, inputs.len - c, c).reshape([b * c, h]);
        let targets = Tensor::<2, Int>::from_data(
            TensorData::new(inputs.targets.clone(), [b * c, 1]),
            &device,
        );
        let per_chunk = (LOGITS_CHUNK_BYTES / (4 * self.cfg.vocab_size)).max(1);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < b * c {
            let rows = per_chunk.min(b * c - start);
            let mut logits = self.head_rows(x.clone().narrow(0, start, rows));
            if temperature != 1.0 {
                logits = logits.div_scalar(temperature as f64);
            }
            let t = targets.clone().narrow(0, start, rows);
            parts.push(log_softmax(logits, 1).gather(1, t));
            start += rows;
        }
        Tensor::cat(parts, 0).reshape([b, c])
    }

    /// Names of every language-model tensor as the engine loads them (`model.*`, `lm_head.weight`
    /// when untied), in checkpoint order.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for (l, layer) in self.net.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            names.push(format!("{p}.input_layernorm.weight"));
            names.push(format!("{p}.post_attention_layernorm.weight"));
            for (name, lin) in layer.linears() {
                names.push(format!("{p}.{name}.weight"));
                if lin.bias.is_some() {
                    names.push(format!("{p}.{name}.bias"));
                }
            }
        }
        names.push("model.norm.weight".into());
        if self.net.lm_head.is_some() {
            names.push("lm_head.weight".into());
        }
        names
    }

    /// One tensor of the current policy with its adapter merged (W + scale B A), by the name
    /// [`Self::tensor_names`] gives it: (shape, f32 row-major values). None for another name.
    pub fn merged_tensor(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        fn host<const D: usize>(t: Tensor<D>) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
            let shape = t.dims().to_vec();
            Ok(Some((shape, to_vec(t)?)))
        }
        let net = &self.net;
        match name {
            "model.embed_tokens.weight" => return host(net.embed_tokens.val()),
            "model.norm.weight" => return host(net.norm.val()),
            "lm_head.weight" => {
                return match &net.lm_head {
                    Some(w) => host(w.val()),
                    None => Ok(None),
                };
            }
            _ => {}
        }
        let Some(rest) = name.strip_prefix("model.layers.") else {
            return Ok(None);
        };
        let Some((index, tail)) = rest.split_once('.') else {
            return Ok(None);
        };
        let Some(layer) = index.parse::<usize>().ok().and_then(|l| net.layers.get(l)) else {
            return Ok(None);
        };
        match tail {
            "input_layernorm.weight" => return host(layer.input_layernorm.val()),
            "post_attention_layernorm.weight" => return host(layer.post_attention_layernorm.val()),
            _ => {}
        }
        for (proj, lin) in layer.linears() {
            if tail == format!("{proj}.weight") {
                return host(lin.merged_weight());
            }
            if tail == format!("{proj}.bias") {
                return match &lin.bias {
                    Some(b) => host(b.val()),
                    None => Ok(None),
                };
            }
        }
        Ok(None)
    }

    /// Every tensor of [`Self::tensor_names`], merged: what the engine runs for this policy.
    pub fn merged_tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for name in self.tensor_names() {
            let (shape, values) = self
                .merged_tensor(&name)?
                .ok_or_else(|| Error::Run(format!("no tensor `{name}` in the policy")))?;
            out.push((name, shape, values));
        }
        Ok(out)
    }

    /// The same policy without autodiff (scoring without building a graph); tensors are shared.
    pub fn detached(&self) -> Policy {
        Policy {
            net: self.net.valid(),
            cfg: self.cfg.clone(),
            lora: self.lora.clone(),
            inv_freq: self.inv_freq.clone(),
            freq_axes: self.freq_axes.clone(),
        }
    }
}

/// Trainable tensors on the host: name -> (shape, values).
pub type HostTensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// One tensor on the host: (name, shape, f32 row-major values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

impl Policy {
    /// The trainable tensors by name: LoRA factors under PEFT's names
    /// (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`, A (rank, in), B (out,
    /// rank)), or for a full fine-tune every language-model tensor under its checkpoint name.
    pub fn trainable_tensors(&self) -> Result<Vec<NamedTensor>> {
        if self.lora.rank == 0 {
            return self.merged_tensors();
        }
        let mut out = Vec::new();
        for (l, layer) in self.net.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                if let (Some(a), Some(b)) = (&lin.lora_a, &lin.lora_b) {
                    for (factor, t) in [("lora_A", a.val()), ("lora_B", b.val())] {
                        let shape = t.dims().to_vec();
                        out.push((peft_name(l, name, factor), shape, to_vec(t)?));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Replaces the trainable tensors with saved values (same names as
    /// [`Self::trainable_tensors`]), keeping the parameter ids the optimizer state refers to.
    /// Every trainable tensor must be present with its shape, and nothing else.
    pub fn load_trainable(&mut self, mut saved: HostTensors) -> Result<()> {
        let device = self.net.embed_tokens.val().device();
        let s = &mut saved;
        if self.lora.rank > 0 {
            for (l, layer) in self.net.layers.iter_mut().enumerate() {
                for (name, lin) in layer.linears_mut() {
                    if let Some(a) = lin.lora_a.as_mut() {
                        set(s, &peft_name(l, name, "lora_A"), a, &device)?;
                    }
                    if let Some(b) = lin.lora_b.as_mut() {
                        set(s, &peft_name(l, name, "lora_B"), b, &device)?;
                    }
                }
            }
        } else {
            let net = &mut self.net;
            set(
                s,
                "model.embed_tokens.weight",
                &mut net.embed_tokens,
                &device,
            )?;
            if let Some(head) = net.lm_head.as_mut() {
                set(s, "lm_head.weight", head, &device)?;
            }
            for (l, layer) in net.layers.iter_mut().enumerate() {
                let p = format!("model.layers.{l}");
                set(
                    s,
                    &format!("{p}.input_layernorm.weight"),
                    &mut layer.input_layernorm,
                    &device,
                )?;
                set(
                    s,
                    &format!("{p}.post_attention_layernorm.weight"),
                    &mut layer.post_attention_layernorm,
                    &device,
                )?;
                for (name, lin) in layer.linears_mut() {
                    set(s, &format!("{p}.{name}.weight"), &mut lin.weight, &device)?;
                    if let Some(b) = lin.bias.as_mut() {
                        set(s, &format!("{p}.{name}.bias"), b, &device)?;
                    }
                }
            }
            set(s, "model.norm.weight", &mut net.norm, &device)?;
        }
        if let Some(extra) = saved.keys().next() {
            return Err(Error::Run(format!(
                "the checkpoint has `{extra}`, which this model has no place for"
            )));
        }
        Ok(())
    }
}

/// Moves `name` out of `saved` into `p` (same id, trainable), checking its shape.
fn set<const D: usize>(
    saved: &mut HostTensors,
    name: &str,
    p: &mut Param<Tensor<D>>,
    device: &Device,
) -> Result<()> {
    let (shape, values) = saved
        .remove(name)
        .ok_or_else(|| Error::Run(format!("the checkpoint lacks `{name}`")))?;
    let dims = p.val().dims();
    if shape != dims {
        return Err(Error::Run(format!(
            "checkpoint tensor `{name}` has shape {shape:?}, the model {dims:?}: the run was made \
             with another model or LoRA rank"
        )));
    }
    *p = Param::initialized(p.id, tensor(values, dims, device)).set_require_grad(true);
    Ok(())
}

/// PEFT's name of a LoRA factor of decoder layer `layer`'s projection `name` (`self_attn.q_proj`).
pub fn peft_name(layer: usize, name: &str, factor: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{name}.{factor}.weight")
}

/// RMSNorm as transformers' Qwen2RMSNorm: x * rsqrt(mean(x^2) + eps) * w, in f32.
fn rms_norm(x: Tensor<3>, w: &Param<Tensor<1>>, eps: f64) -> Tensor<3> {
    let var = x.clone().square().mean_dim(2);
    x * var.add_scalar(eps).sqrt().recip() * w.val().unsqueeze::<3>()
}

/// q * cos + rotate_half(q) * sin, with cos/sin already (b, 1, n, head_dim) = cat(freqs, freqs).
fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let hd = x.dims()[3];
    let half = hd / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// A tensor's values on the host, in f32.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Burn(format!("reading a tensor back: {e:?}")))
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
