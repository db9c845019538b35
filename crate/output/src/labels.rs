//! Splitting a boxed answer into its label set.

/// Separators in the order the released `parse_conditions` tries them.
const SEPARATORS: [&str; 5] = [", ", " and ", " & ", ",", "&"];

/// The label set of an answer: `\boxed{` and every `}` are removed, then the text is split on the
/// FIRST separator of `", "`, `" and "`, `" & "`, `","`, `"&"` that occurs in it (only that one, as
/// the released code does: `"A, B and C"` gives `["A", "B and C"]`), and each part is trimmed.
/// Labels come back once each, in order of first appearance; comparisons are exact strings.
pub fn split_labels(answer: &str) -> Vec<String> {
    let text = answer.replace("\\boxed{", "").replace('}', "");
    let parts: Vec<&str> = match SEPARATORS.iter().find(|sep| text.contains(*sep)) {
        Some(sep) => text.split(sep).collect(),
        None => vec![text.as_str()],
    };
    let mut labels: Vec<String> = Vec::with_capacity(parts.len());
    for part in parts {
        let label = part.trim();
        if !labels.iter().any(|seen| seen == label) {
            labels.push(label.to_owned());
        }
    }
    labels
}
