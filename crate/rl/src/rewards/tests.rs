//! Worked examples, one per branch of the spec (section 6, "Rewards") and of the released code.

use super::*;

const EPS: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EPS
}

const GOOD: &str = "<think>Opacity in the left lower lobe.</think>\n```json\n[{\"bbox_2d\": [0, 0, 10, 10], \"label\": \"opacity\"}]\n```\n\\boxed{Pneumonia, Effusion}";

#[test]
fn f1_of_label_sets() {
    assert!(close(
        label_f1("\\boxed{Pneumonia, Effusion}", "Pneumonia, Effusion"),
        1.0
    ));
    assert!(close(
        label_f1("\\boxed{Effusion, Pneumonia}", "Pneumonia, Effusion"),
        1.0
    ));
    assert!(close(
        label_f1("\\boxed{Pneumonia}", "Pneumonia, Effusion"),
        2.0 / 3.0
    ));
    assert!(close(label_f1("\\boxed{A, B, C}", "A"), 0.5));
    assert!(close(label_f1("\\boxed{A and B}", "A, B"), 1.0));
    assert!(close(label_f1("\\boxed{A & B}", "A,B"), 1.0));
    assert!(close(
        label_f1("first \\boxed{X} then \\boxed{A}", "A"),
        1.0
    ));
    // Exact strings: case and wording matter.
    assert!(close(label_f1("\\boxed{pneumonia}", "Pneumonia"), 0.0));
    assert!(close(label_f1("\\boxed{X}", "A"), 0.0));
}

#[test]
fn f1_of_malformed_answers_is_zero() {
    assert!(close(label_f1("the answer is A", "A"), 0.0));
    assert!(close(label_f1("\\boxed{A", "A"), 0.0));
    assert!(close(label_f1("\\boxed{A} \\boxed{A", "A"), 0.0));
    assert!(close(label_f1("\\boxed{None}", "None"), 0.0));
    assert!(close(label_f1("\\boxed{}", "A"), 0.0));
    // Only the first separator splits: "B and C" stays one (wrong) label.
    assert!(close(
        label_f1("\\boxed{A, B and C}", "A, B, C"),
        2.0 * 0.5 * (1.0 / 3.0) / (0.5 + 1.0 / 3.0)
    ));
}

#[test]
fn format_score_branches() {
    assert!(close(format_score(GOOD), 1.0));
    assert!(close(format_score("plain text \\boxed{A}"), 0.0));
    // No fence line: the whole response is the block (released `parse_json`).
    assert!(close(
        format_score("[{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}]"),
        0.7
    ));
    // A bare fence and a dict: fence, parse, not a list.
    assert!(close(
        format_score("```\n{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}\n```"),
        0.4
    ));
    // Lenient fallback (single quotes) counts 0.1; one of two items valid.
    let lenient = "```json\n[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}, {'bbox_2d': [1, 2, 3], 'label': 'b'}]\n```";
    assert!(close(
        format_score(lenient),
        0.2 + 0.1 + 0.1 + 0.1 + 0.4 * 0.5
    ));
    // Truncated JSON: only the fence points.
    assert!(close(
        format_score("```json\n[{\"bbox_2d\": [1, 2\n```"),
        0.3
    ));
    assert!(close(format_score("```json\n[]\n```"), 0.6));
    // An empty block stops after the fence points.
    assert!(close(format_score("```json\n```"), 0.3));
    // A tuple bbox is not a list; a missing label or non-numeric coordinate is invalid.
    assert!(close(
        format_score("```json\n[{'bbox_2d': (1, 2, 3, 4), 'label': 'a'}]\n```"),
        0.5
    ));
    assert!(close(
        format_score(
            "```json\n[{\"bbox_2d\": [1, 2, 3, 4]}, {\"bbox_2d\": [\"1\", 2, 3, 4], \"label\": \"x\"}]\n```"
        ),
        0.6
    ));
    // Booleans pass Python's isinstance(x, int).
    assert!(close(
        format_score("```json\n[{\"bbox_2d\": [true, 0, 1, 1], \"label\": \"a\"}]\n```"),
        1.0
    ));
    // A non-object item counts in the denominator.
    assert!(close(
        format_score("```json\n[{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}, 3]\n```"),
        0.8
    ));
}

#[test]
fn length_score_counts_characters() {
    assert!(close(length_score(""), 0.0));
    assert!(close(length_score(&"a".repeat(600)), 0.6));
    assert!(close(length_score(&"a".repeat(601)), 1.0));
    assert!(close(length_score(&"é".repeat(300)), 0.3));
}

fn boxes(json: &str) -> String {
    format!("```json\n{json}\n```")
}

#[test]
fn iou_against_a_box() {
    let gt = Region {
        mask: None,
        bbox: Some([5.0, 5.0, 15.0, 15.0]),
    };
    let one = boxes(r#"[{"bbox_2d": [0, 0, 10, 10], "label": "a"}]"#);
    assert!(close(iou_score(&one, gt, IouReduce::Mean), 25.0 / 175.0));
    let exact = Region {
        mask: None,
        bbox: Some([0.0, 0.0, 10.0, 10.0]),
    };
    let two = boxes(r#"[{"bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": [20, 20, 30, 30]}]"#);
    assert!(close(iou_score(&two, exact, IouReduce::Mean), 0.5));
    assert!(close(iou_score(&two, exact, IouReduce::Max), 1.0));
    // A short box scores 0 but counts in the mean.
    let short = boxes(r#"[{"bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": [0, 0, 10]}]"#);
    assert!(close(iou_score(&short, exact, IouReduce::Mean), 0.5));
    // Raw coordinates against a box: an inverted box does not overlap.
    let inverted = boxes(r#"[{"bbox_2d": [10, 10, 0, 0]}]"#);
    assert!(close(iou_score(&inverted, exact, IouReduce::Mean), 0.0));
    // A non-numeric coordinate raises in Python outside the per-box try: the whole term is 0.
    let text = boxes(r#"[{"bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": ["a", 0, 10, 10]}]"#);
    assert!(close(iou_score(&text, exact, IouReduce::Mean), 0.0));
    // Dict and objects_of_interest forms.
    let dict = boxes(r#"{"bbox_2d": [0, 0, 10, 10], "label": "a"}"#);
    assert!(close(iou_score(&dict, exact, IouReduce::Mean), 1.0));
    let wrapped =
        boxes(r#"{"objects_of_interest": [{"bbox_2d": [0, 0, 10, 10]}, {"label": "no box"}]}"#);
    assert!(close(iou_score(&wrapped, exact, IouReduce::Mean), 1.0));
    // A bare number as bbox_2d is wrapped, has length 1, scores 0.
    assert!(close(
        iou_score(&boxes(r#"{"bbox_2d": 5}"#), exact, IouReduce::Mean),
        0.0
    ));
}

#[test]
fn iou_without_boxes_or_truth_is_zero() {
    let exact = Region {
        mask: None,
        bbox: Some([0.0, 0.0, 10.0, 10.0]),
    };
    assert!(close(
        iou_score("no json here", exact, IouReduce::Mean),
        0.0
    ));
    assert!(close(iou_score(&boxes("[]"), exact, IouReduce::Mean), 0.0));
    assert!(close(
        iou_score(&boxes(r#"[{"label": "a"}]"#), exact, IouReduce::Mean),
        0.0
    ));
    assert!(close(
        iou_score(&boxes("[{\"bbox_2d\": [0, 0,"), exact, IouReduce::Mean),
        0.0
    ));
    assert!(close(
        iou_score(GOOD, Region::default(), IouReduce::Mean),
        0.0
    ));
}

/// 10x10 mask, foreground x in 2..=4, y in 2..=4 (9 pixels).
fn square_mask() -> Mask {
    let pixels = (0..100)
        .map(|i| (2..=4).contains(&(i % 10)) && (2..=4).contains(&(i / 10)))
        .collect();
    Mask::new(10, 10, pixels).expect("100 pixels")
}

#[test]
fn iou_against_a_mask_rasterises_inclusively() {
    let mask = square_mask();
    let region = Region {
        mask: Some(&mask),
        bbox: None,
    };
    let iou = |json: &str| iou_score(&boxes(json), region, IouReduce::Mean);
    assert!(close(iou(r#"[{"bbox_2d": [2, 2, 4, 4]}]"#), 1.0));
    // Inverted boxes are swapped, floats truncated, negatives clipped to 0.
    assert!(close(iou(r#"[{"bbox_2d": [4, 4, 2, 2]}]"#), 1.0));
    assert!(close(
        iou(r#"[{"bbox_2d": [-5, -5, 4.9, 4.9]}]"#),
        9.0 / 25.0
    ));
    // Clipped to the image: x, y in 2..=9.
    assert!(close(iou(r#"[{"bbox_2d": [2, 2, 100, 100]}]"#), 9.0 / 64.0));
    // A box that is a line after clipping is empty.
    assert!(close(iou(r#"[{"bbox_2d": [2, 2, 2, 9]}]"#), 0.0));
    // A bad coordinate only zeroes its own box here (caught per box), strings of digits convert.
    assert!(close(
        iou(r#"[{"bbox_2d": [2, 2, 4, 4]}, {"bbox_2d": ["x", 2, 4, 4]}]"#),
        0.5
    ));
    assert!(close(iou(r#"[{"bbox_2d": ["2", "2", " 4 ", "4"]}]"#), 1.0));
    // A number where a box should be raises outside the try: everything is 0.
    assert!(close(
        iou(r#"[{"bbox_2d": [2, 2, 4, 4]}, {"bbox_2d": 7}]"#),
        0.0
    ));
    // Max over boxes.
    let two = boxes(r#"[{"bbox_2d": [2, 2, 4, 4]}, {"bbox_2d": [6, 6, 8, 8]}]"#);
    assert!(close(iou_score(&two, region, IouReduce::Max), 1.0));
    assert!(close(iou_score(&two, region, IouReduce::Mean), 0.5));
}

#[test]
fn empty_mask_falls_back_to_the_box() {
    let empty = Mask::new(10, 10, vec![false; 100]).expect("100 pixels");
    let json = boxes(r#"[{"bbox_2d": [0, 0, 10, 10]}]"#);
    let with_box = Region {
        mask: Some(&empty),
        bbox: Some([0.0, 0.0, 10.0, 10.0]),
    };
    assert!(close(iou_score(&json, with_box, IouReduce::Mean), 1.0));
    let without = Region {
        mask: Some(&empty),
        bbox: None,
    };
    assert!(close(iou_score(&json, without, IouReduce::Mean), 0.0));
}

#[test]
fn png_masks_decode_and_bad_ones_are_errors() {
    let mut img = image::GrayImage::new(10, 10);
    for y in 2..=4 {
        for x in 2..=4 {
            img.put_pixel(x, y, image::Luma([1]));
        }
    }
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    let mask = Mask::from_png(&png).expect("decode");
    assert_eq!(mask, square_mask());
    assert!(matches!(
        Mask::from_png(b"not a png"),
        Err(crate::RewardError::MaskDecode(_))
    ));
    assert!(matches!(
        Mask::new(3, 3, vec![true; 8]),
        Err(crate::RewardError::MaskSize { .. })
    ));
}

#[test]
fn weighted_sum_with_the_presets() {
    let truth = Region {
        mask: None,
        bbox: Some([0.0, 0.0, 20.0, 10.0]),
    };
    let code = score(GOOD, "Pneumonia", truth, &Weights::code());
    let len = GOOD.chars().count() as f64 * 0.001;
    assert!(close(code.accuracy, 2.0 / 3.0));
    assert!(close(code.iou, 0.5));
    assert!(close(code.format, 1.0));
    assert!(close(code.length, len));
    assert!(close(
        code.overall,
        0.5 * 2.0 / 3.0 + 0.3 * 0.5 + 0.1 + 0.1 * len
    ));
    let paper = score(GOOD, "Pneumonia", truth, &Weights::paper());
    assert!(close(paper.overall, 0.6 * 2.0 / 3.0 + 0.2 * 0.5 + 0.2));
    assert_eq!(Weights::preset("paper"), Some(Weights::paper()));
    assert_eq!(Weights::preset("code"), Some(Weights::default()));
    assert_eq!(Weights::preset("other"), None);
}
