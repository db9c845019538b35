//! config.json in its three layouts, generation_config.json, and bad configs.

use qoqmed_engine::config::{GenerationConfig, ModelConfig};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{FIXTURES}/{path}");
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

fn parse(json: &serde_json::Value) -> qoqmed_engine::Result<ModelConfig> {
    ModelConfig::from_json(json.to_string().as_bytes())
}

fn err(json: &serde_json::Value) -> String {
    parse(json).expect_err("bad config accepted").to_string()
}

/// The published 7B config.json (flat), trimmed of keys the engine does not read.
fn flat_7b() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
        "image_token_id": 151655, "video_token_id": 151656,
        "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
        "max_position_embeddings": 128000, "model_type": "qwen2_5_vl",
        "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16", "vocab_size": 152064,
        "vision_config": {
            "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
            "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "temporal_patch_size": 2
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}
    })
}

/// The same model as transformers 5 writes it (nested).
fn nested_7b() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "dtype": "bfloat16", "image_token_id": 151655, "model_type": "qwen2_5_vl",
        "text_config": {
            "bos_token_id": 151643, "eos_token_id": 151645, "hidden_size": 3584,
            "intermediate_size": 18944, "max_position_embeddings": 128000,
            "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
            "rms_norm_eps": 1e-06, "vocab_size": 152064,
            "rope_parameters": {"mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "rope_type": "default"}
        },
        "tie_word_embeddings": false, "video_token_id": 151656,
        "vision_config": {
            "depth": 32, "fullatt_block_indexes": [7, 15, 23, 31], "hidden_size": 1280,
            "in_channels": 3, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
            "patch_size": 14, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "axial"},
            "spatial_merge_size": 2, "temporal_patch_size": 2, "tokens_per_second": 2,
            "window_size": 112
        },
        "vision_end_token_id": 151653, "vision_start_token_id": 151652
    })
}

#[test]
fn published_7b_values() {
    let c = parse(&flat_7b()).unwrap();
    let t = &c.text;
    assert_eq!(
        (
            t.vocab_size,
            t.hidden_size,
            t.intermediate_size,
            t.num_hidden_layers
        ),
        (152064, 3584, 18944, 28)
    );
    assert_eq!(
        (t.num_attention_heads, t.num_key_value_heads, t.head_dim),
        (28, 4, 128)
    );
    assert_eq!(t.mrope_section, vec![16, 24, 24]);
    assert_eq!(
        (t.rms_norm_eps, t.rope_theta, t.max_position_embeddings),
        (1e-6, 1e6, 128000)
    );
    assert!(!t.tie_word_embeddings);
    let v = c.vision.as_ref().unwrap();
    assert_eq!(
        (v.depth, v.hidden_size, v.intermediate_size, v.num_heads),
        (32, 1280, 3420, 16)
    );
    assert_eq!(
        (
            v.in_channels,
            v.patch_size,
            v.spatial_merge_size,
            v.temporal_patch_size
        ),
        (3, 14, 2, 2)
    );
    assert_eq!(
        (v.window_size, v.out_hidden_size, v.tokens_per_second),
        (112, 3584, 2.0)
    );
    assert_eq!(v.fullatt_block_indexes, vec![7, 15, 23, 31]);
    assert_eq!(
        (v.head_dim(), v.patch_dim(), v.rope_theta),
        (80, 1176, 10000.0)
    );
    assert_eq!(
        (
            c.image_token_id,
            c.video_token_id,
            c.vision_start_token_id,
            c.vision_end_token_id
        ),
        (151655, 151656, 151652, 151653)
    );
    assert_eq!(c.eos_token_ids, vec![151645]);
    assert_eq!(c.time_series_token_id, None);
    assert_eq!(
        c.architectures,
        vec!["Qwen2_5_VLForConditionalGeneration".to_string()]
    );
}

#[test]
fn flat_nested_and_mixed_agree() {
    let flat = parse(&flat_7b()).unwrap();
    assert_eq!(parse(&nested_7b()).unwrap(), flat);
    // Mixed: transformers 4.5x kept the top-level text keys and added text_config; text_config
    // wins where both are present.
    let mut mixed = flat_7b();
    mixed["text_config"] = nested_7b()["text_config"].clone();
    mixed["hidden_size"] = 999.into();
    assert_eq!(parse(&mixed).unwrap(), flat);
    // Mixed the other way: nested config with the flat rope_scaling spelling inside text_config.
    let mut mixed = nested_7b();
    let text = mixed["text_config"].as_object_mut().unwrap();
    text.remove("rope_parameters");
    text.insert(
        "rope_scaling".into(),
        serde_json::json!({"type": "mrope", "mrope_section": [16, 24, 24]}),
    );
    text.insert("rope_theta".into(), 1e6.into());
    assert_eq!(parse(&mixed).unwrap(), flat);
    // Rope keys split across levels: theta in text_config.rope_parameters, sections at the top.
    let mut mixed = nested_7b();
    mixed["text_config"]["rope_parameters"] =
        serde_json::json!({"rope_theta": 1000000.0, "rope_type": "default"});
    mixed["rope_scaling"] = serde_json::json!({"type": "mrope", "mrope_section": [16, 24, 24]});
    assert_eq!(parse(&mixed).unwrap(), flat);
}

#[test]
fn tiny_fixture_configs_agree() {
    let flat = ModelConfig::from_json(&fixture("models/tiny-small-vocab/config.json")).unwrap();
    let nested =
        ModelConfig::from_json(&fixture("models/tiny-small-vocab-nested/config.json")).unwrap();
    assert_eq!(flat, nested);
    let t = &flat.text;
    assert_eq!(
        (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.head_dim),
        (2048, 64, 2, 16)
    );
    assert_eq!(t.mrope_section, vec![2, 3, 3]);
    assert!(t.tie_word_embeddings);
    assert_eq!(flat.image_token_id, 2042);
    assert_eq!(flat.eos_token_ids, vec![2032]);
    let untied =
        ModelConfig::from_json(&fixture("models/tiny-small-vocab-untied/config.json")).unwrap();
    assert!(!untied.text.tie_word_embeddings);
}

#[test]
fn config_layout_fixtures_agree() {
    let dir = format!("{FIXTURES}/config-layouts");
    let expected: serde_json::Value =
        serde_json::from_slice(&fixture("config-layouts/expected.json")).expect("expected.json");
    let mut parsed = Vec::new();
    for layout in ["flat", "nested", "mixed"] {
        let bytes = std::fs::read(format!("{dir}/{layout}.json")).unwrap();
        parsed.push((
            layout,
            ModelConfig::from_json(&bytes).unwrap_or_else(|e| panic!("{layout}: {e}")),
        ));
    }
    for (layout, c) in &parsed {
        assert_eq!(c, &parsed[0].1, "{layout} differs from flat");
        check_expected(layout, c, &expected);
    }
}

/// Compares every value expected.json gives with the parsed config; keys the engine does not
/// keep (hidden_act, bos_token_id) are listed and skipped.
fn check_expected(layout: &str, c: &ModelConfig, expected: &serde_json::Value) {
    let t = &c.text;
    let v = c.vision.as_ref().expect("vision_config");
    let actual = serde_json::json!({
        "text": {
            "vocab_size": t.vocab_size, "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size, "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads, "num_key_value_heads": t.num_key_value_heads,
            "head_dim": t.head_dim, "rms_norm_eps": t.rms_norm_eps, "rope_theta": t.rope_theta,
            "mrope_section": t.mrope_section, "tie_word_embeddings": t.tie_word_embeddings,
            "eos_token_id": c.eos_token_ids.first(),
        },
        "vision": {
            "depth": v.depth, "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads, "head_dim": v.head_dim(), "out_hidden_size": v.out_hidden_size,
            "fullatt_block_indexes": v.fullatt_block_indexes, "window_size": v.window_size,
            "patch_size": v.patch_size, "temporal_patch_size": v.temporal_patch_size,
            "spatial_merge_size": v.spatial_merge_size, "in_channels": v.in_channels,
            "tokens_per_second": v.tokens_per_second, "rope_theta": v.rope_theta,
        },
        "tokens": {
            "image_token_id": c.image_token_id, "video_token_id": c.video_token_id,
            "vision_start_token_id": c.vision_start_token_id,
            "vision_end_token_id": c.vision_end_token_id,
        },
    });
    let not_kept = ["hidden_act", "bos_token_id"];
    let mut checked = 0;
    for section in ["text", "vision", "tokens"] {
        for (key, want) in expected[section].as_object().unwrap() {
            if not_kept.contains(&key.as_str()) {
                continue;
            }
            let got = &actual[section][key];
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(g), Some(w)) => (g - w).abs() <= w.abs() * 1e-6,
                _ => got == want,
            };
            assert!(
                same,
                "{layout}: {section}.{key} = {got}, expected.json says {want}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} values compared");
}

#[test]
fn head_dim_given_explicitly_wins() {
    let mut c = flat_7b();
    c["head_dim"] = 64.into();
    c["rope_scaling"]["mrope_section"] = serde_json::json!([8, 12, 12]);
    assert_eq!(parse(&c).unwrap().text.head_dim, 64);
}

#[test]
fn absent_optional_keys_take_transformers_defaults() {
    let mut c = nested_7b();
    let text = c["text_config"].as_object_mut().unwrap();
    for key in [
        "rms_norm_eps",
        "max_position_embeddings",
        "eos_token_id",
        "num_key_value_heads",
    ] {
        text.remove(key);
    }
    text["rope_parameters"]
        .as_object_mut()
        .unwrap()
        .remove("rope_theta");
    c.as_object_mut().unwrap().remove("tie_word_embeddings");
    c["time_series_token_id"] = 151665.into();
    let parsed = parse(&c).unwrap();
    assert_eq!(parsed.text.rms_norm_eps, 1e-5);
    assert_eq!(parsed.text.max_position_embeddings, 32768);
    assert_eq!(parsed.text.rope_theta, 1e6);
    assert_eq!(
        parsed.text.num_key_value_heads, 28,
        "absent kv heads = attention heads"
    );
    assert!(!parsed.text.tie_word_embeddings);
    assert_eq!(parsed.eos_token_ids, vec![151645]);
    assert_eq!(parsed.time_series_token_id, Some(151665));
    // A text-only config (no vision_config) is fine.
    c.as_object_mut().unwrap().remove("vision_config");
    assert!(parse(&c).unwrap().vision.is_none());
}

#[test]
fn pre_v5_tie_word_embeddings_inside_text_config_counts() {
    let mut c = nested_7b();
    c.as_object_mut().unwrap().remove("tie_word_embeddings");
    c["text_config"]["tie_word_embeddings"] = true.into();
    assert!(parse(&c).unwrap().text.tie_word_embeddings);
}

#[test]
fn missing_size_keys_are_named() {
    for key in [
        "hidden_size",
        "vocab_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
    ] {
        let mut c = flat_7b();
        c.as_object_mut().unwrap().remove(key);
        let e = err(&c);
        assert!(e.contains(key) && e.contains("missing"), "{key}: {e}");
    }
    let mut c = nested_7b();
    c["text_config"]
        .as_object_mut()
        .unwrap()
        .remove("hidden_size");
    let e = err(&c);
    assert!(
        e.contains("hidden_size") && e.contains("text_config"),
        "{e}"
    );
    let mut c = flat_7b();
    c["vision_config"].as_object_mut().unwrap().remove("depth");
    let e = err(&c);
    assert!(e.contains("depth") && e.contains("vision_config"), "{e}");
}

#[test]
fn inconsistent_configs_are_explained() {
    let mut c = flat_7b();
    c["num_key_value_heads"] = 5.into();
    let e = err(&c);
    assert!(
        e.contains("num_attention_heads 28") && e.contains("num_key_value_heads 5"),
        "{e}"
    );

    let mut c = flat_7b();
    c["rope_scaling"]["mrope_section"] = serde_json::json!([16, 24, 16]);
    let e = err(&c);
    assert!(
        e.contains("mrope_section") && e.contains("head_dim/2 = 64") && e.contains("56"),
        "{e}"
    );

    let mut c = flat_7b();
    c.as_object_mut().unwrap().remove("rope_scaling");
    assert!(err(&c).contains("mrope_section"), "{}", err(&c));

    let mut c = flat_7b();
    c["hidden_size"] = 3585.into();
    c["vision_config"]["out_hidden_size"] = 3585.into();
    assert!(err(&c).contains("not divisible"), "{}", err(&c));

    let mut c = flat_7b();
    c["num_attention_heads"] = 0.into();
    assert!(
        err(&c).contains("num_attention_heads") && err(&c).contains("positive"),
        "{}",
        err(&c)
    );

    let mut c = flat_7b();
    c["vision_config"]["fullatt_block_indexes"] = serde_json::json!([7, 32]);
    assert!(err(&c).contains("block 32"), "{}", err(&c));

    let mut c = flat_7b();
    c["vision_config"]["out_hidden_size"] = 5120.into();
    assert!(err(&c).contains("out_hidden_size 5120"), "{}", err(&c));

    let mut c = flat_7b();
    c["hidden_size"] = "big".into();
    assert!(err(&c).contains("config.json"), "{}", err(&c));

    let e = ModelConfig::from_json(b"{not json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn generation_config_published_and_defaults() {
    let g = GenerationConfig::from_json(&fixture("models/tiny-small-vocab/generation_config.json"))
        .unwrap();
    assert_eq!(g.eos_token_ids, vec![2032, 2030]);
    assert_eq!((g.pad_token_id, g.bos_token_id), (Some(2030), Some(2030)));
    assert_eq!(g.repetition_penalty, 1.05);
    assert_eq!(
        (g.temperature, g.top_p, g.top_k, g.do_sample),
        (Some(0.1), Some(0.001), Some(1), true)
    );
    let p = g.sampling_params(9);
    assert_eq!(
        (
            p.temperature,
            p.top_k,
            p.top_p,
            p.repetition_penalty,
            p.seed
        ),
        (0.1, 1, 0.001, 1.05, 9)
    );

    let d = GenerationConfig::from_json(br#"{"eos_token_id": 7}"#).unwrap();
    assert_eq!(d.eos_token_ids, vec![7]);
    assert_eq!((d.repetition_penalty, d.do_sample), (1.0, false));
    assert_eq!(GenerationConfig::default().repetition_penalty, 1.0);
    // Without do_sample transformers decodes greedily, keeping the penalty.
    let greedy = GenerationConfig::from_json(br#"{"temperature": 0.7, "repetition_penalty": 1.1}"#)
        .unwrap()
        .sampling_params(0);
    assert_eq!((greedy.temperature, greedy.repetition_penalty), (0.0, 1.1));
    // do_sample without top_k: transformers' default top_k 50 applies.
    let sampled = GenerationConfig::from_json(br#"{"do_sample": true}"#)
        .unwrap()
        .sampling_params(0);
    assert_eq!(
        (sampled.temperature, sampled.top_k, sampled.top_p),
        (1.0, 50, 1.0)
    );

    let e = GenerationConfig::from_json(br#"{"top_p": 0}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("top_p"),
        "{e}"
    );
    let e = GenerationConfig::from_json(br#"{"repetition_penalty": -1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("repetition_penalty"), "{e}");
}
