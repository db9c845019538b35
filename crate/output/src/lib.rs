//! Parsing of QoQ-Med outputs: the `<think>` reasoning, the boxes of the first ```json block and the
//! answer in the last `\boxed{}`.
//!
//! The extraction rules follow the released reward code (`examples/reward_function/medical.py` of
//! QoQ-Med) rather than an idealised grammar, because the rewards in `qoqmed-rl` must score a
//! response exactly as training did. `docs/drpo.md` lists the places where that code is quirky.

mod blocks;
mod labels;
mod literal;

pub use blocks::{fenced_blocks, first_json_block, format_block, last_boxed};
pub use labels::split_labels;
pub use literal::{Literal, LiteralError, parse_lenient};

use serde::Serialize;

/// What a response says, in the pieces the CLI prints and the rewards score.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Parsed {
    /// The reasoning inside `<think>...</think>` (to the end of the text if never closed), trimmed.
    pub think: Option<String>,
    /// The objects of the first ```json block that parses, as a list (see [`boxes_of`]).
    pub boxes: Vec<serde_json::Value>,
    /// The content of the last brace-balanced `\boxed{...}`, trimmed.
    pub answer: Option<String>,
}

/// Parse a model response. Never fails: missing pieces are `None` / empty.
pub fn parse(text: &str) -> Parsed {
    let boxes = load_first_json(text)
        .map(|value| boxes_of(&value).into_iter().map(Literal::to_json).collect())
        .unwrap_or_default();
    Parsed {
        think: think(text).map(str::to_owned),
        boxes,
        answer: last_boxed(text).map(str::to_owned),
    }
}

/// The reasoning between `<think>` and `</think>`, or from `<think>` to the end if it is unclosed.
pub fn think(text: &str) -> Option<&str> {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let start = text.find(OPEN)? + OPEN.len();
    let rest = &text[start..];
    let inner = match rest.find(CLOSE) {
        Some(end) => &rest[..end],
        None => rest,
    };
    Some(inner.trim())
}

/// The first fenced block that parses, strictly as JSON first and then leniently (a Python
/// literal with `'` read as `"`), as the released IoU reward does (`extract_json_from_response`).
pub fn load_first_json(text: &str) -> Option<Literal> {
    let blocks = fenced_blocks(text);
    blocks
        .iter()
        .find_map(|block| serde_json::from_str::<serde_json::Value>(block.trim()).ok())
        .map(|value| Literal::from_json(&value))
        .or_else(|| {
            blocks
                .iter()
                .find_map(|block| parse_lenient(&block.trim().replace('\'', "\"")).ok())
        })
}

/// The objects a parsed block describes: the dict items of a list, a single dict that has a
/// `bbox_2d`, or the dict items of `{"objects_of_interest": [...]}`; anything else gives none.
pub fn boxes_of(value: &Literal) -> Vec<&Literal> {
    match value {
        Literal::List(items) => items.iter().filter(|item| item.is_dict()).collect(),
        Literal::Dict(_) if value.get("bbox_2d").is_some() => vec![value],
        Literal::Dict(_) => match value.get("objects_of_interest") {
            // The released code iterates whatever sits there; only list-like values hold objects.
            Some(Literal::List(items) | Literal::Tuple(items)) => {
                items.iter().filter(|item| item.is_dict()).collect()
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
