//! QoQ-Med-Omni's ECG branch (`time_series_embedding.*`): the ECG-JEPA encoder and a Linear to
//! the language model's width. One ECG, (leads, samples) = (8, 2500), becomes ONE token vector that
//! replaces the embedding of its `<|time_series_pad|>`. Recorded into the caller's [`Recorder`], so
//! the encoder runs in the same command buffer as the prompt (qoqmed-spec.md section 3).

use std::borrow::Cow;

use crate::config::EcgConfig;
use crate::error::{Error, Result};
use crate::gpu::ops::{self, AttnMask};
use crate::gpu::{Gpu, Recorder, Tensor, Weight};
use crate::weights::{TensorInfo, WeightStore};

/// Where the branch lives: `time_series_embedding.X` as QoQ-Med's model class names it, or
/// `model.time_series_embedding.X` from exports that nest it under the base model.
pub fn ecg_tensor_names(base: &str) -> [String; 2] {
    [
        format!("time_series_embedding.{base}"),
        format!("model.time_series_embedding.{base}"),
    ]
}

/// The tensor whose presence says a checkpoint has the ECG branch.
const MARKER: &str = "encoder.W_P.weight";

struct Linear {
    w: Weight,         // (out, in)
    b: Option<Weight>, // (out)
}

struct LayerNorm {
    w: Weight, // (dim)
    b: Weight, // (dim)
}

/// `encoder.encoder_blocks.blocks.{i}`: pre-norm attention + GELU MLP.
struct Block {
    norm1: LayerNorm,
    // `attn.qkv.weight` (3 dim, dim), no bias: its three row blocks uploaded as separate weights
    // so q, k and v land in their own (tokens, heads, head_dim) tensors.
    q: Weight,    // (dim, dim)
    k: Weight,    // (dim, dim)
    v: Weight,    // (dim, dim)
    proj: Linear, // (dim, dim) + bias
    norm2: LayerNorm,
    fc1: Linear, // (mlp, dim) + bias
    fc2: Linear, // (dim, mlp) + bias
}

pub struct EcgEncoder {
    pub cfg: EcgConfig,
    /// The language model's width: the length of one ECG token.
    pub hidden: usize,
    w_p: Linear,       // (dim, t) + bias: one patch of t samples per token
    pos_embed: Tensor, // (c * p, dim) f32, re-added before every block
    blocks: Vec<Block>,
    norm: LayerNorm,
    linear: Linear, // (hidden, dim) + bias
}

/// A shape the checkpoint has that `time_series_config` does not predict.
fn disagreement(info: &TensorInfo, expected: &[usize], cfg: &EcgConfig, hidden: usize) -> Error {
    Error::Config(format!(
        "time_series_config disagrees with the checkpoint: tensor `{}` has shape {:?}, but \
         time_series_config (encoder_embed_dim {}, encoder_depth {}, encoder_num_heads {}, \
         mlp_ratio {}, c {}, p {}, t {}) and the language model's hidden_size {hidden} need {:?}; \
         correct time_series_config in config.json (absent keys mean ECG-JEPA's values 768, 12, \
         16, 4.0, 8, 50, 50)",
        info.name,
        info.shape,
        cfg.encoder_embed_dim,
        cfg.encoder_depth,
        cfg.encoder_num_heads,
        cfg.mlp_ratio,
        cfg.c,
        cfg.p,
        cfg.t,
        expected
    ))
}

struct Loader<'a> {
    gpu: &'a Gpu,
    store: &'a WeightStore,
    cfg: &'a EcgConfig,
    hidden: usize,
}

impl Loader<'_> {
    /// The tensor's bytes, borrowed when the source is mapped or in memory.
    async fn bytes(&self, base: &str, shape: &[usize]) -> Result<(TensorInfo, Cow<'_, [u8]>)> {
        let info = self.store.find_any(&ecg_tensor_names(base))?.clone();
        if info.shape != shape {
            return Err(disagreement(&info, shape, self.cfg, self.hidden));
        }
        let bytes = match self.store.bytes(&info) {
            Some(b) => Cow::Borrowed(b),
            None => Cow::Owned(self.store.read(&info).await?),
        };
        Ok((info, bytes))
    }

    async fn weight(&self, base: &str, shape: &[usize]) -> Result<Weight> {
        let (info, bytes) = self.bytes(base, shape).await?;
        Weight::upload(self.gpu, &info.name, info.dtype.into(), shape, &bytes, None)
    }

    async fn linear(&self, base: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let w = self.weight(&format!("{base}.weight"), &[out, inp]).await?;
        let b = if bias {
            Some(self.weight(&format!("{base}.bias"), &[out]).await?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }

    async fn layer_norm(&self, base: &str, dim: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: self.weight(&format!("{base}.weight"), &[dim]).await?,
            b: self.weight(&format!("{base}.bias"), &[dim]).await?,
        })
    }

    /// `attn.qkv.weight` (3 dim, dim) as three (dim, dim) weights: rows 0..dim are q, then k, v
    /// (the layout `qkv(x).reshape(n, 3, heads, head_dim)` reads).
    async fn qkv(&self, base: &str, dim: usize) -> Result<[Weight; 3]> {
        let (info, bytes) = self.bytes(base, &[3 * dim, dim]).await?;
        let part = bytes.len() / 3;
        let one = |i: usize, what: &str| {
            Weight::upload(
                self.gpu,
                &format!("{}[{what}]", info.name),
                info.dtype.into(),
                &[dim, dim],
                &bytes[i * part..(i + 1) * part],
                None,
            )
        };
        Ok([one(0, "q")?, one(1, "k")?, one(2, "v")?])
    }
}

impl EcgEncoder {
    /// True when the checkpoint carries QoQ-Med-Omni's ECG branch.
    pub fn present(store: &WeightStore) -> bool {
        ecg_tensor_names(MARKER)
            .iter()
            .any(|n| store.get(n).is_some())
    }

    /// Uploads the branch, checking every tensor's shape against `cfg` and the language model's
    /// width `hidden`; a disagreement is an error naming the tensor and both shapes.
    pub async fn load(
        gpu: &Gpu,
        store: &WeightStore,
        cfg: &EcgConfig,
        hidden: usize,
    ) -> Result<Self> {
        if !Self::present(store) {
            return Err(Error::Input(format!(
                "this checkpoint has no ECG branch (no `{}`): it is not a QoQ-Med-Omni model, so it \
                 cannot read ECGs; ask without --ecg or use an Omni checkpoint",
                ecg_tensor_names(MARKER)[0]
            )));
        }
        let l = Loader {
            gpu,
            store,
            cfg,
            hidden,
        };
        // A depth that differs from the checkpoint's would drop blocks or miss them: say which.
        let depth = (0..)
            .take_while(|i| {
                let name = format!("encoder.encoder_blocks.blocks.{i}.norm1.weight");
                store.find_any(&ecg_tensor_names(&name)).is_ok()
            })
            .count();
        if depth != cfg.encoder_depth {
            return Err(Error::Config(format!(
                "time_series_config disagrees with the checkpoint: encoder_depth is {} but the \
                 checkpoint holds {depth} blocks (time_series_embedding.encoder.encoder_blocks.blocks.0..{depth}); \
                 correct encoder_depth in config.json (absent means ECG-JEPA's 12)",
                cfg.encoder_depth
            )));
        }
        let (dim, mlp) = (cfg.encoder_embed_dim, cfg.mlp_hidden());
        let w_p = l.linear("encoder.W_P", dim, cfg.t, true).await?;
        let (info, bytes) = l.bytes("encoder.pos_embed", &[cfg.tokens(), dim]).await?;
        let pos_embed = Tensor::from_f32(
            gpu,
            &info.dtype.to_f32(&bytes),
            &[cfg.tokens(), dim],
            &info.name,
        )?;
        let mut blocks = Vec::with_capacity(cfg.encoder_depth);
        for i in 0..cfg.encoder_depth {
            let b = format!("encoder.encoder_blocks.blocks.{i}");
            let [q, k, v] = l.qkv(&format!("{b}.attn.qkv.weight"), dim).await?;
            blocks.push(Block {
                norm1: l.layer_norm(&format!("{b}.norm1"), dim).await?,
                q,
                k,
                v,
                proj: l.linear(&format!("{b}.attn.proj"), dim, dim, true).await?,
                norm2: l.layer_norm(&format!("{b}.norm2"), dim).await?,
                fc1: l.linear(&format!("{b}.mlp.fc1"), mlp, dim, true).await?,
                fc2: l.linear(&format!("{b}.mlp.fc2"), dim, mlp, true).await?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            hidden,
            w_p,
            pos_embed,
            blocks,
            norm: l.layer_norm("encoder.norm", dim).await?,
            linear: l.linear("linear", hidden, dim, true).await?,
        })
    }

    /// Records the branch for `ecgs` ((n, c, p * t) row-major model inputs, e.g. from
    /// `qoqmed_ecg::model_input`) and returns the (n, hidden) token vectors, row k for ECG k.
    /// `taps`, when given, receives copies of the first ECG's stages (`ecg.patch_embed`,
    /// `ecg.block.{i}`, `ecg.norm`, `ecg.pooled`) and `ecg.tokens`.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        ecgs: &Tensor,
        mut taps: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Tensor> {
        let gpu = rec.gpu;
        let cfg = &self.cfg;
        let (c, samples) = (cfg.c, cfg.samples());
        let n = ecgs.numel() / (c * samples).max(1);
        if n == 0 || ecgs.numel() != n * c * samples {
            return Err(Error::shape(
                "ecg encoder",
                format!(
                    "ECG input has shape {:?}; the encoder takes (ecgs, {c}, {samples})",
                    ecgs.shape
                ),
            ));
        }
        let (tokens, dim, heads, hd) = (
            cfg.tokens(),
            cfg.encoder_embed_dim,
            cfg.encoder_num_heads,
            cfg.head_dim(),
        );
        let t = |shape: &[usize], name: &str| Tensor::zeros(gpu, shape, name);
        let patches = t(&[tokens, cfg.t], "ecg.patches")?; // (c * p, t) one ECG's patches
        let h = t(&[tokens, dim], "ecg.h")?; // residual stream
        let x = t(&[tokens, dim], "ecg.x")?; // normed
        let q = t(&[tokens, heads, hd], "ecg.q")?;
        let k = t(&[tokens, heads, hd], "ecg.k")?;
        let v = t(&[tokens, heads, hd], "ecg.v")?;
        let att = t(&[tokens, heads, hd], "ecg.att")?;
        let o = t(&[tokens, dim], "ecg.o")?;
        let mid = t(&[tokens, cfg.mlp_hidden()], "ecg.mlp")?;
        let act = t(&[tokens, cfg.mlp_hidden()], "ecg.act")?;
        let pooled = t(&[n, dim], "ecg.pooled")?; // one row per ECG
        let out = t(&[n, self.hidden], "ecg.tokens")?;
        let mask = AttnMask::LeadOrTime {
            leads: cfg.c,
            patches: cfg.p,
        };
        let mut tap = |rec: &mut Recorder, name: String, src: &Tensor| -> Result<()> {
            if let Some(taps) = taps.as_deref_mut() {
                let copy = Tensor::zeros(gpu, &src.shape, &name)?;
                ops::copy(rec, src, 0, &copy, 0, src.numel())?;
                taps.push((name, copy));
            }
            Ok(())
        };
        for e in 0..n {
            let first = e == 0;
            // Token = lead * p + time patch: the (c, p * t) rows read as (c * p, t).
            ops::copy(rec, ecgs, e * c * samples, &patches, 0, c * samples)?;
            ops::linear(rec, &patches, &self.w_p.w, self.w_p.b.as_ref(), &h)?;
            if first {
                tap(rec, "ecg.patch_embed".into(), &h)?;
            }
            for (i, b) in self.blocks.iter().enumerate() {
                ops::add_inplace(rec, &h, &self.pos_embed)?;
                ops::layer_norm(rec, &h, &b.norm1.w, &b.norm1.b, cfg.layer_norm_eps, &x)?;
                ops::linear(rec, &x, &b.q, None, &q)?;
                ops::linear(rec, &x, &b.k, None, &k)?;
                ops::linear(rec, &x, &b.v, None, &v)?;
                ops::attention(rec, &q, &k, &v, mask, &att)?;
                let att2 = att.view(&[tokens, dim])?;
                ops::linear(rec, &att2, &b.proj.w, b.proj.b.as_ref(), &o)?;
                ops::add_inplace(rec, &h, &o)?;
                ops::layer_norm(rec, &h, &b.norm2.w, &b.norm2.b, cfg.layer_norm_eps, &x)?;
                ops::linear(rec, &x, &b.fc1.w, b.fc1.b.as_ref(), &mid)?;
                ops::gelu(rec, &mid, &act)?;
                ops::linear(rec, &act, &b.fc2.w, b.fc2.b.as_ref(), &o)?;
                ops::add_inplace(rec, &h, &o)?;
                if first {
                    tap(rec, format!("ecg.block.{i}"), &h)?;
                }
            }
            ops::layer_norm(rec, &h, &self.norm.w, &self.norm.b, cfg.layer_norm_eps, &x)?;
            let row = t(&[1, dim], "ecg.pooled.row")?;
            ops::mean_rows(rec, &x, &row)?;
            ops::copy(rec, &row, 0, &pooled, e * dim, dim)?;
            if first {
                tap(rec, "ecg.norm".into(), &x)?;
                tap(rec, "ecg.pooled".into(), &row.view(&[dim])?)?;
            }
        }
        ops::linear(rec, &pooled, &self.linear.w, self.linear.b.as_ref(), &out)?;
        tap(rec, "ecg.tokens".into(), &out)?;
        Ok(out)
    }
}
