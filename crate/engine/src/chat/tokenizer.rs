//! tokenizer.json of the model folder, through the `tokenizers` crate (the reference
//! implementation's own Rust core), plus an incremental detokenizer for streaming output.

use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
}

impl Tokenizer {
    /// Parses the bytes of a Hugging Face tokenizer.json.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| {
            Error::Tokenizer(format!(
                "tokenizer.json could not be read ({e}); it must be a Hugging Face `tokenizers` \
                 file, as the model folder ships it"
            ))
        })?;
        Ok(Tokenizer {
            inner: Arc::new(inner),
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`, `<|image_pad|>`)
    /// become their ids; nothing (no BOS) is added, as the chat template already wrote them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops special tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(format!("decoding {} ids failed: {e}", ids.len())))
    }

    /// The id of a token written out (`"<|im_end|>"`), including added tokens.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token text of an id (`151645` -> `"<|im_end|>"`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer knows, added tokens included (151665 for Qwen2.5-VL; the
    /// model's embedding table may be larger).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A streaming detokenizer over this tokenizer.
    pub fn stream(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder::new(self, skip_special)
    }
}

/// Turns generated ids into text as they arrive. A byte-level token may hold only part of a
/// UTF-8 character (emoji, CJK); its text is held back until the character is complete, so every
/// returned piece is valid text and the pieces concatenate to the full decode.
pub struct StreamDecoder {
    tokenizer: Arc<tokenizers::Tokenizer>,
    skip_special: bool,
    /// Ids still needed to decode the next piece: context before the prefix, the prefix, the rest.
    window: Vec<u32>,
    /// Text of `window[..prefix_index]`, already returned, trimmed off the next decode.
    prefix: String,
    prefix_index: usize,
    /// Every id pushed, for [`finish`](Self::finish) and callers that want the whole text.
    all: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn new(tokenizer: &Tokenizer, skip_special: bool) -> Self {
        StreamDecoder {
            tokenizer: tokenizer.inner.clone(),
            skip_special,
            window: Vec::new(),
            prefix: String::new(),
            prefix_index: 0,
            all: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.all.push(id);
        match tokenizers::step_decode_stream(
            &self.tokenizer,
            vec![id],
            self.skip_special,
            &mut self.window,
            &mut self.prefix,
            &mut self.prefix_index,
        ) {
            Ok(Some(text)) => {
                self.emitted += text.len();
                Some(text)
            }
            Ok(None) => None,
            Err(e) => {
                // The incremental state is inconsistent (a decoder that rewrites earlier text);
                // restart from the full decode so nothing is lost or repeated.
                log::warn!("stream decoding of id {id} failed ({e}); resynchronising");
                self.resync()
            }
        }
    }

    /// Text held back at the end (an incomplete character shows as U+FFFD), if any.
    pub fn finish(&mut self) -> Option<String> {
        let full = self.tokenizer.decode(&self.all, self.skip_special).ok()?;
        let rest = full.get(self.emitted..)?.to_string();
        self.emitted = full.len();
        (!rest.is_empty()).then_some(rest)
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.all
    }

    fn resync(&mut self) -> Option<String> {
        let full = self.tokenizer.decode(&self.all, self.skip_special).ok()?;
        self.window = self.all.clone();
        self.prefix_index = self.window.len();
        self.prefix = full.clone();
        let rest = full.get(self.emitted..)?.to_string();
        self.emitted = full.len();
        (!rest.is_empty()).then_some(rest)
    }
}
