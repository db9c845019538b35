//! The browser edge of qoqmed: a small promise-based API over the one engine, run inside a Web
//! Worker by web/worker.js. Errors come back as JS `Error`s carrying the engine's message; a
//! panic (a bug) is reported on the console and the worker is restarted by the page, so nothing
//! unwinds across the boundary.

mod blob;
mod libc_shim;
mod request;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Promise};
use qoqmed_engine::gpu::Gpu;
use qoqmed_engine::weights::ByteSource;
use qoqmed_pipeline::{
    EcgInput, Event, ImageFrame, InputFile, Model, ModelFiles, Phase, place_boxes, run,
};
use sha2::Digest;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use blob::BlobSource;
use request::WebRequest;

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
    /// The device while no model holds it (a model owns its GPU; a failed load drops it).
    gpu: RefCell<Option<Gpu>>,
    /// What `adapter()` reports, kept when the device moves into a model.
    adapter: String,
    model: RefCell<Option<Rc<Model>>>,
    stop: Cell<bool>,
    busy: Cell<bool>,
}

/// Clears the busy flag however the call ends.
struct Busy<'a>(&'a Cell<bool>);
impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Inner {
    fn claim(&self, what: &str) -> Result<Busy<'_>, JsValue> {
        if self.busy.replace(true) {
            return Err(js_err(format!(
                "{what}: the engine is busy with another request; stop it first"
            )));
        }
        Ok(Busy(&self.busy))
    }
}

async fn read_file(file: &web_sys::File) -> Result<InputFile, JsValue> {
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| {
        js_err(format!(
            "{}: the browser could not read it ({})",
            file.name(),
            js_message(&e)
        ))
    })?;
    Ok(InputFile {
        name: file.name(),
        bytes: js_sys::Uint8Array::new(&buffer).to_vec(),
    })
}

fn files_of(array: &Array, what: &str) -> Result<Vec<web_sys::File>, JsValue> {
    array
        .iter()
        .map(|f| {
            f.dyn_into::<web_sys::File>()
                .map_err(|_| js_err(format!("{what} must be File objects")))
        })
        .collect()
}

#[wasm_bindgen]
impl Engine {
    /// Opens the WebGPU device with the adapter's own limits. Resolves to an `Engine`.
    pub fn open() -> Promise {
        future_to_promise(async {
            let gpu = Gpu::new(None).await.map_err(js_err)?;
            let adapter = serde_json::json!({
                "adapter": gpu.adapter.to_string(),
                "max_buffer_size": gpu.limits.max_buffer_size,
                "max_storage_buffer_binding_size": gpu.limits.max_storage_buffer_binding_size,
                "shader_f16": gpu.features.contains(wgpu::Features::SHADER_F16),
            })
            .to_string();
            Ok(Engine {
                inner: Rc::new(Inner {
                    gpu: RefCell::new(Some(gpu)),
                    adapter,
                    model: RefCell::new(None),
                    stop: Cell::new(false),
                    busy: Cell::new(false),
                }),
            }
            .into())
        })
    }

    /// The adapter and the limits a model must fit, as JSON.
    pub fn adapter(&self) -> String {
        self.inner.adapter.clone()
    }

    /// Loads a model folder given as `File`s (picked, or cached in OPFS), read piece by piece.
    /// `on_progress(phase, done, total)` sees the weight bytes uploaded ("upload"), then
    /// "compile". Resolves to a JSON summary.
    pub fn load(&self, files: Array, on_progress: Function) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let _busy = inner.claim("load")?;
            let files = files_of(&files, "model files")?;
            // The previous model goes first, with its GPU memory; its device serves the new one.
            let old = inner.model.replace(None);
            let gpu = match (inner.gpu.take(), old.and_then(|m| Rc::try_unwrap(m).ok())) {
                (Some(gpu), _) => gpu,
                (None, Some(model)) => model.gpu,
                (None, None) => Gpu::new(None).await.map_err(js_err)?,
            };
            let total: f64 = files
                .iter()
                .filter(|f| is_weights(&f.name()))
                .map(|f| f.size())
                .sum();
            let done = Rc::new(Cell::new(0f64));
            let sources: Vec<Box<dyn ByteSource>> = files
                .into_iter()
                .map(|file| {
                    let name = file.name();
                    let report: Option<Box<dyn Fn(u64)>> = is_weights(&name).then(|| {
                        let (done, cb) = (done.clone(), on_progress.clone());
                        Box::new(move |n: u64| {
                            done.set(done.get() + n as f64);
                            let _ = cb.call3(
                                &JsValue::NULL,
                                &"upload".into(),
                                &done.get().into(),
                                &total.into(),
                            );
                        }) as Box<dyn Fn(u64)>
                    });
                    Box::new(BlobSource::new(name, file.into(), report)) as Box<dyn ByteSource>
                })
                .collect();
            let files = ModelFiles::from_sources(sources).await.map_err(js_err)?;
            let model = Model::load(gpu, files).await.map_err(js_err)?;
            let _ = on_progress.call3(&JsValue::NULL, &"compile".into(), &0.into(), &1.into());
            let t = web_time::Instant::now();
            request::warm_up(&model).await.map_err(js_err)?;
            model.gpu.check_errors().map_err(js_err)?;
            let summary = serde_json::json!({
                "load_s": model.load_s,
                "compile_s": t.elapsed().as_secs_f64(),
                "layers": model.config.text.num_hidden_layers,
                "hidden": model.config.text.hidden_size,
                "vocab": model.config.text.vocab_size,
                "vision": model.config.vision.is_some(),
                "weight_bytes": total,
            });
            inner.model.replace(Some(Rc::new(model)));
            Ok(summary.to_string().into())
        })
    }

    /// Answers one request: `request_json` (see request.rs), `images` (File[]), `ecgs` (File[][],
    /// one array per record). `on_event(kind, a, b)` sees ("phase", name), ("token", id, text)
    /// and ("text", tail). Resolves to the answer JSON, the object `qoqmed generate --json` prints.
    pub fn generate(
        &self,
        request_json: String,
        images: Array,
        ecgs: Array,
        on_event: Function,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let web: WebRequest =
                serde_json::from_str(&request_json).map_err(|e| js_err(format!("request: {e}")))?;
            let model = inner
                .model
                .borrow()
                .clone()
                .ok_or_else(|| js_err("no model is loaded; load a model folder first"))?;
            let _busy = inner.claim("generate")?;
            let mut image_files = Vec::new();
            for f in files_of(&images, "images")? {
                image_files.push(read_file(&f).await?);
            }
            let mut records = Vec::new();
            for record in ecgs.iter() {
                let mut files = Vec::new();
                for f in files_of(&Array::from(&record), "ECG files")? {
                    files.push(read_file(&f).await?);
                }
                records.push(files);
            }
            let req = web.into_request(image_files, records).map_err(js_err)?;
            inner.stop.set(false);
            let stop = &inner.stop;
            let call = |kind: &str, a: JsValue, b: JsValue| {
                let _ = on_event.call3(&JsValue::NULL, &kind.into(), &a, &b);
            };
            let answer = run(&model, &req, &mut |event| {
                match event {
                    Event::Phase(Phase::Prefill) => call("phase", "prefill".into(), JsValue::NULL),
                    Event::Phase(Phase::Decode) => call("phase", "decode".into(), JsValue::NULL),
                    Event::Token { id, text } => {
                        call("token", id.into(), text.unwrap_or("").into())
                    }
                    Event::Text(text) => call("text", text.into(), JsValue::NULL),
                }
                !stop.get()
            })
            .await
            .map_err(js_err)?;
            model.gpu.check_errors().map_err(js_err)?;
            let json = serde_json::to_string(&answer).map_err(js_err)?;
            Ok(json.into())
        })
    }

    /// Asks the running request to stop after the current step.
    pub fn stop(&self) {
        self.inner.stop.set(true);
    }
}

/// A VOI window from the page's (center, width), both or neither.
fn window_of(
    center: Option<f64>,
    width: Option<f64>,
) -> Result<Option<qoqmed_imaging::Window>, JsValue> {
    match (center, width) {
        (None, None) => Ok(None),
        (Some(c), Some(w)) => qoqmed_imaging::Window::new(c, w).map(Some).map_err(js_err),
        _ => Err(js_err("a window needs both its center and its width")),
    }
}

/// Decodes an image, DICOM or NIfTI file as the model will take it (volumes and multi-frame files:
/// the `frames` sampled slices; DICOM / NIfTI grey levels through the window when one is given),
/// for previews and for drawing the answer's boxes. Resolves to `[{label, width, height, png}]`;
/// a damaged or unsupported file rejects with the reader's message. Only pixels come back: DICOM
/// patient fields are never read out.
#[wasm_bindgen(js_name = readImage)]
pub fn read_image(
    file: web_sys::File,
    frames: usize,
    window_center: Option<f64>,
    window_width: Option<f64>,
) -> Promise {
    future_to_promise(async move {
        let window = window_of(window_center, window_width)?;
        let input = read_file(&file).await?;
        let opts = qoqmed_imaging::ReadOptions { frames, window };
        let images =
            qoqmed_imaging::read_image(&input.bytes, &input.name, &opts).map_err(js_err)?;
        let out = Array::new();
        for img in images {
            let rgb = img.image.to_rgb8();
            let o = js_sys::Object::new();
            let set = |k: &str, v: JsValue| js_sys::Reflect::set(&o, &k.into(), &v);
            set("label", img.label.into())?;
            set("width", rgb.width().into())?;
            set("height", rgb.height().into())?;
            set("png", png_of(&rgb, &input.name)?.into())?;
            out.push(&o);
        }
        Ok(out.into())
    })
}

fn png_of(rgb: &image::RgbImage, what: &str) -> Result<js_sys::Uint8Array, JsValue> {
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| js_err(format!("{what}: preview: {e}")))?;
    Ok(js_sys::Uint8Array::from(png.as_slice()))
}

/// The clinical 12-lead picture (25 mm/s, 10 mm/mV) of one ECG record: `files` is one file, or a
/// WFDB `.hea` and `.dat`; `rate_hz` is needed for CSV. The same reader the request path uses
/// (`qoqmed_pipeline::read_ecg`) and the same plot as `qoqmed ecg-plot`. Resolves to PNG bytes;
/// an unreadable record rejects with the reader's message.
#[wasm_bindgen(js_name = plotEcg)]
pub fn plot_ecg(files: Array, rate_hz: Option<f64>, px_per_mm: f64) -> Promise {
    future_to_promise(async move {
        let mut input = EcgInput::default();
        for f in files_of(&files, "ECG files")? {
            input.files.push(read_file(&f).await?);
        }
        let names: Vec<&str> = input.files.iter().map(|f| f.name.as_str()).collect();
        let what = names.join(" + ");
        let ecg = qoqmed_pipeline::read_ecg(&input, rate_hz)
            .map_err(|e| js_err(format!("{what}: {e}")))?;
        let rgb = qoqmed_ecg::plot_rgb(&ecg, &qoqmed_ecg::PlotOptions { px_per_mm })
            .map_err(|e| js_err(format!("{what}: {e}")))?;
        Ok(png_of(&rgb, &what)?.into())
    })
}

/// Parses an answer text given by hand (the model's output format: `<think>`, a ```json list of
/// `bbox_2d` boxes, `\boxed{}`) and places its boxes on `images` (File[]) as a generated answer's
/// are: the same parser and `place_boxes` the request path runs after generation, the model's
/// frame from `pixel_range` ("qoq" or "model"). Resolves to `{think, answer, boxes}` as JSON.
/// For showing a known answer (docs, teaching material) through the page's own rendering.
#[wasm_bindgen(js_name = answerFromText)]
pub fn answer_from_text(
    text: String,
    images: Array,
    pixel_range: String,
    frames: usize,
) -> Promise {
    future_to_promise(async move {
        let range = request::pixel_range(Some(&pixel_range)).map_err(js_err)?;
        let mut inputs = Vec::new();
        for f in files_of(&images, "images")? {
            inputs.push(read_file(&f).await?);
        }
        let opts = qoqmed_imaging::ReadOptions {
            frames,
            window: None,
        };
        let decoded = qoqmed_imaging::read_images(
            inputs.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())),
            &opts,
        )
        .map_err(js_err)?;
        let frames: Vec<ImageFrame> = decoded
            .into_iter()
            .map(|d| ImageFrame {
                model_size: qoqmed_imaging::apply_pixel_range(&d.image, range).dimensions(),
                label: d.label,
                original: d.image,
            })
            .collect();
        let mut parsed = qoqmed_output::parse(&text);
        place_boxes(&mut parsed.boxes, &frames);
        let json = serde_json::json!({
            "think": parsed.think,
            "answer": parsed.answer,
            "boxes": parsed.boxes,
        });
        Ok(json.to_string().into())
    })
}

/// Weight files (model.safetensors or shards): what the upload progress counts.
fn is_weights(name: &str) -> bool {
    name.ends_with(".safetensors")
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
