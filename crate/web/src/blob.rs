//! Model files as browser `Blob`s (a picked file, or a file cached in OPFS): read by `slice()` in
//! the pieces the loader asks for, so no file is ever held whole in wasm memory.

use js_sys::Uint8Array;
use qoqmed_engine::Error;
use qoqmed_engine::weights::{ByteSource, ReadFuture};
use wasm_bindgen_futures::JsFuture;

pub struct BlobSource {
    name: String,
    blob: web_sys::Blob,
    len: u64,
    /// Called with the byte count of each finished read (the load's progress).
    on_read: Option<Box<dyn Fn(u64)>>,
}

impl BlobSource {
    pub fn new(name: String, blob: web_sys::Blob, on_read: Option<Box<dyn Fn(u64)>>) -> Self {
        let len = blob.size() as u64;
        BlobSource {
            name,
            blob,
            len,
            on_read,
        }
    }
}

impl ByteSource for BlobSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        Box::pin(async move {
            let end = offset.checked_add(len as u64).filter(|&e| e <= self.len);
            let Some(end) = end else {
                return Err(Error::format(
                    &self.name,
                    format!(
                        "read of {len} bytes at offset {offset} runs past the end of the file ({} bytes); \
                         the file is truncated or not what its header says",
                        self.len
                    ),
                ));
            };
            let failed = |e: wasm_bindgen::JsValue| {
                Error::format(
                    &self.name,
                    format!(
                        "the browser could not read it ({}); was the file moved or deleted?",
                        crate::js_message(&e)
                    ),
                )
            };
            let slice = self
                .blob
                .slice_with_f64_and_f64(offset as f64, end as f64)
                .map_err(failed)?;
            let buffer = JsFuture::from(slice.array_buffer()).await.map_err(failed)?;
            let bytes = Uint8Array::new(&buffer);
            if bytes.length() as usize != len {
                return Err(Error::format(
                    &self.name,
                    format!(
                        "asked for {len} bytes, the browser returned {}; the file changed while loading",
                        bytes.length()
                    ),
                ));
            }
            if let Some(f) = &self.on_read {
                f(len as u64);
            }
            Ok(bytes.to_vec())
        })
    }
}
