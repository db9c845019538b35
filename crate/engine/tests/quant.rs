//! Quantized weights on the host: our Q8/Q4 quantizers against llama.cpp's own (GGUF Q8_0 /
//! Q4_0 blocks from gguf-py in tests/fixtures/quant, made by tools/fixtures/quant_reference.py),
//! the lossless GGUF repack, qoqmed's quantized safetensors through the loader, broken files, and
//! the synthetic random-weight checkpoint `qoqmed bench` loads.

use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::gpu::WeightFormat;
use qoqmed_engine::quant;
use qoqmed_engine::weights::policy::FormatPlan;
use qoqmed_engine::weights::qfile::{self, StoredTensor};
use qoqmed_engine::weights::synthetic::SyntheticSource;
use qoqmed_engine::weights::{ByteSource, DType, MemorySource, WeightStore};
use safetensors::SafeTensors;

fn fixture() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/quant/gguf_blocks.safetensors"
    );
    std::fs::read(path).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[test]
fn quantizers_match_ggml_bit_for_bit() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("values").unwrap().data());
    let k = st.tensor("values").unwrap().shape()[1];
    for (format, name) in [(WeightFormat::Q8, "q8_0"), (WeightFormat::Q4, "q4_0")] {
        let blocks = st.tensor(name).unwrap().data().to_vec();
        let repacked = quant::from_gguf_blocks(format, &blocks).unwrap();
        let (codes, scales) = (repacked.values, repacked.scales.unwrap());
        let ours = quant::quantize(format, &values, k).unwrap();
        assert_eq!(
            ours.scales.unwrap(),
            scales,
            "{name}: scales differ from ggml's"
        );
        let diff = ours
            .values
            .iter()
            .zip(&codes)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "{name}: {diff} code bytes differ from ggml's");
        // The repack changes no value: dequantize both layouts and compare exactly.
        let ours = quant::dequantize(format, &codes, Some(&scales), k).unwrap();
        let gguf = dequantize_gguf(format, &blocks);
        assert_eq!(ours, gguf, "{name}: repacked values differ");
        // Error bound: half a step (q8), one step for q4 (ggml maps the extreme value to -8, so
        // values of the other sign beyond 7 steps clamp), plus the f16 scale's rounding (relative
        // 2^-11, absolute 2^-24 in f16's subnormal range: 1e-6 values get scale 0, as in ggml).
        let steps = if format == WeightFormat::Q8 { 0.5 } else { 1.0 };
        for (g, (x, y)) in values.chunks(32).zip(ours.chunks(32)).enumerate() {
            let d = half::f16::from_le_bytes([scales[2 * g], scales[2 * g + 1]])
                .to_f32()
                .abs();
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in x.iter().zip(y) {
                let tol = steps * d + amax * 2e-3 + 127.0 * 6e-8;
                assert!((a - b).abs() <= tol, "{name} group {g}: {a} -> {b} (d {d})");
            }
        }
    }
}

/// GGUF's own dequantization (ggml's dequantize_row_q8_0 / q4_0), written from its layout.
fn dequantize_gguf(format: WeightFormat, blocks: &[u8]) -> Vec<f32> {
    let size = if format == WeightFormat::Q8 { 34 } else { 18 };
    let mut out = Vec::new();
    for b in blocks.chunks_exact(size) {
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        match format {
            WeightFormat::Q8 => out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d)),
            _ => {
                let lo = b[2..].iter().map(|&q| (f32::from(q & 15) - 8.0) * d);
                let hi = b[2..].iter().map(|&q| (f32::from(q >> 4) - 8.0) * d);
                out.extend(lo.chain(hi));
            }
        }
    }
    out
}

/// A qoqmed file with one q4 matrix, one q8 matrix and a bf16 bias, written as quantize does.
fn quantized_file(values: &[f32], n: usize, k: usize) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let mut tensors = Vec::new();
    let mut data = Vec::new();
    let mut deq = Vec::new();
    for (name, format) in [
        ("a.weight", WeightFormat::Q4),
        ("b.weight", WeightFormat::Q8),
    ] {
        let p = quant::quantize(format, values, k).unwrap();
        deq.push(quant::dequantize(format, &p.values, p.scales.as_deref(), k).unwrap());
        tensors.extend(qfile::stored_tensors(name, format, &[n, k]).unwrap());
        data.extend(p.values);
        data.extend(p.scales.unwrap());
    }
    let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    tensors.push(StoredTensor {
        name: "a.bias".into(),
        dtype: "BF16",
        shape: vec![n],
    });
    data.extend(
        quant::quantize(WeightFormat::BF16, &bias, 1)
            .unwrap()
            .values,
    );
    let meta = qfile::metadata([
        ("a.weight", WeightFormat::Q4),
        ("b.weight", WeightFormat::Q8),
        ("a.bias", WeightFormat::BF16),
    ]);
    let mut file = qfile::header_bytes(&tensors, &meta, 0);
    file.extend(data);
    (file, deq.remove(0), deq.remove(0))
}

fn open(files: Vec<(&str, Vec<u8>)>) -> qoqmed_engine::Result<WeightStore> {
    let sources: Vec<Box<dyn ByteSource>> = files
        .into_iter()
        .map(|(n, b)| Box::new(MemorySource::new(n, b)) as Box<dyn ByteSource>)
        .collect();
    block_on(WeightStore::open(sources))
}

#[test]
fn quantized_safetensors_load_by_their_checkpoint_names() {
    let (n, k) = (5, 64);
    let values: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919 % 257) as f32 - 128.0) / 50.0)
        .collect();
    let (file, q4, q8) = quantized_file(&values, n, k);
    // The safetensors crate reads our header too: it is an ordinary file.
    let st = SafeTensors::deserialize(&file).unwrap();
    assert_eq!(st.tensor("a.weight").unwrap().shape(), &[5, 32]);
    assert_eq!(st.tensor("a.weight_scale").unwrap().shape(), &[5, 2]);
    let store = open(vec![("model.safetensors", file)]).unwrap();
    let names: Vec<&str> = store.names().collect();
    assert_eq!(
        names,
        ["a.bias", "a.weight", "b.weight"],
        "scales are not tensors of their own"
    );
    let a = store.get("a.weight").unwrap();
    assert_eq!((a.format, a.shape.clone()), (WeightFormat::Q4, vec![n, k]));
    assert_eq!(a.stored_bytes(), (n * k / 2 + n * k / 32 * 2) as u64);
    assert_eq!(block_on(store.read_f32(a)).unwrap(), q4);
    let b = store.get("b.weight").unwrap();
    assert_eq!(b.format, WeightFormat::Q8);
    assert_eq!(block_on(store.read_f32(b)).unwrap(), q8);
    // Row ranges cut both planes at the same rows.
    let rows = block_on(store.read_rows(a, 2..4)).unwrap();
    assert_eq!(rows.values.len(), 2 * k / 2);
    assert_eq!(rows.scales.as_ref().unwrap().len(), 2 * k / 32 * 2);
    let part = quant::dequantize(WeightFormat::Q4, &rows.values, rows.scales.as_deref(), k);
    assert_eq!(part.unwrap(), q4[2 * k..4 * k]);
    let bias = store.get("a.bias").unwrap();
    assert_eq!((bias.dtype, bias.format), (DType::BF16, WeightFormat::BF16));
}

#[test]
fn broken_quantized_files_are_errors_that_say_so() {
    let (n, k) = (2, 32);
    let values = vec![0.5f32; n * k];
    let (file, _, _) = quantized_file(&values, n, k);
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&file[8..8 + header_len]).unwrap();
    let rewrite = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        edit(&mut j);
        let mut h = j.to_string().into_bytes();
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(&file[8 + header_len..]);
        open(vec![("m.safetensors", out)])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let err = rewrite(&|j| {
        j.as_object_mut().unwrap().remove("a.weight_scale");
    });
    assert!(
        err.contains("a.weight_scale") && err.contains("incomplete"),
        "{err}"
    );
    let err = rewrite(&|j| j["__metadata__"]["qoqmed_format_version"] = "9".into());
    assert!(
        err.contains("version 9") && err.contains("update qoqmed"),
        "{err}"
    );
    let err = rewrite(&|j| j["__metadata__"]["qoqmed.format.a.weight"] = "q8".into());
    assert!(err.contains("I8") && err.contains("a.weight"), "{err}");
    let err = rewrite(&|j| j["__metadata__"]["qoqmed.format.a.bias"] = "f16".into());
    assert!(err.contains("a.bias") && err.contains("BF16"), "{err}");
    let err = rewrite(&|j| j["__metadata__"]["qoqmed.format.a.weight"] = "q3".into());
    assert!(err.contains("unknown format `q3`"), "{err}");
    // Without the metadata a U8 tensor is an unsupported dtype, never guessed to be codes.
    let plain = rewrite(&|j| {
        j.as_object_mut().unwrap().remove("__metadata__");
    });
    assert!(
        plain.is_empty(),
        "opening works; using the tensor fails: {plain}"
    );
}

#[test]
fn synthetic_checkpoint_reads_consistently() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/models/tiny-small-vocab/config.json"
    );
    let mut cfg = ModelConfig::from_json(&std::fs::read(path).unwrap())
        .unwrap()
        .text;
    cfg.tie_word_embeddings = false;
    let plan = FormatPlan::for_format(WeightFormat::Q4);
    let source = SyntheticSource::text_model(&cfg, &plan, 7).unwrap();
    let whole = block_on(source.read(0, source.len() as usize)).unwrap();
    // Any piece equals the same range of the whole.
    for (off, len) in [(3, 10), (1000, 4097), (source.len() - 33, 33)] {
        let piece = block_on(source.read(off, len as usize)).unwrap();
        assert_eq!(piece, whole[off as usize..(off + len) as usize]);
    }
    assert!(block_on(source.read(source.len() - 1, 2)).is_err());
    let specs = source.specs().to_vec();
    let store = open(vec![("synthetic", whole)]).unwrap();
    for spec in &specs {
        let info = store.get(&spec.name).unwrap();
        assert_eq!(
            (info.format, &info.shape),
            (spec.format, &spec.shape),
            "{}",
            spec.name
        );
        let v = block_on(store.read_f32(info)).unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{}", spec.name);
        let rms = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        let want = if spec.name.ends_with("norm.weight") {
            1.0
        } else {
            0.02
        };
        assert!((rms - want).abs() < want * 0.25, "{}: rms {rms}", spec.name);
    }
    let up = store.get("model.layers.0.mlp.up_proj.weight").unwrap();
    assert_eq!(up.format, WeightFormat::Q4);
    assert_eq!(
        store.get("lm_head.weight").unwrap().format,
        WeightFormat::Q8
    );
}
