//! `qoqmed bench-vision`: the vision tower's time and achieved GFLOP/s on one image, next to the
//! engine's own matmul GFLOP/s on the tower's GEMM shapes in the same run (same adapter, same
//! sitting). Either a model folder's tower (`--model`) or a random-weight tower with Qwen2.5-VL-7B's
//! vision shapes (`--shapes 7b`: 32 blocks, hidden 1280, 16 heads, MLP 3420, out 3584, bf16),
//! whose weights are generated tensor by tensor as they upload. Prints numbers; asserts nothing.

use std::path::PathBuf;

use anyhow::{Context, bail};
use qoqmed_engine::config::{ModelConfig, VisionConfig, defaults};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Weight, WeightFormat, ops, read_buffer};
use qoqmed_engine::model::VisionModel;
use qoqmed_engine::weights::{ByteSource, ModelFiles, ReadFuture, WeightStore};
use qoqmed_imaging::{DecodedImage, PixelRange, ProcessorConfig};
use web_time::Instant;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shapes {
    /// Qwen2.5-VL-7B's (and QoQ-Med-7B's) vision tower.
    #[value(name = "7b")]
    Q7b,
}

#[derive(clap::Args)]
pub struct Args {
    /// Model folder whose vision tower to time.
    #[arg(long, conflicts_with = "shapes")]
    model: Option<PathBuf>,
    /// A random-weight tower with these real shapes instead of a model folder.
    #[arg(long, value_enum)]
    shapes: Option<Shapes>,
    /// Blocks of the random tower to run (default: all 32). Full-attention blocks stay where the
    /// real config has them, so 8 blocks are exactly a quarter of the 7B pattern.
    #[arg(long)]
    depth: Option<usize>,
    /// Side of the square test image in pixels (448 -> 32x32 patches -> 256 tokens).
    #[arg(long, default_value_t = 448)]
    size: u32,
    /// Timed runs of the tower after one warm-up run (the best is reported).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    #[arg(long)]
    adapter: Option<usize>,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn qwen7b_vision(depth: Option<usize>) -> VisionConfig {
    let depth = depth.unwrap_or(32);
    VisionConfig {
        depth,
        hidden_size: 1280,
        intermediate_size: 3420,
        num_heads: 16,
        in_channels: 3,
        patch_size: 14,
        spatial_merge_size: 2,
        temporal_patch_size: 2,
        window_size: 112,
        out_hidden_size: 3584,
        fullatt_block_indexes: [7, 15, 23, 31].into_iter().filter(|&b| b < depth).collect(),
        tokens_per_second: 2.0,
        rope_theta: defaults::VISION_ROPE_THETA,
        rms_norm_eps: defaults::VISION_RMS_NORM_EPS,
    }
}

/// A bf16 safetensors file of random weights for `cfg`'s tower, made on demand: the header lives
/// in memory, each tensor's bytes are generated when the loader reads it, so a 1.3 GB checkpoint
/// never exists in host memory at once.
struct RandomTower {
    header: Vec<u8>,
    /// (absolute offset, bytes, fan-in for the value scale; 0 = a norm weight of ones)
    tensors: Vec<(u64, u64, usize)>,
    len: u64,
}

impl RandomTower {
    fn new(cfg: &VisionConfig) -> Self {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let merged = h * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let mut list: Vec<(String, Vec<usize>, usize)> = vec![(
            "visual.patch_embed.proj.weight".into(),
            vec![
                h,
                cfg.in_channels,
                cfg.temporal_patch_size,
                cfg.patch_size,
                cfg.patch_size,
            ],
            cfg.patch_dim(),
        )];
        let mut lin = |name: String, out: usize, inp: usize| {
            list.push((format!("{name}.weight"), vec![out, inp], inp));
            list.push((format!("{name}.bias"), vec![out], inp));
        };
        for b in 0..cfg.depth {
            let p = format!("visual.blocks.{b}");
            lin(format!("{p}.attn.qkv"), 3 * h, h);
            lin(format!("{p}.attn.proj"), h, h);
            lin(format!("{p}.mlp.gate_proj"), i, h);
            lin(format!("{p}.mlp.up_proj"), i, h);
            lin(format!("{p}.mlp.down_proj"), h, i);
        }
        lin("visual.merger.mlp.0".into(), merged, merged);
        lin("visual.merger.mlp.2".into(), cfg.out_hidden_size, merged);
        for b in 0..cfg.depth {
            list.push((format!("visual.blocks.{b}.norm1.weight"), vec![h], 0));
            list.push((format!("visual.blocks.{b}.norm2.weight"), vec![h], 0));
        }
        list.push(("visual.merger.ln_q.weight".into(), vec![h], 0));

        let mut json = serde_json::Map::new();
        let mut spans = Vec::new();
        let mut at = 0u64;
        for (name, shape, fan_in) in &list {
            let bytes = shape.iter().product::<usize>() as u64 * 2;
            json.insert(
                name.clone(),
                serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [at, at + bytes]}),
            );
            spans.push((at, bytes, *fan_in));
            at += bytes;
        }
        let mut header = serde_json::Value::Object(json).to_string().into_bytes();
        header.resize(header.len().div_ceil(8) * 8, b' ');
        let base = 8 + header.len() as u64;
        let mut prefix = (header.len() as u64).to_le_bytes().to_vec();
        prefix.extend_from_slice(&header);
        RandomTower {
            header: prefix,
            tensors: spans
                .into_iter()
                .map(|(o, b, f)| (o + base, b, f))
                .collect(),
            len: base + at,
        }
    }
}

impl ByteSource for RandomTower {
    fn name(&self) -> &str {
        "random-7b-vision.safetensors"
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        let end = offset + len as u64;
        let result = if end <= self.header.len() as u64 {
            Ok(self.header[offset as usize..end as usize].to_vec())
        } else if let Some(&(start, bytes, fan_in)) = self
            .tensors
            .iter()
            .find(|(s, b, _)| offset >= *s && end <= s + b)
        {
            // xorshift, uniform with variance 1/fan_in (biases 0.02 of that): finite activations
            // through every block; the values only matter for not overflowing.
            let mut state = start.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let scale = if fan_in == 0 {
                0.0
            } else {
                (3.0 / fan_in as f32).sqrt()
            };
            let scale = if bytes / 2 < fan_in as u64 {
                scale * 0.02
            } else {
                scale
            };
            let mut out = Vec::with_capacity(len);
            for _ in 0..len / 2 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                let v = if fan_in == 0 { 1.0 } else { u * scale };
                out.extend_from_slice(&bf16_bits(v).to_le_bytes());
            }
            Ok(out)
        } else {
            Err(qoqmed_engine::Error::Input(format!(
                "random tower: read of {len} bytes at {offset} is not one tensor"
            )))
        };
        Box::pin(std::future::ready(result))
    }
}

/// f32 to bf16, round to nearest even (finite inputs).
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The same deterministic test pattern the fixtures use.
fn pattern(side: u32) -> DecodedImage {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        image::Rgb(std::array::from_fn(|c| {
            let c = c as i64;
            let v =
                x * (c + 3) * 5 + y * (7 - c) * 3 + ((x ^ y) & 31) * 4 + (x / 9) * (y / 13) * 11;
            (v % 256) as u8
        }))
    });
    DecodedImage {
        image: image::DynamicImage::ImageRgb8(img),
        label: format!("pattern {side}x{side}"),
    }
}

/// Seconds of one recorded piece of GPU work, waited for with a 4-byte readback.
fn time(
    gpu: &Gpu,
    out: &Tensor,
    record: &dyn Fn(&mut Recorder) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut rec = Recorder::new(gpu);
    record(&mut rec)?;
    rec.submit()?;
    pollster::block_on(read_buffer(gpu, &out.buffer, 0, 4))?;
    Ok(t.elapsed().as_secs_f64())
}

/// GFLOP/s of `ops::linear` alone on (m, k) x (n, k)^T in the weights' format: best of `runs`
/// after a warm-up.
fn linear_gflops(
    gpu: &Gpu,
    (m, n, k): (usize, usize, usize),
    format: WeightFormat,
    runs: usize,
) -> anyhow::Result<f64> {
    let x = Tensor::zeros(gpu, &[m, k], "probe.x")?;
    let y = Tensor::zeros(gpu, &[m, n], "probe.y")?;
    let bytes = vec![0u8; n * k * 2];
    let w = Weight::upload(gpu, "probe.w", format, &[n, k], &bytes, None)?;
    let b = Weight::upload(gpu, "probe.b", format, &[n], &vec![0u8; n * 2], None)?;
    let small = Tensor::zeros(gpu, &[2, k], "probe.x2")?;
    let small_y = Tensor::zeros(gpu, &[2, n], "probe.y2")?;
    time(gpu, &small_y, &|rec| {
        Ok(ops::linear(rec, &small, &w, Some(&b), &small_y)?)
    })?;
    let mut secs = f64::INFINITY;
    for _ in 0..runs.max(1) {
        secs = secs.min(time(gpu, &y, &|rec| {
            Ok(ops::linear(rec, &x, &w, Some(&b), &y)?)
        })?);
    }
    Ok(2.0 * (m * n * k) as f64 / secs / 1e9)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu = pollster::block_on(Gpu::new(args.adapter))?;
    let t_load = Instant::now();
    let (cfg, store, what) = match (&args.model, args.shapes) {
        (Some(dir), None) => {
            let mut files =
                ModelFiles::from_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            let config = ModelConfig::from_json(&files.config)?;
            let cfg = config
                .vision
                .context("this model's config.json has no vision_config")?;
            let store = pollster::block_on(WeightStore::open(std::mem::take(&mut files.weights)))?;
            (cfg, store, dir.display().to_string())
        }
        (None, Some(Shapes::Q7b)) => {
            let cfg = qwen7b_vision(args.depth);
            let source: Box<dyn ByteSource> = Box::new(RandomTower::new(&cfg));
            let store = pollster::block_on(WeightStore::open(vec![source]))?;
            let what = format!(
                "random Qwen2.5-VL-7B vision tower, {} blocks, bf16",
                cfg.depth
            );
            (cfg, store, what)
        }
        _ => bail!("pass --model DIR or --shapes 7b"),
    };
    let model = pollster::block_on(VisionModel::load(&gpu, &store, &cfg))?;
    let load_s = t_load.elapsed().as_secs_f64();

    let processor = ProcessorConfig {
        patch_size: cfg.patch_size as u32,
        temporal_patch_size: cfg.temporal_patch_size as u32,
        merge_size: cfg.spatial_merge_size as u32,
        ..ProcessorConfig::default()
    };
    let pv = qoqmed_imaging::preprocess(&[pattern(args.size)], &processor, PixelRange::Model)?;
    let layout = model.layout(&pv.grid_thw)?;
    let gflop = model.flops(&layout) / 1e9;
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) + 1 {
        let t = Instant::now();
        let mut rec = Recorder::new(&gpu);
        let features = model.forward(&mut rec, &layout, &pv.data, None)?;
        rec.submit()?;
        pollster::block_on(read_buffer(&gpu, &features.buffer, 0, 4))?;
        runs.push(t.elapsed().as_secs_f64());
    }
    let warmup = runs.remove(0);
    let best = runs.iter().copied().fold(f64::INFINITY, f64::min);

    // The tower's GEMMs one by one, in the tower's weight format.
    let format = store
        .find(&[
            "visual.blocks.0.attn.qkv.weight",
            "model.visual.blocks.0.attn.qkv.weight",
        ])
        .map(|t| t.dtype.into())
        .unwrap_or(WeightFormat::BF16);
    let (n, h) = (layout.patches, cfg.hidden_size);
    let merged = h * layout.merge_unit;
    let shapes = [
        ("patch_embed", n, h, model.patch_cols()),
        ("qkv", n, 3 * h, h),
        ("proj", n, h, h),
        ("gate/up", n, model.mlp_cols(), h),
        ("down", n, h, model.mlp_cols()),
        ("merger.0", layout.tokens(), merged, merged),
        ("merger.2", layout.tokens(), cfg.out_hidden_size, merged),
    ];
    let mut probes = Vec::new();
    for (name, m, nn, k) in shapes {
        probes.push((
            name,
            m,
            nn,
            k,
            linear_gflops(&gpu, (m, nn, k), format, args.runs)?,
        ));
    }
    let best_matmul = probes.iter().map(|p| p.4).fold(0.0, f64::max);
    // One block's attention alone, windowed and full, to show where the tower's time goes.
    let (heads, hd) = (cfg.num_heads, cfg.head_dim());
    let q = Tensor::zeros(&gpu, &[n, heads, hd], "probe.q")?;
    let o = Tensor::zeros(&gpu, &[n, heads, hd], "probe.o")?;
    let mut attention = Vec::new();
    for full in [false, true] {
        let bounds = ops::u32_buffer(&gpu, &layout.segment_bounds(full), "probe.bounds");
        let mask = ops::AttnMask::Segments { bounds: &bounds };
        let secs = time(&gpu, &o, &|rec| {
            Ok(ops::attention(rec, &q, &q, &q, mask, &o)?)
        })?;
        let cu = if full {
            &layout.cu_seqlens
        } else {
            &layout.cu_window_seqlens
        };
        let pairs: f64 = cu.windows(2).map(|p| f64::from(p[1] - p[0]).powi(2)).sum();
        attention.push((
            if full { "full" } else { "windows" },
            secs,
            4.0 * pairs * h as f64 / secs / 1e9,
        ));
    }
    let report = serde_json::json!({
        "adapter": gpu.adapter.to_string(),
        "tower": what,
        "blocks": cfg.depth,
        "full_attention_blocks": cfg.fullatt_block_indexes,
        "image": format!("{0}x{0}", args.size),
        "patches": n,
        "tokens": layout.tokens(),
        "load_s": load_s,
        "warmup_s": warmup,
        "vision_s": best,
        "runs_s": runs,
        "gflop": gflop,
        "vision_gflops": gflop / best,
        "matmul_gflops": probes.iter().map(|p| serde_json::json!({"op": p.0, "m": p.1, "n": p.2, "k": p.3, "gflops": p.4})).collect::<Vec<_>>(),
        "best_matmul_gflops": best_matmul,
        "attention_probe": attention.iter().map(|a| serde_json::json!({"mask": a.0, "s": a.1, "gflops": a.2})).collect::<Vec<_>>(),
        "vision_vs_best_matmul": gflop / best / best_matmul,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!("adapter            {}", gpu.adapter);
    println!("tower              {what} (load {load_s:.1} s)");
    println!(
        "image              {side}x{side}: {n} patches, {tokens} tokens, {windows} windows",
        side = args.size,
        tokens = layout.tokens(),
        windows = layout.cu_window_seqlens.len() - 1
    );
    println!("vision             {best:.3} s (warm-up {warmup:.3} s), {gflop:.2} GFLOP");
    println!("achieved           {:.2} GFLOP/s", gflop / best);
    for (name, m, nn, k, g) in &probes {
        println!("matmul {name:<11} ({m} x {k}) x ({nn} x {k})^T: {g:.2} GFLOP/s");
    }
    for (mask, secs, g) in &attention {
        println!("attention {mask:<8} one block: {secs:.3} s, {g:.2} GFLOP/s");
    }
    println!(
        "vs best matmul     {:.0} % of {best_matmul:.2} GFLOP/s",
        100.0 * gflop / best / best_matmul
    );
    Ok(())
}
