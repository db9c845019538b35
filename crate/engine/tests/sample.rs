//! The GPU sampler against the CPU sampler (crate/engine/src/sampler.rs, transformers' rules)
//! given the same uniform random numbers: every processor combination, odd vocabulary sizes
//! that end inside a workgroup chunk, ties, the logit bias, the repetition penalty fed by the
//! GPU's own picks, and non-finite logits.

mod common_gpu;

use common_gpu::{Rng, gpu};
use qoqmed_engine::gpu::ops::sample::GpuSampler;
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, read_buffer};
use qoqmed_engine::sampler::{Sampler, SamplingParams};

fn params(temperature: f32, top_k: usize, top_p: f32, penalty: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        repetition_penalty: penalty,
        seed,
    }
}

/// Runs `steps` selections on GPU and CPU from the same logits and random stream; returns the
/// ids of both. The CPU history grows with its own picks, the GPU's with the GPU's.
fn run(
    gpu: &Gpu,
    p: SamplingParams,
    vocab: usize,
    steps: usize,
    logits_of: &mut dyn FnMut(usize) -> Vec<f32>,
) -> (Vec<u32>, Vec<u32>) {
    let bias = [(3u32, -100.0f32), ((vocab - 2) as u32, 2.5)];
    let history: Vec<u32> = (0..40).map(|i| (i * 37 % vocab) as u32).collect();
    let gs = GpuSampler::new(gpu, vocab, &p, &bias).unwrap();
    gs.set_history(gpu, &history);
    let next = Tensor::zeros(gpu, &[1], "next_ids").unwrap();
    let mut cpu = Sampler::new(p);
    let mut rng = Sampler::new(p);
    let mut cpu_history = history.clone();
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let raw = logits_of(step);
        let t = Tensor::from_f32(gpu, &raw, &[1, vocab], "logits").unwrap();
        let u = if p.is_greedy() {
            0.0
        } else {
            rng.next_uniform() as f32
        };
        let mut rec = Recorder::new(gpu);
        gs.record(&mut rec, &t, u, &next.buffer).unwrap();
        rec.submit().unwrap();
        let out: Vec<u32> = bytemuck::pod_collect_to_vec(
            &pollster::block_on(read_buffer(gpu, &gs.out, 0, 8)).unwrap(),
        );
        let fed: Vec<u32> = bytemuck::pod_collect_to_vec(
            &pollster::block_on(read_buffer(gpu, &next.buffer, 0, 4)).unwrap(),
        );
        assert_eq!(out[1], 0, "non-finite flag on finite logits");
        assert_eq!(fed[0], out[0], "the next step's input id is the pick");
        let mut biased = raw.clone();
        for (id, b) in bias {
            biased[id as usize] += b;
        }
        let id = cpu.sample(&mut biased, &cpu_history);
        cpu_history.push(id);
        got.push(out[0]);
        want.push(id);
    }
    (got, want)
}

#[test]
fn gpu_sampler_equals_cpu_sampler() {
    let gpu = gpu();
    let cases = [
        ("greedy", params(0.0, 0, 1.0, 1.0, 1)),
        ("greedy + penalty", params(0.0, 0, 1.0, 1.3, 1)),
        ("temperature", params(0.7, 0, 1.0, 1.0, 2)),
        ("temperature 1", params(1.0, 0, 1.0, 1.0, 3)),
        ("top-k", params(0.5, 40, 1.0, 1.0, 4)),
        ("top-k 1", params(0.9, 1, 1.0, 1.0, 5)),
        ("top-p (demo)", params(0.7, 0, 0.9, 1.0, 6)),
        ("top-p (rollouts)", params(1.0, 0, 0.99, 1.0, 7)),
        ("top-p tiny", params(1.2, 0, 0.01, 1.0, 8)),
        ("all", params(0.8, 50, 0.8, 1.1, 9)),
        ("all, penalty < 1", params(1.5, 300, 0.95, 0.9, 10)),
    ];
    let (mut draws, mut not_argmax) = (0, 0);
    for vocab in [2085, 5000] {
        for (name, p) in cases {
            for scale in [1.0f32, 6.0] {
                let mut rng = Rng::new(vocab as u64 * 31 + p.seed);
                let mut rows = Vec::new();
                let (got, want) = run(&gpu, p, vocab, 12, &mut |_| {
                    rows.push(rng.vec(vocab, scale));
                    rows.last().unwrap().clone()
                });
                draws += got.len();
                not_argmax += rows
                    .iter()
                    .zip(&got)
                    .filter(|(r, id)| qoqmed_engine::sampler::argmax(r) != **id)
                    .count();
                assert_eq!(got, want, "{name}, vocab {vocab}, logit scale {scale}");
            }
        }
    }
    eprintln!("{draws} selections equal, {not_argmax} of them not the raw argmax");
    // Not vacuous: the sampled cases really drew away from the top token.
    assert!(not_argmax > draws / 3, "{not_argmax} of {draws}");
}

#[test]
fn ties_follow_the_cpu_rules() {
    let gpu = gpu();
    let vocab = 1500;
    // Scores from a few levels: many exact ties, at the top (greedy takes the lowest id) and at
    // the top-k boundary (all tied scores survive, as the CPU sampler keeps them).
    for (name, p) in [
        ("greedy", params(0.0, 0, 1.0, 1.0, 1)),
        ("top-k ties", params(1.0, 7, 1.0, 1.0, 2)),
        ("top-k ties + temperature", params(0.6, 100, 1.0, 1.0, 3)),
    ] {
        let mut rng = Rng::new(11);
        let (got, want) = run(&gpu, p, vocab, 16, &mut |_| {
            (0..vocab).map(|_| (rng.below(9) as f32) * 0.75).collect()
        });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn non_finite_logits_are_flagged() {
    let gpu = gpu();
    let vocab = 3000;
    for (bad, p) in [
        (f32::NAN, params(0.0, 0, 1.0, 1.0, 0)),
        (f32::INFINITY, params(0.7, 0, 0.9, 1.0, 0)),
    ] {
        let gs = GpuSampler::new(&gpu, vocab, &p, &[]).unwrap();
        gs.set_history(&gpu, &[]);
        let mut logits = vec![0.5f32; vocab];
        logits[2999] = bad;
        let t = Tensor::from_f32(&gpu, &logits, &[1, vocab], "logits").unwrap();
        let next = Tensor::zeros(&gpu, &[1], "next").unwrap();
        let mut rec = Recorder::new(&gpu);
        gs.record(&mut rec, &t, 0.3, &next.buffer).unwrap();
        rec.submit().unwrap();
        let out: Vec<u32> = bytemuck::pod_collect_to_vec(
            &pollster::block_on(read_buffer(&gpu, &gs.out, 0, 8)).unwrap(),
        );
        assert_eq!(out[1], 1, "{bad} not flagged");
    }
    // Shape errors are errors, not dispatches.
    let gs = GpuSampler::new(&gpu, vocab, &SamplingParams::default(), &[]).unwrap();
    let t = Tensor::zeros(&gpu, &[2, vocab], "two rows").unwrap();
    let mut rec = Recorder::new(&gpu);
    assert!(gs.record(&mut rec, &t, 0.0, &t.buffer).is_err());
    assert!(GpuSampler::new(&gpu, vocab, &SamplingParams::default(), &[(3000, 1.0)]).is_err());
}
