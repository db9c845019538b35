//! The real Qwen2.5 tokenizer (tests/fixtures/models/tiny-qwen-vocab/tokenizer.json, converted
//! from dashscope's qwen.tiktoken) against ids from the Python `tokenizers` library and
//! reference-data.md, plus the streaming detokenizer.

use std::sync::OnceLock;

use qoqmed_engine::chat::{ChatTemplate, Tokenizer, user_message};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn qwen() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let bytes =
            std::fs::read(format!("{FIXTURES}/models/tiny-qwen-vocab/tokenizer.json")).unwrap();
        Tokenizer::from_bytes(&bytes).unwrap()
    })
}

#[test]
fn known_strings_from_reference_data() {
    let t = qwen();
    assert_eq!(t.encode("Hello world").unwrap(), vec![9707, 1879]);
    assert_eq!(t.encode(" Hello world").unwrap(), vec![21927, 1879]);
    assert_eq!(
        t.encode("<|im_start|>hello<|im_end|>").unwrap(),
        vec![151644, 14990, 151645]
    );
    assert_eq!(t.encode("").unwrap(), Vec::<u32>::new());
}

#[test]
fn special_tokens_and_vocab_size() {
    let t = qwen();
    for (token, id) in [
        ("<|endoftext|>", 151643),
        ("<|im_start|>", 151644),
        ("<|im_end|>", 151645),
        ("<|vision_start|>", 151652),
        ("<|vision_end|>", 151653),
        ("<|image_pad|>", 151655),
        ("<|video_pad|>", 151656),
    ] {
        assert_eq!(t.token_id(token), Some(id), "{token}");
        assert_eq!(t.id_to_token(id).as_deref(), Some(token));
    }
    assert_eq!(
        t.token_id("<|time_series_pad|>"),
        None,
        "only QoQ-Med-Omni's tokenizer adds it"
    );
    assert_eq!(
        t.vocab_size(),
        151_665,
        "151,643 BPE tokens + 22 special tokens"
    );
}

#[test]
fn default_chat_prompt_with_one_image() {
    let template = ChatTemplate::from_files(None, None).unwrap();
    let messages = [user_message(&[4], "Describe this ECG.", 0)];
    let text = template.render_template(&messages, true).unwrap();
    let ids = qwen().encode(&text).unwrap();
    let expected: Vec<u32> = vec![
        151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 151652,
        151655, 151653, 74785, 419, 468, 8798, 13, 151645, 198, 151644, 77091, 198,
    ];
    assert_eq!(ids, expected);
    // After expansion the single pad becomes the image's 4 tokens, nothing else changes.
    let expanded = qwen()
        .encode(&template.render(&messages, true).unwrap())
        .unwrap();
    let mut want = expected[..15].to_vec();
    want.extend([151655; 4]);
    want.extend(&expected[16..]);
    assert_eq!(expanded, want);
}

#[test]
fn every_fixture_case_matches_python_tokenizers() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/tokenizer/cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "only {} cases", cases.len());
    let t = qwen();
    for case in cases {
        let input = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(t.encode(input).unwrap(), want, "encode({input:?})");
        let decoded = case["decoded"].as_str().unwrap();
        assert_eq!(
            t.decode(&want, false).unwrap(),
            decoded,
            "decode of {input:?}"
        );
    }
}

#[test]
fn decode_round_trips_and_skips_specials() {
    let t = qwen();
    let text = "<|im_start|>assistant\n<think>ok</think> \\boxed{AF}<|im_end|>";
    let ids = t.encode(text).unwrap();
    assert_eq!(t.decode(&ids, false).unwrap(), text);
    assert_eq!(
        t.decode(&ids, true).unwrap(),
        "assistant\n<think>ok</think> \\boxed{AF}"
    );
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = qwen();
    let text = "Hi 😀 你好, ECG 心电图 ✓ 🫀🩺";
    let ids = t.encode(text).unwrap();
    // The test is only meaningful if some token ends inside a UTF-8 character.
    let split = ids
        .iter()
        .filter(|&&id| t.decode(&[id], false).unwrap().contains('\u{FFFD}'))
        .count();
    assert!(split >= 2, "no token splits a character in {ids:?}");
    let mut stream = t.stream(false);
    let mut pieces = Vec::new();
    let mut held = 0;
    for &id in &ids {
        match stream.push(id) {
            Some(piece) => {
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "emitted a broken character: {piece:?}"
                );
                pieces.push(piece);
            }
            None => held += 1,
        }
    }
    assert!(held >= 1, "nothing was held back");
    assert_eq!(
        stream.finish(),
        None,
        "text left over after complete characters"
    );
    assert_eq!(pieces.concat(), text);
    assert_eq!(stream.ids(), ids.as_slice());

    // An incomplete character at the end comes out of finish() as U+FFFD.
    let heart = t.encode(" 心").unwrap();
    assert!(
        heart.len() >= 2,
        "expected \" 心\" to take several byte tokens: {heart:?}"
    );
    let mut stream = t.stream(false);
    assert_eq!(stream.push(heart[0]), None);
    assert_eq!(stream.finish().as_deref(), Some(" \u{FFFD}"));

    // Skipping specials while streaming.
    let ids = t.encode("ok<|im_end|>").unwrap();
    let mut stream = t.stream(true);
    let out: String = ids.iter().filter_map(|&id| stream.push(id)).collect();
    assert_eq!(out, "ok");
}

#[test]
fn small_vocab_fixture_tokenizer() {
    let bytes =
        std::fs::read(format!("{FIXTURES}/models/tiny-small-vocab/tokenizer.json")).unwrap();
    let t = Tokenizer::from_bytes(&bytes).unwrap();
    assert_eq!(t.vocab_size(), 2048);
    let config = std::fs::read(format!("{FIXTURES}/models/tiny-small-vocab/config.json")).unwrap();
    let config = qoqmed_engine::config::ModelConfig::from_json(&config).unwrap();
    assert_eq!(t.token_id("<|image_pad|>"), Some(config.image_token_id));
    assert_eq!(
        t.token_id("<|vision_start|>"),
        Some(config.vision_start_token_id)
    );
    assert_eq!(
        t.token_id("<|vision_end|>"),
        Some(config.vision_end_token_id)
    );
    assert_eq!(
        t.token_id("<|im_end|>"),
        config.eos_token_ids.first().copied()
    );
    let ids = t.encode("<|im_start|>user\nhi<|im_end|>").unwrap();
    assert_eq!(ids.first().copied(), t.token_id("<|im_start|>"));
    assert_eq!(
        t.decode(&ids, false).unwrap(),
        "<|im_start|>user\nhi<|im_end|>"
    );
}

#[test]
fn broken_tokenizer_json_is_a_clear_error() {
    for bad in [&b"{}"[..], b"not json", b""] {
        let msg = Tokenizer::from_bytes(bad)
            .err()
            .expect("accepted")
            .to_string();
        assert!(msg.contains("tokenizer.json"), "{msg}");
    }
}
