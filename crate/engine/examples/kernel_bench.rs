//! Kernel micro-benchmark: one Qwen2.5 decoder at real layer shapes with random weights, timed op
//! by op (each op its own submit) and as whole steps (one submit, as the model runs), for decode
//! and prefill; plus the GFLOP/s of every linear shape. Prints numbers, asserts nothing.
//!
//! cargo run --release -p qoqmed-engine --example kernel_bench -- \
//!     [--config 3b|7b] [--format q4|q8|f16|bf16|f32] [--layers 2] [--vocab 16384] \
//!     [--prompt 128] [--context 256] [--kv f32|f16] [--reps 3] [--portable]
//!
//! "cpu ms" is the CPU time of all this process's threads (Linux /proc): on a software adapter it
//! is the work done, independent of how busy the machine is; wall ms depends on the neighbours.

use std::collections::BTreeMap;

use qoqmed_engine::gpu::ops::AttnMask;
use qoqmed_engine::gpu::probe::random_weight;
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Tuning, Weight, WeightFormat, ops, read_buffer};
use web_time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

struct Shape {
    hidden: usize,
    inter: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

struct Layer {
    norm1: Weight,
    norm2: Weight,
    q: (Weight, Weight),
    k: (Weight, Weight),
    v: (Weight, Weight),
    o: Weight,
    gate: Weight,
    up: Weight,
    down: Weight,
    k_cache: Tensor, // (context, kv_heads, head_dim)
    v_cache: Tensor, // (context, kv_heads, head_dim)
}

/// Activations for n tokens.
struct Acts {
    x: Tensor,      // (n, hidden)
    h: Tensor,      // (n, hidden)
    q: Tensor,      // (n, heads, head_dim)
    k: Tensor,      // (n, kv_heads, head_dim)
    v: Tensor,      // (n, kv_heads, head_dim)
    attn: Tensor,   // (n, heads, head_dim)
    o: Tensor,      // (n, hidden)
    gate: Tensor,   // (n, inter)
    up: Tensor,     // (n, inter)
    act: Tensor,    // (n, inter)
    cos: Tensor,    // (n, head_dim / 2)
    sin: Tensor,    // (n, head_dim / 2)
    last: Tensor,   // (1, hidden)
    logits: Tensor, // (1, vocab)
}

type Op<'a> = (
    &'static str,
    Box<dyn Fn(&mut Recorder) -> qoqmed_engine::Result<()> + 'a>,
);

fn ones(gpu: &Gpu, n: usize, name: &str) -> Weight {
    Weight::upload(
        gpu,
        name,
        WeightFormat::F32,
        &[n],
        bytemuck::cast_slice(&vec![1.0f32; n]),
        None,
    )
    .unwrap()
}

fn bias(gpu: &Gpu, n: usize, name: &str) -> Weight {
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
        .collect();
    Weight::upload(
        gpu,
        name,
        WeightFormat::F32,
        &[n],
        bytemuck::cast_slice(&v),
        None,
    )
    .unwrap()
}

fn acts(gpu: &Gpu, s: &Shape, n: usize, vocab: usize) -> Acts {
    let t = |shape: &[usize], name: &str| Tensor::zeros(gpu, shape, name).unwrap();
    let x: Vec<f32> = (0..n * s.hidden)
        .map(|i| ((i * 7919 % 1013) as f32 / 506.0) - 1.0)
        .collect();
    let half = s.head_dim / 2;
    let ang: Vec<f32> = (0..n * half).map(|i| i as f32 * 0.01).collect();
    Acts {
        x: Tensor::from_f32(gpu, &x, &[n, s.hidden], "x").unwrap(),
        h: t(&[n, s.hidden], "h"),
        q: t(&[n, s.heads, s.head_dim], "q"),
        k: t(&[n, s.kv_heads, s.head_dim], "k"),
        v: t(&[n, s.kv_heads, s.head_dim], "v"),
        attn: t(&[n, s.heads, s.head_dim], "attn"),
        o: t(&[n, s.hidden], "o"),
        gate: t(&[n, s.inter], "gate"),
        up: t(&[n, s.inter], "up"),
        act: t(&[n, s.inter], "act"),
        cos: Tensor::from_f32(
            gpu,
            &ang.iter().map(|a| a.cos()).collect::<Vec<_>>(),
            &[n, half],
            "cos",
        )
        .unwrap(),
        sin: Tensor::from_f32(
            gpu,
            &ang.iter().map(|a| a.sin()).collect::<Vec<_>>(),
            &[n, half],
            "sin",
        )
        .unwrap(),
        last: t(&[1, s.hidden], "last"),
        logits: t(&[1, vocab], "logits"),
    }
}

/// The ops of one forward of n tokens at cache row `start`, as text.rs records them.
fn forward<'a>(
    s: &'a Shape,
    layers: &'a [Layer],
    a: &'a Acts,
    norm: &'a Weight,
    head: &'a Weight,
    n: usize,
    start: usize,
) -> Vec<Op<'a>> {
    let mut v: Vec<Op<'a>> = Vec::new();
    let (kvh, hd) = (s.kv_heads, s.head_dim);
    for l in layers {
        v.push((
            "rms_norm",
            Box::new(move |r| ops::rms_norm(r, &a.x, &l.norm1, 1e-6, &a.h)),
        ));
        v.push((
            "linear q",
            Box::new(move |r| ops::linear(r, &a.h, &l.q.0, Some(&l.q.1), &a.q)),
        ));
        v.push((
            "linear k",
            Box::new(move |r| ops::linear(r, &a.h, &l.k.0, Some(&l.k.1), &a.k)),
        ));
        v.push((
            "linear v",
            Box::new(move |r| ops::linear(r, &a.h, &l.v.0, Some(&l.v.1), &a.v)),
        ));
        v.push((
            "rope",
            Box::new(move |r| ops::rope_inplace(r, &a.q, &a.cos, &a.sin)),
        ));
        v.push((
            "rope",
            Box::new(move |r| ops::rope_to_cache(r, &a.k, &a.cos, &a.sin, &l.k_cache, start)),
        ));
        v.push((
            "copy",
            Box::new(move |r| ops::copy(r, &a.v, 0, &l.v_cache, start * kvh * hd, n * kvh * hd)),
        ));
        v.push((
            "attention",
            Box::new(move |r| {
                ops::attention(
                    r,
                    &a.q,
                    &l.k_cache,
                    &l.v_cache,
                    AttnMask::Causal { start },
                    &a.attn,
                )
            }),
        ));
        v.push((
            "linear o",
            Box::new(move |r| ops::linear(r, &a.attn.view(&[n, s.heads * hd])?, &l.o, None, &a.o)),
        ));
        v.push(("add", Box::new(move |r| ops::add_inplace(r, &a.x, &a.o))));
        v.push((
            "rms_norm",
            Box::new(move |r| ops::rms_norm(r, &a.x, &l.norm2, 1e-6, &a.h)),
        ));
        v.push((
            "gate_up_silu",
            Box::new(move |r| ops::gate_up_silu(r, &a.h, &l.gate, &l.up, &a.act, &a.gate, &a.up)),
        ));
        v.push((
            "linear down",
            Box::new(move |r| ops::linear(r, &a.act, &l.down, None, &a.o)),
        ));
        v.push(("add", Box::new(move |r| ops::add_inplace(r, &a.x, &a.o))));
    }
    v.push((
        "rms_norm",
        Box::new(move |r| ops::rms_norm(r, &a.x, norm, 1e-6, &a.h)),
    ));
    if n > 1 {
        v.push((
            "copy",
            Box::new(move |r| ops::copy(r, &a.h, (n - 1) * s.hidden, &a.last, 0, s.hidden)),
        ));
        v.push((
            "lm_head",
            Box::new(move |r| ops::linear(r, &a.last, head, None, &a.logits)),
        ));
    } else {
        v.push((
            "lm_head",
            Box::new(move |r| ops::linear(r, &a.h, head, None, &a.logits)),
        ));
    }
    v
}

fn wait(gpu: &Gpu, t: &Tensor) {
    pollster::block_on(read_buffer(gpu, &t.buffer, 0, 4)).unwrap();
}

/// (wall s, cpu s) of the whole op list in one submit, best of reps (after a warm-up).
fn time_step(gpu: &Gpu, ops: &[Op], sync: &Tensor, reps: usize) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::INFINITY);
    for i in 0..reps + 1 {
        let (t, c) = (Instant::now(), cpu_ns());
        let mut rec = Recorder::new(gpu);
        for (_, op) in ops {
            op(&mut rec).unwrap();
        }
        rec.submit().unwrap();
        wait(gpu, sync);
        if i > 0 {
            best.0 = best.0.min(t.elapsed().as_secs_f64());
            best.1 = best.1.min((cpu_ns() - c) as f64 * 1e-9);
        }
    }
    best
}

/// Per op kind: (wall s, cpu s) summed over the list, each op alone in a submit, best of reps.
fn breakdown(
    gpu: &Gpu,
    ops: &[Op],
    sync: &Tensor,
    reps: usize,
) -> BTreeMap<&'static str, (f64, f64)> {
    let mut out: BTreeMap<&'static str, (f64, f64)> = BTreeMap::new();
    for (name, op) in ops {
        let one = [(
            *name,
            Box::new(|r: &mut Recorder| op(r)) as Box<dyn Fn(&mut Recorder) -> _>,
        )];
        let t = time_step(gpu, &one, sync, reps);
        let e = out.entry(name).or_default();
        e.0 += t.0;
        e.1 += t.1;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config = arg(&args, "--config", "3b".to_string());
    let s = match config.as_str() {
        "7b" => Shape {
            hidden: 3584,
            inter: 18944,
            heads: 28,
            kv_heads: 4,
            head_dim: 128,
        },
        _ => Shape {
            hidden: 2048,
            inter: 11008,
            heads: 16,
            kv_heads: 2,
            head_dim: 128,
        },
    };
    let format = WeightFormat::parse(&arg(&args, "--format", "q4".to_string())).expect("format");
    let n_layers: usize = arg(&args, "--layers", 2);
    let vocab: usize = arg(&args, "--vocab", 16384);
    let prompt: usize = arg(&args, "--prompt", 128);
    let context: usize = arg(&args, "--context", 256).max(prompt + 1);
    let reps: usize = arg(&args, "--reps", 3);

    let mut gpu = pollster::block_on(Gpu::new(None)).unwrap();
    if args.iter().any(|a| a == "--portable") {
        gpu.tuning = Tuning::portable();
    }
    println!("adapter {} | tuning {:?}", gpu.adapter, gpu.tuning);
    println!(
        "config {config}: hidden {} inter {} heads {}/{} | {format} | {n_layers} layers | vocab {vocab} (q8 head) | prompt {prompt} | context {context}",
        s.hidden, s.inter, s.heads, s.kv_heads
    );

    // GFLOP/s of every linear shape, decode (m = 1) and prefill (m = prompt).
    let shapes = [
        ("q/o", s.heads * s.head_dim, s.hidden),
        ("k/v", s.kv_heads * s.head_dim, s.hidden),
        ("gate/up", s.inter, s.hidden),
        ("down", s.hidden, s.inter),
    ];
    println!(
        "\nlinear                   m      wall ms   cpu ms   GFLOP/s(wall)  GFLOP/s(cpu/2)  weight GB/s(cpu/2)"
    );
    for (name, n, k) in shapes {
        let w = random_weight(&gpu, name, format, n, k, 3).unwrap();
        for m in [1, prompt] {
            let x = Tensor::zeros(&gpu, &[m, k], "x").unwrap();
            let y = Tensor::zeros(&gpu, &[m, n], "y").unwrap();
            let op: Vec<Op> = vec![(
                name,
                Box::new(|r: &mut Recorder| ops::linear(r, &x, &w, None, &y)),
            )];
            let (wall, cpu) = time_step(&gpu, &op, &y, reps);
            let flop = 2.0 * (m * n * k) as f64;
            println!(
                "{name:<8} {n:>6}x{k:<6} {m:>4} {:>10.2} {:>8.2} {:>14.2} {:>15.2} {:>18.2}",
                wall * 1e3,
                cpu * 1e3,
                flop / wall / 1e9,
                flop / (cpu / 2.0) / 1e9,
                w.data_bytes() as f64 / (cpu / 2.0) / 1e9
            );
        }
    }

    let kv_f16 = arg(&args, "--kv", "f32".to_string()) == "f16";
    let cache = |gpu: &Gpu, name: &str| {
        let shape = [context, s.kv_heads, s.head_dim];
        if kv_f16 {
            Tensor::zeros_f16(gpu, &shape, name).unwrap()
        } else {
            Tensor::zeros(gpu, &shape, name).unwrap()
        }
    };
    let layers: Vec<Layer> = (0..n_layers)
        .map(|i| {
            let lw = |n, k, name: &str| {
                random_weight(&gpu, &format!("{name}.{i}"), format, n, k, 10 + i as u32).unwrap()
            };
            let (qo, kvo) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
            Layer {
                norm1: ones(&gpu, s.hidden, "norm1"),
                norm2: ones(&gpu, s.hidden, "norm2"),
                q: (lw(qo, s.hidden, "q"), bias(&gpu, qo, "q.bias")),
                k: (lw(kvo, s.hidden, "k"), bias(&gpu, kvo, "k.bias")),
                v: (lw(kvo, s.hidden, "v"), bias(&gpu, kvo, "v.bias")),
                o: lw(s.hidden, qo, "o"),
                gate: lw(s.inter, s.hidden, "gate"),
                up: lw(s.inter, s.hidden, "up"),
                down: lw(s.hidden, s.inter, "down"),
                k_cache: cache(&gpu, "k_cache"),
                v_cache: cache(&gpu, "v_cache"),
            }
        })
        .collect();
    let norm = ones(&gpu, s.hidden, "norm");
    let head = random_weight(&gpu, "lm_head", WeightFormat::Q8, vocab, s.hidden, 99).unwrap();
    let bytes: u64 = layers
        .iter()
        .map(|l| {
            [&l.q.0, &l.k.0, &l.v.0, &l.o, &l.gate, &l.up, &l.down]
                .iter()
                .map(|w| w.data_bytes())
                .sum::<u64>()
        })
        .sum::<u64>()
        + head.data_bytes();

    for (label, n, start) in [("prefill", prompt, 0), ("decode", 1, prompt)] {
        let a = acts(&gpu, &s, n, vocab);
        let list = forward(&s, &layers, &a, &norm, &head, n, start);
        let (wall, cpu) = time_step(&gpu, &list, &a.logits, reps);
        let by_op = breakdown(&gpu, &list, &a.logits, reps);
        let total_cpu: f64 = by_op.values().map(|v| v.1).sum();
        println!(
            "\n{label}: {n} token(s) at cache row {start}, one submit: {:.1} ms wall, {:.1} ms cpu -> {:.2} tok/s wall, {:.2} tok/s at cpu/2",
            wall * 1e3,
            cpu * 1e3,
            n as f64 / wall,
            n as f64 / (cpu / 2.0)
        );
        if n == 1 {
            println!(
                "weights read per token {:.1} MB -> {:.2} GB/s wall, {:.2} GB/s at cpu/2",
                bytes as f64 / 1e6,
                bytes as f64 / wall / 1e9,
                bytes as f64 / (cpu / 2.0) / 1e9
            );
        }
        println!("  op            wall ms    cpu ms   share of cpu");
        for (name, (w, c)) in &by_op {
            println!(
                "  {name:<12} {:>8.2} {:>9.2} {:>8.1} %",
                w * 1e3,
                c * 1e3,
                100.0 * c / total_cpu
            );
        }
    }
}
