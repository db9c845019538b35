//! The vision tower (`visual.*`): Qwen2.5-VL's ViT with window attention and the 2x2 patch
//! merger. One [`VisionModel::forward`] records the whole batch of images (patch embedding, every
//! block, the merger, the un-permute) into the caller's [`Recorder`]: one command buffer, no
//! per-patch or per-window dispatches. The CPU side (window partition, segment bounds, rope
//! tables) is [`layout`].

pub mod layout;

use crate::config::VisionConfig;
use crate::error::{Error, Result};
use crate::gpu::ops::{self, AttnMask};
use crate::gpu::{Gpu, Recorder, Tensor, Weight};
use crate::weights::{WeightStore, visual_tensor_names};

pub use layout::VisionLayout;

struct Linear {
    w: Weight, // (out, in)
    b: Weight, // (out)
}

struct Block {
    norm1: Weight,     // (hidden)
    norm2: Weight,     // (hidden)
    qkv: Linear,       // (3 * hidden, hidden)
    proj: Linear,      // (hidden, hidden)
    gate_proj: Linear, // (intermediate padded to 32, hidden), zero rows
    up_proj: Linear,   // (intermediate padded to 32, hidden), zero rows
    down_proj: Linear, // (hidden, intermediate padded to 32), zero columns
}

pub struct VisionModel {
    pub cfg: VisionConfig,
    patch_embed: Weight, // (hidden, patch_cols): the Conv3d as a linear, zero-padded columns
    blocks: Vec<Block>,
    ln_q: Weight, // (hidden)
    mlp0: Linear, // (hidden * merge^2, hidden * merge^2)
    mlp2: Linear, // (out_hidden, hidden * merge^2)
}

/// `n` rounded up to a whole number of 32-value groups. The engine's fast GEMM and the quantized
/// formats take inputs in groups of 32; Qwen2.5-VL's patch (1176 values) and the 7B tower's MLP
/// (3420) are not, so those weights get zero rows / columns at load and the activations zero
/// columns: the products are unchanged, the kernels are the fast ones.
fn padded(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// Uploads the tensor `base` checked to have `shape`, as a (rows, cols) matrix (a vector when
/// `cols` is None) zero-padded to (`to_rows`, `to_cols`).
async fn load_padded(
    gpu: &Gpu,
    store: &WeightStore,
    base: &str,
    shape: &[usize],
    (rows, cols): (usize, Option<usize>),
    (to_rows, to_cols): (usize, usize),
) -> Result<Weight> {
    let info = store.find_any(&visual_tensor_names(base))?;
    info.expect_shape(shape)?;
    let owned;
    let bytes = match store.bytes(info) {
        Some(b) => b,
        None => {
            owned = store.read(info).await?;
            &owned[..]
        }
    };
    let format = info.dtype.into();
    let cols_in = cols.unwrap_or(1);
    if (rows, cols_in) == (to_rows, to_cols) {
        let gpu_shape = if cols.is_some() {
            vec![rows, cols_in]
        } else {
            vec![rows]
        };
        return Weight::upload(gpu, &info.name, format, &gpu_shape, bytes, None);
    }
    let size = info.dtype.size_in_bytes();
    let mut out = vec![0u8; to_rows * to_cols * size];
    for (dst, src) in out
        .chunks_mut(to_cols * size)
        .zip(bytes.chunks(cols_in * size))
    {
        dst[..src.len()].copy_from_slice(src);
    }
    let gpu_shape = if cols.is_some() {
        vec![to_rows, to_cols]
    } else {
        vec![to_rows]
    };
    Weight::upload(gpu, &info.name, format, &gpu_shape, &out, None)
}

async fn load(gpu: &Gpu, store: &WeightStore, base: &str, shape: &[usize]) -> Result<Weight> {
    load_padded(gpu, store, base, shape, (shape[0], None), (shape[0], 1)).await
}

/// A linear layer (out, inp) + bias, zero-padded to (to_out, to_inp).
async fn linear(
    gpu: &Gpu,
    store: &WeightStore,
    base: &str,
    (out, inp): (usize, usize),
    (to_out, to_inp): (usize, usize),
) -> Result<Linear> {
    Ok(Linear {
        w: load_padded(
            gpu,
            store,
            &format!("{base}.weight"),
            &[out, inp],
            (out, Some(inp)),
            (to_out, to_inp),
        )
        .await?,
        b: load_padded(
            gpu,
            store,
            &format!("{base}.bias"),
            &[out],
            (out, None),
            (to_out, 1),
        )
        .await?,
    })
}

/// Intermediates copied out by [`VisionModel::forward`] when asked (parity tests): `patch_embed`,
/// `block.{i}` (window order, like transformers' hooks), `merger` (window order) and `features`.
pub type Taps = Vec<(String, Tensor)>;

impl VisionModel {
    /// True when the checkpoint holds a vision tower (its patch embedding).
    pub fn present(store: &WeightStore) -> bool {
        store
            .find_any(&visual_tensor_names("patch_embed.proj.weight"))
            .is_ok()
    }

    /// Uploads every `visual.*` tensor, checking names and shapes against `cfg`.
    pub async fn load(gpu: &Gpu, store: &WeightStore, cfg: &VisionConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let merged = h * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let (k, ip) = (cfg.patch_dim(), padded(i));
        // Conv3d with stride = kernel over one patch is a dot product with the flattened kernel,
        // in the same (channel, t, y, x) order the processor flattens a patch.
        let patch_embed = load_padded(
            gpu,
            store,
            "patch_embed.proj.weight",
            &[
                h,
                cfg.in_channels,
                cfg.temporal_patch_size,
                cfg.patch_size,
                cfg.patch_size,
            ],
            (h, Some(k)),
            (h, padded(k)),
        )
        .await?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for b in 0..cfg.depth {
            let p = format!("blocks.{b}");
            blocks.push(Block {
                norm1: load(gpu, store, &format!("{p}.norm1.weight"), &[h]).await?,
                norm2: load(gpu, store, &format!("{p}.norm2.weight"), &[h]).await?,
                qkv: linear(gpu, store, &format!("{p}.attn.qkv"), (3 * h, h), (3 * h, h)).await?,
                proj: linear(gpu, store, &format!("{p}.attn.proj"), (h, h), (h, h)).await?,
                gate_proj: linear(gpu, store, &format!("{p}.mlp.gate_proj"), (i, h), (ip, h))
                    .await?,
                up_proj: linear(gpu, store, &format!("{p}.mlp.up_proj"), (i, h), (ip, h)).await?,
                down_proj: linear(gpu, store, &format!("{p}.mlp.down_proj"), (h, i), (h, ip))
                    .await?,
            });
        }
        Ok(Self {
            patch_embed,
            blocks,
            ln_q: load(gpu, store, "merger.ln_q.weight", &[h]).await?,
            mlp0: linear(
                gpu,
                store,
                "merger.mlp.0",
                (merged, merged),
                (merged, merged),
            )
            .await?,
            mlp2: linear(
                gpu,
                store,
                "merger.mlp.2",
                (cfg.out_hidden_size, merged),
                (cfg.out_hidden_size, merged),
            )
            .await?,
            cfg: cfg.clone(),
        })
    }

    /// The layout of a batch of images with these patch grids (t, h, w).
    pub fn layout(&self, grids: &[[u32; 3]]) -> Result<VisionLayout> {
        VisionLayout::new(
            grids,
            self.cfg.spatial_merge_size,
            self.cfg.window_size,
            self.cfg.patch_size,
        )
    }

    /// Weight bytes of the tower (for size reports).
    pub fn weight_bytes(&self) -> u64 {
        let bytes = |w: &Weight| w.data_bytes();
        let lin = |l: &Linear| bytes(&l.w) + bytes(&l.b);
        let blocks: u64 = self
            .blocks
            .iter()
            .map(|b| {
                bytes(&b.norm1)
                    + bytes(&b.norm2)
                    + [&b.qkv, &b.proj, &b.gate_proj, &b.up_proj, &b.down_proj]
                        .into_iter()
                        .map(lin)
                        .sum::<u64>()
            })
            .sum();
        bytes(&self.patch_embed) + blocks + bytes(&self.ln_q) + lin(&self.mlp0) + lin(&self.mlp2)
    }

    /// Multiply-adds x 2 of one forward over `patches` patches whose windows hold `window_rows`
    /// key rows per patch on average (and `full_rows` in full-attention blocks).
    pub fn flops(&self, layout: &VisionLayout) -> f64 {
        let c = &self.cfg;
        let (n, h, i) = (
            layout.patches as f64,
            c.hidden_size as f64,
            c.intermediate_size as f64,
        );
        let keys = |cu: &[u32]| -> f64 {
            cu.windows(2)
                .map(|p| f64::from(p[1] - p[0]).powi(2))
                .sum::<f64>()
        };
        let (win_keys, full_keys) = (keys(&layout.cu_window_seqlens), keys(&layout.cu_seqlens));
        let mut f = 2.0 * n * h * c.patch_dim() as f64;
        for b in 0..c.depth {
            let pairs = if c.fullatt_block_indexes.contains(&b) {
                full_keys
            } else {
                win_keys
            };
            // qkv, proj, gate, up, down; scores and the weighted sum of values.
            f += 2.0 * n * (3.0 * h * h + h * h + 3.0 * h * i) + 4.0 * pairs * h;
        }
        let merged = h * (c.spatial_merge_size * c.spatial_merge_size) as f64;
        let tokens = layout.tokens() as f64;
        f + 2.0 * tokens * merged * (merged + c.out_hidden_size as f64)
    }

    /// Values per patch row the patch embedding reads (the patch, zero-padded to a multiple of 32).
    pub fn patch_cols(&self) -> usize {
        padded(self.cfg.patch_dim())
    }

    /// Width of the MLP on the GPU (the intermediate size zero-padded to a multiple of 32).
    pub fn mlp_cols(&self) -> usize {
        padded(self.cfg.intermediate_size)
    }

    /// Patches one [`forward`](Self::forward) can take on this adapter: its largest activation,
    /// (patches, max(patch_cols, 3 * hidden, intermediate)) f32, must fit one storage binding, and
    /// the attention grid one dispatch dimension.
    pub fn max_patches(&self, gpu: &Gpu) -> usize {
        let c = &self.cfg;
        let per_patch = 4 * self
            .patch_cols()
            .max(3 * c.hidden_size)
            .max(padded(c.intermediate_size));
        let limit = gpu.max_binding().min(gpu.limits.max_buffer_size) as usize / per_patch;
        limit.min(gpu.limits.max_compute_workgroups_per_dimension as usize)
    }

    /// Records the tower over the images of `grids` (t, h, w patches each) whose patch rows are
    /// `pixels` (processor order); returns their features (tokens, out_hidden) in prompt order.
    /// Images never attend to each other, so a batch too big for one binding runs as several
    /// forwards (image groups) recorded into the same command buffer; one image too big is an error.
    pub fn encode(&self, rec: &mut Recorder, grids: &[[u32; 3]], pixels: &[f32]) -> Result<Tensor> {
        let max = self.max_patches(rec.gpu);
        self.encode_in_groups(rec, grids, pixels, max)
    }

    /// [`encode`](Self::encode) with groups of at most `max` patches (tests force small groups).
    pub fn encode_in_groups(
        &self,
        rec: &mut Recorder,
        grids: &[[u32; 3]],
        pixels: &[f32],
        max: usize,
    ) -> Result<Tensor> {
        let gpu = rec.gpu;
        let all = self.layout(grids)?;
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut patches) = (0, 0);
        for (i, g) in grids.iter().enumerate() {
            let n = g.iter().map(|&v| v as usize).product::<usize>();
            if n > max {
                return Err(Error::GpuLimit(format!(
                    "image {} has {n} patches but the vision tower on {} takes at most {max} at once; \
                     use --pixel-range qoq (QoQ-Med's 524,288-pixel limit) or a smaller image",
                    i + 1,
                    gpu.adapter.name
                )));
            }
            if patches + n > max {
                groups.push(start..i);
                (start, patches) = (i, 0);
            }
            patches += n;
        }
        groups.push(start..grids.len());
        if groups.len() == 1 {
            return self.forward(rec, &all, pixels, None);
        }
        let out = Tensor::zeros(
            gpu,
            &[all.tokens(), self.cfg.out_hidden_size],
            "vision.features",
        )?; // (tokens, out_hidden)
        let (mut row, mut value) = (0, 0);
        for g in groups {
            let layout = self.layout(&grids[g])?;
            let len = layout.patches * self.cfg.patch_dim();
            let features = self.forward(rec, &layout, &pixels[value..value + len], None)?;
            ops::copy(rec, &features, 0, &out, row, features.numel())?;
            (row, value) = (row + features.numel(), value + len);
        }
        Ok(out)
    }

    /// Records the tower over `pixels` (patches, patch_dim), processor order, for the images of
    /// `layout`; returns the image features (tokens, out_hidden) in prompt order (image by image,
    /// row-major merged units), ready for [`crate::model::Injection`].
    pub fn forward(
        &self,
        rec: &mut Recorder,
        layout: &VisionLayout,
        pixels: &[f32],
        mut taps: Option<&mut Taps>,
    ) -> Result<Tensor> {
        let gpu = rec.gpu;
        let c = &self.cfg;
        let (n, h, hd) = (layout.patches, c.hidden_size, c.head_dim());
        if n == 0 {
            return Err(Error::Input("no image patches to encode".into()));
        }
        let t = |shape: &[usize], name: &str| Tensor::zeros(gpu, shape, name);
        let x_in = Tensor::from_f32(
            gpu,
            &layout.permute_rows(pixels, c.patch_dim(), self.patch_cols())?,
            &[n, self.patch_cols()],
            "vision.pixels",
        )?;
        let (cos, sin) = layout.rope_tables(hd, c.rope_theta);
        let cos = Tensor::from_f32(gpu, &cos, &[n, hd / 2], "vision.rope.cos")?;
        let sin = Tensor::from_f32(gpu, &sin, &[n, hd / 2], "vision.rope.sin")?;
        let window = ops::u32_buffer(gpu, &layout.segment_bounds(false), "vision.window_bounds");
        let full = ops::u32_buffer(gpu, &layout.segment_bounds(true), "vision.full_bounds");
        let reverse = ops::u32_buffer(gpu, &layout.reverse_index, "vision.reverse_index");

        let x = t(&[n, h], "vision.x")?; // (patches, hidden) residual stream, window order
        let hn = t(&[n, h], "vision.h")?; // (patches, hidden) normed
        let qkv = t(&[n, 3 * h], "vision.qkv")?; // (patches, 3 * hidden)
        let q = t(&[n, c.num_heads, hd], "vision.q")?; // (patches, heads, head_dim)
        let k = t(&[n, c.num_heads, hd], "vision.k")?; // (patches, heads, head_dim)
        let v = t(&[n, c.num_heads, hd], "vision.v")?; // (patches, heads, head_dim)
        let attn = t(&[n, c.num_heads, hd], "vision.attn")?; // (patches, heads, head_dim)
        let o = t(&[n, h], "vision.o")?; // (patches, hidden)
        let ip = padded(c.intermediate_size);
        let gate = t(&[n, ip], "vision.gate")?; // (patches, intermediate padded)
        let up = t(&[n, ip], "vision.up")?; // (patches, intermediate padded)
        let act = t(&[n, ip], "vision.act")?; // (patches, intermediate padded), pad columns 0

        let mut tap = |rec: &mut Recorder, name: String, src: &Tensor| -> Result<()> {
            if let Some(taps) = taps.as_deref_mut() {
                let copy = Tensor::zeros(gpu, &src.shape, &name)?;
                ops::copy(rec, src, 0, &copy, 0, src.numel())?;
                taps.push((name, copy));
            }
            Ok(())
        };

        ops::linear(rec, &x_in, &self.patch_embed, None, &x)?;
        tap(rec, "patch_embed".into(), &x)?;
        for (b, block) in self.blocks.iter().enumerate() {
            let bounds = if c.fullatt_block_indexes.contains(&b) {
                &full
            } else {
                &window
            };
            ops::rms_norm(rec, &x, &block.norm1, c.rms_norm_eps, &hn)?;
            ops::linear(rec, &hn, &block.qkv.w, Some(&block.qkv.b), &qkv)?;
            ops::qkv_rope(rec, &qkv, &cos, &sin, &q, &k, &v)?;
            ops::attention(rec, &q, &k, &v, AttnMask::Segments { bounds }, &attn)?;
            ops::linear(
                rec,
                &attn.view(&[n, h])?,
                &block.proj.w,
                Some(&block.proj.b),
                &o,
            )?;
            ops::add_inplace(rec, &x, &o)?;
            ops::rms_norm(rec, &x, &block.norm2, c.rms_norm_eps, &hn)?;
            ops::linear(
                rec,
                &hn,
                &block.gate_proj.w,
                Some(&block.gate_proj.b),
                &gate,
            )?;
            ops::linear(rec, &hn, &block.up_proj.w, Some(&block.up_proj.b), &up)?;
            ops::silu_mul(rec, &gate, &up, &act)?;
            ops::linear(rec, &act, &block.down_proj.w, Some(&block.down_proj.b), &o)?;
            ops::add_inplace(rec, &x, &o)?;
            tap(rec, format!("block.{b}"), &x)?;
        }

        // PatchMerger: ln_q per patch, the merge unit's patches side by side, Linear, GELU, Linear.
        let tokens = layout.tokens();
        let merged = h * layout.merge_unit;
        ops::rms_norm(rec, &x, &self.ln_q, c.rms_norm_eps, &hn)?;
        let m0 = t(&[tokens, merged], "vision.merger.0")?; // (tokens, hidden * merge^2)
        let g0 = t(&[tokens, merged], "vision.merger.gelu")?; // (tokens, hidden * merge^2)
        let out_w = t(&[tokens, c.out_hidden_size], "vision.merger")?; // (tokens, out_hidden), window order
        ops::linear(
            rec,
            &hn.view(&[tokens, merged])?,
            &self.mlp0.w,
            Some(&self.mlp0.b),
            &m0,
        )?;
        ops::gelu(rec, &m0, &g0)?;
        ops::linear(rec, &g0, &self.mlp2.w, Some(&self.mlp2.b), &out_w)?;
        tap(rec, "merger".into(), &out_w)?;
        let features = t(&[tokens, c.out_hidden_size], "vision.features")?; // (tokens, out_hidden)
        ops::gather_rows(rec, &out_w, &reverse, tokens, &features)?;
        tap(rec, "features".into(), &features)?;
        Ok(features)
    }
}
