//! One request through the model: prompt, encoders, prefill, streamed decode, parsed answer.

use qoqmed_engine::chat::{Message, user_message, user_text};
use qoqmed_engine::generate::{GenerateOptions, generate};
use qoqmed_engine::model::rope;
use web_time::Instant;

use crate::answer::{Answer, Timings};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::request::Request;

/// Where a request is, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The prompt is being processed; the first token follows.
    Prefill,
    /// New tokens are being generated one step at a time.
    Decode,
}

/// What [`run`] reports while it works.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Phase(Phase),
    /// A new token; `text` is the piece of answer text it completes (None while a multi-byte
    /// character or a special token is pending).
    Token {
        id: u32,
        text: Option<&'a str>,
    },
    /// Answer text that completes no new token: the stream's tail once generation ends.
    Text(&'a str),
}

/// Answers `req`. `on_event` sees phases and every new token as soon as it is known; returning
/// false stops generation after the current step (stop reason `cancelled`).
pub async fn run(
    model: &Model,
    req: &Request,
    on_event: &mut dyn FnMut(Event) -> bool,
) -> Result<Answer> {
    let t0 = Instant::now();
    if !req.images.is_empty() {
        return Err(Error::Request(
            "images are not supported yet: the vision tower is not wired into the request path \
             (`qoqmed preprocess` already prepares images)"
                .into(),
        ));
    }
    if !req.ecgs.is_empty() {
        return Err(Error::Request(
            "ECGs are not supported yet: the ECG encoder is not wired into the request path \
             (`qoqmed preprocess` already prepares ECGs)"
                .into(),
        ));
    }

    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(user_message(
        &[],
        &user_text(&req.prompt, req.instruction),
        0,
    ));
    let rendered = model.template.render(&messages, true)?;
    let prompt = model.tokenizer.encode(&rendered)?;
    let (positions, rope_delta) = rope::prompt_positions(&prompt, model.config.image_token_id, &[])
        .map_err(Error::Request)?;

    let mut sampling = model.generation.sampling_params(req.seed);
    if let Some(t) = req.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = req.top_p {
        sampling.top_p = p;
    }
    if let Some(k) = req.top_k {
        sampling.top_k = k;
    }
    if let Some(r) = req.repetition_penalty {
        sampling.repetition_penalty = r;
    }
    let eos = model.eos_token_ids().to_vec();
    let opts = GenerateOptions {
        max_new_tokens: req.max_new_tokens,
        sampling,
        eos_token_ids: eos.clone(),
        // QoQ-Med never lets a text answer emit an image placeholder.
        logit_bias: vec![(model.config.image_token_id, -100.0)],
        max_context: req.max_context,
        prefill_chunk: req.prefill_chunk,
        ..GenerateOptions::default()
    };

    let mut stream = model.tokenizer.stream(true);
    let mut first_token_s = None;
    let mut keep_going = on_event(Event::Phase(Phase::Prefill));
    let out = generate(
        &model.gpu,
        &model.text,
        &prompt,
        &positions,
        rope_delta,
        &opts,
        &mut |id| {
            if first_token_s.is_none() {
                first_token_s = Some(t0.elapsed().as_secs_f64());
                keep_going &= on_event(Event::Phase(Phase::Decode));
            }
            let piece = stream.push(id);
            keep_going &= on_event(Event::Token {
                id,
                text: piece.as_deref(),
            });
            keep_going
        },
    )
    .await?;
    if let Some(rest) = stream.finish() {
        on_event(Event::Text(&rest));
    }

    let answer_ids: Vec<u32> = out
        .token_ids
        .iter()
        .copied()
        .filter(|id| !eos.contains(id))
        .collect();
    let text = model.tokenizer.decode(&answer_ids, true)?;
    let parsed = qoqmed_output::parse(&text);
    let (prefill_tokens_per_s, decode_tokens_per_s) =
        (out.prefill_tokens_per_s(), out.decode_tokens_per_s());
    Ok(Answer {
        prompt_tokens: out.prompt_tokens,
        token_ids: out.token_ids,
        text,
        think: parsed.think,
        answer: parsed.answer,
        boxes: parsed.boxes,
        stop_reason: out.stop,
        timings: Timings {
            load_s: model.load_s,
            prefill_tokens_per_s,
            decode_tokens_per_s,
            time_to_first_token_s: first_token_s.unwrap_or_default(),
        },
        adapter: model.gpu.adapter.to_string(),
    })
}
