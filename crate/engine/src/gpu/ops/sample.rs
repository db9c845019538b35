//! Sampling on the GPU (shaders/sample.wgsl): the same decisions as [`crate::sampler::Sampler`]
//! (logit bias, repetition penalty, temperature, top-k, top-p, inverse-CDF draw, greedy argmax),
//! with the uniform random number drawn by the CPU sampler's seeded RNG, so a seed gives the
//! same tokens either way. Only the chosen id (4 bytes) needs to leave the GPU, and it is also
//! written straight into the next step's input ids.
//!
//! Where the two can differ: the GPU computes exp in f32 and sums mass in 24.40 fixed point
//! where the CPU sums f32 probabilities in f64, so a random number within ~1e-6 (relative) of a
//! CDF boundary, or a top-p boundary within that of the mass, may fall the other way; and a tie
//! of equal scores exactly at the top-p boundary is kept whole on the GPU where the CPU removes
//! its lower ids first. tests/sample.rs measures both.

use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Gpu, Recorder, Tensor, grid};
use crate::sampler::SamplingParams;

use super::u32_of;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    n_groups: u32,
    n_bias: u32,
    level: u32,
    top_k: u32,
    flags: u32,
    penalty: f32,
    temperature: f32,
    cut: f32,
    u: f32,
    _pad: [u32; 2],
}

const WG: u32 = 256;
/// Scores per workgroup chunk (WG threads x 4), as `CHUNK` in the shader.
const CHUNK: usize = WG as usize * 4;
const STATE_WORDS: u64 = 16;
const FLAG_GREEDY: u32 = 1;
const FLAG_PENALTY: u32 = 2;
const FLAG_TEMPERATURE: u32 = 4;

/// The GPU state of one generation's sampler: buffers sized for the vocabulary, made once.
pub struct GpuSampler {
    vocab: usize,
    n_groups: u32,
    params: SamplingParams,
    n_bias: u32,
    scores: wgpu::Buffer,   // (vocab) f32 processed scores
    seen: wgpu::Buffer,     // (vocab) u32, 1 where the id is in the history
    bias: wgpu::Buffer,     // (max(1, 2 * n_bias)) u32: id, f32 bits
    partials: wgpu::Buffer, // (n_groups, 3, 256) u32 per-chunk histograms / maxima / masses
    state: wgpu::Buffer,    // (16) u32 thresholds and the maximum
    /// (2) u32: the chosen id and a flag set when a logit was not finite.
    pub out: wgpu::Buffer,
}

fn storage(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

impl GpuSampler {
    /// Buffers for a vocabulary of `vocab` ids, sampling with `params` after adding `bias`.
    pub fn new(
        gpu: &Gpu,
        vocab: usize,
        params: &SamplingParams,
        bias: &[(u32, f32)],
    ) -> Result<Self> {
        params.validate()?;
        if vocab == 0 {
            return Err(Error::Input("sampling over an empty vocabulary".into()));
        }
        if let Some((id, _)) = bias.iter().find(|(id, _)| *id as usize >= vocab) {
            return Err(Error::Input(format!(
                "logit bias for id {id} outside the vocabulary of {vocab}"
            )));
        }
        let n_groups = vocab.div_ceil(CHUNK);
        let words: Vec<u32> = bias.iter().flat_map(|&(id, b)| [id, b.to_bits()]).collect();
        let bias_buf = storage(gpu, "sample.bias", words.len() as u64 * 4);
        if !words.is_empty() {
            gpu.queue
                .write_buffer(&bias_buf, 0, bytemuck::cast_slice(&words));
        }
        Ok(Self {
            vocab,
            n_groups: u32_of("sample", n_groups)?,
            params: *params,
            n_bias: u32_of("sample", bias.len())?,
            scores: storage(gpu, "sample.scores", vocab as u64 * 4),
            seen: storage(gpu, "sample.seen", vocab as u64 * 4),
            bias: bias_buf,
            partials: storage(gpu, "sample.partials", n_groups as u64 * 768 * 4),
            state: storage(gpu, "sample.state", STATE_WORDS * 4),
            out: storage(gpu, "sample.out", 8),
        })
    }

    /// Marks the ids of `history` (prompt and tokens so far) for the repetition penalty; the
    /// sampler adds each id it picks by itself.
    pub fn set_history(&self, gpu: &Gpu, history: &[u32]) {
        let mut seen = vec![0u32; self.vocab];
        for &id in history {
            if let Some(s) = seen.get_mut(id as usize) {
                *s = 1;
            }
        }
        gpu.queue
            .write_buffer(&self.seen, 0, bytemuck::cast_slice(&seen));
    }

    /// Whether a step needs a uniform random number (anything but greedy).
    pub fn draws(&self) -> bool {
        !self.params.is_greedy()
    }

    /// Records the selection of the next id from the last row of `logits` ((rows, vocab)).
    /// `u` is this step's uniform number in [0, 1) (ignored when greedy). The id goes to
    /// [`out`](Self::out)`[0]` and to `next_ids[0]`.
    pub fn record(
        &self,
        rec: &mut Recorder,
        logits: &Tensor,
        u: f32,
        next_ids: &wgpu::Buffer,
    ) -> Result<()> {
        let n = *logits.shape.last().unwrap_or(&0);
        if n != self.vocab || logits.numel() < n {
            return Err(Error::shape(
                "sample",
                format!(
                    "logits {:?} for a sampler over {} ids",
                    logits.shape, self.vocab
                ),
            ));
        }
        if logits.numel() != n {
            return Err(Error::shape(
                "sample",
                format!("logits {:?}: sample takes one row", logits.shape),
            ));
        }
        let p = self.params;
        let greedy = p.is_greedy();
        let mut flags = 0;
        if greedy {
            flags |= FLAG_GREEDY;
        }
        if p.repetition_penalty != 1.0 {
            flags |= FLAG_PENALTY;
        }
        if !greedy && p.temperature != 1.0 {
            flags |= FLAG_TEMPERATURE;
        }
        let top_k = if !greedy && p.top_k > 0 && p.top_k < self.vocab {
            p.top_k
        } else {
            0
        };
        // As the CPU sampler: the shortest decimal of top_p, 1 - it in f64, then f32.
        let top_p64: f64 = p.top_p.to_string().parse().unwrap_or(f64::from(p.top_p));
        let params = |level: u32| Params {
            n: self.vocab as u32,
            n_groups: self.n_groups,
            n_bias: self.n_bias,
            level,
            top_k: top_k as u32,
            flags,
            penalty: p.repetition_penalty,
            temperature: p.temperature,
            cut: (1.0 - top_p64) as f32,
            u,
            _pad: [0; 2],
        };
        let groups = grid(
            self.n_groups,
            rec.gpu.limits.max_compute_workgroups_per_dimension,
        );
        let key = |entry: &'static str, define: &'static str, wg: u32| {
            PipelineKey::new(ShaderFamily::Sample, entry)
                .flag(define)
                .value("WG", wg)
        };
        rec.dispatch(
            &key("process", "PROCESS", WG),
            &params(0),
            &[
                (1, &logits.buffer),
                (2, &self.bias),
                (3, &self.seen),
                (4, &self.scores),
                (5, &self.partials),
            ],
            groups,
        )?;
        rec.dispatch(
            &key("finish", "FINISH", WG),
            &params(0),
            &[
                (1, &self.partials),
                (2, &self.state),
                (3, &self.out),
                (4, next_ids),
                (5, &self.seen),
            ],
            [1, 1, 1],
        )?;
        if greedy {
            return Ok(());
        }
        let mut passes = Vec::new();
        if top_k > 0 {
            passes.push(false);
        }
        if p.top_p < 1.0 {
            passes.push(true);
        }
        for mass in passes {
            for level in 0..4 {
                let hist = key("hist", "HIST", WG);
                let select = key("select_digit", "SELECT", WG);
                let (hist, select) = if mass {
                    (hist.flag("MASS"), select.flag("MASS"))
                } else {
                    (hist, select)
                };
                rec.dispatch(
                    &hist,
                    &params(level),
                    &[(1, &self.scores), (2, &self.state), (3, &self.partials)],
                    groups,
                )?;
                rec.dispatch(
                    &select,
                    &params(level),
                    &[(1, &self.partials), (2, &self.state)],
                    [1, 1, 1],
                )?;
            }
        }
        rec.dispatch(
            &key("draw_mass", "DRAW_MASS", WG),
            &params(0),
            &[(1, &self.scores), (2, &self.state), (3, &self.partials)],
            groups,
        )?;
        rec.dispatch(
            &key("draw_pick", "DRAW_PICK", WG),
            &params(0),
            &[
                (1, &self.scores),
                (2, &self.state),
                (3, &self.partials),
                (4, &self.out),
                (5, next_ids),
                (6, &self.seen),
            ],
            [1, 1, 1],
        )
    }
}
