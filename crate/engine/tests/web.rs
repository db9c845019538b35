//! The same engine in a browser: a kernel, the real tokenizer, the tiny model's greedy decode, one
//! image through the vision tower and the tiny QoQ-Med-Omni's ECG prompt, through WebGPU (headless
//! Chromium's SwiftShader adapter in CI), on the code path natives use.
//! Run by tools/test.sh with wasm-bindgen-test-runner; see crate/engine/webdriver.json.
#![cfg(target_arch = "wasm32")]

use qoqmed_engine::chat::Tokenizer;
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::generate::{GenerateOptions, generate, generate_after};
use qoqmed_engine::gpu::{Gpu, Recorder, Tensor, Tuning, Weight, WeightFormat, ops};
use qoqmed_engine::model::{EcgEncoder, Injection, TextModel, VisionModel, rope};
use qoqmed_engine::quant;
use qoqmed_engine::sampler::SamplingParams;
use qoqmed_engine::weights::{ByteSource, MemorySource, WeightStore};
use safetensors::SafeTensors;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// qoqmed-imaging decodes JPEG 2000 DICOM with `openjp2`, a c2rust port of OpenJPEG that calls
/// libc's allocator and `strcpy`. wasm32-unknown-unknown has no libc, so a module linking the
/// readers imports them from `env` and cannot be instantiated; these Rust-allocator versions
/// resolve them (the web app needs the same, see the vision notes).
#[allow(clippy::missing_safety_doc)]
mod libc_shim {
    use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc as grow};

    /// Each block starts with its size, so `free` and `realloc` can rebuild the layout.
    const HEADER: usize = 16;

    fn layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
    }

    unsafe fn finish(base: *mut u8, size: usize) -> *mut u8 {
        if base.is_null() {
            return base;
        }
        unsafe {
            (base as *mut usize).write(size);
            base.add(HEADER)
        }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
        match layout(size) {
            Some(l) => unsafe { finish(alloc(l), size) },
            None => std::ptr::null_mut(),
        }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut u8 {
        match n.checked_mul(size).and_then(|s| Some((s, layout(s)?))) {
            Some((s, l)) => unsafe { finish(alloc_zeroed(l), s) },
            None => std::ptr::null_mut(),
        }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn free(p: *mut u8) {
        if p.is_null() {
            return;
        }
        unsafe {
            let base = p.sub(HEADER);
            let size = (base as *const usize).read();
            dealloc(base, layout(size).unwrap());
        }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return unsafe { malloc(size) };
        }
        let Some(new) = layout(size) else {
            return std::ptr::null_mut();
        };
        unsafe {
            let base = p.sub(HEADER);
            let old = (base as *const usize).read();
            finish(grow(base, layout(old).unwrap(), new.size()), size)
        }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn strcpy(dst: *mut u8, src: *const u8) -> *mut u8 {
        let mut i = 0;
        unsafe {
            loop {
                let c = src.add(i).read();
                dst.add(i).write(c);
                if c == 0 {
                    return dst;
                }
                i += 1;
            }
        }
    }
}

/// A committed fixture model's config and its weights opened from memory, as the app opens
/// picked files.
async fn fixture_model(config: &[u8], weights: &[u8]) -> (ModelConfig, WeightStore) {
    let config = ModelConfig::from_json(config).unwrap();
    let sources: Vec<Box<dyn ByteSource>> = vec![Box::new(MemorySource::new(
        "model.safetensors",
        weights.to_vec(),
    ))];
    (config, WeightStore::open(sources).await.unwrap())
}

async fn gpu() -> Gpu {
    let gpu = Gpu::new(None)
        .await
        .unwrap_or_else(|e| panic!("no WebGPU adapter in this browser: {e}"));
    // WebGPU, not a WebGL fallback: the browser app depends on compute shaders.
    assert_eq!(
        gpu.adapter.backend, "BrowserWebGpu",
        "adapter: {}",
        gpu.adapter
    );
    gpu
}

#[wasm_bindgen_test]
async fn bf16_linear_matches_cpu_on_webgpu() {
    let gpu = gpu().await;
    let (m, n, k) = (3, 37, 45);
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let wv: Vec<half::bf16> = (0..n * k)
        .map(|i| half::bf16::from_f32(((i * 53 % 97) as f32 / 48.0) - 1.0))
        .collect();
    let bytes: Vec<u8> = wv.iter().flat_map(|v| v.to_le_bytes()).collect();
    let w = Weight::upload(&gpu, "w", WeightFormat::BF16, &[n, k], &bytes, None).unwrap();
    for rows in [1, m] {
        let xt = Tensor::from_f32(&gpu, &x[..rows * k], &[rows, k], "x").unwrap();
        let y = Tensor::zeros(&gpu, &[rows, n], "y").unwrap();
        let mut rec = Recorder::new(&gpu);
        ops::linear(&mut rec, &xt, &w, None, &y).unwrap();
        rec.submit().unwrap();
        let got = y.to_vec(&gpu).await.unwrap();
        for i in 0..rows {
            for j in 0..n {
                let want: f32 = (0..k).map(|t| x[i * k + t] * wv[j * k + t].to_f32()).sum();
                let g = got[i * n + j];
                assert!(
                    (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "y[{i},{j}] = {g}, want {want}"
                );
            }
        }
    }
}

/// Q8 and Q4 weights split into several parts (as a real vocabulary is on a 128 MiB binding) through
/// the browser's kernels: linear (GEMV and GEMM) and the embedding gather; with this adapter's
/// kernels (on SwiftShader, a CPU: matmul_rows without subgroups) and the portable ones (a GPU's:
/// split-K GEMV, tiled GEMM).
#[wasm_bindgen_test]
async fn quantized_split_weights_match_cpu_on_webgpu() {
    let mut gpu = gpu().await;
    let native = gpu.tuning.clone();
    for tuning in [native, Tuning::portable()] {
        gpu.tuning = tuning;
        // k = 160: five groups per row, past the narrow GEMV, so one token runs the split-K GEMV.
        let (n, k) = (45, 160);
        let x: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let wv: Vec<f32> = (0..n * k)
            .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
            .collect();
        for format in [WeightFormat::Q8, WeightFormat::Q4] {
            let planes = quant::quantize(format, &wv, k).unwrap();
            let wd =
                quant::dequantize(format, &planes.values, planes.scales.as_deref(), k).unwrap();
            let limit = (n * format.row_bytes(k) / 4) as u64;
            let w = Weight::alloc_with_part_limit(&gpu, "w", format, &[n, k], limit).unwrap();
            assert!(w.parts.len() >= 3, "{} parts", w.parts.len());
            w.write_rows(&gpu, 0, &planes.values, planes.scales.as_deref())
                .unwrap();
            for rows in [1, 3] {
                let xt = Tensor::from_f32(&gpu, &x[..rows * k], &[rows, k], "x").unwrap();
                let y = Tensor::zeros(&gpu, &[rows, n], "y").unwrap();
                let mut rec = Recorder::new(&gpu);
                ops::linear(&mut rec, &xt, &w, None, &y).unwrap();
                rec.submit().unwrap();
                let got = y.to_vec(&gpu).await.unwrap();
                for i in 0..rows {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|t| x[i * k + t] * wd[j * k + t]).sum();
                        let g = got[i * n + j];
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{format} y[{i},{j}] = {g}, want {want}"
                        );
                    }
                }
            }
            let ids: Vec<u32> = vec![0, 44, 11, 12, 30];
            let ids_t = Tensor::from_f32(
                &gpu,
                &ids.iter().map(|&i| f32::from_bits(i)).collect::<Vec<_>>(),
                &[ids.len()],
                "ids",
            )
            .unwrap();
            let out = Tensor::zeros(&gpu, &[ids.len(), k], "out").unwrap();
            let mut rec = Recorder::new(&gpu);
            ops::embedding(&mut rec, &ids_t.buffer, ids.len(), &w, &out).unwrap();
            rec.submit().unwrap();
            let got = out.to_vec(&gpu).await.unwrap();
            for (t, &id) in ids.iter().enumerate() {
                assert_eq!(
                    &got[t * k..][..k],
                    &wd[id as usize * k..][..k],
                    "{format} embedding row {id}"
                );
            }
        }
    }
}

#[wasm_bindgen_test]
fn real_qwen_tokenizer_works_in_wasm() {
    let json = include_bytes!("../../../tests/fixtures/models/tiny-qwen-vocab/tokenizer.json");
    let tok = Tokenizer::from_bytes(json).unwrap();
    assert_eq!(tok.encode("Hello world").unwrap(), vec![9707, 1879]);
    assert_eq!(
        tok.encode("<|im_start|>hello<|im_end|>").unwrap(),
        vec![151644, 14990, 151645]
    );
}

#[wasm_bindgen_test]
async fn tiny_model_greedy_ids_match_transformers_on_webgpu() {
    let gpu = gpu().await;
    let (config, store) = fixture_model(
        include_bytes!("../../../tests/fixtures/models/tiny-small-vocab/config.json"),
        include_bytes!("../../../tests/fixtures/models/tiny-small-vocab/model.safetensors"),
    )
    .await;
    let model = TextModel::load(&gpu, &store, &config.text).await.unwrap();

    let golden =
        include_bytes!("../../../tests/fixtures/goldens/tiny-small-vocab/short.safetensors");
    let st = SafeTensors::deserialize(golden).unwrap();
    let ids = |name: &str| -> Vec<u32> {
        let t = st.tensor(name).unwrap();
        bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let prompt = ids("input_ids");
    let want = ids("greedy.generated_ids");
    let opts = GenerateOptions {
        max_new_tokens: want.len(),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        },
        max_context: prompt.len() + want.len() + 1,
        ..GenerateOptions::default()
    };
    let positions = rope::text_positions(0, prompt.len(), 0);
    let out = generate(&gpu, &model, &prompt, &positions, 0, &opts, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(out.token_ids, want);
}

/// One image through the vision tower in the browser: the product's reader and processor on the
/// committed PNG, the tower's features injected into the prompt, greedy ids equal transformers'
/// (the 250x190 case: a bicubic resize and ragged windows).
#[wasm_bindgen_test]
async fn tiny_model_image_greedy_ids_match_transformers_on_webgpu() {
    let gpu = gpu().await;
    let (config, store) = fixture_model(
        include_bytes!("../../../tests/fixtures/models/tiny-small-vocab/config.json"),
        include_bytes!("../../../tests/fixtures/models/tiny-small-vocab/model.safetensors"),
    )
    .await;
    let text = TextModel::load(&gpu, &store, &config.text).await.unwrap();
    let vision = VisionModel::load(&gpu, &store, config.vision.as_ref().unwrap())
        .await
        .unwrap();
    let processor = qoqmed_imaging::ProcessorConfig::from_json(include_bytes!(
        "../../../tests/fixtures/models/tiny-small-vocab/preprocessor_config.json"
    ))
    .unwrap();
    let png = include_bytes!("../../../tests/fixtures/images/vision/pattern_250x190.png");
    let images =
        qoqmed_imaging::read_image(png, "pattern_250x190.png", &Default::default()).unwrap();
    let pv =
        qoqmed_imaging::preprocess(&images, &processor, qoqmed_imaging::PixelRange::Model).unwrap();
    let layout = vision.layout(&pv.grid_thw).unwrap();
    let mut rec = Recorder::new(&gpu);
    let features = vision.forward(&mut rec, &layout, &pv.data, None).unwrap();
    rec.submit().unwrap();

    let golden = include_bytes!(
        "../../../tests/fixtures/goldens/vision/tiny-small-vocab/odd_250x190.safetensors"
    );
    let st = SafeTensors::deserialize(golden).unwrap();
    let ids = |name: &str| -> Vec<u32> {
        let t = st.tensor(name).unwrap();
        bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let prompt = ids("input_ids");
    let want = ids("greedy_rp.generated_ids");
    let merged: Vec<[u32; 3]> = pv
        .grid_thw
        .iter()
        .map(|&[t, h, w]| [t, h / 2, w / 2])
        .collect();
    let (positions, delta) =
        rope::prompt_positions(&prompt, config.image_token_id, &merged).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: want.len(),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.05,
            ..SamplingParams::default()
        },
        max_context: prompt.len() + want.len() + 1,
        inject: vec![Injection::at_token(&prompt, config.image_token_id, features).unwrap()],
        ..GenerateOptions::default()
    };
    let out = generate(&gpu, &text, &prompt, &positions, delta, &opts, &mut |_| {
        true
    })
    .await
    .unwrap();
    assert_eq!(out.token_ids, want);
}

/// QoQ-Med-Omni's ECG branch in the browser: the tiny Omni checkpoint, pydicom's ECG (its
/// reference model input), the encoder recorded into the first prefill submission, the token
/// injected at `<|time_series_pad|>`: PyTorch's greedy ids.
#[wasm_bindgen_test]
async fn ecg_prompt_greedy_ids_match_pytorch_on_webgpu() {
    let gpu = gpu().await;
    let (config, store) = fixture_model(
        include_bytes!("../../../tests/fixtures/models/tiny-omni/config.json"),
        include_bytes!("../../../tests/fixtures/models/tiny-omni/model.safetensors"),
    )
    .await;
    let text = TextModel::load(&gpu, &store, &config.text).await.unwrap();
    let encoder = EcgEncoder::load(&gpu, &store, &config.ecg, config.text.hidden_size)
        .await
        .unwrap();

    let golden = include_bytes!("../../../tests/fixtures/goldens/tiny-omni/ecg.safetensors");
    let st = SafeTensors::deserialize(golden).unwrap();
    let ids = |name: &str| -> Vec<u32> {
        let t = st.tensor(name).unwrap();
        bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let prompt = ids("input_ids");
    let want = ids("greedy.generated_ids");
    let input: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("ecg.input").unwrap().data());

    let mut first = Recorder::new(&gpu);
    let x = Tensor::from_f32(&gpu, &input, &[1, 8, 2500], "ecg").unwrap();
    let tokens = encoder.forward(&mut first, &x, None).unwrap();
    let ts = config.time_series_token_id.unwrap();
    let opts = GenerateOptions {
        max_new_tokens: want.len(),
        sampling: SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..SamplingParams::default()
        },
        max_context: prompt.len() + want.len() + 1,
        inject: vec![Injection::at_token(&prompt, ts, tokens).unwrap()],
        ..GenerateOptions::default()
    };
    let positions = rope::text_positions(0, prompt.len(), 0);
    let out = generate_after(first, &text, &prompt, &positions, 0, &opts, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(out.token_ids, want);
}

/// f64 softmax attention where query i sees the keys `keys(i)` lists: q (n_q, heads, hd), k and v
/// (n_k, kv_heads, hd).
fn cpu_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (n_q, heads, kvh, hd): (usize, usize, usize, usize),
    keys: &dyn Fn(usize) -> Vec<usize>,
) -> Vec<f32> {
    let mut out = vec![0.0; n_q * heads * hd];
    for i in 0..n_q {
        let seen = keys(i);
        for h in 0..heads {
            let g = h / (heads / kvh);
            let qv = &q[(i * heads + h) * hd..][..hd];
            let s: Vec<f64> = seen
                .iter()
                .map(|&t| {
                    let kv = &k[(t * kvh + g) * hd..][..hd];
                    qv.iter()
                        .zip(kv)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let o: f64 = seen
                    .iter()
                    .zip(&e)
                    .map(|(&t, e)| e * v[(t * kvh + g) * hd + d] as f64)
                    .sum();
                out[(i * heads + h) * hd + d] = (o / sum) as f32;
            }
        }
    }
    out
}

/// The portable attention in the browser: every mask, GQA, blocks of query rows, and keys split
/// over workgroups with the merge pass (decode over 150 keys splits at the default 128 keys per
/// split; the segment and lead/time cases split from 16 keys on). Few cases: every new variant is
/// a shader compile, slow on SwiftShader, and the whole browser run shares one time budget.
#[wasm_bindgen_test]
async fn tiled_attention_masks_match_cpu_on_webgpu() {
    let mut gpu = gpu().await;
    // (n_q, n_k, heads, kv_heads, hd, mask, split_keys): mask 0 causal at start n_k - n_q,
    // 1 two segments, 2 lead/time (n_q = leads x patches, 3 leads).
    for (n_q, n_k, heads, kvh, hd, mask, split_keys) in [
        (1, 150, 14, 2, 16, 0, 128),
        (9, 40, 4, 2, 12, 0, 128),
        (30, 30, 2, 1, 6, 1, 16),
        (33, 33, 2, 2, 8, 2, 16),
    ] {
        gpu.tuning.attention_split_keys = split_keys;
        let val = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i + s) * 7919 % 1013) as f32 / 506.0) - 1.0)
                .collect()
        };
        let (q, k, v) = (
            val(n_q * heads * hd, 1),
            val(n_k * kvh * hd, 2),
            val(n_k * kvh * hd, 3),
        );
        let qt = Tensor::from_f32(&gpu, &q, &[n_q, heads, hd], "q").unwrap();
        let kt = Tensor::from_f32(&gpu, &k, &[n_k, kvh, hd], "k").unwrap();
        let vt = Tensor::from_f32(&gpu, &v, &[n_k, kvh, hd], "v").unwrap();
        let out = Tensor::from_f32(&gpu, &vec![f32::NAN; q.len()], &[n_q, heads, hd], "o").unwrap();
        let cut = 11;
        let bounds: Vec<f32> = (0..n_q)
            .flat_map(|i| {
                if i < cut {
                    [0, cut as u32]
                } else {
                    [cut as u32, n_k as u32]
                }
            })
            .map(f32::from_bits)
            .collect();
        let bt = Tensor::from_f32(&gpu, &bounds, &[n_q * 2], "bounds").unwrap();
        let patches = n_q / 3;
        let (m, keys): (ops::AttnMask, Box<dyn Fn(usize) -> Vec<usize>>) = match mask {
            0 => {
                let start = n_k - n_q;
                (
                    ops::AttnMask::Causal { start },
                    Box::new(move |i| (0..=start + i).collect()),
                )
            }
            1 => (
                ops::AttnMask::Segments { bounds: &bt.buffer },
                Box::new(move |i| {
                    if i < cut {
                        (0..cut).collect()
                    } else {
                        (cut..n_k).collect()
                    }
                }),
            ),
            _ => (
                ops::AttnMask::LeadOrTime { leads: 3, patches },
                Box::new(move |a| {
                    (0..n_k)
                        .filter(|b| a / patches == b / patches || a % patches == b % patches)
                        .collect()
                }),
            ),
        };
        let mut rec = Recorder::new(&gpu);
        ops::attention(&mut rec, &qt, &kt, &vt, m, &out).unwrap();
        rec.submit().unwrap();
        let got = out.to_vec(&gpu).await.unwrap();
        let want = cpu_attention(&q, &k, &v, (n_q, heads, kvh, hd), &*keys);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                "mask {mask} nq{n_q} nk{n_k} split from {split_keys}: out[{i}] = {g}, want {w}"
            );
        }
    }
}
