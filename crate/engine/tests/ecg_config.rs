//! `time_series_config` / `time_series_token_id` parsing: ECG-JEPA's constructor names, its
//! defaults for absent keys, and clear errors for unusable values.

use qoqmed_engine::config::{EcgConfig, ModelConfig, ecg_defaults};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn omni_config() -> serde_json::Value {
    let bytes = std::fs::read(format!("{FIXTURES}/models/tiny-omni/config.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn parse(v: &serde_json::Value) -> qoqmed_engine::Result<ModelConfig> {
    ModelConfig::from_json(&serde_json::to_vec(v).unwrap())
}

#[test]
fn the_omni_fixture_config_parses_with_defaults_for_absent_keys() {
    let cfg = parse(&omni_config()).unwrap();
    assert_eq!(cfg.time_series_token_id, Some(2048));
    assert_eq!(
        cfg.ecg,
        EcgConfig {
            encoder_embed_dim: 96,
            encoder_depth: 2,
            encoder_num_heads: 4,
            mlp_ratio: 2.0,
            layer_norm_eps: 1e-6,
            c: 8,
            p: 50,
            t: 50,
        }
    );
    assert_eq!(cfg.ecg.head_dim(), 24);
    assert_eq!(cfg.ecg.mlp_hidden(), 192);
    assert_eq!((cfg.ecg.tokens(), cfg.ecg.samples()), (400, 2500));
}

#[test]
fn absent_time_series_config_means_ecg_jepa() {
    let mut c = omni_config();
    c.as_object_mut().unwrap().remove("time_series_config");
    c.as_object_mut().unwrap().remove("time_series_token_id");
    let cfg = parse(&c).unwrap();
    assert_eq!(cfg.time_series_token_id, None);
    assert_eq!(ecg_defaults::TIME_SERIES_TOKEN_ID, 151665);
    let d = &cfg.ecg;
    assert_eq!(
        (d.encoder_embed_dim, d.encoder_depth, d.encoder_num_heads),
        (768, 12, 16)
    );
    assert_eq!((d.mlp_ratio, d.layer_norm_eps), (4.0, 1e-5));
    assert_eq!((d.c, d.p, d.t), (8, 50, 50));
    assert_eq!((d.head_dim(), d.mlp_hidden()), (48, 3072));
    assert_eq!(cfg.ecg, EcgConfig::default());
}

#[test]
fn every_key_is_read_and_unknown_keys_are_ignored() {
    let mut c = omni_config();
    c["time_series_config"] = serde_json::json!({
        "encoder_embed_dim": 384, "encoder_depth": 6, "encoder_num_heads": 6, "mlp_ratio": 2.5,
        "layer_norm_eps": 1e-6, "c": 12, "p": 25, "t": 100,
        "predictor_embed_dim": 192, "pos_type": "sincos", "leads": [0, 1, 2]
    });
    let e = parse(&c).unwrap().ecg;
    assert_eq!(
        (e.encoder_embed_dim, e.encoder_depth, e.encoder_num_heads),
        (384, 6, 6)
    );
    assert_eq!((e.c, e.p, e.t), (12, 25, 100));
    assert_eq!(e.mlp_hidden(), 960);
    assert_eq!((e.tokens(), e.samples()), (300, 2500));
}

#[test]
fn unusable_values_are_named() {
    for (key, value, words) in [
        (
            "encoder_embed_dim",
            serde_json::json!(0),
            "`encoder_embed_dim` is 0",
        ),
        ("encoder_num_heads", serde_json::json!(5), "does not split"),
        ("mlp_ratio", serde_json::json!(-1.0), "mlp_ratio -1"),
        ("mlp_ratio", serde_json::json!(0.001), "0 wide"),
        ("layer_norm_eps", serde_json::json!(0.0), "layer_norm_eps 0"),
        ("p", serde_json::json!(0), "`p` is 0"),
    ] {
        let mut c = omni_config();
        c["time_series_config"][key] = value;
        let err = parse(&c).unwrap_err().to_string();
        assert!(
            err.contains("time_series_config") && err.contains(words),
            "{key}: {err}"
        );
    }
    let mut c = omni_config();
    c["time_series_config"]["encoder_depth"] = serde_json::json!("twelve");
    assert!(parse(&c).is_err());
}
