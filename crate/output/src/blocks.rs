//! Locating the pieces of a response: fenced code blocks and the last `\boxed{}`.

const FENCE: &str = "```";
const BOXED: &str = "\\boxed{";

/// Content of the LAST `\boxed{`, up to its matching `}`, trimmed. `None` when there is no
/// `\boxed{` or the last one is never closed (an earlier closed one does not count: this is
/// mathruler's `extract_boxed_content`, which the released reward calls).
pub fn last_boxed(text: &str) -> Option<&str> {
    let start = text.rfind(BOXED)? + BOXED.len();
    let content = &text[start..];
    let mut depth = 0i64;
    for (i, ch) in content.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return Some(content[..i].trim());
                }
            }
            _ => {}
        }
    }
    None
}

/// Contents of the fenced blocks, as the regex ```` ```(?:json)?\s*([\s\S]*?)``` ```` finds them:
/// after an opening fence an optional `json` tag and whitespace are skipped, and the content runs
/// to the next fence. Blocks do not overlap.
pub fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut pos = 0;
    while let Some(found) = text[pos..].find(FENCE) {
        let open = pos + found + FENCE.len();
        let mut start = open;
        if text[start..].starts_with("json") {
            start += "json".len();
        }
        let after_tag = &text[start..];
        start += after_tag.len() - after_tag.trim_start().len();
        match text[start..].find(FENCE) {
            Some(len) => {
                blocks.push(&text[start..start + len]);
                pos = start + len + FENCE.len();
            }
            // No closing fence: nothing after this point can match either.
            None => break,
        }
    }
    blocks
}

/// The first fenced block's content, trimmed (see [`fenced_blocks`]).
pub fn first_json_block(text: &str) -> Option<&str> {
    fenced_blocks(text).first().map(|block| block.trim())
}

/// The text the format score tries to parse (the released `parse_json`): the lines after the first
/// line that is exactly ```` ```json ```` or is a bare fence once stripped, cut at the next fence;
/// the whole response when no such line exists.
pub fn format_block(text: &str) -> String {
    let lines = split_lines(text);
    for (i, line) in lines.iter().enumerate() {
        if *line == "```json" || line.trim() == FENCE {
            let rest = lines[i + 1..].join("\n");
            return match rest.find(FENCE) {
                Some(end) => rest[..end].to_owned(),
                None => rest,
            };
        }
    }
    text.to_owned()
}

/// Python's `str.splitlines()`: every line boundary Python knows, `\r\n` counted once, no trailing
/// empty line.
fn split_lines(text: &str) -> Vec<&str> {
    let is_break = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_break(c) {
            lines.push(&text[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' && text[next..].starts_with('\n') {
                chars.next();
                next += 1;
            }
            start = next;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn split_lines_matches_python() {
        assert_eq!(split_lines("a\r\nb\rc\n"), vec!["a", "b", "c"]);
        assert_eq!(split_lines("a\n\nb"), vec!["a", "", "b"]);
        assert!(split_lines("").is_empty());
        assert_eq!(split_lines("x\u{2028}y"), vec!["x", "y"]);
    }
}
