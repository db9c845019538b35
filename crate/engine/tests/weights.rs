//! The safetensors loader: the tiny fixture models (single file and sharded), files written here
//! with the `safetensors` crate, and every kind of broken file.

use std::collections::BTreeSet;

use qoqmed_engine::Error;
use qoqmed_engine::weights::{
    ByteSource, DType, MemorySource, MmapSource, ModelFiles, WeightStore, shard_files,
    text_tensor_names, visual_tensor_names,
};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/models");

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// A safetensors file holding `tensors` (name, dtype, shape, raw bytes).
fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.to_string(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn open(files: Vec<(&str, Vec<u8>)>) -> qoqmed_engine::Result<WeightStore> {
    let sources: Vec<Box<dyn ByteSource>> = files
        .into_iter()
        .map(|(name, bytes)| Box::new(MemorySource::new(name, bytes)) as Box<dyn ByteSource>)
        .collect();
    block_on(WeightStore::open(sources))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn single_file_fixture_loads_with_tied_head() {
    let files =
        ModelFiles::from_dir(&std::path::Path::new(MODELS).join("tiny-small-vocab")).unwrap();
    assert_eq!(files.weights.len(), 1);
    assert!(files.tokenizer_config.is_some() && files.generation_config.is_some());
    assert!(
        files.weights[0].as_slice().is_some(),
        "native weights should be memory-mapped"
    );
    let store = block_on(WeightStore::open(files.weights)).unwrap();
    let embed = store
        .find_any(&text_tensor_names("embed_tokens.weight"))
        .unwrap();
    assert_eq!(embed.shape, vec![2048, 64]);
    assert_eq!(
        embed.dtype,
        DType::BF16,
        "the fixture is saved in bf16 like the real checkpoint"
    );
    assert_eq!(embed.len, 2048 * 64 * 2);
    let copied = block_on(store.read(embed)).unwrap();
    assert_eq!(
        store.bytes(embed),
        Some(copied.as_slice()),
        "zero-copy and copied reads differ"
    );
    let values = block_on(store.read_f32(embed)).unwrap();
    assert_eq!(values.len(), 2048 * 64);
    assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|&v| v != 0.0));
    // Tied: no lm_head in the file, and the lookup says which names it tried.
    match store.find_any(&text_tensor_names("lm_head.weight")) {
        Err(Error::MissingTensor { tried, .. }) => {
            assert!(tried.contains(&"lm_head.weight".to_string()))
        }
        other => panic!(
            "tied fixture should have no lm_head: {:?}",
            other.map(|t| &t.name)
        ),
    }
    assert!(
        store
            .find_any(&visual_tensor_names("patch_embed.proj.weight"))
            .is_ok()
    );
    for i in 0..2 {
        for proj in ["q_proj", "k_proj", "v_proj"] {
            assert!(
                store
                    .find_any(&text_tensor_names(&format!(
                        "layers.{i}.self_attn.{proj}.bias"
                    )))
                    .is_ok()
            );
        }
    }

    let untied =
        ModelFiles::from_dir(&std::path::Path::new(MODELS).join("tiny-small-vocab-untied"))
            .unwrap();
    let store = block_on(WeightStore::open(untied.weights)).unwrap();
    assert_eq!(
        store
            .find_any(&text_tensor_names("lm_head.weight"))
            .unwrap()
            .shape,
        vec![2048, 64]
    );
}

#[test]
fn sharded_fixture_loads_every_indexed_tensor_from_its_shard() {
    let dir = std::path::Path::new(MODELS).join("tiny-small-vocab-nested");
    let index_bytes = std::fs::read(dir.join("model.safetensors.index.json")).unwrap();
    let shards = shard_files(&index_bytes).unwrap();
    assert_eq!(
        shards,
        vec![
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    let files = ModelFiles::from_dir(&dir).unwrap();
    assert_eq!(files.weights.len(), 2);
    assert!(files.chat_template.is_some());
    let store = block_on(WeightStore::open(files.weights)).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let names: BTreeSet<&str> = store.names().collect();
    assert_eq!(
        names.len(),
        map.len(),
        "store and index list different tensors"
    );
    for (name, file) in map {
        let info = store
            .get(name)
            .unwrap_or_else(|| panic!("{name} listed in the index but not loaded"));
        let source = store.source_names().nth(info.source).unwrap();
        assert!(
            source.ends_with(file.as_str().unwrap()),
            "{name} is in {source}, index says {file}"
        );
        let bytes = store.bytes(info).unwrap();
        assert_eq!(bytes.len() as u64, info.len);
    }
}

#[test]
fn f32_f16_bf16_values_round_trip() {
    let values = [1.0f32, -2.5, 0.15625, 65504.0, -0.0, 3.0e-5];
    let f16: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let bytes = safetensors_bytes(&[
        ("a.f32", Dtype::F32, vec![2, 3], f32_bytes(&values)),
        ("b.f16", Dtype::F16, vec![6], f16),
        ("c.bf16", Dtype::BF16, vec![3, 2], bf16),
    ]);
    let store = open(vec![("dtypes.safetensors", bytes)]).unwrap();
    assert_eq!(store.len(), 3);
    let a = store.get("a.f32").unwrap();
    assert_eq!(
        (a.dtype, a.shape.clone(), a.numel()),
        (DType::F32, vec![2, 3], 6)
    );
    assert_eq!(block_on(store.read_f32(a)).unwrap(), values);
    let b = store.get("b.f16").unwrap();
    assert_eq!(b.dtype, DType::F16);
    let want_f16: Vec<f32> = values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    assert_eq!(block_on(store.read_f32(b)).unwrap(), want_f16);
    let c = store.get("c.bf16").unwrap();
    assert_eq!(c.dtype, DType::BF16);
    let want_bf16: Vec<f32> = values
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(block_on(store.read_f32(c)).unwrap(), want_bf16);
    assert_eq!(want_bf16[2], 0.15625, "exactly representable value changed");
    assert!(a.expect_shape(&[2, 3]).is_ok());
    match a.expect_shape(&[3, 2]) {
        Err(e @ Error::TensorShape { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("a.f32") && msg.contains("[2, 3]") && msg.contains("[3, 2]"),
                "{msg}"
            );
        }
        other => panic!("expected TensorShape, got {other:?}"),
    }
}

#[test]
fn both_tensor_name_spellings_resolve() {
    assert_eq!(
        text_tensor_names("embed_tokens.weight"),
        [
            "model.embed_tokens.weight".to_string(),
            "model.language_model.embed_tokens.weight".to_string()
        ]
    );
    assert_eq!(text_tensor_names("lm_head.weight")[0], "lm_head.weight");
    assert_eq!(
        visual_tensor_names("merger.mlp.0.weight"),
        [
            "visual.merger.mlp.0.weight".to_string(),
            "model.visual.merger.mlp.0.weight".to_string()
        ]
    );
    let one = f32_bytes(&[1.0, 2.0]);
    let newer = safetensors_bytes(&[
        (
            "model.language_model.norm.weight",
            Dtype::F32,
            vec![2],
            one.clone(),
        ),
        (
            "model.visual.merger.ln_q.weight",
            Dtype::F32,
            vec![2],
            one.clone(),
        ),
        ("lm_head.weight", Dtype::F32, vec![1, 2], one.clone()),
    ]);
    let classic = safetensors_bytes(&[
        ("model.norm.weight", Dtype::F32, vec![2], one.clone()),
        (
            "visual.merger.ln_q.weight",
            Dtype::F32,
            vec![2],
            one.clone(),
        ),
        ("lm_head.weight", Dtype::F32, vec![1, 2], one),
    ]);
    for (label, bytes) in [("newer", newer), ("classic", classic)] {
        let store = open(vec![("m.safetensors", bytes)]).unwrap();
        for names in [
            text_tensor_names("norm.weight"),
            visual_tensor_names("merger.ln_q.weight"),
            text_tensor_names("lm_head.weight"),
        ] {
            let info = store
                .find_any(&names)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(names.contains(&info.name), "{label}: found {}", info.name);
        }
    }
}

#[test]
fn missing_tensor_lists_every_spelling_tried() {
    let store = open(vec![(
        "m.safetensors",
        safetensors_bytes(&[("x", Dtype::F32, vec![1], f32_bytes(&[0.0]))]),
    )])
    .unwrap();
    let err = store
        .find_any(&text_tensor_names("layers.3.mlp.up_proj.weight"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("model.layers.3.mlp.up_proj.weight")
            && msg.contains("model.language_model.layers.3.mlp.up_proj.weight"),
        "{msg}"
    );
    assert!(store.get("model.layers.3.mlp.up_proj.weight").is_none());
}

#[test]
fn unknown_dtypes_fail_when_used_naming_tensor_and_dtype() {
    let bytes = safetensors_bytes(&[
        ("fine", Dtype::F32, vec![1], f32_bytes(&[1.0])),
        ("q.int8", Dtype::I8, vec![4], vec![1, 2, 3, 4]),
        ("q.fp8", Dtype::F8_E4M3, vec![2, 2], vec![0x38; 4]),
    ]);
    let store = open(vec![("quant.safetensors", bytes)]).unwrap();
    assert!(store.find(&["fine"]).is_ok());
    for (name, dtype) in [("q.int8", "I8"), ("q.fp8", "F8_E4M3")] {
        let err = store.find(&[name]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnsupportedDtype { .. }), "{msg}");
        assert!(
            msg.contains(name) && msg.contains(dtype) && msg.contains("quant.safetensors"),
            "{msg}"
        );
        assert!(store.get(name).is_none());
    }
    let unsupported: Vec<(&str, &str)> = store.unsupported().collect();
    assert_eq!(unsupported, vec![("q.fp8", "F8_E4M3"), ("q.int8", "I8")]);
    assert_eq!(DType::parse("F8_E4M3"), None);
    assert_eq!(DType::parse("BF16").map(DType::size_in_bytes), Some(2));
}

#[test]
fn truncated_file_names_file_and_tensor() {
    let mut bytes = safetensors_bytes(&[
        (
            "first",
            Dtype::F32,
            vec![4],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
        ),
        ("second", Dtype::F32, vec![8], f32_bytes(&[0.5; 8])),
    ]);
    bytes.truncate(bytes.len() - 3);
    let msg = match open(vec![("model-00002-of-00002.safetensors", bytes)]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("truncated file accepted"),
    };
    assert!(
        msg.contains("model-00002-of-00002.safetensors") && msg.contains("`second`"),
        "{msg}"
    );
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn bad_headers_are_format_errors_naming_the_file() {
    let good = safetensors_bytes(&[("t", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]))]);
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let with_header = |json: &str| -> Vec<u8> {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(&good[8 + n..]);
        b
    };
    let mut huge_len = good.clone();
    huge_len[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "shorter than 8 bytes"),
        ("short", vec![1, 2, 3], "shorter than 8 bytes"),
        ("huge length", huge_len, "header claims"),
        ("not json", with_header("{\"t\": nope}"), "not valid JSON"),
        ("not an object", with_header("[1, 2]"), "not valid JSON"),
        (
            "missing offsets",
            with_header(r#"{"t": {"dtype": "F32", "shape": [2]}}"#),
            "tensor `t` is malformed",
        ),
        (
            "size mismatch",
            with_header(r#"{"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#),
            "should take 12 bytes",
        ),
        (
            "reversed offsets",
            with_header(r#"{"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}"#),
            "end before begin",
        ),
        (
            "past the end",
            with_header(r#"{"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#),
            "truncated",
        ),
    ];
    for (label, bytes, needle) in cases {
        let msg = match open(vec![("broken.safetensors", bytes)]) {
            Err(e @ Error::Format { .. }) => e.to_string(),
            Err(e) => panic!("{label}: expected a format error, got {e}"),
            Ok(_) => panic!("{label}: accepted"),
        };
        assert!(
            msg.contains("broken.safetensors") && msg.contains(needle),
            "{label}: {msg}"
        );
    }
    // The well-formed header with metadata still loads.
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let view = TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap();
    let with_meta = safetensors::serialize([("m", view)], Some(meta)).unwrap();
    assert_eq!(
        open(vec![("meta.safetensors", with_meta)]).unwrap().len(),
        1
    );
}

#[test]
fn a_tensor_in_two_shards_is_refused() {
    let a = safetensors_bytes(&[("dup", Dtype::F32, vec![1], f32_bytes(&[1.0]))]);
    let msg = match open(vec![("a.safetensors", a.clone()), ("b.safetensors", a)]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("duplicate accepted"),
    };
    assert!(
        msg.contains("dup") && msg.contains("a.safetensors") && msg.contains("b.safetensors"),
        "{msg}"
    );
    assert!(open(Vec::new()).is_err());
}

#[test]
fn shard_index_parsing() {
    let index = br#"{"metadata": {"total_size": 1}, "weight_map": {
        "b": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}}"#;
    assert_eq!(
        shard_files(index).unwrap(),
        vec![
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    for bad in [
        &br#"{"weight_map": {"a": "../secrets.safetensors"}}"#[..],
        br#"{"weight_map": {"a": "/etc/passwd"}}"#,
        br#"{"weight_map": {}}"#,
        br#"{"weights": {}}"#,
    ] {
        let msg = shard_files(bad).unwrap_err().to_string();
        assert!(msg.contains("model.safetensors.index.json"), "{msg}");
    }
}

#[test]
fn model_folder_errors_list_what_is_missing() {
    let tmp = std::env::temp_dir().join(format!("qoqmed-weights-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let msg = ModelFiles::from_dir(&tmp)
        .err()
        .expect("empty folder accepted")
        .to_string();
    for needle in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "must contain",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
    std::fs::write(tmp.join("config.json"), b"{}").unwrap();
    std::fs::write(tmp.join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(
        tmp.join("model.safetensors.index.json"),
        br#"{"weight_map": {"a": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let msg = ModelFiles::from_dir(&tmp)
        .err()
        .expect("missing shard accepted")
        .to_string();
    assert!(
        msg.contains("lacks model-00001-of-00002.safetensors (listed in"),
        "{msg}"
    );
    let msg = ModelFiles::from_dir(&tmp.join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("does not exist"), "{msg}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn sources_refuse_reads_past_the_end() {
    let mem = MemorySource::new("mem.bin", vec![1u8, 2, 3, 4]);
    assert_eq!(block_on(mem.read(1, 2)).unwrap(), vec![2, 3]);
    let msg = block_on(mem.read(3, 2)).unwrap_err().to_string();
    assert!(
        msg.contains("mem.bin") && msg.contains("past the end"),
        "{msg}"
    );
    assert!(block_on(mem.read(u64::MAX, 1)).is_err());
    let path = std::path::Path::new(MODELS).join("tiny-small-vocab/model.safetensors");
    let map = MmapSource::open(&path).unwrap();
    assert_eq!(map.len(), std::fs::metadata(&path).unwrap().len());
    assert!(block_on(map.read(map.len() - 1, 2)).is_err());
    let msg = MmapSource::open(&path.with_file_name("absent.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("absent.safetensors"), "{msg}");
}

/// The web edge's path: the folder's files as in-memory sources, named as a browser gives them.
#[test]
fn model_files_from_picked_sources_match_from_dir() {
    let dir = std::path::Path::new(MODELS).join("tiny-small-vocab-nested");
    let mut picked: Vec<Box<dyn ByteSource>> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("tiny/{}", path.file_name().unwrap().to_str().unwrap());
        picked.push(Box::new(MemorySource::new(
            name,
            std::fs::read(&path).unwrap(),
        )));
    }
    picked.push(Box::new(MemorySource::new(
        "tiny/README.md",
        b"unrelated".to_vec(),
    )));
    let from_picked = block_on(ModelFiles::from_sources(picked)).unwrap();
    let from_dir = ModelFiles::from_dir(&dir).unwrap();
    assert_eq!(from_picked.config, from_dir.config);
    assert_eq!(from_picked.tokenizer, from_dir.tokenizer);
    assert_eq!(from_picked.chat_template, from_dir.chat_template);
    assert_eq!(from_picked.tokenizer_config, from_dir.tokenizer_config);
    assert_eq!(from_picked.generation_config, from_dir.generation_config);
    let names: Vec<&str> = from_picked.weights.iter().map(|w| w.name()).collect();
    assert_eq!(
        names,
        vec![
            "tiny/model-00001-of-00002.safetensors",
            "tiny/model-00002-of-00002.safetensors"
        ]
    );
    let store = block_on(WeightStore::open(from_picked.weights)).unwrap();
    let dir_store = block_on(WeightStore::open(from_dir.weights)).unwrap();
    assert_eq!(
        store.names().collect::<Vec<_>>(),
        dir_store.names().collect::<Vec<_>>()
    );
    for name in dir_store.names() {
        let (a, b) = (store.get(name).unwrap(), dir_store.get(name).unwrap());
        assert_eq!(store.bytes(a), dir_store.bytes(b), "{name}");
    }

    // Only one shard picked: the other is named as missing.
    let index = std::fs::read(dir.join("model.safetensors.index.json")).unwrap();
    let partial: Vec<Box<dyn ByteSource>> = vec![
        Box::new(MemorySource::new("config.json", b"{}".to_vec())),
        Box::new(MemorySource::new("tokenizer.json", b"{}".to_vec())),
        Box::new(MemorySource::new("model.safetensors.index.json", index)),
        Box::new(MemorySource::new(
            "model-00001-of-00002.safetensors",
            Vec::new(),
        )),
    ];
    let msg = block_on(ModelFiles::from_sources(partial))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("lack model-00002-of-00002.safetensors (listed in"),
        "{msg}"
    );
    let twice: Vec<Box<dyn ByteSource>> = vec![
        Box::new(MemorySource::new("a/config.json", b"{}".to_vec())),
        Box::new(MemorySource::new("b/config.json", b"{}".to_vec())),
    ];
    let msg = block_on(ModelFiles::from_sources(twice))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("two files are named config.json"), "{msg}");
}
