//! The one generation loop, native and web: chunked prefill, then one command buffer per decode
//! step; only the token id (greedy) or the last row of logits (sampling) comes back. Async
//! throughout, so the browser's event loop is never blocked.

use web_time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder, Tensor, map_read, ops, staging_buffer};
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
    /// Keep each step's raw logits in the result (parity tests, scoring).
    pub keep_logits: bool,
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

/// Where a step's result goes: the GPU argmax's id, or the logits row for the CPU sampler.
struct Readout {
    argmax: wgpu::Buffer,         // (1) u32 storage
    id_staging: wgpu::Buffer,     // (1) u32, mappable
    logits_staging: wgpu::Buffer, // (vocab) f32, mappable
    vocab: usize,
    gpu_argmax: bool,
}

impl Readout {
    fn record(&self, rec: &mut Recorder, logits: &Tensor) -> Result<()> {
        if self.gpu_argmax {
            ops::argmax(rec, logits, 0, &self.argmax)?;
            rec.copy(&self.argmax, 0, &self.id_staging, 0, 4);
        } else {
            rec.copy(
                &logits.buffer,
                0,
                &self.logits_staging,
                0,
                self.vocab as u64 * 4,
            );
        }
        Ok(())
    }

    /// Waits for the step and picks the next token.
    async fn take(
        &self,
        gpu: &Gpu,
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        history: &[u32],
    ) -> Result<(u32, Option<Vec<f32>>)> {
        if self.gpu_argmax {
            let bytes = map_read(gpu, &self.id_staging).await?;
            let id = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            return Ok((id, None));
        }
        let bytes = map_read(gpu, &self.logits_staging).await?;
        let raw: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..self.vocab * 4]);
        if let Some(i) = raw.iter().position(|v| !v.is_finite()) {
            return Err(Error::Gpu(format!(
                "logit {i} is {} (non-finite): the weights or a kernel are broken",
                raw[i]
            )));
        }
        // The sampler edits its input; copy only when the raw row must also be kept.
        let kept = opts.keep_logits.then(|| raw.clone());
        let mut logits = raw;
        for &(id, bias) in &opts.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        let id = sampler.sample(&mut logits, history);
        Ok((id, kept))
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
    let mut first = Some(first);
    opts.sampling.validate()?;
    if prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    if prompt.len() >= opts.max_context {
        return Err(Error::Input(format!(
            "the prompt has {} tokens but --max-context is {}; raise it",
            prompt.len(),
            opts.max_context
        )));
    }
    let vocab = model.cfg.vocab_size;
    let mut sampler = Sampler::new(opts.sampling);
    let storage = |size| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("argmax"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let readout = Readout {
        argmax: storage(4),
        id_staging: staging_buffer(gpu, 4),
        logits_staging: staging_buffer(gpu, vocab as u64 * 4),
        vocab,
        gpu_argmax: !sampler.needs_logits() && opts.logit_bias.is_empty() && !opts.keep_logits,
    };
    let mut session = Session::new(gpu, &model.cfg, opts.max_context)?;
    let mut history = prompt.to_vec();
    let mut out = Generation {
        prompt_tokens: prompt.len(),
        token_ids: Vec::new(),
        step_logits: Vec::new(),
        stop: StopReason::MaxTokens,
        prefill_s: 0.0,
        decode_s: 0.0,
    };
    if opts.max_new_tokens == 0 {
        return Ok(out);
    }

    let t0 = Instant::now();
    let chunk = opts.prefill_chunk.max(1);
    let mut start = 0;
    while start < prompt.len() {
        let end = (start + chunk).min(prompt.len());
        let mut rec = first.take().unwrap_or_else(|| Recorder::new(gpu));
        let logits = model.forward_injected(
            &mut rec,
            &mut session,
            &prompt[start..end],
            &positions[start..end],
            Logits::Last,
            None,
            &opts.inject,
        )?;
        if end == prompt.len() {
            readout.record(&mut rec, &logits)?;
        }
        rec.submit()?;
        start = end;
    }
    let (mut token, raw) = readout.take(gpu, &mut sampler, opts, &history).await?;
    out.prefill_s = t0.elapsed().as_secs_f64();
    out.step_logits.extend(raw);

    let t1 = Instant::now();
    loop {
        out.token_ids.push(token);
        history.push(token);
        if !on_token(token) {
            out.stop = StopReason::Cancelled;
            break;
        }
        if opts.eos_token_ids.contains(&token) {
            out.stop = StopReason::Eos;
            break;
        }
        if out.token_ids.len() >= opts.max_new_tokens {
            out.stop = StopReason::MaxTokens;
            break;
        }
        if session.kv.remaining() == 0 {
            out.stop = StopReason::ContextFull;
            break;
        }
        let pos = rope::text_positions(session.kv.len, 1, rope_delta);
        let mut rec = Recorder::new(gpu);
        let logits = model.forward(&mut rec, &mut session, &[token], &pos, Logits::Last, None)?;
        readout.record(&mut rec, &logits)?;
        rec.submit()?;
        let (next, raw) = readout.take(gpu, &mut sampler, opts, &history).await?;
        out.step_logits.extend(raw);
        token = next;
    }
    out.decode_s = t1.elapsed().as_secs_f64();
    Ok(out)
}
