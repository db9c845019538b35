//! The format and length terms.

use qoqmed_output::{Literal, format_block, parse_lenient};

/// How well the response follows the box format, in [0, 1] (the released `evaluate_bbox_format`):
/// +0.2 it contains a fence, +0.1 a ```` ```json ```` fence, +0.2 the block parses as JSON (+0.1
/// only, via the lenient Python-literal reader with `'` read as `"`), +0.1 it is a list, and
/// +0.4 x the share of its items that are objects with a `label` and a `bbox_2d` of 4 numbers.
/// Without a fence line the whole response is tried as the block, as the released code does.
pub fn format_score(response: &str) -> f64 {
    let mut score = 0.0;
    if response.contains("```") {
        score += 0.2;
        if response.contains("```json") {
            score += 0.1;
        }
    }
    let block = format_block(response);
    if block.is_empty() {
        return score;
    }
    let parsed = match serde_json::from_str::<serde_json::Value>(&block) {
        Ok(value) => {
            score += 0.2;
            Literal::from_json(&value)
        }
        Err(_) => match parse_lenient(&block.replace('\'', "\"")) {
            Ok(value) => {
                score += 0.1;
                value
            }
            Err(_) => return score,
        },
    };
    let Literal::List(items) = parsed else {
        return score;
    };
    score += 0.1;
    if !items.is_empty() {
        let valid = items.iter().filter(|item| is_box_item(item)).count();
        score += 0.4 * (valid as f64 / items.len() as f64);
    }
    score
}

/// An object with a `label` and a `bbox_2d` that is a list (not a tuple) of exactly 4 numbers;
/// booleans count as numbers because Python's `isinstance(True, int)` holds.
fn is_box_item(item: &Literal) -> bool {
    if item.get("label").is_none() {
        return false;
    }
    match item.get("bbox_2d") {
        Some(Literal::List(coords)) => {
            coords.len() == 4 && coords.iter().all(|c| c.as_number().is_some())
        }
        _ => false,
    }
}

/// 1 when the response has more than 600 characters (Unicode scalar values, as Python's `len`),
/// else 0.001 per character.
pub fn length_score(response: &str) -> f64 {
    let chars = response.chars().count();
    if chars > 600 {
        1.0
    } else {
        chars as f64 * 0.001
    }
}
