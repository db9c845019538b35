use super::*;
use serde_json::json;

const GOOD: &str = "<think>The left lower lobe is opaque.</think>\n```json\n[\n  {\"bbox_2d\": [10, 20, 110, 220], \"label\": \"opacity\"}\n]\n```\nThe answer is \\boxed{Pneumonia, Effusion}.";

#[test]
fn parses_a_well_formed_answer() {
    let parsed = parse(GOOD);
    assert_eq!(
        parsed.think.as_deref(),
        Some("The left lower lobe is opaque.")
    );
    assert_eq!(
        parsed.boxes,
        vec![json!({"bbox_2d": [10, 20, 110, 220], "label": "opacity"})]
    );
    assert_eq!(parsed.answer.as_deref(), Some("Pneumonia, Effusion"));
    let printed = serde_json::to_value(&parsed).expect("Parsed serialises");
    assert_eq!(printed["answer"], json!("Pneumonia, Effusion"));
}

#[test]
fn think_unclosed_runs_to_the_end_and_missing_is_none() {
    assert_eq!(think("<think> still going"), Some("still going"));
    assert_eq!(think("no reasoning"), None);
    assert_eq!(parse("").think, None);
}

#[test]
fn last_boxed_is_brace_balanced_and_takes_the_last() {
    assert_eq!(last_boxed("\\boxed{A} then \\boxed{B}"), Some("B"));
    assert_eq!(
        last_boxed("\\boxed{\\text{A}, {B}} tail"),
        Some("\\text{A}, {B}")
    );
    assert_eq!(last_boxed("\\boxed{  spaced  }"), Some("spaced"));
    assert_eq!(last_boxed("no box"), None);
    // The last \boxed{ is unclosed: nothing, even though an earlier one is closed (mathruler).
    assert_eq!(last_boxed("\\boxed{A} and \\boxed{B"), None);
    assert_eq!(last_boxed("\\boxed{}"), Some(""));
    assert_eq!(last_boxed("\\boxed{é, ü}"), Some("é, ü"));
}

#[test]
fn fenced_blocks_follow_the_reward_regex() {
    assert_eq!(
        fenced_blocks("```json\n[1]\n``` x ```\n{}\n```"),
        vec!["[1]\n", "{}\n"]
    );
    assert_eq!(fenced_blocks("```[1]```"), vec!["[1]"]);
    assert_eq!(fenced_blocks("```json [1]"), Vec::<&str>::new());
    assert_eq!(
        first_json_block("text ```json\n [2] \n``` more"),
        Some("[2]")
    );
    assert_eq!(first_json_block("no fence"), None);
    // The optional tag is exactly "json", so "```jsonc" leaves a "c".
    assert_eq!(first_json_block("```jsonc\n[]\n```"), Some("c\n[]"));
}

#[test]
fn format_block_is_line_based() {
    assert_eq!(format_block("a\n```json\n[1]\n```\nb"), "[1]\n");
    assert_eq!(format_block("a\n  ```  \n[2]\n```"), "[2]\n");
    // "```json" must be the whole line, unstripped: here the closing fence is taken as the opener.
    assert_eq!(format_block(" ```json\n[3]\n```"), "");
    assert_eq!(format_block(" ```json\n[3]"), " ```json\n[3]");
    assert_eq!(format_block("[4]"), "[4]");
    assert_eq!(format_block("```json\n[5]"), "[5]");
}

#[test]
fn boxes_accept_list_dict_and_objects_of_interest() {
    let list = parse("```json\n[{\"bbox_2d\": [1,2,3,4], \"label\": \"a\"}, 7, \"x\"]\n```");
    assert_eq!(
        list.boxes,
        vec![json!({"bbox_2d": [1, 2, 3, 4], "label": "a"})]
    );
    let dict = parse("```json\n{\"bbox_2d\": [1,2,3,4], \"label\": \"a\"}\n```");
    assert_eq!(dict.boxes.len(), 1);
    let wrapped = parse(
        "```json\n{\"objects_of_interest\": [{\"bbox_2d\": [0,0,5,5]}, {\"label\": \"b\"}]}\n```",
    );
    assert_eq!(
        wrapped.boxes,
        vec![json!({"bbox_2d": [0, 0, 5, 5]}), json!({"label": "b"})]
    );
    let other = parse("```json\n{\"findings\": []}\n```");
    assert!(other.boxes.is_empty());
}

#[test]
fn boxes_skip_unparsable_blocks_and_fall_back_to_lenient() {
    // The first block is prose, the second is JSON: the second is used.
    let two =
        parse("```\nnot json\n```\n```json\n[{\"bbox_2d\": [1,1,2,2], \"label\": \"c\"}]\n```");
    assert_eq!(two.boxes.len(), 1);
    // Single quotes and a trailing comma: only the lenient reader accepts it.
    let lenient = parse("```json\n[{'bbox_2d': [1, 1, 2, 2], 'label': 'c'},]\n```");
    assert_eq!(
        lenient.boxes,
        vec![json!({"bbox_2d": [1, 1, 2, 2], "label": "c"})]
    );
    // Truncated output: nothing parses, no boxes, no panic.
    assert!(parse("```json\n[{\"bbox_2d\": [1, 1,").boxes.is_empty());
    assert!(
        parse("```json\n[{\"bbox_2d\": [1, 1,\n```")
            .boxes
            .is_empty()
    );
}

#[test]
fn split_labels_uses_the_first_separator_found() {
    assert_eq!(
        split_labels("Pneumonia, Effusion"),
        vec!["Pneumonia", "Effusion"]
    );
    assert_eq!(split_labels("A and B"), vec!["A", "B"]);
    assert_eq!(split_labels("A & B"), vec!["A", "B"]);
    assert_eq!(split_labels("A,B"), vec!["A", "B"]);
    assert_eq!(split_labels("A&B"), vec!["A", "B"]);
    // Only the first separator in priority order is used, as the released code does.
    assert_eq!(split_labels("A, B and C"), vec!["A", "B and C"]);
    assert_eq!(split_labels(" No Finding "), vec!["No Finding"]);
    assert_eq!(split_labels("A, A"), vec!["A"]);
    assert_eq!(split_labels("A,"), vec!["A", ""]);
    assert_eq!(split_labels("\\boxed{A}, B}"), vec!["A", "B"]);
    assert_eq!(split_labels(""), vec![""]);
}

#[test]
fn lenient_reader_matches_literal_eval() {
    let ok = |s: &str| parse_lenient(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert_eq!(ok("\n[1]"), Literal::List(vec![Literal::Int(1)]));
    assert_eq!(
        ok("[1,\n2,]"),
        Literal::List(vec![Literal::Int(1), Literal::Int(2)])
    );
    assert_eq!(ok("[1] # note\n"), Literal::List(vec![Literal::Int(1)]));
    assert_eq!(ok("(1)"), Literal::Int(1));
    assert_eq!(ok("()"), Literal::Tuple(vec![]));
    assert_eq!(
        ok("1, 2"),
        Literal::Tuple(vec![Literal::Int(1), Literal::Int(2)])
    );
    assert_eq!(
        ok("{1, 2, 1}"),
        Literal::Set(vec![Literal::Int(1), Literal::Int(2)])
    );
    assert_eq!(ok("{}"), Literal::Dict(vec![]));
    assert_eq!(ok("1_0"), Literal::Int(10));
    assert_eq!(ok("0x1f"), Literal::Int(31));
    assert_eq!(ok("-(1)"), Literal::Int(-1));
    assert_eq!(ok("- 1.5e-3"), Literal::Float(-0.0015));
    assert_eq!(
        ok("[1.e3, .5]"),
        Literal::List(vec![Literal::Float(1000.0), Literal::Float(0.5)])
    );
    assert_eq!(ok("\"a\" \"b\""), Literal::Str("ab".into()));
    assert_eq!(ok("\"a\\qb\\n\\x41\""), Literal::Str("a\\qb\nA".into()));
    assert_eq!(
        ok("[True, False, None]"),
        Literal::List(vec![
            Literal::Bool(true),
            Literal::Bool(false),
            Literal::None
        ])
    );
    assert_eq!(ok("  [1]"), Literal::List(vec![Literal::Int(1)]));
    assert_eq!(
        ok("{\"a\": 1, \"a\": 2}"),
        Literal::Dict(vec![(Literal::Str("a".into()), Literal::Int(2))])
    );
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_lenient(&deep).is_err());
    assert!(parse(&format!("```json\n{deep}\n```")).boxes.is_empty());
    let nested = format!("{}1{}", "[".repeat(150), "]".repeat(150));
    assert!(parse_lenient(&nested).is_ok());
    for bad in [
        "\n  [1]", "1,\n2", "007", "+True", "--1", "{[1]: 2}", "true", "[1", "\"open", "1+2j", "",
        "[1] x",
    ] {
        assert!(parse_lenient(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn literal_json_round_trip() {
    let value = json!({"bbox_2d": [1, 2.5, -3, 4], "label": "a", "n": null, "ok": true});
    assert_eq!(Literal::from_json(&value).to_json(), value);
    assert_eq!(Literal::Tuple(vec![Literal::Int(1)]).to_json(), json!([1]));
}
