//! `qoqmed quantize`: a Hugging Face checkpoint folder -> a qoqmed folder with q4/q8/f16 weights
//! in the GPU plane layout (docs/quantization.md), streamed tensor by tensor in row pieces so the
//! process holds a few tens of MB whatever the model size. The output is an ordinary model folder
//! (`generate`, `bench`, `serve`, the browser) with a manifest the browser verifies files against.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qoqmed_engine::gpu::WeightFormat;
use qoqmed_engine::quant;
use qoqmed_engine::weights::policy::FormatPlan;
use qoqmed_engine::weights::qfile::{self, StoredTensor};
use qoqmed_engine::weights::{ByteSource, FileSource, TensorInfo, WeightStore, shard_files};
use sha2::Digest;
use web_time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Output folder (created; must be empty or absent).
    #[arg(long)]
    out: PathBuf,
    /// Language-model linears: q4, q8 or f16.
    #[arg(long, default_value = "q4")]
    format: String,
    /// Embedding and lm_head: q4, q8 or f16 (default: q8, or f16 with --format f16).
    #[arg(long)]
    head_format: Option<String>,
    /// Largest shard in MB (a single larger tensor gets a shard of its own).
    #[arg(long, default_value_t = 512.0)]
    shard_mb: f64,
    /// One JSON summary object at the end instead of text.
    #[arg(long)]
    json: bool,
}

/// Files copied unchanged (when present) besides the weights.
const COPIED: [&str; 11] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// Source bytes read per piece of a tensor.
const PIECE: u64 = 8 << 20;

fn parse_format(flag: &str, s: &str) -> anyhow::Result<WeightFormat> {
    match WeightFormat::parse(s) {
        Some(f @ (WeightFormat::Q4 | WeightFormat::Q8 | WeightFormat::F16)) => Ok(f),
        _ => bail!("{flag} {s}: choose q4, q8 or f16"),
    }
}

/// The weight files of a checkpoint folder, in the order the index lists them.
fn weight_paths(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let bytes = std::fs::read(&index).with_context(|| index.display().to_string())?;
        return Ok(shard_files(&bytes)?.iter().map(|s| dir.join(s)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    bail!(
        "{} holds neither model.safetensors nor model.safetensors.index.json; {}",
        dir.display(),
        qoqmed_engine::weights::MODEL_FOLDER_CONTENTS
    )
}

/// One output tensor: where it comes from and how it is stored.
struct Job {
    info: TensorInfo,
    format: WeightFormat,
    stored: Vec<StoredTensor>,
}

impl Job {
    fn bytes(&self) -> u64 {
        self.stored.iter().map(StoredTensor::bytes).sum()
    }
}

/// Whether every value survives conversion to f16 (|v| <= 65504 after rounding).
fn fits_f16(values: &[f32]) -> bool {
    values.iter().all(|&v| half::f16::from_f32(v).is_finite())
}

/// Peak resident memory of this process (Linux), for the report.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let linear = parse_format("--format", &args.format)?;
    let mut plan = FormatPlan::for_format(linear);
    if let Some(h) = &args.head_format {
        plan.head = parse_format("--head-format", h)?;
    }
    if args.shard_mb.is_nan() || args.shard_mb <= 0.0 {
        bail!("--shard-mb must be positive");
    }
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose a new --out folder",
            args.out.display()
        );
    }
    if !args.model.join("config.json").is_file() {
        bail!(
            "{} has no config.json; {}",
            args.model.display(),
            qoqmed_engine::weights::MODEL_FOLDER_CONTENTS
        );
    }
    let paths = weight_paths(&args.model)?;
    let mut sources: Vec<Box<dyn ByteSource>> = Vec::new();
    for p in &paths {
        sources.push(Box::new(FileSource::open(p)?));
    }
    let store = pollster::block_on(WeightStore::open(sources))?;
    if let Some((name, dtype)) = store.unsupported().next() {
        bail!("tensor `{name}` has dtype {dtype}, which qoqmed cannot convert");
    }

    // Checkpoint order (file, offset) keeps a layer's tensors together in one shard.
    let mut infos: Vec<&TensorInfo> = store.names().filter_map(|n| store.get(n)).collect();
    infos.sort_by_key(|i| (i.source, i.offset));
    if let Some(q) = infos.iter().find(|i| i.format.is_quantized()) {
        bail!(
            "{} is already quantized (`{}` is {}); quantize the original checkpoint",
            args.model.display(),
            q.name,
            q.format
        );
    }
    let mut jobs = Vec::with_capacity(infos.len());
    for info in infos {
        let format = plan.choose(&info.name, &info.shape, info.dtype);
        let stored = qfile::stored_tensors(&info.name, format, &info.shape)?;
        jobs.push(Job {
            info: info.clone(),
            format,
            stored,
        });
    }

    // Shards: fill up to --shard-mb in checkpoint order; a tensor at least that large gets a
    // shard of its own, and the small tensors around it keep filling the current one.
    let limit = (args.shard_mb * 1e6) as u64;
    let mut shards: Vec<Vec<usize>> = Vec::new();
    let mut filling: Option<(usize, u64)> = None;
    for (i, job) in jobs.iter().enumerate() {
        let bytes = job.bytes();
        if bytes >= limit {
            shards.push(vec![i]);
            continue;
        }
        match filling {
            Some((s, used)) if used + bytes <= limit => {
                shards[s].push(i);
                filling = Some((s, used + bytes));
            }
            _ => {
                shards.push(vec![i]);
                filling = Some((shards.len() - 1, bytes));
            }
        }
    }
    let n_shards = shards.len();
    let shard_name = |i: usize| {
        if n_shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n_shards:05}.safetensors", i + 1)
        }
    };

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let total_in: u64 = jobs.iter().map(|j| j.info.len).sum();
    let bar = (!args.json).then(|| {
        let bar = indicatif::ProgressBar::new(total_in);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "quantizing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("template"),
        );
        bar
    });
    let mut weight_map = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut fallbacks = Vec::new();
    for (s, members) in shards.iter().enumerate() {
        let name = shard_name(s);
        let path = args.out.join(&name);
        let mut shard_jobs: Vec<&mut Job> = Vec::new();
        // Split borrows: jobs of this shard only.
        for (i, job) in jobs.iter_mut().enumerate() {
            if members.contains(&i) {
                shard_jobs.push(job);
            }
        }
        write_shard(&store, &path, &mut shard_jobs, bar.as_ref(), &mut fallbacks)?;
        for job in &shard_jobs {
            *counts.entry(job.format.as_str()).or_default() += 1;
            for t in &job.stored {
                weight_map.insert(t.name.clone(), name.clone());
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if n_shards > 1 {
        let total: u64 = jobs.iter().map(Job::bytes).sum();
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(
            args.out.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)?,
        )?;
    }
    for f in COPIED {
        let src = args.model.join(f);
        if src.is_file() {
            std::fs::copy(&src, args.out.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }

    // The manifest lists every file of the folder with its size and sha256.
    let mut files = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&args.out)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "manifest.json")
        .collect();
    names.sort();
    let mut out_bytes = 0;
    for n in &names {
        let p = args.out.join(n);
        let size = p.metadata()?.len();
        out_bytes += size;
        // The spelling `qoqmed serve` computes for plain folders and the web app reads.
        files.push(serde_json::json!({"path": n, "size": size, "sha256": sha256_file(&p)?}));
    }
    let manifest = serde_json::json!({
        "qoqmed_format_version": qfile::VERSION,
        "format": linear.as_str(),
        "formats": {"linear": plan.linear.as_str(), "head": plan.head.as_str(), "tower": plan.tower.as_str()},
        "files": files,
    });
    std::fs::write(
        args.out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let peak = peak_rss_bytes();
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "shards": n_shards,
        "tensors_by_format": counts,
        "kept_bf16_for_f16_range": fallbacks,
        "input_weight_bytes": total_in,
        "output_bytes": out_bytes,
        "seconds": secs,
        "peak_rss_bytes": peak,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "wrote {} ({n_shards} shard(s), {:.1} MB from {:.1} MB of weights) in {secs:.1} s",
            args.out.display(),
            out_bytes as f64 / 1e6,
            total_in as f64 / 1e6
        );
        println!("tensors by format: {counts:?}");
        if !fallbacks.is_empty() {
            println!("kept in bf16 (values beyond f16's range): {fallbacks:?}");
        }
        if let Some(p) = peak {
            println!("peak memory of this process: {:.1} MB", p as f64 / 1e6);
        }
    }
    Ok(())
}

/// Writes one shard: a header with room reserved, every tensor streamed in pieces, then the
/// header with the final dtypes (f16 targets that overflow are rewritten as bf16).
fn write_shard(
    store: &WeightStore,
    path: &Path,
    jobs: &mut [&mut Job],
    bar: Option<&indicatif::ProgressBar>,
    fallbacks: &mut Vec<String>,
) -> anyhow::Result<()> {
    // Reserve the longest header: every 16-bit tensor written as "BF16".
    let widest: Vec<StoredTensor> = jobs
        .iter()
        .flat_map(|j| j.stored.iter().cloned())
        .map(|mut t| {
            if t.dtype == "F16" {
                t.dtype = "BF16";
            }
            t
        })
        .collect();
    let formats = |jobs: &[&mut Job]| {
        qfile::metadata(
            jobs.iter()
                .map(|j| (j.info.name.as_str(), j.format))
                .collect::<Vec<_>>(),
        )
    };
    let reserve = qfile::header_bytes(&widest, &formats(jobs), 0).len() - 8;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(4 << 20, file);
    w.write_all(&vec![b' '; 8 + reserve])?;
    for job in jobs.iter_mut() {
        let start = w.stream_position()?;
        if !write_tensor(store, &mut w, job, bar)? {
            // Values beyond f16's range: rewrite this tensor as bf16 (same size, nothing moves).
            w.seek(SeekFrom::Start(start))?;
            job.format = WeightFormat::BF16;
            job.stored = qfile::stored_tensors(&job.info.name, job.format, &job.info.shape)?;
            write_tensor(store, &mut w, job, None)?;
            fallbacks.push(job.info.name.clone());
        }
    }
    let stored: Vec<StoredTensor> = jobs.iter().flat_map(|j| j.stored.iter().cloned()).collect();
    let header = qfile::header_bytes(&stored, &formats(jobs), reserve);
    debug_assert_eq!(header.len(), 8 + reserve);
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header)?;
    w.flush()?;
    Ok(())
}

/// Streams one tensor: codes of every piece, then (for q8/q4) its scales, matching the order of
/// `job.stored` (codes tensor, then scales tensor, back to back). False when an f16 target meets a
/// value beyond f16's range (what was written of it must be overwritten).
fn write_tensor(
    store: &WeightStore,
    w: &mut BufWriter<File>,
    job: &Job,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<bool> {
    let (info, format) = (&job.info, job.format);
    let (n, k) = info.rows();
    let row_in = (info.len / n.max(1) as u64).max(1);
    let rows_per_piece = ((PIECE / row_in) as usize).clamp(1, n.max(1));
    let mut all_scales = Vec::new();
    let mut row = 0;
    while row < n {
        let end = (row + rows_per_piece).min(n);
        let bytes = pollster::block_on(store.read_rows(info, row..end))?;
        let values = info.dtype.to_f32(&bytes.values);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "tensor `{}`: value {} of row {} is {}; the checkpoint is broken",
                info.name,
                i % k,
                row + i / k,
                values[i]
            );
        }
        if format == WeightFormat::F16 && !fits_f16(&values) {
            return Ok(false);
        }
        let planes = quant::quantize(format, &values, k)
            .with_context(|| format!("tensor `{}`", info.name))?;
        w.write_all(&planes.values)?;
        if let Some(s) = planes.scales {
            all_scales.extend(s);
        }
        if let Some(bar) = bar {
            bar.inc(bytes.values.len() as u64);
        }
        row = end;
    }
    // Scales are 1/16 (q8) to 1/8 (q4) of the codes' size: held for the tensor, then written.
    w.write_all(&all_scales)?;
    Ok(true)
}
