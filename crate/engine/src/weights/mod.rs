//! Checkpoint weights: safetensors files (single or sharded) read through [`ByteSource`]s.
//!
//! Tensor names are the Hugging Face names, unchanged. Both spellings that transformers writes are
//! accepted through [`text_tensor_names`] / [`visual_tensor_names`] and [`WeightStore::find`].

mod files;
mod header;
mod source;

use std::collections::BTreeMap;

pub use files::{MODEL_FOLDER_CONTENTS, ModelFiles, shard_files};
pub use header::MAX_HEADER_LEN;
#[cfg(feature = "native")]
pub use source::MmapSource;
pub use source::{ByteSource, MemorySource, ReadFuture, slice_range};

use crate::error::{Error, Result};

/// Element types the engine loads. Quantized types get their own variants later.
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

/// One tensor of the checkpoint: where its bytes are and what they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Index of the source (file) in the order given to [`WeightStore::open`].
    pub source: usize,
    /// Absolute byte offset in the source.
    pub offset: u64,
    pub len: u64,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
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

/// All tensors of a checkpoint, indexed by name, with their byte sources.
pub struct WeightStore {
    sources: Vec<Box<dyn ByteSource>>,
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
        for (index, source) in sources.iter().enumerate() {
            let file = source.name();
            let file_len = source.len();
            // min in u64 first: a multi-GB file length does not fit wasm32's usize.
            let prefix = source.read(0, file_len.min(8) as usize).await?;
            let n = header::header_len(file, &prefix, file_len)?;
            // header_len bounds n by MAX_HEADER_LEN, so it fits in usize.
            let json = source.read(8, n as usize).await?;
            for entry in header::parse_header(file, &json, file_len)? {
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
                match DType::parse(&entry.dtype) {
                    Some(dtype) => {
                        let info = TensorInfo {
                            name: entry.name.clone(),
                            dtype,
                            shape: entry.shape,
                            source: index,
                            offset: entry.offset,
                            len: entry.len,
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
        Ok(WeightStore {
            sources,
            tensors,
            unsupported,
        })
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
        self.sources.get(info.source).map(|s| &**s).ok_or_else(|| {
            Error::Input(format!(
                "tensor `{}` refers to weight file #{} but this store has {}",
                info.name,
                info.source,
                self.sources.len()
            ))
        })
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

    /// The tensor as f32 values (converted from F16/BF16).
    pub async fn read_f32(&self, info: &TensorInfo) -> Result<Vec<f32>> {
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
