//! The accuracy term: F1 between the predicted and the true label sets.

use qoqmed_output::{last_boxed, split_labels};

/// F1 of the label set in the response's last `\boxed{}` against the ground-truth labels (both split
/// by [`split_labels`]; exact string comparison). 0 when there is no closed `\boxed{}`, or when it
/// holds the literal text `None` (the released code cannot tell that from "no answer").
pub fn label_f1(response: &str, truth: &str) -> f64 {
    let Some(answer) = last_boxed(response) else {
        return 0.0;
    };
    if answer == "None" {
        return 0.0;
    }
    let predicted = split_labels(answer);
    let expected = split_labels(truth);
    let hits = predicted
        .iter()
        .filter(|label| expected.contains(label))
        .count() as f64;
    let precision = hits / predicted.len() as f64;
    let recall = hits / expected.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}
