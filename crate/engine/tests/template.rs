//! Chat-template rendering against transformers' jinja2 output
//! (tests/fixtures/template/expected.json, written by tools/fixtures/template_reference.py), from
//! each place a template can come from, and the QoQ-Med prompt pieces.

use qoqmed_engine::chat::{
    ChatTemplate, Content, Instruction, Message, QOQ_INSTRUCTION, QWEN2_5_VL_TEMPLATE,
    TemplateSource, expand_image_pads, user_message, user_text,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&fixture("template/expected.json")).unwrap()
}

/// The Hugging Face message form of the fixture as our Message values.
fn to_messages(json: &serde_json::Value) -> Vec<Message> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = match &m["content"] {
                serde_json::Value::String(s) => vec![Content::Text(s.clone())],
                items => items
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| match item["type"].as_str().unwrap() {
                        "image" => Content::Image { tokens: 1 },
                        _ if item["text"] == "<|time_series_pad|>" => Content::Ecg,
                        _ => Content::Text(item["text"].as_str().unwrap().to_string()),
                    })
                    .collect(),
            };
            Message::new(m["role"].as_str().unwrap(), content)
        })
        .collect()
}

fn templates() -> Vec<(&'static str, ChatTemplate)> {
    let chat_json = fixture("models/tiny-small-vocab-nested/chat_template.json");
    let tok_config = fixture("models/tiny-small-vocab/tokenizer_config.json");
    let nested_tok_config = fixture("models/tiny-small-vocab-nested/tokenizer_config.json");
    let from_file = ChatTemplate::from_files(Some(&chat_json), Some(&nested_tok_config)).unwrap();
    assert_eq!(from_file.source(), TemplateSource::ChatTemplateFile);
    let from_config = ChatTemplate::from_files(None, Some(&tok_config)).unwrap();
    assert_eq!(from_config.source(), TemplateSource::TokenizerConfig);
    let fallback = ChatTemplate::from_files(None, Some(&nested_tok_config)).unwrap();
    assert_eq!(fallback.source(), TemplateSource::Qwen25VlDefault);
    vec![
        ("chat_template.json", from_file),
        ("tokenizer_config.json", from_config),
        ("fallback", fallback),
    ]
}

#[test]
fn every_source_renders_exactly_as_transformers() {
    let reference = reference();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (source, template) in templates() {
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let messages = to_messages(&case["messages"]);
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let got = template.render_template(&messages, add).unwrap();
            assert_eq!(got, case["rendered"].as_str().unwrap(), "{source}: {name}");
        }
    }
}

#[test]
fn system_and_user_image_text_is_the_qwen_prompt() {
    let expected = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
                    <|vision_start|><|image_pad|><|vision_end|>Describe this ECG.<|im_end|>\n\
                    <|im_start|>assistant\n";
    let messages = [
        Message::system("You are a helpful assistant."),
        user_message(&[1], "Describe this ECG.", 0),
    ];
    for (source, template) in templates() {
        assert_eq!(
            template.render(&messages, true).unwrap(),
            expected,
            "{source}"
        );
    }
}

#[test]
fn image_pads_expand_per_image_in_order() {
    let template = ChatTemplate::from_files(None, None).unwrap();
    let messages = [user_message(&[3, 5], "Compare.", 1)];
    let text = template.render(&messages, true).unwrap();
    let pad = "<|image_pad|>";
    let expected_user = format!(
        "<|im_start|>user\n<|vision_start|>{}<|vision_end|><|vision_start|>{}<|vision_end|>Compare.<|time_series_pad|><|im_end|>\n",
        pad.repeat(3),
        pad.repeat(5)
    );
    assert!(text.contains(&expected_user), "{text}");
    assert_eq!(text.matches(pad).count(), 8);

    let err = expand_image_pads("<|image_pad|> and <|image_pad|>", &[4])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 <|image_pad|> placeholders for 1 images"),
        "{err}"
    );
    assert!(expand_image_pads("<|image_pad|>", &[0]).is_err());
    assert_eq!(
        expand_image_pads("a<|image_pad|>b", &[2]).unwrap(),
        "a<|image_pad|><|image_pad|>b"
    );
}

#[test]
fn qoq_instruction_is_the_training_text() {
    let reference = reference();
    assert_eq!(
        QOQ_INSTRUCTION,
        reference["qoq_instruction"].as_str().unwrap()
    );
    assert!(QOQ_INSTRUCTION.starts_with("You FIRST think about the reasoning process"));
    assert!(QOQ_INSTRUCTION.contains("with list od bounding box in a key called \"bbox_2d\""));
    assert!(QOQ_INSTRUCTION.contains("wrapped in ```json ... ``` tags"));
    assert!(QOQ_INSTRUCTION.ends_with("The final answer MUST BE put in \\boxed{}."));
    assert_eq!(QOQ_INSTRUCTION.matches('\n').count(), 1);
    assert!(QOQ_INSTRUCTION.contains("final answer.\nBefore analyzing"));

    assert_eq!(
        user_text("What is the rhythm?", Instruction::None),
        "What is the rhythm?"
    );
    assert_eq!(
        user_text("What is the rhythm?", Instruction::Qoq),
        format!("What is the rhythm? {QOQ_INSTRUCTION}")
    );
    assert_eq!("qoq".parse::<Instruction>().unwrap(), Instruction::Qoq);
    assert_eq!("none".parse::<Instruction>().unwrap(), Instruction::None);
    assert!(
        "QoQ-Med"
            .parse::<Instruction>()
            .unwrap_err()
            .to_string()
            .contains("--instruction")
    );
    assert_eq!(Instruction::default(), Instruction::Qoq);
}

#[test]
fn user_message_keeps_training_order() {
    let m = user_message(&[10, 20], "Q", 2);
    assert_eq!(m.role, "user");
    assert_eq!(
        m.content,
        vec![
            Content::Image { tokens: 10 },
            Content::Image { tokens: 20 },
            Content::Text("Q".into()),
            Content::Ecg,
            Content::Ecg
        ]
    );
}

#[test]
fn other_template_conventions() {
    // transformers 5's chat_template.jinja (raw Jinja instead of JSON).
    let t = ChatTemplate::from_files(Some(QWEN2_5_VL_TEMPLATE.as_bytes()), None).unwrap();
    assert_eq!(t.source(), TemplateSource::ChatTemplateFile);
    let plain = ChatTemplate::from_files(None, None).unwrap();
    let m = [user_message(&[2], "hi", 0)];
    assert_eq!(t.render(&m, true).unwrap(), plain.render(&m, true).unwrap());

    // tokenizer_config.json with named templates and AddedToken-style special tokens.
    let config = serde_json::json!({
        "eos_token": {"content": "<|im_end|>", "special": true},
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ eos_token }}|{% for m in messages %}{{ m.role }}:{{ m.content | trim }};{% endfor %}"}
        ]
    });
    let t = ChatTemplate::from_files(None, Some(config.to_string().as_bytes())).unwrap();
    let out = t
        .render(
            &[Message::system("  x  "), user_message(&[], "y", 0)],
            false,
        )
        .unwrap();
    assert_eq!(out, "<|im_end|>|system:x;user:y;");

    let config = serde_json::json!({"chat_template": [{"name": "rag", "template": "x"}]});
    let err = ChatTemplate::from_files(None, Some(config.to_string().as_bytes()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"default\""), "{err}");

    // Python string methods (pycompat) and raise_exception work as in transformers.
    let t = ChatTemplate::from_jinja("{{ messages[0].content.strip().upper() }}").unwrap();
    assert_eq!(t.render(&[Message::system(" ok ")], false).unwrap(), "OK");
    let t = ChatTemplate::from_jinja("{{ raise_exception('roles must alternate') }}").unwrap();
    let err = t
        .render(&[Message::system("x")], false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("roles must alternate"), "{err}");
}

#[test]
fn broken_templates_are_clear_errors() {
    let err = ChatTemplate::from_jinja("{% for m in messages %}")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("chat template") && err.contains("does not parse"),
        "{err}"
    );
    let err = ChatTemplate::from_files(Some(br#"{"template": "x"}"#), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chat_template.json"), "{err}");
    let err = ChatTemplate::from_files(None, Some(b"{broken"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer_config.json"), "{err}");
}
