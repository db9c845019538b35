//! The text side: tokenizer, chat template, and the prompt QoQ-Med was trained with.

mod template;
mod tokenizer;

pub use template::{ChatTemplate, QWEN2_5_VL_TEMPLATE, TemplateSource, expand_image_pads};
pub use tokenizer::{StreamDecoder, Tokenizer};

/// Special-token spellings the prompt builder writes into the text.
pub mod tokens {
    pub const IMAGE_PAD: &str = "<|image_pad|>";
    pub const VISION_START: &str = "<|vision_start|>";
    pub const VISION_END: &str = "<|vision_end|>";
    /// QoQ-Med-Omni's ECG placeholder; one ECG is exactly one such token.
    pub const TIME_SERIES_PAD: &str = "<|time_series_pad|>";
}

/// One item of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// An image worth `tokens` merged vision tokens: rendered as
    /// `<|vision_start|>` + `<|image_pad|>` x tokens + `<|vision_end|>`.
    Image {
        tokens: usize,
    },
    /// One ECG: `<|time_series_pad|>`.
    Ecg,
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: Vec<Content>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: Vec<Content>) -> Self {
        Message {
            role: role.into(),
            content,
        }
    }

    pub fn system(text: impl Into<String>) -> Self {
        Message::new("system", vec![Content::Text(text.into())])
    }
}

/// The instruction QoQ-Med appended to every training question (qoqmed-spec.md section 5;
/// the typo "od" is the model's training text and stays).
pub const QOQ_INSTRUCTION: &str = "You FIRST think about the reasoning process as an internal monologue and then provide the final answer.\nBefore analyzing medical images, you must identify and outline all objects of interest that are relevant to diagnosis in json format, with list od bounding box in a key called \"bbox_2d\" with the format [x1, y1, x2, y2]. The json should be wrapped in ```json ... ``` tags. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.";

/// Whether the QoQ-Med training instruction follows the question (`--instruction qoq|none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Instruction {
    #[default]
    Qoq,
    None,
}

impl std::str::FromStr for Instruction {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qoq" => Ok(Instruction::Qoq),
            "none" => Ok(Instruction::None),
            other => Err(crate::error::Error::Input(format!(
                "--instruction {other:?}: use `qoq` (the QoQ-Med training instruction) or `none`"
            ))),
        }
    }
}

/// The user's question followed by the instruction, joined with one space.
pub fn user_text(question: &str, instruction: Instruction) -> String {
    match instruction {
        Instruction::Qoq => format!("{question} {QOQ_INSTRUCTION}"),
        Instruction::None => question.to_string(),
    }
}

/// The user turn in QoQ-Med's training order: the images (tokens per image), the text, then
/// the ECGs.
pub fn user_message(images: &[usize], text: &str, ecgs: usize) -> Message {
    let mut content: Vec<Content> = images
        .iter()
        .map(|&tokens| Content::Image { tokens })
        .collect();
    content.push(Content::Text(text.to_string()));
    content.extend(std::iter::repeat_n(Content::Ecg, ecgs));
    Message::new("user", content)
}
