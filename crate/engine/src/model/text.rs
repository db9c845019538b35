//! The language model (`model.*` + `lm_head`): a Qwen2 decoder with M-RoPE, GQA and a SiLU-gated
//! MLP. One forward records every layer into the caller's [`Recorder`], so a decode step is one
//! command buffer.

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder, Tensor, Weight, ops};
use crate::kv_cache::{KvCache, KvFormat};
use crate::model::inject::Injection;
use crate::model::rope::{self, Position};
use crate::weights::{WeightStore, text_tensor_names};

struct Linear {
    w: Weight,         // (out, in)
    b: Option<Weight>, // (out)
}

struct Layer {
    input_layernorm: Weight,          // (hidden)
    post_attention_layernorm: Weight, // (hidden)
    q_proj: Linear,                   // (heads * head_dim, hidden) + bias
    k_proj: Linear,                   // (kv_heads * head_dim, hidden) + bias
    v_proj: Linear,                   // (kv_heads * head_dim, hidden) + bias
    o_proj: Linear,                   // (hidden, heads * head_dim)
    gate_proj: Linear,                // (intermediate, hidden)
    up_proj: Linear,                  // (intermediate, hidden)
    down_proj: Linear,                // (hidden, intermediate)
}

pub struct TextModel {
    pub cfg: TextConfig,
    embed_tokens: Weight, // (vocab, hidden)
    layers: Vec<Layer>,
    norm: Weight,    // (hidden)
    lm_head: Weight, // (vocab, hidden); the embedding's buffers when tied
    inv_freq: Vec<f32>,
    freq_axes: Vec<usize>,
}

/// Which positions get logits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Logits {
    /// Only the last token: what generation needs.
    Last,
    /// Every token: parity tests and scoring.
    All,
}

async fn load(gpu: &Gpu, store: &WeightStore, base: &str, shape: &[usize]) -> Result<Weight> {
    let info = store.find_any(&text_tensor_names(base))?;
    info.expect_shape(shape)?;
    crate::weights::upload(gpu, store, info).await
}

async fn linear(
    gpu: &Gpu,
    store: &WeightStore,
    base: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<Linear> {
    let w = load(gpu, store, &format!("{base}.weight"), &[out, inp]).await?;
    let b = if bias {
        Some(load(gpu, store, &format!("{base}.bias"), &[out]).await?)
    } else {
        None
    };
    Ok(Linear { w, b })
}

impl TextModel {
    /// Uploads every language-model tensor, checking names and shapes against `cfg`.
    pub async fn load(gpu: &Gpu, store: &WeightStore, cfg: &TextConfig) -> Result<Self> {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let embed_tokens = load(gpu, store, "embed_tokens.weight", &[cfg.vocab_size, h]).await?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("layers.{l}");
            layers.push(Layer {
                input_layernorm: load(gpu, store, &format!("{p}.input_layernorm.weight"), &[h])
                    .await?,
                post_attention_layernorm: load(
                    gpu,
                    store,
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[h],
                )
                .await?,
                q_proj: linear(gpu, store, &format!("{p}.self_attn.q_proj"), q_out, h, true)
                    .await?,
                k_proj: linear(
                    gpu,
                    store,
                    &format!("{p}.self_attn.k_proj"),
                    kv_out,
                    h,
                    true,
                )
                .await?,
                v_proj: linear(
                    gpu,
                    store,
                    &format!("{p}.self_attn.v_proj"),
                    kv_out,
                    h,
                    true,
                )
                .await?,
                o_proj: linear(
                    gpu,
                    store,
                    &format!("{p}.self_attn.o_proj"),
                    h,
                    q_out,
                    false,
                )
                .await?,
                gate_proj: linear(gpu, store, &format!("{p}.mlp.gate_proj"), i, h, false).await?,
                up_proj: linear(gpu, store, &format!("{p}.mlp.up_proj"), i, h, false).await?,
                down_proj: linear(gpu, store, &format!("{p}.mlp.down_proj"), h, i, false).await?,
            });
        }
        let norm = load(gpu, store, "norm.weight", &[h]).await?;
        let has_head = store.find_any(&text_tensor_names("lm_head.weight")).is_ok();
        let lm_head = if has_head {
            load(gpu, store, "lm_head.weight", &[cfg.vocab_size, h]).await?
        } else if cfg.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            return Err(Error::MissingTensor {
                name: "lm_head.weight".into(),
                tried: text_tensor_names("lm_head.weight").to_vec(),
            });
        };
        Ok(Self {
            inv_freq: rope::inv_freq(cfg.rope_theta, hd),
            freq_axes: rope::frequency_axes(&cfg.mrope_section),
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// Bytes of weights one decode step reads: every layer, the final norm, the lm_head, and one
    /// embedding row. The numerator of the bandwidth-efficiency figure `qoqmed bench` reports.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let bytes = |w: &Weight| w.data_bytes();
        let lin = |l: &Linear| bytes(&l.w) + l.b.as_ref().map_or(0, bytes);
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                bytes(&l.input_layernorm)
                    + bytes(&l.post_attention_layernorm)
                    + [
                        &l.q_proj,
                        &l.k_proj,
                        &l.v_proj,
                        &l.o_proj,
                        &l.gate_proj,
                        &l.up_proj,
                        &l.down_proj,
                    ]
                    .into_iter()
                    .map(lin)
                    .sum::<u64>()
            })
            .sum();
        let row = bytes(&self.embed_tokens) / self.cfg.vocab_size.max(1) as u64;
        layers + bytes(&self.norm) + bytes(&self.lm_head) + row
    }

    /// Records the forward of `ids` at `positions`, continuing the session's cache at `kv.len`, and
    /// returns the logits tensor ((1 or n), vocab). Advances `kv.len` by n. `taps`, when given, receives
    /// copies of the named intermediates (`embeds`, `layer.{i}`, `norm`).
    pub fn forward(
        &self,
        rec: &mut Recorder,
        session: &mut Session,
        ids: &[u32],
        positions: &[Position],
        logits: Logits,
        taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Tensor> {
        self.forward_ids(
            rec,
            session,
            Some(ids),
            ids.len(),
            positions,
            logits,
            taps,
            &[],
        )
    }

    /// [`forward`](Self::forward) with the embeddings of some prompt positions replaced by rows of
    /// GPU tensors (image features, the ECG vector); `embeds` is tapped after the replacement.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_injected(
        &self,
        rec: &mut Recorder,
        session: &mut Session,
        ids: &[u32],
        positions: &[Position],
        logits: Logits,
        taps: Option<&mut Vec<(String, Tensor)>>,
        inject: &[Injection],
    ) -> Result<Tensor> {
        let n = ids.len();
        self.forward_ids(rec, session, Some(ids), n, positions, logits, taps, inject)
    }

    /// As [`forward`](Self::forward) for `n` tokens whose ids the GPU already wrote into
    /// [`Session::ids_buffer`] (the GPU sampler does): a decode step is encoded without waiting
    /// for the previous token to come back.
    pub fn forward_gpu_ids(
        &self,
        rec: &mut Recorder,
        session: &mut Session,
        n: usize,
        positions: &[Position],
        logits: Logits,
        taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Tensor> {
        self.forward_ids(rec, session, None, n, positions, logits, taps, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_ids(
        &self,
        rec: &mut Recorder,
        session: &mut Session,
        ids: Option<&[u32]>,
        n: usize,
        positions: &[Position],
        logits: Logits,
        mut taps: Option<&mut Vec<(String, Tensor)>>,
        inject: &[Injection],
    ) -> Result<Tensor> {
        let gpu = rec.gpu;
        let cfg = &self.cfg;
        let Session { kv, scratch } = session;
        if n == 0 || positions.len() != n {
            return Err(Error::Input(format!(
                "forward of {n} tokens with {} positions",
                positions.len()
            )));
        }
        if n > kv.remaining() {
            return Err(Error::Input(format!(
                "{n} more tokens do not fit: {} of {} context positions are used; raise --max-context",
                kv.len, kv.max_ctx
            )));
        }
        if let Some(&bad) = ids
            .unwrap_or_default()
            .iter()
            .find(|&&t| t as usize >= cfg.vocab_size)
        {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let s = scratch.get(gpu, cfg, n, logits)?;
        if let Some(ids) = ids {
            gpu.queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(ids));
        }
        let (cos, sin) = rope::tables(positions, &self.inv_freq, &self.freq_axes);
        gpu.queue
            .write_buffer(&s.cos.buffer, 0, bytemuck::cast_slice(&cos));
        gpu.queue
            .write_buffer(&s.sin.buffer, 0, bytemuck::cast_slice(&sin));

        let mut tap = |rec: &mut Recorder, name: String, t: &Tensor| -> Result<()> {
            if let Some(taps) = taps.as_deref_mut() {
                let copy = Tensor::zeros(gpu, &t.shape, &name)?;
                ops::copy(rec, t, 0, &copy, 0, t.numel())?;
                taps.push((name, copy));
            }
            Ok(())
        };

        let start = kv.len;
        ops::embedding(rec, &s.ids, n, &self.embed_tokens, &s.x)?;
        for injection in inject {
            injection.record(rec, start, n, &s.x)?;
        }
        tap(rec, "embeds".into(), &s.x)?;
        let (heads, kvh, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        for (l, layer) in self.layers.iter().enumerate() {
            ops::rms_norm(rec, &s.x, &layer.input_layernorm, cfg.rms_norm_eps, &s.h)?;
            ops::linear(rec, &s.h, &layer.q_proj.w, layer.q_proj.b.as_ref(), &s.q)?;
            ops::linear(rec, &s.h, &layer.k_proj.w, layer.k_proj.b.as_ref(), &s.k)?;
            ops::linear(rec, &s.h, &layer.v_proj.w, layer.v_proj.b.as_ref(), &s.v)?;
            ops::rope_inplace(rec, &s.q, &s.cos, &s.sin)?;
            ops::rope_to_cache(rec, &s.k, &s.cos, &s.sin, &kv.k[l], start)?;
            ops::copy(rec, &s.v, 0, &kv.v[l], start * kvh * hd, n * kvh * hd)?;
            ops::attention(
                rec,
                &s.q,
                &kv.k[l],
                &kv.v[l],
                ops::AttnMask::Causal { start },
                &s.attn,
            )?;
            ops::linear(
                rec,
                &s.attn.view(&[n, heads * hd])?,
                &layer.o_proj.w,
                None,
                &s.o,
            )?;
            ops::add_inplace(rec, &s.x, &s.o)?;
            ops::rms_norm(
                rec,
                &s.x,
                &layer.post_attention_layernorm,
                cfg.rms_norm_eps,
                &s.h,
            )?;
            let (gate, up) = (&layer.gate_proj.w, &layer.up_proj.w);
            ops::gate_up_silu(rec, &s.h, gate, up, &s.act, &s.gate, &s.up)?;
            ops::linear(rec, &s.act, &layer.down_proj.w, None, &s.o)?;
            ops::add_inplace(rec, &s.x, &s.o)?;
            tap(rec, format!("layer.{l}"), &s.x)?;
        }
        ops::rms_norm(rec, &s.x, &self.norm, cfg.rms_norm_eps, &s.h)?;
        tap(rec, "norm".into(), &s.h)?;
        let head_in = match logits {
            // One token (decode): its normed row already is the last row.
            Logits::All => s.h.clone(),
            Logits::Last if n == 1 => s.h.clone(),
            Logits::Last => {
                ops::copy(
                    rec,
                    &s.h,
                    (n - 1) * cfg.hidden_size,
                    &s.last,
                    0,
                    cfg.hidden_size,
                )?;
                s.last.clone()
            }
        };
        ops::linear(rec, &head_in, &self.lm_head, None, &s.logits)?;
        kv.len += n;
        Ok(s.logits.clone())
    }
}

/// One conversation's GPU state: its KV cache and the activation buffers its steps reuse.
pub struct Session {
    pub kv: KvCache,
    scratch: Scratch,
}

impl Session {
    pub fn new(gpu: &Gpu, cfg: &TextConfig, max_ctx: usize) -> Result<Self> {
        Self::with_kv_format(gpu, cfg, max_ctx, KvFormat::F32)
    }

    /// A session whose KV cache is stored as `format` (f16 halves its memory and decode reads).
    pub fn with_kv_format(
        gpu: &Gpu,
        cfg: &TextConfig,
        max_ctx: usize,
        format: KvFormat,
    ) -> Result<Self> {
        Ok(Self {
            kv: KvCache::with_format(gpu, cfg, max_ctx, format)?,
            scratch: Scratch::default(),
        })
    }

    /// The (n) u32 input-ids buffer that a forward of `n` tokens with last-row logits reads
    /// (for [`TextModel::forward_gpu_ids`]).
    pub fn ids_buffer(&mut self, gpu: &Gpu, cfg: &TextConfig, n: usize) -> Result<wgpu::Buffer> {
        Ok(self.scratch.get(gpu, cfg, n, Logits::Last)?.ids)
    }
}

/// Activation buffers for one forward size, kept across steps so decode allocates nothing.
#[derive(Clone)]
struct ScratchSet {
    ids: wgpu::Buffer, // (n) u32
    cos: Tensor,       // (n, head_dim / 2)
    sin: Tensor,       // (n, head_dim / 2)
    x: Tensor,         // (n, hidden) residual stream
    h: Tensor,         // (n, hidden) normed
    q: Tensor,         // (n, heads, head_dim)
    k: Tensor,         // (n, kv_heads, head_dim)
    v: Tensor,         // (n, kv_heads, head_dim)
    attn: Tensor,      // (n, heads, head_dim)
    o: Tensor,         // (n, hidden)
    gate: Tensor,      // (n, intermediate)
    up: Tensor,        // (n, intermediate)
    act: Tensor,       // (n, intermediate) silu(gate) * up
    last: Tensor,      // (1, hidden)
    logits: Tensor,    // (1 or n, vocab)
}

/// Activation sets by (capacity, logits kind). A forward of n tokens uses the smallest set that
/// holds n rows, seen with n rows, so the prefill's last, shorter chunk allocates nothing
/// (model::memory counts one chunk set and one decode set).
#[derive(Default)]
struct Scratch {
    sets: Vec<(usize, Logits, ScratchSet)>,
}

impl Scratch {
    fn get(&mut self, gpu: &Gpu, cfg: &TextConfig, n: usize, logits: Logits) -> Result<ScratchSet> {
        let fitting = self
            .sets
            .iter()
            .filter(|(cap, kind, _)| *kind == logits && *cap >= n)
            .min_by_key(|(cap, _, _)| *cap);
        if let Some((_, _, set)) = fitting {
            return Ok(set.with_rows(n, logits));
        }
        let set = ScratchSet::new(gpu, cfg, n, logits)?;
        self.sets.push((n, logits, set.clone()));
        Ok(set)
    }
}

impl ScratchSet {
    /// The same buffers seen with `n` rows (n <= the set's capacity).
    fn with_rows(&self, n: usize, logits: Logits) -> Self {
        let rows = |t: &Tensor| {
            let mut shape = t.shape.clone();
            shape[0] = n;
            Tensor {
                buffer: t.buffer.clone(),
                shape,
            }
        };
        Self {
            ids: self.ids.clone(),
            cos: rows(&self.cos),
            sin: rows(&self.sin),
            x: rows(&self.x),
            h: rows(&self.h),
            q: rows(&self.q),
            k: rows(&self.k),
            v: rows(&self.v),
            attn: rows(&self.attn),
            o: rows(&self.o),
            gate: rows(&self.gate),
            up: rows(&self.up),
            act: rows(&self.act),
            last: self.last.clone(),
            logits: if logits == Logits::All {
                rows(&self.logits)
            } else {
                self.logits.clone()
            },
        }
    }

    fn new(gpu: &Gpu, cfg: &TextConfig, n: usize, logits: Logits) -> Result<Self> {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (heads, kvh) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let t = |shape: &[usize], name: &str| Tensor::zeros(gpu, shape, name);
        let rows = if logits == Logits::All { n } else { 1 };
        Ok(Self {
            ids: t(&[n], "ids")?.buffer,
            cos: t(&[n, hd / 2], "rope.cos")?,
            sin: t(&[n, hd / 2], "rope.sin")?,
            x: t(&[n, h], "x")?,
            h: t(&[n, h], "h")?,
            q: t(&[n, heads, hd], "q")?,
            k: t(&[n, kvh, hd], "k")?,
            v: t(&[n, kvh, hd], "v")?,
            attn: t(&[n, heads, hd], "attn")?,
            o: t(&[n, h], "o")?,
            gate: t(&[n, i], "gate")?,
            up: t(&[n, i], "up")?,
            act: t(&[n, i], "act")?,
            last: t(&[1, h], "last")?,
            logits: t(&[rows, cfg.vocab_size], "logits")?,
        })
    }
}
