//! The model's chat template (Jinja), rendered with minijinja configured as transformers
//! configures jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods).
//!
//! The template comes from chat_template.json (`{"chat_template": ...}`, what the processor of a
//! vision model reads), chat_template.jinja (transformers 5), or tokenizer_config.json's
//! `chat_template` (a string, or a list of named templates); Qwen2.5-VL's template is the fallback.

use minijinja::{Environment, ErrorKind, Value};
use serde::Deserialize;

use super::{Content, Message, tokens};
use crate::error::{Error, Result};

/// Qwen2.5-VL-Instruct's chat template, as shipped in its chat_template.json.
pub const QWEN2_5_VL_TEMPLATE: &str = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Where the template in use came from (reported by the CLI, checked by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    ChatTemplateFile,
    TokenizerConfig,
    Qwen25VlDefault,
}

pub struct ChatTemplate {
    env: Environment<'static>,
    source: TemplateSource,
    /// `bos_token`, `eos_token`, ... from tokenizer_config.json, which templates may use.
    special_tokens: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct ChatTemplateJson {
    chat_template: String,
}

/// tokenizer_config.json's `chat_template`: one string, or `[{name, template}]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ConfigTemplate {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// A special token in tokenizer_config.json: a string or an AddedToken object.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Plain(String),
    Added { content: String },
}

#[derive(Deserialize)]
struct TokenizerConfigJson {
    chat_template: Option<ConfigTemplate>,
    bos_token: Option<SpecialToken>,
    eos_token: Option<SpecialToken>,
    pad_token: Option<SpecialToken>,
    unk_token: Option<SpecialToken>,
}

fn template_from_chat_template_file(bytes: &[u8]) -> Result<String> {
    match serde_json::from_slice::<ChatTemplateJson>(bytes) {
        Ok(json) => Ok(json.chat_template),
        // A JSON document without `chat_template` is a broken chat_template.json; anything else
        // is the raw Jinja of chat_template.jinja.
        Err(e) if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() => {
            Err(Error::Template(format!(
                "chat_template.json has no string `chat_template`: {e}"
            )))
        }
        Err(_) => String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Template("chat_template.jinja is not UTF-8 text".into())),
    }
}

impl ChatTemplate {
    /// Picks the template: chat_template.json / .jinja, then tokenizer_config.json, then the
    /// Qwen2.5-VL default.
    pub fn from_files(
        chat_template_json: Option<&[u8]>,
        tokenizer_config_json: Option<&[u8]>,
    ) -> Result<Self> {
        let tokenizer_config = tokenizer_config_json
            .map(|bytes| {
                serde_json::from_slice::<TokenizerConfigJson>(bytes).map_err(|e| {
                    Error::format(
                        "tokenizer_config.json",
                        format!("not a tokenizer config: {e}"),
                    )
                })
            })
            .transpose()?;
        let from_config = match tokenizer_config
            .as_ref()
            .and_then(|c| c.chat_template.as_ref())
        {
            None => None,
            Some(ConfigTemplate::One(t)) => Some(t.clone()),
            Some(ConfigTemplate::Named(list)) => {
                let default = list.iter().find(|t| t.name == "default").ok_or_else(|| {
                    Error::Template(format!(
                        "tokenizer_config.json lists chat templates {:?} but none named \
                         \"default\"",
                        list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
                    ))
                })?;
                Some(default.template.clone())
            }
        };
        let (source, kind) = match (chat_template_json, from_config) {
            (Some(bytes), _) => (
                template_from_chat_template_file(bytes)?,
                TemplateSource::ChatTemplateFile,
            ),
            (None, Some(t)) => (t, TemplateSource::TokenizerConfig),
            (None, None) => (
                QWEN2_5_VL_TEMPLATE.to_string(),
                TemplateSource::Qwen25VlDefault,
            ),
        };
        let mut special_tokens = Vec::new();
        if let Some(config) = tokenizer_config {
            for (key, token) in [
                ("bos_token", config.bos_token),
                ("eos_token", config.eos_token),
                ("pad_token", config.pad_token),
                ("unk_token", config.unk_token),
            ] {
                match token {
                    Some(SpecialToken::Plain(s)) | Some(SpecialToken::Added { content: s }) => {
                        special_tokens.push((key.to_string(), s))
                    }
                    None => {}
                }
            }
        }
        Self::from_source(source, kind, special_tokens)
    }

    /// A template from its Jinja source.
    pub fn from_jinja(source: &str) -> Result<Self> {
        Self::from_source(
            source.to_string(),
            TemplateSource::ChatTemplateFile,
            Vec::new(),
        )
    }

    fn from_source(
        source: String,
        kind: TemplateSource,
        special_tokens: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        // jinja2 settings of transformers' `_compile_jinja_template`.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat_template", source)
            .map_err(|e| Error::Template(format!("the chat template does not parse: {e:#}")))?;
        Ok(ChatTemplate {
            env,
            source: kind,
            special_tokens,
        })
    }

    pub fn source(&self) -> TemplateSource {
        self.source
    }

    /// The template's output for `messages`, one `<|image_pad|>` per image, as transformers'
    /// `apply_chat_template` returns it before the processor expands the image placeholders.
    /// An ECG goes to the template as `{"type": "time-series"}` (QoQ-Med-Omni's processor renders
    /// it as `<|time_series_pad|>`); a template without that branch drops the item, and then the
    /// token is written as text where the ECG is. Either way the output of a conversation with
    /// ECGs must hold exactly one `<|time_series_pad|>` per ECG.
    pub fn render_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let ecgs = messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|c| matches!(c, Content::Ecg))
            .count();
        let pad = tokens::TIME_SERIES_PAD;
        let mut text = self.render_as(messages, add_generation_prompt, EcgForm::Item)?;
        if ecgs > 0 && !text.contains(pad) {
            text = self.render_as(messages, add_generation_prompt, EcgForm::Text)?;
        }
        let found = text.matches(pad).count();
        if ecgs > 0 && found != ecgs {
            return Err(Error::Template(format!(
                "the chat template wrote {found} {pad} for {ecgs} ECG(s): the template takes fewer \
                 ECGs per prompt than were given (ask about one ECG at a time), or the question \
                 itself contains {pad}"
            )));
        }
        Ok(text)
    }

    fn render_as(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        ecg: EcgForm,
    ) -> Result<String> {
        let template = self
            .env
            .get_template("chat_template")
            .map_err(|e| Error::Template(e.to_string()))?;
        let messages: Vec<serde_json::Value> =
            messages.iter().map(|m| message_json(m, ecg)).collect();
        let mut context: serde_json::Map<String, serde_json::Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        context.insert("messages".into(), messages.into());
        context.insert("add_generation_prompt".into(), add_generation_prompt.into());
        context.insert("add_vision_id".into(), false.into());
        template
            .render(Value::from_serialize(&context))
            .map_err(|e| Error::Template(format!("rendering failed: {e:#}")))
    }

    /// The prompt text to tokenize: the template's output with the k-th `<|image_pad|>` expanded
    /// to the k-th image's token count, as the Qwen2.5-VL processor does.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let text = self.render_template(messages, add_generation_prompt)?;
        let counts: Vec<usize> = messages
            .iter()
            .flat_map(|m| &m.content)
            .filter_map(|c| match c {
                Content::Image { tokens } => Some(*tokens),
                _ => None,
            })
            .collect();
        expand_image_pads(&text, &counts)
    }
}

/// How an ECG reaches the template.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EcgForm {
    /// `{"type": "time-series"}`, the item QoQ-Med-Omni's template renders.
    Item,
    /// Its `<|time_series_pad|>` token written as text, for templates without that branch.
    Text,
}

/// One message as the template sees it: text-only content becomes one string (what text
/// templates expect), otherwise a list of `{"type": "image"}` / `{"type": "time-series"}` /
/// `{"type": "text", "text": ...}`.
fn message_json(message: &Message, ecg: EcgForm) -> serde_json::Value {
    let text_of = |c: &Content| match c {
        Content::Text(t) => Some(t.clone()),
        Content::Ecg if ecg == EcgForm::Text => Some(tokens::TIME_SERIES_PAD.to_string()),
        Content::Ecg | Content::Image { .. } => None,
    };
    let content = if message.content.iter().all(|c| text_of(c).is_some()) {
        serde_json::Value::String(message.content.iter().filter_map(text_of).collect())
    } else {
        message
            .content
            .iter()
            .map(|c| match (c, text_of(c)) {
                (_, Some(text)) => serde_json::json!({"type": "text", "text": text}),
                (Content::Ecg, None) => serde_json::json!({"type": "time-series"}),
                _ => serde_json::json!({"type": "image"}),
            })
            .collect()
    };
    serde_json::json!({"role": message.role, "content": content})
}

/// Replaces the k-th `<|image_pad|>` with `counts[k]` of them; the number of placeholders must
/// equal the number of images.
pub fn expand_image_pads(text: &str, counts: &[usize]) -> Result<String> {
    let pad = tokens::IMAGE_PAD;
    let found = text.matches(pad).count();
    if found != counts.len() {
        return Err(Error::Template(format!(
            "the chat template wrote {found} {pad} placeholders for {} images; the template \
             does not place images as Qwen2.5-VL expects (or the text itself contains {pad})",
            counts.len()
        )));
    }
    if let Some(k) = counts.iter().position(|&n| n == 0) {
        return Err(Error::Input(format!(
            "image {} has 0 tokens; every image has at least one",
            k + 1
        )));
    }
    let mut out = String::with_capacity(text.len() + counts.iter().sum::<usize>() * pad.len());
    let mut pieces = text.split(pad);
    out.push_str(pieces.next().unwrap_or_default());
    for (piece, &n) in pieces.zip(counts) {
        for _ in 0..n {
            out.push_str(pad);
        }
        out.push_str(piece);
    }
    Ok(out)
}
