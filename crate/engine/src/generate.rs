//! The one generation loop, native and web: chunked prefill, then one command buffer per decode
//! step. Async throughout, so the browser's event loop is never blocked.
//!
//! By default the next token is chosen on the GPU ([`GpuSampler`]) and written straight into the
//! next step's input, so step t+1 is encoded and submitted while step t runs and only 8 bytes
//! per token come back (the id and a non-finite flag). An eos is therefore noticed one step late
//! and that extra step is discarded. One [`Recorder`] serves the whole session: bind groups are
//! built by the first step and reused. With `keep_logits` (parity tests, scoring) every step's
//! logits come back and the CPU sampler picks instead, one step at a time.

use std::collections::VecDeque;

use web_time::Instant;

use crate::error::{Error, Result};
use crate::gpu::ops::sample::GpuSampler;
use crate::gpu::{Gpu, Recorder, Tensor, map_read, map_read_with, staging_buffer};
use crate::kv_cache::KvFormat;
use crate::model::rope::{self, Position};
use crate::model::{Injection, Logits, Session, TextModel};
use crate::sampler::{Sampler, SamplingParams};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub eos_token_ids: Vec<u32>,
    /// Added to the logits before sampling (QoQ-Med biases `<|image_pad|>` by -100).
    pub logit_bias: Vec<(u32, f32)>,
    /// KV cache rows to preallocate (prompt + new tokens).
    pub max_context: usize,
    /// Prompt tokens per prefill submission; bounds activation memory for long prompts.
    pub prefill_chunk: usize,
    /// Keep each step's raw logits in the result (parity tests, scoring). Samples on the CPU.
    pub keep_logits: bool,
    /// Sample on the GPU and overlap steps (the default); false samples on the CPU.
    pub gpu_sampling: bool,
    /// Storage of the KV cache (f32 by default; f16 halves its memory).
    pub kv_format: KvFormat,
    /// Feature rows replacing prompt embeddings (image features, the ECG vector), contract 5.
    pub inject: Vec<Injection>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            sampling: SamplingParams::default(),
            eos_token_ids: Vec::new(),
            logit_bias: Vec::new(),
            max_context: 4096,
            prefill_chunk: 512,
            keep_logits: false,
            gpu_sampling: true,
            kv_format: KvFormat::F32,
            inject: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// New tokens, the eos included when it stopped on one.
    pub token_ids: Vec<u32>,
    pub step_logits: Vec<Vec<f32>>,
    pub stop: StopReason,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Bind groups built during decoding after the first decode step (0 when they are reused).
    pub bind_groups_after_first_step: usize,
}

impl Generation {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_s.max(1e-9)
    }
    /// Decode steps per second: the first new token comes from the prefill, the rest one step each.
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.token_ids.len().saturating_sub(1) as f64 / self.decode_s.max(1e-9)
    }
}

/// Generates from `prompt` (ids) at `positions` (M-RoPE, see [`rope::prompt_positions`]).
/// `on_token` sees each new id as soon as it is known and returns false to stop.
pub async fn generate(
    gpu: &Gpu,
    model: &TextModel,
    prompt: &[u32],
    positions: &[Position],
    rope_delta: i64,
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generation> {
    let first = Recorder::new(gpu);
    generate_after(first, model, prompt, positions, rope_delta, opts, on_token).await
}

/// [`generate`] with `first` (work already recorded, e.g. the ECG encoder whose output
/// `opts.inject` reads) submitted in the same command buffer as the first prefill chunk.
pub async fn generate_after(
    first: Recorder<'_>,
    model: &TextModel,
    prompt: &[u32],
    positions: &[Position],
    rope_delta: i64,
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generation> {
    let gpu = first.gpu;
    opts.sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    if positions.len() != prompt.len() {
        return Err(Error::Input(format!(
            "{} prompt tokens with {} positions",
            prompt.len(),
            positions.len()
        )));
    }
    if prompt.len() >= opts.max_context {
        return Err(Error::Input(format!(
            "the prompt has {} tokens but --max-context is {}; raise it",
            prompt.len(),
            opts.max_context
        )));
    }
    let mut out = Generation {
        prompt_tokens: prompt.len(),
        token_ids: Vec::new(),
        step_logits: Vec::new(),
        stop: StopReason::MaxTokens,
        prefill_s: 0.0,
        decode_s: 0.0,
        bind_groups_after_first_step: 0,
    };
    if opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let mut session = Session::with_kv_format(gpu, &model.cfg, opts.max_context, opts.kv_format)?;
    let mut loop_ = Loop {
        gpu,
        model,
        positions,
        rope_delta,
        opts,
        session: &mut session,
        // The first prefill chunk is recorded after `first`'s work, into its command buffer.
        rec: first.with_cache(),
        sampler: Sampler::new(opts.sampling),
        prompt,
    };
    if opts.keep_logits || !opts.gpu_sampling {
        loop_.run_cpu(&mut out, on_token).await?;
    } else {
        loop_.run_gpu(&mut out, on_token).await?;
    }
    Ok(out)
}

struct Loop<'a, 'g> {
    gpu: &'g Gpu,
    model: &'a TextModel,
    positions: &'a [Position],
    rope_delta: i64,
    opts: &'a GenerateOptions,
    session: &'a mut Session,
    rec: Recorder<'g>,
    sampler: Sampler,
    prompt: &'a [u32],
}

/// What happened to a new token.
enum Next {
    Continue,
    Stop(StopReason),
}

impl Loop<'_, '_> {
    /// Records the prompt in chunks; the last chunk's recording is left open for the caller to
    /// add its readout. Returns the logits of the last prompt token.
    fn record_prefill(&mut self) -> Result<Tensor> {
        let n = self.prompt.len();
        let chunk = self.opts.prefill_chunk.max(1);
        let mut start = 0;
        loop {
            let end = (start + chunk).min(n);
            let logits = self.model.forward_injected(
                &mut self.rec,
                self.session,
                &self.prompt[start..end],
                &self.positions[start..end],
                Logits::Last,
                None,
                &self.opts.inject,
            )?;
            if end == n {
                return Ok(logits);
            }
            self.rec.submit_and_reset()?;
            start = end;
        }
    }

    /// Bookkeeping for a new token: the callback, eos, and the token budget.
    fn accept(
        &self,
        out: &mut Generation,
        token: u32,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Next {
        out.token_ids.push(token);
        if !on_token(token) {
            return Next::Stop(StopReason::Cancelled);
        }
        if self.opts.eos_token_ids.contains(&token) {
            return Next::Stop(StopReason::Eos);
        }
        if out.token_ids.len() >= self.opts.max_new_tokens {
            return Next::Stop(StopReason::MaxTokens);
        }
        Next::Continue
    }

    /// GPU sampling with step t+1 in flight while step t's id comes back.
    async fn run_gpu(
        &mut self,
        out: &mut Generation,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<()> {
        let gpu = self.gpu;
        let model = self.model;
        let cfg = &model.cfg;
        let sampler = GpuSampler::new(
            gpu,
            cfg.vocab_size,
            &self.opts.sampling,
            &self.opts.logit_bias,
        )?;
        sampler.set_history(gpu, self.prompt);
        // The decode step's input ids: the sampler writes each chosen id there.
        let next_ids = self.session.ids_buffer(gpu, cfg, 1)?;
        let staging = [staging_buffer(gpu, 8), staging_buffer(gpu, 8)];
        let mut in_flight: VecDeque<(wgpu::SubmissionIndex, usize)> = VecDeque::new();

        let t0 = Instant::now();
        let logits = self.record_prefill()?;
        let u = self.uniform(&sampler);
        sampler.record(&mut self.rec, &logits, u, &next_ids)?;
        self.rec.copy(&sampler.out, 0, &staging[0], 0, 8);
        in_flight.push_back((self.rec.submit_and_reset()?, 0));
        let mut submitted = 1;
        let mut created_after_first = None;
        let mut t1 = Instant::now();
        loop {
            // Encode and submit the next step before waiting for this one.
            if submitted < self.opts.max_new_tokens && self.session.kv.remaining() > 0 {
                let pos = rope::text_positions(self.session.kv.len, 1, self.rope_delta);
                let logits = self.model.forward_gpu_ids(
                    &mut self.rec,
                    self.session,
                    1,
                    &pos,
                    Logits::Last,
                    None,
                )?;
                let u = self.uniform(&sampler);
                sampler.record(&mut self.rec, &logits, u, &next_ids)?;
                let slot = submitted % 2;
                self.rec.copy(&sampler.out, 0, &staging[slot], 0, 8);
                in_flight.push_back((self.rec.submit_and_reset()?, slot));
                submitted += 1;
                if submitted == 2 {
                    created_after_first = self.rec.cache().map(|c| c.created);
                }
            }
            let Some((index, slot)) = in_flight.pop_front() else {
                out.stop = StopReason::ContextFull;
                break;
            };
            let [token, bad] = read_words(gpu, &staging[slot], index).await?;
            if bad != 0 {
                return Err(Error::Gpu(
                    "a logit is not finite: the weights or a kernel are broken".into(),
                ));
            }
            if out.token_ids.is_empty() {
                out.prefill_s = t0.elapsed().as_secs_f64();
                t1 = Instant::now();
            }
            if let Next::Stop(reason) = self.accept(out, token, on_token) {
                out.stop = reason;
                break;
            }
        }
        out.decode_s = t1.elapsed().as_secs_f64();
        if let (Some(first), Some(cache)) = (created_after_first, self.rec.cache()) {
            out.bind_groups_after_first_step = cache.created - first;
        }
        Ok(())
    }

    fn uniform(&mut self, sampler: &GpuSampler) -> f32 {
        if sampler.draws() {
            self.sampler.next_uniform() as f32
        } else {
            0.0
        }
    }

    /// CPU sampling: every step's logits row comes back; one step at a time.
    async fn run_cpu(
        &mut self,
        out: &mut Generation,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<()> {
        let gpu = self.gpu;
        let vocab = self.model.cfg.vocab_size;
        let staging = staging_buffer(gpu, vocab as u64 * 4);
        let mut history = self.prompt.to_vec();
        let t0 = Instant::now();
        let mut logits = self.record_prefill()?;
        let mut t1 = Instant::now();
        loop {
            self.rec
                .copy(&logits.buffer, 0, &staging, 0, vocab as u64 * 4);
            self.rec.submit_and_reset()?;
            let token = self.take_cpu(&staging, &history, out).await?;
            if out.token_ids.is_empty() {
                out.prefill_s = t0.elapsed().as_secs_f64();
                t1 = Instant::now();
            }
            history.push(token);
            if let Next::Stop(reason) = self.accept(out, token, on_token) {
                out.stop = reason;
                break;
            }
            if self.session.kv.remaining() == 0 {
                out.stop = StopReason::ContextFull;
                break;
            }
            let pos = rope::text_positions(self.session.kv.len, 1, self.rope_delta);
            logits = self.model.forward(
                &mut self.rec,
                self.session,
                &[token],
                &pos,
                Logits::Last,
                None,
            )?;
        }
        out.decode_s = t1.elapsed().as_secs_f64();
        Ok(())
    }

    /// Reads a logits row back and picks the next token with the CPU sampler.
    async fn take_cpu(
        &mut self,
        staging: &wgpu::Buffer,
        history: &[u32],
        out: &mut Generation,
    ) -> Result<u32> {
        let vocab = self.model.cfg.vocab_size;
        let bytes = map_read(self.gpu, staging).await?;
        let raw: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..vocab * 4]);
        if let Some(i) = raw.iter().position(|v| !v.is_finite()) {
            return Err(Error::Gpu(format!(
                "logit {i} is {} (non-finite): the weights or a kernel are broken",
                raw[i]
            )));
        }
        // The sampler edits its input; copy only when the raw row must also be kept.
        if self.opts.keep_logits {
            out.step_logits.push(raw.clone());
        }
        let mut logits = raw;
        for &(id, bias) in &self.opts.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        Ok(self.sampler.sample(&mut logits, history))
    }
}

/// The two words (token id, non-finite flag) of a staging buffer once submission `index` (which
/// filled it) has finished, without waiting for later submissions: the next step keeps running.
async fn read_words(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    index: wgpu::SubmissionIndex,
) -> Result<[u32; 2]> {
    map_read_with(gpu, staging, Some(index), |bytes| {
        let w: &[u32] = bytemuck::cast_slice(&bytes[..8]);
        [w[0], w[1]]
    })
    .await
}
