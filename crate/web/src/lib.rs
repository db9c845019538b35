//! The browser edge of qoqmed: a small promise-based API over the one engine, run inside a Web
//! Worker by web/worker.js. Errors come back as JS `Error`s carrying the engine's message; a
//! panic (a bug) is reported on the console and the worker is restarted by the page, so nothing
//! unwinds across the boundary.

mod blob;
mod request;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Promise};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::weights::{ByteSource, ModelFiles};
use sha2::Digest;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use blob::BlobSource;
use request::{Loaded, Request};

/// The message of a thrown JS value (an `Error`'s message, or its string form).
pub(crate) fn js_message(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(
            &format!("qoqmed panicked (a bug; please report it): {info}").into(),
        );
    }));
}

/// qoqmed's version, written into every result next to the model's manifest hash.
#[wasm_bindgen(js_name = engineVersion)]
pub fn engine_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The model and the GPU of one worker.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    gpu: Gpu,
    model: RefCell<Option<Rc<Loaded>>>,
    stop: Cell<bool>,
    busy: Cell<bool>,
}

/// Clears the busy flag however the request ends.
struct Busy<'a>(&'a Cell<bool>);
impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

#[wasm_bindgen]
impl Engine {
    /// Opens the WebGPU device with the adapter's own limits. Resolves to an `Engine`.
    pub fn open() -> Promise {
        future_to_promise(async {
            let gpu = Gpu::new(None).await.map_err(js_err)?;
            Ok(Engine {
                inner: Rc::new(Inner {
                    gpu,
                    model: RefCell::new(None),
                    stop: Cell::new(false),
                    busy: Cell::new(false),
                }),
            }
            .into())
        })
    }

    /// The adapter and the limits the model must fit, as JSON.
    pub fn adapter(&self) -> String {
        let gpu = &self.inner.gpu;
        serde_json::json!({
            "adapter": gpu.adapter.to_string(),
            "max_buffer_size": gpu.limits.max_buffer_size,
            "max_storage_buffer_binding_size": gpu.limits.max_storage_buffer_binding_size,
            "shader_f16": gpu.features.contains(wgpu::Features::SHADER_F16),
        })
        .to_string()
    }

    /// Loads a model folder given as `File`s (picked, or cached in OPFS). `on_progress(phase,
    /// done, total)` sees the bytes uploaded ("upload") and then "compile". Resolves to a JSON
    /// summary.
    pub fn load(&self, files: Array, on_progress: Function) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if inner.busy.get() {
                return Err(js_err("the model is busy; stop the running request first"));
            }
            inner.busy.set(true);
            let _busy = Busy(&inner.busy);
            inner.model.replace(None);
            let mut blobs = Vec::new();
            for f in files.iter() {
                let file: web_sys::File = f
                    .dyn_into()
                    .map_err(|_| js_err("load() takes File objects"))?;
                blobs.push((file.name(), web_sys::Blob::from(file)));
            }
            let weight_names = weight_files(&blobs);
            let total: f64 = blobs
                .iter()
                .filter(|(n, _)| weight_names.contains(n))
                .map(|(_, b)| b.size())
                .sum();
            let done = Rc::new(Cell::new(0f64));
            let sources: Vec<Box<dyn ByteSource>> = blobs
                .into_iter()
                .map(|(name, blob)| {
                    let report: Option<Box<dyn Fn(u64)>> = if weight_names.contains(&name) {
                        let (done, cb) = (done.clone(), on_progress.clone());
                        Some(Box::new(move |n: u64| {
                            done.set(done.get() + n as f64);
                            let _ = cb.call3(
                                &JsValue::NULL,
                                &"upload".into(),
                                &done.get().into(),
                                &total.into(),
                            );
                        }))
                    } else {
                        None
                    };
                    Box::new(BlobSource::new(name, blob, report)) as Box<dyn ByteSource>
                })
                .collect();
            let files = ModelFiles::from_sources(sources).await.map_err(js_err)?;
            let loaded = request::load(&inner.gpu, files).await.map_err(js_err)?;
            let _ = on_progress.call3(&JsValue::NULL, &"compile".into(), &0.into(), &1.into());
            request::warm_up(&inner.gpu, &loaded)
                .await
                .map_err(js_err)?;
            inner.gpu.check_errors().map_err(js_err)?;
            let summary = serde_json::json!({
                "load_s": loaded.load_s,
                "layers": loaded.config.text.num_hidden_layers,
                "hidden": loaded.config.text.hidden_size,
                "vocab": loaded.config.text.vocab_size,
                "vision": loaded.config.vision.is_some(),
                "weight_bytes": total,
            });
            inner.model.replace(Some(Rc::new(loaded)));
            Ok(summary.to_string().into())
        })
    }

    /// Answers one request (JSON, see request.rs). `on_token(id, text)` sees each token as it
    /// comes. Resolves to the answer JSON (the object `qoqmed generate --json` prints).
    pub fn generate(&self, request_json: String, on_token: Function) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let req: Request =
                serde_json::from_str(&request_json).map_err(|e| js_err(format!("request: {e}")))?;
            let loaded = inner
                .model
                .borrow()
                .clone()
                .ok_or_else(|| js_err("no model is loaded; load a model folder first"))?;
            if inner.busy.get() {
                return Err(js_err("a request is already running; stop it first"));
            }
            inner.busy.set(true);
            let _busy = Busy(&inner.busy);
            inner.stop.set(false);
            let stop = &inner.stop;
            let answer = request::run(&inner.gpu, &loaded, &req, &mut |id, piece| {
                let _ = on_token.call2(&JsValue::NULL, &id.into(), &piece.into());
                !stop.get()
            })
            .await
            .map_err(js_err)?;
            Ok(answer.to_string().into())
        })
    }

    /// Asks the running request to stop after the current step.
    pub fn stop(&self) {
        self.inner.stop.set(true);
    }
}

/// The weight files among `files` (by name): model.safetensors or the shards the index names.
fn weight_files(files: &[(String, web_sys::Blob)]) -> Vec<String> {
    files
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.ends_with(".safetensors"))
        .collect()
}

/// Incremental SHA-256, so multi-GB downloads are verified piece by piece.
#[wasm_bindgen]
#[derive(Default)]
pub struct Sha256 {
    inner: sha2::Sha256,
}

#[wasm_bindgen]
impl Sha256 {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }
    /// The digest as lowercase hex; the hasher starts over.
    pub fn hex(&mut self) -> String {
        let digest = std::mem::take(&mut self.inner).finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}
