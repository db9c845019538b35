//! Checkpoint weights: safetensors files (single or sharded) read through [`ByteSource`]s.
//!
//! Tensor names are the Hugging Face names, unchanged. Both spellings that transformers writes are
//! accepted through [`text_tensor_names`] / [`visual_tensor_names`] and [`WeightStore::find`].

mod files;
mod header;
mod loader;
pub mod policy;
pub mod qfile;
mod source;
pub mod synthetic;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

pub use files::{MODEL_FOLDER_CONTENTS, ModelFiles, shard_files};
pub use header::{MAX_HEADER_LEN, dtype_size};
pub use loader::{LoadProgress, PIECE, rows_per_piece, upload, write_into};
pub use source::{ByteSource, MemorySource, ReadFuture, slice_range};
#[cfg(feature = "native")]
pub use source::{FileSource, MmapSource};

use crate::error::{Error, Result};
use crate::gpu::WeightFormat;

/// Element types of plain checkpoint tensors. Quantized tensors (qoqmed's own files) are
/// described by [`WeightFormat`] in [`TensorInfo::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// The safetensors spelling ("F32", "F16", "BF16"); None for any other type.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Little-endian bytes of this type to f32 (exact for all three types). A trailing partial
    /// element is ignored.
    pub fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A byte range in one of the store's sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    /// Index of the source (file) in the order given to [`WeightStore::open`].
    pub source: usize,
    /// Absolute byte offset in the source.
    pub offset: u64,
    pub len: u64,
}

/// One tensor of the checkpoint: where its bytes are and what they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Storage type of a plain tensor. For q8/q4 tensors F16, the type of their scales: use
    /// `format` to know how a tensor is stored.
    pub dtype: DType,
    /// The logical shape (for q4, twice the stored columns).
    pub shape: Vec<usize>,
    /// Index of the source (file) in the order given to [`WeightStore::open`].
    pub source: usize,
    /// Absolute byte offset in the source of the values (codes) plane.
    pub offset: u64,
    pub len: u64,
    /// How the values are stored: the dtype's format, or Q8/Q4 in qoqmed's files.
    pub format: WeightFormat,
    /// The f16 scales plane of a q8/q4 tensor (`<name>_scale` in the file).
    pub scales: Option<Plane>,
}

/// Bytes of a range of rows, borrowed from a memory map or read.
pub struct RowBytes<'a> {
    pub values: Cow<'a, [u8]>,
    pub scales: Option<Cow<'a, [u8]>>,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// (rows, values per row) as the GPU weight holds it: `shape[0]` rows of `shape[1..]`'s
    /// product values; a 1-D tensor is `n` rows of one value.
    pub fn rows(&self) -> (usize, usize) {
        qfile::rows_and_len(&self.shape)
    }

    /// Bytes of the tensor in its stored format, scales included.
    pub fn stored_bytes(&self) -> u64 {
        self.len + self.scales.map_or(0, |s| s.len)
    }

    /// Errors with both shapes unless the tensor has exactly `expected`.
    pub fn expect_shape(&self, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::TensorShape {
                name: self.name.clone(),
                expected: expected.to_vec(),
                actual: self.shape.clone(),
            });
        }
        Ok(())
    }
}

/// A load-progress callback.
pub type ProgressFn = Box<dyn FnMut(LoadProgress)>;

/// All tensors of a checkpoint, indexed by name, with their byte sources.
pub struct WeightStore {
    sources: Vec<Box<dyn ByteSource>>,
    /// Bytes uploaded so far and the callback told about them.
    progress: std::cell::RefCell<(u64, Option<ProgressFn>)>,
    tensors: BTreeMap<String, TensorInfo>,
    /// Tensors present with a dtype we cannot load: name -> (dtype, file). An error only when used.
    unsupported: BTreeMap<String, (String, String)>,
}

impl WeightStore {
    /// Reads every safetensors header. Each source is one file; a tensor in two files is an error.
    pub async fn open(sources: Vec<Box<dyn ByteSource>>) -> Result<Self> {
        if sources.is_empty() {
            return Err(Error::Input(
                "no weight files given; a model folder holds model.safetensors or \
                 model.safetensors.index.json with its shards"
                    .into(),
            ));
        }
        let mut tensors = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        let mut owner: BTreeMap<String, usize> = BTreeMap::new();
        // q8/q4 codes wait for their scales, which may sit in another shard.
        let mut pending: Vec<TensorInfo> = Vec::new();
        for (index, source) in sources.iter().enumerate() {
            let file = source.name();
            let file_len = source.len();
            // min in u64 first: a multi-GB file length does not fit wasm32's usize.
            let prefix = source.read(0, file_len.min(8) as usize).await?;
            let n = header::header_len(file, &prefix, file_len)?;
            // header_len bounds n by MAX_HEADER_LEN, so it fits in usize.
            let json = source.read(8, n as usize).await?;
            let header = header::parse_header(file, &json, file_len)?;
            let formats = qfile::read_metadata(file, &header.metadata)?;
            for entry in header.entries {
                if let Some(&other) = owner.get(&entry.name) {
                    return Err(Error::format(
                        file,
                        format!(
                            "tensor `{}` is also in {}; a checkpoint holds each tensor once",
                            entry.name,
                            sources[other].name()
                        ),
                    ));
                }
                owner.insert(entry.name.clone(), index);
                let declared = formats.as_ref().and_then(|f| f.get(&entry.name)).copied();
                if let Some(format) = declared.filter(|f| f.is_quantized()) {
                    pending.push(quantized_codes(file, index, entry, format)?);
                    continue;
                }
                match DType::parse(&entry.dtype) {
                    Some(dtype) => {
                        if let Some(format) = declared
                            && format != WeightFormat::from(dtype)
                        {
                            return Err(Error::format(
                                file,
                                format!(
                                    "tensor `{}` is stored as {} but __metadata__ says {format}; \
                                     the file is corrupt: quantize the model again",
                                    entry.name, entry.dtype
                                ),
                            ));
                        }
                        let info = TensorInfo {
                            name: entry.name.clone(),
                            dtype,
                            shape: entry.shape,
                            source: index,
                            offset: entry.offset,
                            len: entry.len,
                            format: WeightFormat::from(dtype),
                            scales: None,
                        };
                        tensors.insert(entry.name, info);
                    }
                    None => {
                        log::debug!("{file}: tensor `{}` has dtype {}", entry.name, entry.dtype);
                        unsupported.insert(entry.name, (entry.dtype, file.to_string()));
                    }
                }
            }
        }
        for mut info in pending {
            let file = sources[info.source].name();
            let scale_name = qfile::scale_name(&info.name);
            let scale = tensors.remove(&scale_name).ok_or_else(|| {
                Error::format(
                    file,
                    format!(
                        "{} tensor `{}` has no F16 `{scale_name}` in any shard; the model folder \
                         is incomplete: copy it again",
                        info.format, info.name
                    ),
                )
            })?;
            let (n, k) = info.rows();
            let want = [n, k / crate::gpu::GROUP];
            if scale.dtype != DType::F16 || scale.shape != want {
                return Err(Error::format(
                    file,
                    format!(
                        "`{scale_name}` is {} {:?}, expected F16 {want:?} for {} tensor `{}` {:?}",
                        scale.dtype, scale.shape, info.format, info.name, info.shape
                    ),
                ));
            }
            info.scales = Some(Plane {
                source: scale.source,
                offset: scale.offset,
                len: scale.len,
            });
            tensors.insert(info.name.clone(), info);
        }
        Ok(WeightStore {
            sources,
            progress: std::cell::RefCell::new((0, None)),
            tensors,
            unsupported,
        })
    }

    /// Calls `f` after every piece uploaded from this store (the CLI's progress bar, the web
    /// app's loading screen). The total is every tensor of the store.
    pub fn set_progress(&self, f: ProgressFn) {
        *self.progress.borrow_mut() = (0, Some(f));
    }

    /// Bytes of every tensor of the store as stored (scales included).
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(TensorInfo::stored_bytes).sum()
    }

    /// Counts `bytes` as uploaded and tells the progress callback.
    pub(crate) fn report(&self, bytes: u64) {
        let total = self.total_bytes();
        let mut p = self.progress.borrow_mut();
        p.0 += bytes;
        let done = p.0;
        if let Some(f) = p.1.as_mut() {
            f(LoadProgress { done, total });
        }
    }

    /// The tensor called `name`, if present with a loadable dtype.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The first of `names` present in the checkpoint (the spellings of one tensor). A present
    /// tensor of an unsupported dtype is an error naming it, not a miss.
    pub fn find(&self, names: &[&str]) -> Result<&TensorInfo> {
        for name in names {
            if let Some(info) = self.tensors.get(*name) {
                return Ok(info);
            }
            if let Some((dtype, file)) = self.unsupported.get(*name) {
                return Err(Error::UnsupportedDtype {
                    name: format!("{name} (in {file})"),
                    dtype: dtype.clone(),
                });
            }
        }
        Err(Error::MissingTensor {
            name: names.first().map(|n| n.to_string()).unwrap_or_default(),
            tried: names.iter().map(|n| n.to_string()).collect(),
        })
    }

    /// Like [`find`](Self::find) with one `String` per spelling, as the name helpers return.
    pub fn find_any(&self, names: &[String]) -> Result<&TensorInfo> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.find(&names)
    }

    fn source(&self, info: &TensorInfo) -> Result<&dyn ByteSource> {
        self.source_at(&info.name, info.source)
    }

    fn source_at(&self, name: &str, index: usize) -> Result<&dyn ByteSource> {
        self.sources.get(index).map(|s| &**s).ok_or_else(|| {
            Error::Input(format!(
                "tensor `{name}` refers to weight file #{index} but this store has {}",
                self.sources.len()
            ))
        })
    }

    /// `len` bytes at `offset` of source `index`: borrowed from a memory map, else read.
    async fn read_plane(
        &self,
        name: &str,
        index: usize,
        offset: u64,
        len: u64,
    ) -> Result<Cow<'_, [u8]>> {
        let source = self.source_at(name, index)?;
        let len = usize::try_from(len).map_err(|_| {
            Error::Input(format!(
                "tensor `{name}` ({len} bytes) does not fit in this platform's address space"
            ))
        })?;
        match source.as_slice() {
            Some(whole) => slice_range(source.name(), whole, offset, len).map(Cow::Borrowed),
            None => source.read(offset, len).await.map(Cow::Owned),
        }
    }

    /// The stored bytes of rows `rows` of `info` (values plane, and scales for q8/q4), as the
    /// GPU layout wants them: the loader streams a tensor through this piece by piece.
    pub async fn read_rows(&self, info: &TensorInfo, rows: Range<usize>) -> Result<RowBytes<'_>> {
        let (n, k) = info.rows();
        if rows.start > rows.end || rows.end > n {
            return Err(Error::Input(format!(
                "rows {rows:?} of tensor `{}` requested, it has {n}",
                info.name
            )));
        }
        let (vrow, srow) = (
            info.format.row_bytes(k) as u64,
            info.format.row_scale_bytes(k) as u64,
        );
        let count = (rows.end - rows.start) as u64;
        let values = self
            .read_plane(
                &info.name,
                info.source,
                info.offset + rows.start as u64 * vrow,
                count * vrow,
            )
            .await?;
        let scales = match info.scales {
            Some(p) => Some(
                self.read_plane(
                    &info.name,
                    p.source,
                    p.offset + rows.start as u64 * srow,
                    count * srow,
                )
                .await?,
            ),
            None => None,
        };
        Ok(RowBytes { values, scales })
    }

    /// The tensor's raw little-endian bytes.
    pub async fn read(&self, info: &TensorInfo) -> Result<Vec<u8>> {
        let source = self.source(info)?;
        let len = usize::try_from(info.len).map_err(|_| {
            Error::Input(format!(
                "tensor `{}` ({} bytes) does not fit in this platform's address space",
                info.name, info.len
            ))
        })?;
        source.read(info.offset, len).await
    }

    /// The tensor's bytes without a copy, when its source is memory-mapped or in memory.
    pub fn bytes<'a>(&'a self, info: &TensorInfo) -> Option<&'a [u8]> {
        let whole = self.source(info).ok()?.as_slice()?;
        slice_range("", whole, info.offset, usize::try_from(info.len).ok()?).ok()
    }

    /// The tensor as f32 values (converted from F16/BF16, dequantized from Q8/Q4).
    pub async fn read_f32(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        if info.format.is_quantized() {
            let (n, k) = info.rows();
            let rows = self.read_rows(info, 0..n).await?;
            return crate::quant::dequantize(info.format, &rows.values, rows.scales.as_deref(), k);
        }
        let bytes = match self.bytes(info) {
            Some(b) => return Ok(info.dtype.to_f32(b)),
            None => self.read(info).await?,
        };
        Ok(info.dtype.to_f32(&bytes))
    }

    /// Names of the loadable tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Tensors present with a dtype qoqmed cannot load: (name, dtype).
    pub fn unsupported(&self) -> impl Iterator<Item = (&str, &str)> {
        self.unsupported
            .iter()
            .map(|(n, (d, _))| (n.as_str(), d.as_str()))
    }

    /// Names of the weight files, in source order.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| s.name())
    }
}

/// A q8/q4 codes tensor of a qoqmed file, checked against its declared format; its scales are
/// attached once every shard is read.
fn quantized_codes(
    file: &str,
    source: usize,
    entry: header::RawEntry,
    format: WeightFormat,
) -> Result<TensorInfo> {
    let (want, per_byte) = if format == WeightFormat::Q8 {
        ("I8", 1)
    } else {
        ("U8", 2)
    };
    if entry.dtype != want || entry.shape.len() != 2 {
        return Err(Error::format(
            file,
            format!(
                "{format} tensor `{}` must be stored as a 2-D {want} tensor, found {} {:?}; the \
                 file is corrupt: quantize the model again",
                entry.name, entry.dtype, entry.shape
            ),
        ));
    }
    let shape = vec![entry.shape[0], entry.shape[1] * per_byte];
    format.check_row_len(&entry.name, &shape)?;
    Ok(TensorInfo {
        name: entry.name,
        dtype: DType::F16,
        shape,
        source,
        offset: entry.offset,
        len: entry.len,
        format,
        scales: None,
    })
}

/// The two spellings of a language-model tensor: the published one (`model.X`) and the one
/// newer transformers write (`model.language_model.X`). `lm_head.*` sits outside the language
/// model in both; its second spelling covers exports that nest it under `model.`.
pub fn text_tensor_names(base: &str) -> [String; 2] {
    if base.starts_with("lm_head.") {
        [base.to_string(), format!("model.{base}")]
    } else {
        [
            format!("model.{base}"),
            format!("model.language_model.{base}"),
        ]
    }
}

/// The two spellings of a vision-tower tensor: `visual.X` (published) and `model.visual.X`.
pub fn visual_tensor_names(base: &str) -> [String; 2] {
    [format!("visual.{base}"), format!("model.visual.{base}")]
}
